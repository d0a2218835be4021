// kill -9 of a site proxy process, then a restart on the same state: nothing it acknowledged
// is lost — the revision it acked to the controller, the delta history its agents resume
// from, the reports it answered (SiteLocal at once, replayed in order when the WAN returns).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, REPO } from '../support/proc.js';
import {
  endpoint,
  type FakeController,
  fakeSite,
  type NodeCreds,
  network,
  type SitePki,
  TestAgent,
  until,
} from '../support/site.js';

interface Proc {
  status: () => { active: boolean; wan?: { up: boolean } } | undefined;
  kill9: () => Promise<void>;
}

function startProc(cfg: string): Proc {
  const child = spawn(
    process.execPath,
    [
      '--import',
      `${REPO}node_modules/tsx/dist/esm/index.mjs`,
      `${REPO}test/integration/proxy/proxy-proc.ts`,
      cfg,
    ],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  let last: ReturnType<Proc['status']>;
  let buf = '';
  child.stdout.on('data', (b: Buffer) => {
    buf += b.toString();
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    if (lines.length) last = JSON.parse(lines.at(-1)!);
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    status: () => last,
    async kill9() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

describe('site proxy process killed with -9', () => {
  let dir: string;
  let pki: SitePki;
  let creds: Map<string, NodeCreds>;
  let ctl: FakeController;
  let proc: Proc | undefined;
  let cfg: string;
  let addr: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tether-proxy-crash-'));
    ({ pki, creds, ctl } = await fakeSite(
      's1',
      { n1: '127.0.0.1', n2: '127.0.0.2' },
      { objects: [network('red', '10.1.0.0/24', { n1: '10.1.0.0/28', n2: '10.1.0.16/28' }, ['s1'])] },
    ));
    const port = await freePort();
    addr = `127.0.0.1:${port}`;
    const agentSlicePath = join(dir, 'agent-slice.json');
    writeFileSync(agentSlicePath, JSON.stringify({ revision: 0, objects: ctl.list('Node') }));
    cfg = join(dir, 'proxy.json');
    const c = creds.get('n1')!;
    writeFileSync(
      cfg,
      JSON.stringify({
        stateDir: join(dir, 'n1'),
        node: 'n1',
        site: 's1',
        controllers: [`127.0.0.1:${ctl.port}`],
        caPem: pki.ca.certPem,
        credentials: { keyPem: c.keyPem, certPem: c.certPem },
        vtep: '127.0.0.1',
        port,
        probeMs: 200,
        probeTimeoutMs: 200,
        backoff: { baseMs: 50, capMs: 200 },
        agentSlicePath,
      }),
    );
  });

  afterAll(async () => {
    await proc?.kill9();
    ctl.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('restarts with everything it acknowledged', async () => {
    proc = startProc(cfg);
    await until('proxy active with WAN up', () => proc!.status()?.wan?.up === true, 30_000);
    const a1 = new TestAgent(creds.get('n1')!, pki.ca.certPem);
    const a2 = new TestAgent(creds.get('n2')!, pki.ca.certPem);
    a1.connect(addr);
    a2.connect(addr);
    await until('agents synced', () => a1.revision === ctl.revision && a2.revision === ctl.revision);
    for (let i = 0; i < 5; i++)
      ctl.apply([
        endpoint(
          'far',
          `e${i}`,
          'red',
          `10.1.0.${100 + i}`,
          `02:00:00:00:00:${(0x10 + i).toString(16)}`,
          '192.0.2.9',
          's2',
        ),
      ]);
    await until('proxy acked the head', () => ctl.acks.at(-1) === ctl.revision);
    const acked = ctl.revision;
    await until('agents at head', () => a1.revision === acked && a2.revision === acked);
    ctl.cut();
    a2.report([endpoint('n2', 'x', 'red', '10.1.0.18', '02:00:00:00:02:18', '127.0.0.2')]);
    // Answered (on disk) before n1 reports: the journal order is n2, n1.
    await until('n2 answered', () => a2.results.some((r) => r.accepted === 1));
    a1.report([endpoint('n1', 'x', 'red', '10.1.0.5', '02:00:00:00:01:05', '127.0.0.1')]);
    await until(
      'both answered',
      () => a1.results.some((r) => r.accepted === 1) && a2.results.some((r) => r.accepted === 1),
    );
    await proc.kill9();
    a1.close();
    a2.close();
    const held = a2.revision;
    proc = startProc(cfg);
    await until('proxy active again', () => proc!.status()?.active === true, 30_000);
    const a3 = new TestAgent(creds.get('n2')!, pki.ca.certPem);
    a3.revision = held;
    a3.objects.clear();
    a3.connect(addr);
    // Before any agent re-sends its set: SiteLocal comes from the journal.
    await until('SiteLocal from the journal', () => a3.siteLocal.length === 2);
    expect(a3.siteLocal.map((e) => e.metadata.name)).toEqual(['n1.x', 'n2.x']);
    expect(a3.received.some((m) => m.msg === 'snapshot_begin')).toBe(false);
    expect(a3.revision).toBe(held);
    const before = ctl.hellos.length;
    await ctl.restore();
    await until('WAN back', () => proc!.status()?.wan?.up === true, 30_000);
    expect(ctl.hellos[before]?.held_revision).toBe(acked);
    await until('reports replayed', () => ctl.relayed.length >= 2);
    expect(ctl.relayed.map((r) => r.node)).toEqual(['n2', 'n1']);
    a3.close();
  });
  it('kill -9 of the active proxy process: the standby process takes over', async () => {
    await proc?.kill9();
    proc = undefined;
    const port = await freePort();
    const mk = (n: 'n1' | 'n2', vtep: string) => {
      const c = creds.get(n)!;
      const file = join(dir, `elect-${n}.json`);
      writeFileSync(
        file,
        JSON.stringify({
          stateDir: join(dir, `elect-${n}`),
          node: n,
          site: 's1',
          controllers: [`127.0.0.1:${ctl.port}`],
          caPem: pki.ca.certPem,
          credentials: { keyPem: c.keyPem, certPem: c.certPem },
          vtep,
          port,
          probeMs: 200,
          probeTimeoutMs: 200,
          backoff: { baseMs: 50, capMs: 200 },
          agentSlicePath: join(dir, 'agent-slice.json'),
        }),
      );
      return startProc(file);
    };
    const p1 = mk('n1', '127.0.0.1');
    const p2 = mk('n2', '127.0.0.2');
    try {
      // Whichever came up first is active (a standby follows an active proxy even if it
      // outranks it: no flapping when a better-ranked node starts later).
      const actives = () => [p1, p2].filter((p) => p.status()?.active === true);
      await until(
        'exactly one active',
        () => p1.status() !== undefined && p2.status() !== undefined && actives().length === 1,
        30_000,
      );
      // Settled: the same single active for 2 s (10 probe rounds).
      let live = actives()[0];
      let since = Date.now();
      await until(
        'one active for 2 s',
        () => {
          const a = actives();
          if (a.length !== 1 || a[0] !== live) {
            live = a.length === 1 ? a[0] : undefined;
            since = Date.now();
          }
          return live !== undefined && Date.now() - since >= 2000;
        },
        30_000,
      );
      const other = live === p1 ? p2 : p1;
      const t0 = Date.now();
      await live!.kill9();
      await until('the other active', () => other.status()?.active === true, 30_000);
      console.log(`site proxy takeover after kill -9 (probe 200 ms, timeout 200 ms): ${Date.now() - t0} ms`);
    } finally {
      await p1.kill9();
      await p2.kill9();
    }
  });
});
