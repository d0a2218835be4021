/** What one session keeps for its send queue bound (a few fields: 10,000 sessions per process). */
export interface BoundedSessionState {
  /** Bytes written to the transport that it has not taken yet. */
  queued: number;
  /** Set while the queue is over its bound: nothing is written until it drains, then a resync. */
  overflowed: boolean;
}

export interface BoundedSessionOptions<S extends BoundedSessionState, M> {
  /** Bytes a session may have queued before it overflows. */
  limit: number;
  sizeOf(m: M): number;
  /** Hands `m` to the transport; `written` once it has taken it. May throw (stream gone). */
  write(s: S, m: M, written: () => void): void;
  /** The session went over its bound (log it). */
  overflowed(s: S): void;
  /** A write threw: the session is dropped. */
  failed(s: S, err: Error): void;
  /** Whether the session still exists (a drain after its end resyncs nothing). */
  isOpen(s: S): boolean;
  /** The transport took everything after an overflow: send the peer a fresh snapshot. */
  drained(s: S): void;
}

/**
 * The send queue bound of the controller's sessions and the site proxy's agent sessions:
 * a peer that stops reading must not make us hold every delta in memory. Over the bound a
 * session gets nothing until the transport has taken all it holds, then `drained` resyncs it
 * with a snapshot. One instance serves every session of a hub (state lives in the session).
 */
export class BoundedSession<S extends BoundedSessionState, M> {
  /** Sessions that overflowed since start (status, tests, benchmarks). */
  overflows = 0;

  constructor(private readonly o: BoundedSessionOptions<S, M>) {}

  /**
   * Writes `m` unless the session is overflowed or goes over its bound now; `force` skips the
   * bound check (the resync after a drain is written whole). Returns whether it was written.
   */
  send(s: S, m: M, force = false): boolean {
    if (s.overflowed) return false;
    if (!force && s.queued > this.o.limit) {
      s.overflowed = true;
      this.overflows++;
      this.o.overflowed(s);
      return false;
    }
    return this.write(s, m);
  }

  /**
   * Writes `m` whatever the queue holds, counting it until the transport has taken it (a
   * snapshot's frames, which replace what was dropped). Returns whether it was written.
   */
  write(s: S, m: M): boolean {
    const size = this.o.sizeOf(m);
    s.queued += size;
    try {
      this.o.write(s, m, () => this.written(s, size));
      return true;
    } catch (e) {
      s.queued -= size;
      this.o.failed(s, e as Error);
      return false;
    }
  }

  private written(s: S, size: number): void {
    s.queued -= size;
    if (!s.overflowed || s.queued > 0) return;
    // Not from inside the transport's callback: the snapshot writes many frames.
    setImmediate(() => {
      if (!s.overflowed || s.queued > 0 || !this.o.isOpen(s)) return;
      s.overflowed = false;
      this.o.drained(s);
    });
  }
}

/** A session's peer is gone once it has been silent for three of its heartbeat intervals. */
export function missedHeartbeats(lastHeard: number, heartbeatMs: number, now: number): boolean {
  return lastHeard < now - 3 * heartbeatMs;
}

/**
 * The time this process was able to listen: wall time less its own stalls (periodic ticks that
 * came more than a period late). A peer's silence is measured on this clock, so a process whose
 * event loop was blocked for seconds (a reconnect storm of thousands of TLS handshakes, a long
 * GC) does not, on waking, take every peer for dead before it has read what they sent meanwhile:
 * timers run before the loop polls the sockets. Seen at 10,000 sessions on a loaded machine, where
 * each such wake closed over a thousand live sessions and their reconnects fed the next stall.
 */
export class ListenClock {
  private last: number | undefined;
  private stalled = 0;

  /** `startMs`: when listening began; without it the first tick only sets the reference, and
   *  a stall before that first tick would be taken for silence. */
  constructor(
    private readonly periodMs: number,
    startMs?: number,
  ) {
    this.last = startMs;
  }

  /** Called by the periodic tick with the wall time; returns the listening time now. */
  tick(now: number): number {
    if (this.last !== undefined) {
      const late = now - this.last - this.periodMs;
      // Ordinary timer jitter is not a stall; only a tick a whole period late is credited.
      if (late > this.periodMs) this.stalled += late;
    }
    this.last = now;
    return now - this.stalled;
  }

  /** The listening time of a wall time since the last tick (when a message is heard). */
  at(now: number): number {
    return now - this.stalled;
  }

  /** Total stall credited so far (for status and tests). */
  get stalledMs(): number {
    return this.stalled;
  }
}
