import { describe, expect, it } from 'vitest';
import { ControllerHealth } from '../../../src/controller/health.js';
import { TetherError } from '../../../src/lib/errors.js';

/** A clock and one interval timer that the test advances by hand. */
function fakeTimers() {
  let t = 0;
  let tick: (() => void) | undefined;
  let every = 0;
  let due = 0;
  return {
    now: () => t,
    setInterval: (fn: () => void, ms: number) => {
      tick = fn;
      every = ms;
      due = t + ms;
      return {};
    },
    clearInterval: () => {
      tick = undefined;
    },
    /** Moves time on; the timer fires on time, or once late when `blockedMs` stalls the loop. */
    advance(ms: number, blockedMs = 0) {
      t += blockedMs;
      const end = t + ms;
      while (tick && due <= end) {
        t = Math.max(t, due);
        tick();
        due = t + every;
      }
      t = end;
    },
  };
}

describe('ControllerHealth', () => {
  it('passes while the store probe passes and timers run on time', () => {
    const clock = fakeTimers();
    let probes = 0;
    const h = new ControllerHealth({ store: { probe: () => void probes++ }, maxLagMs: 1000, ...clock });
    h.start();
    for (let i = 0; i < 10; i++) {
      clock.advance(500);
      expect(h.healthy()).toBe(true);
    }
    expect(probes).toBe(10);
  });

  it('fails when the store cannot write, with the store error', () => {
    const clock = fakeTimers();
    let broken = false;
    const h = new ControllerHealth({
      store: {
        probe: () => {
          if (broken) throw new TetherError('TETHER_E_STATE', 'store x write failed: disk full');
        },
      },
      maxLagMs: 1000,
      ...clock,
    });
    h.start();
    clock.advance(300);
    expect(h.healthy()).toBe(true);
    broken = true;
    clock.advance(300);
    expect(() => h.healthy()).toThrow(/disk full/);
    broken = false;
    clock.advance(300);
    expect(h.healthy()).toBe(true);
  });

  it('fails once after the event loop stalled longer than the bound, then recovers', () => {
    const clock = fakeTimers();
    const h = new ControllerHealth({ store: { probe: () => {} }, maxLagMs: 1000, sampleMs: 250, ...clock });
    h.start();
    clock.advance(1000);
    expect(h.healthy()).toBe(true);
    // A stall of 900 ms is under the bound; one of 3 s is not.
    clock.advance(250, 900);
    expect(h.healthy()).toBe(true);
    clock.advance(250, 3000);
    expect(() => h.healthy()).toThrow(/event loop lagged \d+ ms/);
    clock.advance(1000);
    expect(h.healthy()).toBe(true);
  });

  it('counts a sampler that has not run at all as lag (a loop blocked right now)', () => {
    const clock = fakeTimers();
    const h = new ControllerHealth({ store: { probe: () => {} }, maxLagMs: 1000, sampleMs: 250, ...clock });
    h.start();
    h.stop(); // no more samples: as if the timer never got to run
    clock.advance(5000);
    expect(() => h.healthy()).toThrow(/event loop lagged/);
  });
});
