import { type BackoffPolicy, fullJitterDelay } from '../../lib/backoff.js';
import type { Clock, TimerHandle } from '../../lib/clock.js';
import { asTetherError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import type { DurableState } from './session.js';

/** What one apply changed (human-readable, bounded): drift repairs are logged with it. */
export interface ApplyOutcome {
  changes: string[];
}

/** Something that turns the cached desired state into local effects (the vRouter agent). */
export interface StateConsumer {
  name: string;
  /** Converges local state to `state`; safe to repeat (it reads back what it programs). */
  apply(state: DurableState): Promise<ApplyOutcome | undefined>;
  start?(state: DurableState): Promise<void>;
  stop?(): Promise<void>;
}

export type HealthState = 'ok' | 'degraded' | 'wedged';

export interface LoopHealth {
  /** True only when nothing fails (`state === 'ok'`). */
  ok: boolean;
  /**
   * `degraded`: a consumer keeps failing and the loop keeps retrying it (the daemon is alive;
   * the watchdog is fed; reasons say why). `wedged`: work is pending and no pass has completed
   * for `wedgedIntervals` intervals (the loop is stuck; the watchdog starves).
   */
  state: HealthState;
  reasons: string[];
}

export interface ReconcileOptions {
  clock: Clock;
  log: Logger;
  consumers: readonly StateConsumer[];
  state: DurableState;
  /** A burst of kicks within this window is one pass (default 25 ms). */
  debounceMs?: number;
  /** How often the kernel is re-planned against unchanged desired state (drift repair), and
   *  the unit of the wedge check (default 5 s). */
  intervalMs?: number;
  /** At most this share of time goes to drift checks: a drift check waits at least
   *  lastPassDuration / driftDuty since the last pass ended (default 0.05: a node whose no-op
   *  pass takes 2 s, 10,000 remote endpoints, re-plans every 40 s instead of every 5 s). */
  driftDuty?: number;
  /** Intervals without a completed pass while work is pending before the loop counts as
   *  wedged (default 6). */
  wedgedIntervals?: number;
  /** Retry of a failing consumer; the cap is kept at or below intervalMs, so a degraded loop
   *  still completes a pass every interval and is never mistaken for a wedged one. */
  retry?: BackoffPolicy;
  random?: () => number;
  /** After every completed pass (status file, notifier). */
  onPass?: () => void;
}

interface Failure {
  message: string;
  since: number;
  attempts: number;
}

type Reason = 'change' | 'retry' | 'drift';

/**
 * The node's reconcile loop: one pass runs every consumer against the current desired state.
 * Kicks coalesce (a burst of deltas is one pass), a failing consumer is retried with
 * backoff (degraded), an unchanged state is re-planned every interval so what someone
 * changed by hand is put back (`drift_repaired`), and a loop that stops completing passes
 * while work waits is reported as wedged.
 */
export class ReconcileLoop {
  /** Completed passes since start. */
  passes = 0;
  /** Completed passes that left a consumer failing (tether_node_reconcile_errors_total). */
  failedPasses = 0;
  private readonly clock: Clock;
  private readonly debounceMs: number;
  private readonly intervalMs: number;
  private readonly wedgedMs: number;
  private readonly retry: BackoffPolicy;
  private readonly failures = new Map<string, Failure>();
  private dirty = false;
  /** A kick asked for a pass at once (a CNI ADD waits for it). */
  private urgent = false;
  private running: Promise<void> | undefined;
  private runningSince = 0;
  private timer: TimerHandle | undefined;
  private timerFor: Reason | undefined;
  private driftTimer: TimerHandle | undefined;
  private retryAttempt = 0;
  private lastCompleted: number;
  private lastPassMs = 0;
  private readonly driftDuty: number;
  private waiters: Array<() => void> = [];
  private stopped = false;

  constructor(private readonly opts: ReconcileOptions) {
    this.clock = opts.clock;
    this.debounceMs = opts.debounceMs ?? 25;
    this.intervalMs = opts.intervalMs ?? 5000;
    this.wedgedMs = (opts.wedgedIntervals ?? 6) * this.intervalMs;
    const r = opts.retry ?? { baseMs: 500, capMs: this.intervalMs };
    this.retry = { baseMs: Math.min(r.baseMs, this.intervalMs), capMs: Math.min(r.capMs, this.intervalMs) };
    this.lastCompleted = this.clock.now();
    this.driftDuty = opts.driftDuty ?? 0.05;
  }

  start(): void {
    this.lastCompleted = this.clock.now();
    this.driftTimer = this.clock.setInterval(() => this.driftCheck(), this.intervalMs);
    void this.kick({ immediate: true });
  }

  /** Stops timers and waits for a pass in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.clock.clear(this.driftTimer);
    this.clock.clear(this.timer);
    this.timer = undefined;
    await this.running;
    for (const w of this.waiters.splice(0)) w();
  }

  /**
   * Desired state changed: a pass will run (after the debounce window, or at once with
   * `immediate`). Resolves when a pass that started after this call has completed.
   */
  kick(opts: { immediate?: boolean } = {}): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.dirty = true;
    if (opts.immediate) this.urgent = true;
    const done = new Promise<void>((resolve) => this.waiters.push(resolve));
    if (!this.running) this.arm(opts.immediate ? 0 : this.debounceMs, 'change', opts.immediate);
    return done;
  }

  /** How long the last completed pass took (ms). */
  get lastDurationMs(): number {
    return this.lastPassMs;
  }

  health(): LoopHealth {
    const reasons = [...this.failures.entries()].map(
      ([name, f]) =>
        `${name}: ${f.message} (failing since ${new Date(f.since).toISOString()}, ${f.attempts} attempts)`,
    );
    if (this.wedged()) {
      const since = new Date(this.lastCompleted).toISOString();
      reasons.unshift(
        this.running
          ? `reconcile loop wedged: a pass started at ${new Date(this.runningSince).toISOString()} has not finished`
          : `reconcile loop wedged: work pending and no pass completed since ${since}`,
      );
      return { ok: false, state: 'wedged', reasons };
    }
    return reasons.length ? { ok: false, state: 'degraded', reasons } : { ok: true, state: 'ok', reasons };
  }

  /** Work is pending (a pass running, changes or a retry waiting) and no pass completed for
   *  `wedgedIntervals` intervals. */
  wedged(): boolean {
    const pending = Boolean(this.running) || this.dirty || this.failures.size > 0;
    return pending && this.clock.now() - this.lastCompleted > this.wedgedMs;
  }

  private arm(delay: number, reason: Reason, replace = false): void {
    if (this.stopped) return;
    if (this.timer) {
      // A pending change timer already covers this; an urgent request, or a change waiting
      // behind a retry's backoff, replaces it.
      if (!replace && this.timerFor !== 'retry') return;
      this.clock.clear(this.timer);
    }
    this.timerFor = reason;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.timerFor = undefined;
      this.startPass(reason);
    }, delay);
  }

  private driftCheck(): void {
    // Only when idle: pending work or a retry will re-plan anyway.
    if (this.running || this.timer || this.dirty || this.stopped) return;
    if (this.clock.now() - this.lastCompleted < this.lastPassMs / this.driftDuty) return;
    this.startPass('drift');
  }

  private startPass(reason: Reason): void {
    if (this.running || this.stopped) return;
    const waiters = this.waiters.splice(0);
    this.dirty = false;
    this.urgent = false;
    this.runningSince = this.clock.now();
    this.running = this.pass(reason).finally(() => {
      this.running = undefined;
      this.passes++;
      this.lastCompleted = this.clock.now();
      this.lastPassMs = this.lastCompleted - this.runningSince;
      if (this.failures.size > 0) this.failedPasses++;
      for (const w of waiters) w();
      this.afterPass();
    });
  }

  private async pass(reason: Reason): Promise<void> {
    const state = this.opts.state;
    for (const c of this.opts.consumers) {
      try {
        const out = await c.apply(state);
        if (reason === 'drift' && out?.changes.length) {
          this.opts.log.warn(
            { event: 'drift_repaired', consumer: c.name, changes: out.changes },
            `drift repaired: ${out.changes.join('; ')}`,
          );
        }
        if (this.failures.delete(c.name))
          this.opts.log.info(
            { event: 'consumer_recovered', consumer: c.name },
            'applying desired state works again',
          );
      } catch (e) {
        const message = asTetherError(e).message;
        const f = this.failures.get(c.name);
        if (f) {
          f.attempts++;
          f.message = message;
        } else this.failures.set(c.name, { message, since: this.clock.now(), attempts: 1 });
        this.opts.log.error(
          { consumer: c.name, err: message, attempts: this.failures.get(c.name)!.attempts },
          'applying desired state failed; will retry',
        );
      }
    }
  }

  private afterPass(): void {
    try {
      this.opts.onPass?.();
    } catch (e) {
      this.opts.log.warn({ err: (e as Error).message }, 'reconcile: status update failed');
    }
    if (this.stopped) return;
    if (this.dirty) {
      this.arm(this.urgent ? 0 : this.debounceMs, 'change');
      return;
    }
    if (this.failures.size) {
      this.arm(fullJitterDelay(this.retryAttempt++, this.retry, this.opts.random), 'retry');
      return;
    }
    this.retryAttempt = 0;
  }

  /** For tests and status: what the loop waits for. */
  get waitingFor(): Reason | undefined {
    return this.timerFor;
  }
}
