import { describe, expect, it } from 'vitest';
import {
  BoundedSession,
  type BoundedSessionState,
  ListenClock,
  missedHeartbeats,
} from '../../../src/lib/bounded-session.js';

// A fake transport: it takes a message (runs `written`) only when the test says so, like an
// HTTP/2 stream whose peer stopped reading and then reads again.
interface S extends BoundedSessionState {
  open: boolean;
  pending: Array<() => void>;
  got: string[];
  fail?: boolean;
}

function setup(limit: number) {
  const events: string[] = [];
  const q = new BoundedSession<S, string>({
    limit,
    sizeOf: (m) => m.length,
    write: (s, m, written) => {
      if (s.fail) throw new Error('stream gone');
      s.got.push(m);
      s.pending.push(written);
    },
    overflowed: () => events.push('overflowed'),
    failed: (_s, e) => events.push(`failed: ${e.message}`),
    isOpen: (s) => s.open,
    drained: (s) => {
      events.push('drained');
      q.write(s, 'SNAPSHOT');
    },
  });
  const s: S = { queued: 0, overflowed: false, open: true, pending: [], got: [] };
  const take = () => {
    for (const w of s.pending.splice(0)) w();
  };
  const tick = () => new Promise((r) => setImmediate(r));
  return { q, s, events, take, tick };
}

describe('BoundedSession', () => {
  it('counts what the transport has not taken, and frees it when taken', () => {
    const { q, s, take } = setup(100);
    expect(q.send(s, 'aaaa')).toBe(true);
    expect(q.send(s, 'bb')).toBe(true);
    expect(s.queued).toBe(6);
    take();
    expect(s.queued).toBe(0);
    expect(s.overflowed).toBe(false);
  });

  it('over the bound drops everything until drained, then resyncs once', async () => {
    const { q, s, events, take, tick } = setup(10);
    for (let i = 0; i < 4; i++) q.send(s, 'xxxx'); // 12 queued after the third: the fourth overflows
    expect(s.overflowed).toBe(true);
    expect(q.overflows).toBe(1);
    expect(events).toEqual(['overflowed']);
    // Whatever comes while overflowed is dropped, even forced (the resync replaces it).
    expect(q.send(s, 'delta')).toBe(false);
    expect(q.send(s, 'whole', true)).toBe(false);
    expect(s.got).toEqual(['xxxx', 'xxxx', 'xxxx']);
    take();
    expect(s.queued).toBe(0);
    // Not from inside the transport's callback.
    expect(events).toEqual(['overflowed']);
    await tick();
    expect(events).toEqual(['overflowed', 'drained']);
    expect(s.overflowed).toBe(false);
    expect(s.got.at(-1)).toBe('SNAPSHOT');
    expect(s.queued).toBe('SNAPSHOT'.length);
    // Back to normal: sends go through again.
    expect(q.send(s, 'next')).toBe(true);
  });

  it('a forced send skips the bound check but not an overflow in progress', () => {
    const { q, s } = setup(2);
    q.send(s, 'xxx');
    expect(q.send(s, 'yyy', true)).toBe(true);
    expect(s.overflowed).toBe(false);
    expect(q.send(s, 'z')).toBe(false);
    expect(s.overflowed).toBe(true);
  });

  it('a session that ended before the drain is not resynced', async () => {
    const { q, s, events, take, tick } = setup(1);
    q.send(s, 'xx');
    q.send(s, 'yy');
    expect(s.overflowed).toBe(true);
    s.open = false;
    take();
    await tick();
    expect(events).toEqual(['overflowed']);
  });

  it('a write that throws counts nothing and reports the failure', () => {
    const { q, s, events } = setup(100);
    s.fail = true;
    expect(q.send(s, 'abc')).toBe(false);
    expect(s.queued).toBe(0);
    expect(events).toEqual(['failed: stream gone']);
  });

  it('a peer is gone after three silent heartbeat intervals, not before', () => {
    expect(missedHeartbeats(1000, 100, 1300)).toBe(false);
    expect(missedHeartbeats(1000, 100, 1301)).toBe(true);
  });
});

describe('ListenClock', () => {
  it('leaves out only stalls of more than a period, and never runs backwards', () => {
    const c = new ListenClock(50);
    expect(c.tick(1000)).toBe(1000);
    // Jitter within a period is not a stall.
    expect(c.tick(1090)).toBe(1090);
    // 10 s with no tick: all of the lateness is credited.
    expect(c.tick(11_140)).toBe(1140);
    expect(c.at(11_150)).toBe(1150);
    expect(c.stalledMs).toBe(10_000);
    let prev = c.tick(11_190);
    for (let i = 0, t = 11_190; i < 500; i++) {
      t += Math.floor(Math.random() * 400);
      const l = c.tick(t);
      expect(l).toBeGreaterThanOrEqual(prev);
      prev = l;
    }
  });
});
