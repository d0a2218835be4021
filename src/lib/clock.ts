/**
 * Time as a port. Everything in the node agent that waits (heartbeats, backoff, the reconcile
 * loop's debounce, drift and wedge checks) asks a Clock, so the protocol and the loop can be
 * tested in one process without real waiting: FakeClock runs timers only when told to.
 */
export interface TimerHandle {
  readonly id: number;
}

export interface Clock {
  /** Unix milliseconds. */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  setInterval(fn: () => void, ms: number): TimerHandle;
  /** Cancels a timer of either kind; a handle that already fired or is undefined is ignored. */
  clear(h: TimerHandle | undefined): void;
}

/** The real clock. Timers are unref()ed: none of them keeps the process alive on its own. */
export class SystemClock implements Clock {
  private next = 1;
  private readonly live = new Map<number, { t: NodeJS.Timeout; interval: boolean }>();

  now(): number {
    return Date.now();
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.next++;
    const t = setTimeout(() => {
      this.live.delete(id);
      fn();
    }, ms);
    t.unref();
    this.live.set(id, { t, interval: false });
    return { id };
  }

  setInterval(fn: () => void, ms: number): TimerHandle {
    const id = this.next++;
    const t = setInterval(fn, ms);
    t.unref();
    this.live.set(id, { t, interval: true });
    return { id };
  }

  clear(h: TimerHandle | undefined): void {
    if (!h) return;
    const e = this.live.get(h.id);
    if (!e) return;
    this.live.delete(h.id);
    if (e.interval) clearInterval(e.t);
    else clearTimeout(e.t);
  }
}

export const systemClock: Clock = new SystemClock();

interface FakeTimer {
  id: number;
  at: number;
  every?: number;
  fn: () => void;
}

/**
 * A clock that moves only when a test calls advance(): due timers run in time order, each at
 * its own due time (now() inside a callback is that time). For in-process protocol and loop
 * tests; nothing in production uses it.
 */
export class FakeClock implements Clock {
  private t: number;
  private next = 1;
  private readonly timers = new Map<number, FakeTimer>();

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.next++;
    this.timers.set(id, { id, at: this.t + Math.max(0, ms), fn });
    return { id };
  }

  setInterval(fn: () => void, ms: number): TimerHandle {
    const id = this.next++;
    const every = Math.max(1, ms);
    this.timers.set(id, { id, at: this.t + every, every, fn });
    return { id };
  }

  clear(h: TimerHandle | undefined): void {
    if (h) this.timers.delete(h.id);
  }

  /**
   * Sets the time to `t`, also backwards, as an NTP step or a real-time clock that lost its
   * time after a reboot would; runs no timer.
   */
  step(t: number): void {
    this.t = t;
  }

  /** Number of timers waiting (for tests that check nothing is left armed). */
  pending(): number {
    return this.timers.size;
  }

  /**
   * Moves time forward by `ms`, running every timer that falls due on the way. Between two
   * timers the microtask queue and pending I/O callbacks get to run (a setImmediate turn), so
   * promise chains started by one timer settle before the next fires, as with real time.
   */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await new Promise<void>((r) => setImmediate(r));
      let due: FakeTimer | undefined;
      for (const x of this.timers.values()) if (x.at <= end && (!due || x.at < due.at)) due = x;
      if (!due) break;
      this.t = Math.max(this.t, due.at);
      if (due.every) due.at += due.every;
      else this.timers.delete(due.id);
      due.fn();
    }
    this.t = end;
    await new Promise<void>((r) => setImmediate(r));
  }
}
