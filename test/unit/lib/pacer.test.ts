import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Pacer } from '../../../src/lib/pacer.js';

// A node that reports in a loop must cost the controller (or an agent, its site proxy) one
// handled report per interval, and the one handled is always the newest (each report is the
// sender's complete set).
describe('Pacer', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('handles the first at once, then at most one per interval, always the latest', () => {
    const handled: number[] = [];
    const p = new Pacer<number>(
      500,
      (r) => handled.push(r),
      () => Date.now(),
    );
    p.offer(1);
    expect(handled).toEqual([1]);
    for (let i = 2; i <= 1000; i++) p.offer(i);
    expect(handled).toEqual([1]);
    vi.advanceTimersByTime(499);
    expect(handled).toEqual([1]);
    vi.advanceTimersByTime(1);
    expect(handled).toEqual([1, 1000]);
    // A burst right after: waits a full interval from the last handled one.
    p.offer(1001);
    p.offer(1002);
    vi.advanceTimersByTime(499);
    expect(handled).toEqual([1, 1000]);
    vi.advanceTimersByTime(1);
    expect(handled).toEqual([1, 1000, 1002]);
    // Quiet for longer than the interval: the next one is handled at once again.
    vi.advanceTimersByTime(2000);
    p.offer(1003);
    expect(handled).toEqual([1, 1000, 1002, 1003]);
  });

  it('drops what waits when the session ends', () => {
    const handled: number[] = [];
    const p = new Pacer<number>(
      500,
      (r) => handled.push(r),
      () => Date.now(),
    );
    p.offer(1);
    p.offer(2);
    p.stop();
    vi.advanceTimersByTime(5000);
    expect(handled).toEqual([1]);
  });
});
