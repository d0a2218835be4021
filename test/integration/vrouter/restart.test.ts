import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IprouteKernel } from '../../../src/kernel/iproute2.js';
import { silentLogger } from '../../../src/lib/log.js';
import { VRouter } from '../../../src/node/vrouter/agent.js';
import { type DesiredNodeNetwork, names } from '../../../src/node/vrouter/model.js';
import { observe } from '../../../src/node/vrouter/observe.js';
import { plan } from '../../../src/node/vrouter/planner.js';
import { isRoot, local, network, nodeDesired, Topo, type Workload } from './topo.js';

if (!isRoot) console.warn('skipping vRouter restart integration tests: they need root (network namespaces)');

const CHILD = fileURLToPath(new URL('./sync-child.ts', import.meta.url));
const N = 20_000;

function bigDesired(topo: Topo, w: Workload, vni: number, vtepShift = 0): DesiredNodeNetwork {
  const n = network('big', vni, { subnet: '10.64.0.0/16', gateway: '10.64.0.1' });
  n.localEndpoints = [local(w)];
  for (let i = 0; i < N; i++) {
    const ip = `10.64.${100 + Math.floor(i / 250)}.${(i % 250) + 1}`;
    const mac = `02:42:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}:01`;
    n.remoteEndpoints.push({ mac, ip, vtep: `192.168.77.${2 + ((i + vtepShift) % 50)}`, labels: {} });
  }
  return nodeDesired(topo, 'a', [n]);
}

async function countEntries(
  topo: Topo,
  ns: string,
  vx: string,
): Promise<{ neigh: number; self: number; master: number }> {
  const neigh = (
    JSON.parse(
      await topo.sh('ip', ['-n', ns, '-j', 'neigh', 'show', 'dev', vx, 'nud', 'permanent']),
    ) as unknown[]
  ).length;
  const fdb = JSON.parse(await topo.sh('bridge', ['-n', ns, '-j', 'fdb', 'show', 'dev', vx])) as {
    dst?: string;
    state?: string;
    master?: string;
  }[];
  return {
    neigh,
    self: fdb.filter((e) => e.dst && !e.master).length,
    master: fdb.filter((e) => e.master && e.state === 'static').length,
  };
}

describe.skipIf(!isRoot)('vRouter restart and kill -9 on the real kernel', () => {
  const topo = new Topo('vk');
  let w: Workload;
  const dir = mkdtempSync(join(tmpdir(), 'tether-vrouter-'));

  beforeAll(async () => {
    await topo.build();
    w = await topo.addWorkload('a', 'w', '10.64.0.10', '10.64.0.1');
  });

  afterAll(async () => {
    await new VRouter(topo.runner, silentLogger())
      .teardown(nodeDesired(topo, 'a', []))
      .catch(() => undefined);
    await topo.destroyPrefixed([`${topo.id}a`]);
    await topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const [round, delayMs] of [
    [1, 150],
    [2, 600],
  ] as const) {
    it(`kill -9 of the applier in the middle of a ${N}-endpoint plan, then re-run, converges exactly (round ${round})`, async () => {
      // Round 2 changes every VTEP, so the killed run is half-way through replacing entries.
      const desired = bigDesired(topo, w, 900, round === 1 ? 0 : 7);
      const file = join(dir, `desired-${round}.json`);
      writeFileSync(file, JSON.stringify(desired));
      const child = spawn(process.execPath, ['--import', 'tsx', CHILD, file], {
        detached: true,
        stdio: 'ignore',
      });
      const ns = names.vnNetns(desired.netnsPrefix, 900);
      // Wait until the child is applying (round 1: the first neighbour entries exist, so the
      // ip batch is running; round 2: a fixed delay into the re-programming), then kill -9 its
      // whole process group (the agent and the ip/bridge process it is feeding).
      const vx = names.vxlan(900);
      for (let i = 0; i < 400 && child.exitCode === null; i++) {
        const list = await topo.sh('ip', ['netns', 'list']);
        if (list.includes(ns)) {
          if (round === 2) {
            await new Promise((r) => setTimeout(r, delayMs));
            break;
          }
          const r = await topo.runner.run('ip', ['-n', ns, 'neigh', 'show', 'dev', vx, 'nud', 'permanent'], {
            allowFailure: true,
          });
          if (r.code === 0 && r.stdout.trim()) break;
        }
        await new Promise((r) => setTimeout(r, 5));
      }
      const killedEarly = child.exitCode === null;
      if (child.pid && killedEarly) process.kill(-child.pid, 'SIGKILL');
      if (child.exitCode === null && child.signalCode === null)
        await new Promise((r) => child.once('exit', r));
      const partial = await countEntries(topo, ns, names.vxlan(900)).catch(() => ({
        neigh: -1,
        self: -1,
        master: -1,
      }));
      console.log(
        `round ${round}: killed=${killedEarly} ${round === 1 ? 'once neighbour entries appeared' : `~${delayMs} ms into re-programming`}; entries then: ${JSON.stringify(partial)}`,
      );

      const report = await new VRouter(topo.runner, silentLogger()).sync(desired);
      expect(report.ok, JSON.stringify(report.failures.slice(0, 3))).toBe(true);
      expect(await countEntries(topo, ns, names.vxlan(900))).toEqual({ neigh: N, self: N, master: N });
      const again = plan(desired, await observe(new IprouteKernel(topo.runner), desired));
      expect(again.ops).toEqual([]);
      expect(await topo.ping(w, '10.64.0.1')).toBe(true);
    });
  }
});
