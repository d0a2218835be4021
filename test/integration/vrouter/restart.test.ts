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
import { waitFor } from '../support/proc.js';
import type { PausedReport } from './sync-child.js';
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

interface Entries {
  neigh: number;
  self: number;
  master: number;
  /** Self entries whose VTEP is the one `desired` wants for that MAC. */
  selfAsDesired: number;
}

async function countEntries(
  topo: Topo,
  ns: string,
  vx: string,
  desired: DesiredNodeNetwork,
): Promise<Entries> {
  const want = new Map(desired.networks[0]!.remoteEndpoints.map((r) => [r.mac, r.vtep]));
  const neigh = (
    JSON.parse(
      await topo.sh('ip', ['-n', ns, '-j', 'neigh', 'show', 'dev', vx, 'nud', 'permanent']),
    ) as unknown[]
  ).length;
  const fdb = JSON.parse(await topo.sh('bridge', ['-n', ns, '-j', 'fdb', 'show', 'dev', vx])) as {
    mac: string;
    dst?: string;
    state?: string;
    master?: string;
  }[];
  const self = fdb.filter((e) => e.dst && !e.master);
  return {
    neigh,
    self: self.length,
    master: fdb.filter((e) => e.master && e.state === 'static').length,
    selfAsDesired: self.filter((e) => want.get(e.mac) === e.dst).length,
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

  // Round 1 programs from nothing and is killed inside the neighbour batch (`ip -batch`);
  // round 2 moves every endpoint to another VTEP and is killed inside the forwarding-entry
  // batch (`bridge -batch`). Each time the child feeds its batch process half the lines and
  // says so; the kill comes once the kernel holds exactly that half.
  for (const [round, tool] of [
    [1, 'ip'],
    [2, 'bridge'],
  ] as const) {
    it(`kill -9 inside the ${tool} batch of a ${N}-endpoint plan leaves a strictly partial state; a re-run converges exactly (round ${round})`, async () => {
      const desired = bigDesired(topo, w, 900, round === 1 ? 0 : 7);
      const file = join(dir, `desired-${round}.json`);
      writeFileSync(file, JSON.stringify(desired));
      const child = spawn(process.execPath, ['--import', 'tsx', CHILD, file, tool], {
        detached: true,
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      let out = '';
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
      });
      const exited = new Promise((r) => child.once('exit', r));
      const ns = names.vnNetns(desired.netnsPrefix, 900);
      const vx = names.vxlan(900);
      try {
        const fed = await waitFor(
          `the child to feed half of its ${tool} batch`,
          () => {
            if (child.exitCode !== null) throw new Error(`child exited early: ${out}`);
            const line = out.split('\n').find((l) => l.startsWith('{"paused"'));
            return line ? (JSON.parse(line) as PausedReport) : undefined;
          },
          120_000,
          20,
        );
        // What the kernel must hold once the fed half is applied (the batch process then blocks).
        const expected: Entries =
          round === 1
            ? { neigh: fed.neigh, self: 0, master: 0, selfAsDesired: 0 }
            : { neigh: N, self: N, master: N, selfAsDesired: fed.self };
        await waitFor(
          'the kernel to hold the fed half',
          async () => JSON.stringify(await countEntries(topo, ns, vx, desired)) === JSON.stringify(expected),
          60_000,
          50,
        );
        process.kill(-child.pid!, 'SIGKILL');
        await exited;
        // Strictly partial: the interruption really was half-way through the batch.
        const atKill = await countEntries(topo, ns, vx, desired);
        expect(atKill).toEqual(expected);
        const done = round === 1 ? atKill.neigh : atKill.selfAsDesired;
        expect(done).toBeGreaterThan(0);
        expect(done).toBeLessThan(N);
      } finally {
        if (child.exitCode === null && child.signalCode === null) {
          process.kill(-child.pid!, 'SIGKILL');
          await exited;
        }
      }

      const report = await new VRouter(topo.runner, silentLogger()).sync(desired);
      expect(report.ok, JSON.stringify(report.failures.slice(0, 3))).toBe(true);
      expect(await countEntries(topo, ns, vx, desired)).toEqual({
        neigh: N,
        self: N,
        master: N,
        selfAsDesired: N,
      });
      const again = plan(desired, await observe(new IprouteKernel(topo.runner), desired));
      expect(again.ops).toEqual([]);
      expect(await topo.ping(w, '10.64.0.1')).toBe(true);
    });
  }
});
