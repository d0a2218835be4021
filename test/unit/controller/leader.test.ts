// The election's own clock (src/controller/leader.ts) against a fake etcd whose keepalive
// answers the test controls: when the term ends relative to the lease TTL, when the replica
// calls etcd unreachable, and that an answer brings it back. Fake timers and a fake
// performance clock: nothing here waits for real time. The same election against a real
// etcd behind a cut TCP path: test/integration/etcd-partition.test.ts.
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EtcdElection, SoleWriter } from '../../../src/controller/leader.js';
import { readiness } from '../../../src/controller/run.js';
import type { EtcdStore, RawKv } from '../../../src/controller/store/etcd.js';
import { silentLogger } from '../../../src/lib/log.js';

const TTL = 3;

class FakeCall extends EventEmitter {
  writes: Array<{ ID: number }> = [];
  cancelled = false;
  write(m: { ID: number }): void {
    this.writes.push(m);
  }
  cancel(): void {
    this.cancelled = true;
  }
}

/** Just the election primitives of EtcdStore; `answer` decides whether keepalives are
 *  answered (a partition: they are not). */
function fakeStore() {
  const calls: FakeCall[] = [];
  /** performance.now() of every keepalive that got an answer. */
  const answered: number[] = [];
  let lease = 0;
  let answer = true;
  let rev = 100;
  const store = {
    async leaseGrant(ttl: number, id: number) {
      if (!answer) throw new Error('unreachable');
      lease = id;
      return { id, ttl };
    },
    async leaseRevoke() {
      // Like a real call on a silent path: it hangs until its deadline.
      if (!answer) await new Promise((_, reject) => setTimeout(() => reject(new Error('deadline')), 5000));
    },
    leaseKeepAlive() {
      const c = new FakeCall();
      const write = c.write.bind(c);
      c.write = (m) => {
        write(m);
        // etcd answers on the stream, in order, a little later.
        if (answer) {
          answered.push(performance.now());
          setTimeout(() => c.emit('data', { TTL: TTL }), 10);
        }
      };
      calls.push(c);
      return c;
    },
    async createIfAbsent() {
      if (!answer) throw new Error('unreachable');
      const kv: RawKv = { createRevision: ++rev, modRevision: rev, lease, value: Buffer.from('{}') };
      return { created: true, revision: rev, kv };
    },
    watchKey(_key: string, _from: number, signal: AbortSignal) {
      return {
        async *[Symbol.asyncIterator]() {
          await new Promise<void>((r) => signal.addEventListener('abort', () => r()));
        },
      };
    },
    async getKey() {
      return { revision: rev };
    },
  };
  return {
    store: store as unknown as EtcdStore,
    calls,
    answered,
    cut: () => {
      answer = false;
    },
    heal: () => {
      answer = true;
    },
  };
}

describe('EtcdElection clock', () => {
  beforeEach(() => {
    vi.useFakeTimers({
      toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'performance', 'Date'],
    });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a leader whose keepalives go unanswered ends its term at 80% of the TTL, then calls etcd unreachable; an answer brings it back', async () => {
    const f = fakeStore();
    const e = new EtcdElection(f.store, { log: silentLogger(), ttlSeconds: TTL });
    const changes: boolean[] = [];
    const reach: boolean[] = [];
    let toldAt: number | undefined;
    e.subscribe((l) => {
      changes.push(l);
      if (!l) toldAt ??= performance.now();
    });
    e.onReachable((ok) => reach.push(ok));
    e.start();
    await vi.advanceTimersByTimeAsync(50);
    expect(e.isLeader()).toBe(true);
    expect(e.term()).toBe(101);
    expect(e.fence()).toEqual({ key: 'leader', createRevision: 101 });
    expect(e.reachable()).toBe(true);
    // Several keepalive periods with answers: still the leader, still the same term.
    await vi.advanceTimersByTimeAsync(TTL * 1000 * 3);
    expect(e.isLeader()).toBe(true);
    expect(e.term()).toBe(101);

    // The partition: from now on nothing is answered. The last answered keepalive was sent
    // at most TTL/3 ago; etcd's lease lasts a TTL from when etcd took it.
    f.cut();
    const lastSent = Math.max(...f.answered);
    let stepped: number | undefined;
    let lost: number | undefined;
    for (let t = 0; t < TTL * 1000 * 2; t += 10) {
      await vi.advanceTimersByTimeAsync(10);
      if (stepped === undefined && !e.isLeader()) stepped = performance.now();
      if (lost === undefined && !e.reachable()) lost = performance.now();
    }
    expect(stepped).toBeDefined();
    // Stepped down before etcd can have expired the lease (a TTL after the last answered
    // keepalive was sent), never later: on the fake clock this is exact, not a timing.
    expect(stepped! - lastSent).toBeLessThanOrEqual(TTL * 800 + 10);
    expect(changes).toEqual([true, false]);
    // The single writers are told by the step-down timer itself, not a TTL/3 send tick later.
    expect(toldAt! - lastSent).toBeLessThanOrEqual(TTL * 800 + 10);
    expect(() => e.fence()).toThrow(/not the leader/);
    expect(e.term()).toBe(0);
    // Unreachable only once nothing at all came back for a whole TTL.
    expect(lost).toBeDefined();
    expect(lost!).toBeGreaterThan(stepped!);
    expect(reach).toEqual([false]);

    f.heal();
    await vi.advanceTimersByTimeAsync(5000);
    expect(e.reachable()).toBe(true);
    expect(reach).toEqual([false, true]);
    // A new lease, a new term: the old fence would be refused by etcd's compare.
    expect(e.isLeader()).toBe(true);
    expect(e.term()).toBeGreaterThan(101);
    const closing = e.close();
    await vi.advanceTimersByTimeAsync(10_000);
    await closing;
  });

  it("a replica's own stall is not etcd's silence; silence while it listens is", async () => {
    const f = fakeStore();
    const e = new EtcdElection(f.store, { log: silentLogger(), ttlSeconds: TTL });
    const reach: boolean[] = [];
    e.onReachable((ok) => reach.push(ok));
    e.start();
    await vi.advanceTimersByTimeAsync(50);
    expect(e.reachable()).toBe(true);
    const fakeNow = performance.now.bind(performance);
    let stall = 0;
    vi.spyOn(performance, 'now').mockImplementation(() => fakeNow() + stall);
    // Nothing is answered from here on, and the event loop is blocked for two TTLs: on waking
    // the contact check runs before any socket is read. That stall is not etcd's silence.
    f.cut();
    stall = TTL * 2000;
    await vi.advanceTimersByTimeAsync(260);
    expect(reach).toEqual([]);
    expect(e.reachable()).toBe(true);
    // A whole TTL of listening with no answer is.
    for (let t = 0; t < TTL * 1000 + 500 && e.reachable(); t += 10) await vi.advanceTimersByTimeAsync(10);
    expect(reach).toEqual([false]);
    vi.mocked(performance.now).mockRestore();
    const closing = e.close();
    await vi.advanceTimersByTimeAsync(10_000);
    await closing;
  });

  it('isLeader() is false past the deadline even when the step-down timer has not run yet', async () => {
    const f = fakeStore();
    const e = new EtcdElection(f.store, { log: silentLogger(), ttlSeconds: TTL });
    e.start();
    await vi.advanceTimersByTimeAsync(50);
    expect(e.isLeader()).toBe(true);
    f.cut();
    // A blocked event loop: the clock moves past the deadline without any timer running.
    vi.setSystemTime(Date.now() + TTL * 1000);
    const perf = performance.now();
    vi.spyOn(performance, 'now').mockReturnValue(perf + TTL * 1000);
    expect(e.isLeader()).toBe(false);
    expect(() => e.fence()).toThrow(/not the leader/);
    vi.mocked(performance.now).mockRestore();
    const closing = e.close();
    await vi.advanceTimersByTimeAsync(10_000);
    await closing;
  });
});

describe('readiness', () => {
  it('reports leadership and term; a replica without its datastore is not ready', () => {
    const sole = readiness(new SoleWriter('me'), false);
    expect(sole.ok).toBe(true);
    expect(sole.detail).toContain('leader: yes');
    expect(sole.detail).toContain('term: 0');
    expect(readiness(new SoleWriter('me'), true)).toMatchObject({ ok: false, reasons: ['shutting down'] });
    const cut = Object.assign(new SoleWriter('me'), {
      reachable: () => false,
      isLeader: () => false,
    });
    const r = readiness(cut, false);
    expect(r.ok).toBe(false);
    expect(r.reasons.join()).toMatch(/datastore unreachable/);
    expect(r.detail).toContain('leader: no');
    expect(r.detail).toContain('datastore: unreachable');
  });
});
