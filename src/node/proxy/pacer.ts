/**
 * At most one call of `handle` per interval; what arrives meanwhile waits and only the newest
 * is handled when the interval is over (the idea of the controller's ReportPacer, kept here so
 * that the node does not import the controller). An agent that reports in a tight loop costs
 * the proxy one verified, journaled report per interval, not one per message.
 */
export class Pacer<T> {
  private last = Number.NEGATIVE_INFINITY;
  private pending: T | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly intervalMs: number,
    private readonly handle: (item: T) => void,
    private readonly now: () => number = Date.now,
  ) {}

  offer(item: T): void {
    const wait = this.last + this.intervalMs - this.now();
    if (wait <= 0 && !this.timer) {
      this.run(item);
      return;
    }
    this.pending = item;
    this.timer ??= setTimeout(
      () => {
        this.timer = undefined;
        const p = this.pending;
        this.pending = undefined;
        if (p !== undefined) this.run(p);
      },
      Math.max(0, wait),
    );
    this.timer.unref();
  }

  /** Drops what waits (the session ended). */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = undefined;
  }

  private run(item: T): void {
    this.last = this.now();
    this.handle(item);
  }
}
