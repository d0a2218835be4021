/**
 * Paces one stream of complete reports: at most one is handled per `intervalMs`; one that
 * comes sooner waits, and a newer one replaces it (each report is the sender's complete set,
 * so only the latest matters). A peer that reports in a loop then costs one checked, durable
 * write per interval instead of one per message. The controller paces node reports with it,
 * the site proxy its agents' reports.
 */
export class Pacer<T> {
  private last = Number.NEGATIVE_INFINITY;
  private pending: T | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly intervalMs: number,
    private readonly handle: (report: T) => void,
    private readonly now: () => number = () => Date.now(),
    /** Whether a report that waits may keep the process alive (the proxy's may not). */
    private readonly opts: { unref?: boolean } = {},
  ) {}

  offer(report: T): void {
    const wait = this.last + this.intervalMs - this.now();
    if (wait <= 0 && !this.timer) {
      this.run(report);
      return;
    }
    this.pending = report;
    if (this.timer) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        const r = this.pending;
        this.pending = undefined;
        if (r !== undefined) this.run(r);
      },
      Math.max(0, wait),
    );
    if (this.opts.unref) this.timer.unref();
  }

  /** Drops what waits (the session ended). */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = undefined;
  }

  private run(report: T): void {
    this.last = this.now();
    this.handle(report);
  }
}
