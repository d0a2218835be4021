// The reconcile loop: bursts coalesce, drift is repaired with an event, a failing consumer
// degrades (watchdog fed) while a stuck loop is wedged (watchdog starves). Fake clock, fake
// notifier, the real NodeAgent, the real vRouter on the fake kernel.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import { FakeClock } from '../../../src/lib/clock.js';
import { silentLogger } from '../../../src/lib/log.js';
import { NodeAgent, type NodeStatusFile } from '../../../src/node/agent/daemon.js';
import { type ApplyOutcome, ReconcileLoop, type StateConsumer } from '../../../src/node/agent/reconcile.js';
import type { DurableState } from '../../../src/node/agent/session.js';
import { MemoryUpstream } from '../../../src/node/agent/upstream.js';
import { StateCache } from '../../../src/node/cache.js';
import type { LoadedIdentity } from '../../../src/node/identity.js';
import { VRouter } from '../../../src/node/vrouter/agent.js';
import { names } from '../../../src/node/vrouter/model.js';
import { fakeNode, net, node } from '../vrouter/helpers.js';
import { FakeNotifier, tempDir, testIdentity } from './support.js';

const INTERVAL = 1000;

class CountingConsumer implements StateConsumer {
  readonly name = 'counting';
  applies = 0;
  fail: string | undefined;
  hang = false;
  async apply(): Promise<ApplyOutcome | undefined> {
    this.applies++;
    if (this.hang) await new Promise(() => {});
    if (this.fail) throw new Error(this.fail);
    return { changes: [] };
  }
}

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l)) });
  return { log, lines };
}

const emptyState = (): DurableState => ({
  revision: 0,
  snapshotRevision: 0,
  list: () => [],
  get: () => undefined,
  applyDelta: () => {},
  replace: () => ({ swept: 0 }),
});

describe('ReconcileLoop', () => {
  it('turns a burst of kicks into one pass, and kicks during a pass into one more', async () => {
    const clock = new FakeClock();
    const c = new CountingConsumer();
    const loop = new ReconcileLoop({
      clock,
      log: silentLogger(),
      consumers: [c],
      state: emptyState(),
      intervalMs: 60_000,
    });
    loop.start();
    await clock.advance(0);
    expect(c.applies).toBe(1);
    for (let i = 0; i < 200; i++) void loop.kick();
    await clock.advance(25);
    expect(c.applies).toBe(2);
    expect(loop.passes).toBe(2);
    await clock.advance(1000);
    expect(c.applies).toBe(2);
    // Kicks that arrive while a pass runs: exactly one pass after it.
    let release: () => void = () => {};
    const slow: StateConsumer = {
      name: 'slow',
      apply: () => new Promise((r) => (release = () => r(undefined))),
    };
    const loop2 = new ReconcileLoop({
      clock,
      log: silentLogger(),
      consumers: [slow, c],
      state: emptyState(),
      intervalMs: 60_000,
    });
    loop2.start();
    await clock.advance(0);
    for (let i = 0; i < 50; i++) void loop2.kick();
    await clock.advance(100);
    expect(loop2.passes).toBe(0);
    release();
    await clock.advance(0);
    expect(loop2.passes).toBe(1);
    await clock.advance(25);
    release();
    await clock.advance(100);
    expect(loop2.passes).toBe(2);
    await clock.advance(1000);
    expect(loop2.passes).toBe(2);
    await loop2.stop();
    await loop.stop();
  });

  it('re-plans unchanged state every interval and logs drift_repaired naming what the kernel lost', async () => {
    const clock = new FakeClock();
    const kernel = fakeNode();
    const vrouter = new VRouter({ run: async () => ({ code: 0, stdout: '', stderr: '' }) }, silentLogger(), {
      kernel,
    });
    const desired = node([
      net('red', 4096, {
        remoteEndpoints: [
          { id: 'n2.a', mac: '02:00:00:00:00:22', ip: '10.1.0.22', vtep: '192.168.0.2', labels: {} },
        ],
      }),
    ]);
    const consumer: StateConsumer = {
      name: 'vrouter',
      apply: async () => ({ changes: (await vrouter.sync(desired)).changes }),
    };
    const { log, lines } = capture();
    const loop = new ReconcileLoop({
      clock,
      log,
      consumers: [consumer],
      state: emptyState(),
      intervalMs: INTERVAL,
    });
    loop.start();
    await clock.advance(0);
    const ns = names.vnNetns('t1', 4096);
    const fdb = async () =>
      (await kernel.readNs(ns, { entries: true }))!.fdb.filter((f) => f.dst === '192.168.0.2');
    expect(await fdb()).toHaveLength(1);
    // Nothing drifted: a re-plan changes nothing and says nothing.
    await clock.advance(INTERVAL);
    expect(lines.filter((l) => l.event === 'drift_repaired')).toHaveLength(0);
    // Someone deletes the tunnel entry by hand.
    const e = (await fdb())[0]!;
    await kernel.apply('bridge', ns, [
      { op: 'fdb-del', netns: ns, dev: e.dev, mac: e.mac, target: 'self', dst: e.dst! },
    ]);
    expect(await fdb()).toHaveLength(0);
    await clock.advance(INTERVAL);
    expect(await fdb()).toHaveLength(1);
    const ev = lines.filter((l) => l.event === 'drift_repaired');
    expect(ev).toHaveLength(1);
    expect(ev[0]!.consumer).toBe('vrouter');
    expect((ev[0]!.changes as string[]).join('\n')).toContain('fdb-replace 02:00:00:00:00:22');
    await loop.stop();
  });
});

describe('ReconcileLoop drift-check budget', () => {
  it('spaces drift checks so they take at most 5% of the time when a pass is slow', async () => {
    const clock = new FakeClock();
    let passMs = 10;
    let applies = 0;
    const slow: StateConsumer = {
      name: 'slow',
      apply: async () => {
        applies++;
        await new Promise<void>((r) => clock.setTimeout(r, passMs));
        return { changes: [] };
      },
    };
    const loop = new ReconcileLoop({
      clock,
      log: silentLogger(),
      consumers: [slow],
      state: emptyState(),
      intervalMs: INTERVAL,
    });
    loop.start();
    await clock.advance(0);
    // A fast pass: a re-plan every interval.
    await clock.advance(20 * INTERVAL);
    expect(applies).toBeGreaterThanOrEqual(19);
    // A 2 s pass: at most one every 40 s.
    passMs = 2000;
    await clock.advance(3 * INTERVAL);
    const from = applies;
    await clock.advance(120_000);
    expect(applies - from).toBeGreaterThanOrEqual(2);
    expect(applies - from).toBeLessThanOrEqual(3);
    // A change is still applied at once, whatever the budget.
    const before = applies;
    void loop.kick();
    await clock.advance(2100);
    expect(applies).toBe(before + 1);
    await Promise.race([loop.stop(), clock.advance(5000)]);
  });
});

describe('NodeAgent health: degraded is not wedged', () => {
  let id: LoadedIdentity;
  const cleanups: Array<() => void | Promise<void>> = [];
  beforeAll(async () => {
    id = await testIdentity('n1', 'site-a');
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function agent(consumer: StateConsumer) {
    const clock = new FakeClock();
    const t = tempDir('tether-health-');
    const notifier = new FakeNotifier();
    // An upstream that never answers: health is about the loop, not the session.
    const upstream = new MemoryUpstream(() => {});
    const a = new NodeAgent({
      stateDir: t.dir,
      identity: id,
      log: silentLogger(),
      clock,
      notifier,
      consumers: [consumer],
      chooseUpstream: () => upstream,
      renew: async () => {
        throw new Error('no renewal in this test');
      },
      reconcile: { intervalMs: INTERVAL, wedgedIntervals: 6 },
    });
    await a.start();
    cleanups.push(async () => {
      await Promise.race([a.stop(), clock.advance(0)]);
      t.cleanup();
    });
    const status = () => JSON.parse(readFileSync(join(t.dir, 'status.json'), 'utf8')) as NodeStatusFile;
    return { a, clock, notifier, status };
  }

  it('a consumer that keeps failing is retried with backoff, the watchdog is fed and status says why', async () => {
    const c = new CountingConsumer();
    c.fail = 'RTNETLINK answers: Operation not permitted';
    const { a, clock, notifier, status } = await agent(c);
    await clock.advance(0);
    expect(a.health().state).toBe('degraded');
    for (let i = 0; i < 30; i++) {
      await clock.advance(INTERVAL);
      expect(notifier.wouldPing()).toBe(true);
    }
    // Retried, but with backoff: fewer passes than a tight loop, at least one per interval.
    expect(c.applies).toBeGreaterThanOrEqual(30);
    expect(c.applies).toBeLessThan(30 * 10);
    expect(status().health.state).toBe('degraded');
    expect(status().health.reasons[0]).toContain('Operation not permitted');
    expect(notifier.statuses.at(-1)).toContain('degraded');
    c.fail = undefined;
    await clock.advance(INTERVAL);
    expect(a.health()).toMatchObject({ ok: true, state: 'ok' });
  });

  it('a pass that never completes starves the watchdog after N intervals, not before', async () => {
    const c = new CountingConsumer();
    const { a, clock, notifier, status } = await agent(c);
    await clock.advance(0);
    expect(a.health().state).toBe('ok');
    c.hang = true;
    void a.refresh();
    await clock.advance(6 * INTERVAL);
    expect(notifier.wouldPing()).toBe(true);
    await clock.advance(INTERVAL);
    expect(notifier.wouldPing()).toBe(false);
    expect(a.health().state).toBe('wedged');
    expect(a.health().reasons[0]).toMatch(/wedged/);
    // The status file (rewritten every 10 s) says so too.
    await clock.advance(10 * INTERVAL);
    expect(status().health.state).toBe('wedged');
  });

  it('many deltas from the upstream are one apply pass', async () => {
    const c = new CountingConsumer();
    const clock = new FakeClock();
    const t = tempDir('tether-burst-');
    cleanups.push(t.cleanup);
    let server: import('../../../src/node/agent/upstream.js').MemoryServerCall | undefined;
    const upstream = new MemoryUpstream((call) => {
      server = call;
    });
    const a = new NodeAgent({
      stateDir: t.dir,
      identity: id,
      log: silentLogger(),
      clock,
      consumers: [c],
      chooseUpstream: () => upstream,
      renew: async () => '',
      cache: new StateCache(join(t.dir, 'cache.json')),
      reconcile: { intervalMs: 60_000 },
    });
    cleanups.push(() => a.stop());
    await a.start();
    await clock.advance(0);
    const before = c.applies;
    const vn = (i: number): TetherObject => ({
      apiVersion: 'tether.dev/v1',
      kind: 'VirtualNetwork',
      metadata: { name: `vn${i}` },
      spec: { subnets: ['10.9.0.0/24'] },
    });
    server!.write({ snapshot_begin: { revision: 1, reason: 'test' } });
    server!.write({ snapshot_end: { revision: 1, count: 0 } });
    const json = (o: TetherObject) => Buffer.from(JSON.stringify(o));
    for (let i = 2; i < 102; i++)
      server!.write({
        delta: {
          revision: i,
          put: [{ kind: 'VirtualNetwork', name: `vn${i}`, json: json(vn(i)), revision: i }],
          deleted: [],
        },
      });
    await clock.advance(0);
    expect(a.cache.revision).toBe(101);
    expect(c.applies).toBe(before);
    await clock.advance(25);
    expect(c.applies).toBe(before + 1);
  });
});
