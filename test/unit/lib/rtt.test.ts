import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HeartbeatRtt } from '../../../src/lib/rtt.js';

describe('HeartbeatRtt', () => {
  it('measures the round trip of echoed heartbeats, smoothed, and the peer clock offset', () => {
    let t = 1_000_000;
    const r = new HeartbeatRtt(
      () => t,
      () => 0.5,
    );
    expect(r.snapshot()).toBeUndefined();
    const a = r.next();
    expect(a.seq).toBeGreaterThanOrEqual(2 ** 40);
    t += 40;
    // The peer's clock runs 5 s ahead: it stamps the echo at its time for our send + 20 ms.
    expect(r.echo(a.seq, a.unix_ms + 20 + 5000)).toBe(true);
    expect(r.snapshot()).toMatchObject({
      srttMs: 40,
      lastRttMs: 40,
      offsetMs: 5000,
      offsetErrorMs: 20,
      samples: 1,
    });
    const b = r.next();
    t += 120;
    expect(r.echo(b.seq, b.unix_ms + 60 + 5000)).toBe(true);
    const s = r.snapshot();
    expect(s?.lastRttMs).toBe(120);
    expect(s?.srttMs).toBe(50); // 7/8 · 40 + 1/8 · 120
    // The offset comes from the sample with the least round trip (least queueing).
    expect(s).toMatchObject({ offsetMs: 5000, offsetErrorMs: 20 });
  });

  it('ignores upstream-initiated heartbeats, replays, unknown and malformed echoes', () => {
    let t = 0;
    const r = new HeartbeatRtt(() => t);
    const a = r.next();
    t += 10;
    for (const seq of [1, 2, 3, a.seq + 1, -1, 1.5, Number.NaN, '5', null, undefined, 2 ** 60])
      expect(r.echo(seq, t)).toBe(false);
    expect(r.echo(a.seq, t)).toBe(true);
    expect(r.echo(a.seq, t)).toBe(false); // replay
    // A malformed peer time still gives an RTT sample but no offset from it.
    const b = r.next();
    expect(r.echo(b.seq, Number.POSITIVE_INFINITY)).toBe(true);
    expect(r.snapshot()?.samples).toBe(2);
  });

  it('forgets heartbeats of an old connection and older than the one echoed', () => {
    let t = 0;
    const r = new HeartbeatRtt(() => t);
    const a = r.next();
    const b = r.next();
    t += 5;
    expect(r.echo(b.seq, t)).toBe(true);
    expect(r.echo(a.seq, t)).toBe(false); // answered in order: a is lost
    const c = r.next();
    r.reset();
    expect(r.echo(c.seq, t)).toBe(false);
  });

  it('never throws and keeps its numbers finite whatever the peer sends (fuzz)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.anything(), fc.anything(), fc.integer({ min: 0, max: 1e6 }))),
        (steps) => {
          let t = 1e12;
          const r = new HeartbeatRtt(() => t);
          const sent: number[] = [];
          for (const [own, seq, ms, dt] of steps) {
            t += dt;
            if (own) sent.push(r.next().seq);
            else r.echo(typeof seq === 'boolean' && sent.length ? sent[sent.length - 1] : seq, ms);
          }
          const s = r.snapshot();
          if (s) {
            for (const v of [s.srttMs, s.lastRttMs, s.offsetMs ?? 0, s.offsetErrorMs ?? 0])
              expect(Number.isFinite(v)).toBe(true);
            expect(s.srttMs).toBeGreaterThanOrEqual(0);
          }
        },
      ),
    );
  });
});
