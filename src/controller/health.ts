import { TetherError } from '../lib/errors.js';
import type { ControllerStore } from './mirror.js';

export interface ControllerHealthOptions {
  store: Pick<ControllerStore, 'probe'>;
  /** Unhealthy when the event loop ran this much later than asked, since the last check. */
  maxLagMs: number;
  /** How often the lag sampler runs (default 250 ms). */
  sampleMs?: number;
  /** Monotonic milliseconds (default performance.now). */
  now?: () => number;
  /** Timer port (default the global timers); tests drive a fake clock. */
  setInterval?: (fn: () => void, ms: number) => { unref?: () => void };
  clearInterval?: (t: unknown) => void;
}

/**
 * What the controller's systemd watchdog is fed on: a store that still takes a durable
 * write and reads it back, and an event loop that runs timers close to when they are due.
 * A controller that fails either is restarted by systemd instead of lingering half-alive.
 */
export class ControllerHealth {
  private readonly sampleMs: number;
  private readonly now: () => number;
  private timer: unknown;
  private last = 0;
  private worstLag = 0;

  constructor(private readonly opts: ControllerHealthOptions) {
    this.sampleMs = opts.sampleMs ?? 250;
    this.now = opts.now ?? (() => performance.now());
  }

  start(): void {
    this.stop();
    this.last = this.now();
    this.worstLag = 0;
    const every = this.opts.setInterval ?? ((fn: () => void, ms: number) => setInterval(fn, ms));
    const t = every(() => this.sample(), this.sampleMs);
    t.unref?.();
    this.timer = t;
  }

  stop(): void {
    if (this.timer === undefined) return;
    (this.opts.clearInterval ?? ((x: unknown) => clearInterval(x as NodeJS.Timeout)))(this.timer);
    this.timer = undefined;
  }

  /** Throws a TetherError saying what is wrong; returns when healthy. Resets the lag window. */
  check(): void {
    // A sampler that has not run for a long time is lag too (the loop was blocked).
    const lag = Math.max(this.worstLag, this.now() - this.last - this.sampleMs);
    this.worstLag = 0;
    if (lag > this.opts.maxLagMs) {
      throw new TetherError(
        'TETHER_E_TIMEOUT',
        `event loop lagged ${Math.round(lag)} ms (limit ${this.opts.maxLagMs} ms)`,
      );
    }
    this.opts.store.probe();
  }

  /** For SystemdNotifier.startWatchdog: true when check() passes; otherwise it throws. */
  healthy(): boolean {
    this.check();
    return true;
  }

  private sample(): void {
    const t = this.now();
    this.worstLag = Math.max(this.worstLag, t - this.last - this.sampleMs);
    this.last = t;
  }
}
