/**
 * Round-trip time and clock offset from heartbeat echoes. The controller (src/controller/hub.ts)
 * and the site proxy (src/node/proxy/core.ts) answer every heartbeat with the same `seq` and
 * their own `unix_ms`; they also send heartbeats of their own, numbered from 1. Our sequence
 * starts at a random point in [2^40, 2^41), so an upstream heartbeat is never taken for an
 * echo of ours (an upstream would need 2^40 beats to reach it) and a guessed `seq` from a
 * confused peer almost never matches a heartbeat in flight.
 *
 * RTT is smoothed as TCP does (RFC 6298: srtt ← 7/8 srtt + 1/8 sample). The clock offset of the
 * peer is `peer_ms − (sent + rtt/2)`: exact when both directions take as long, off by at most
 * rtt/2 otherwise. Like NTP's clock filter, the offset reported is the one of the sample with
 * the smallest RTT among the recent ones (the least queueing, so the least asymmetry).
 */

/** Heartbeats in flight that an echo may still answer; older ones are forgotten. */
const MAX_PENDING = 8;
/** Samples the offset filter looks at. */
const FILTER = 16;
/** An echo later than this is not a sample (a session that stalled and came back). */
const MAX_RTT_MS = 10 * 60_000;
/** Unix ms beyond year 2286: no clock says that; the echo is malformed. */
const MAX_UNIX_MS = 10_000_000_000_000;

export interface RttSnapshot {
  /** Smoothed round-trip time (ms). */
  srttMs: number;
  /** The latest sample (ms). */
  lastRttMs: number;
  /** Peer clock minus ours (ms): positive = our clock is behind the peer's. */
  offsetMs?: number;
  /** Bound of the offset's error (half the RTT of the sample it came from), ms. */
  offsetErrorMs?: number;
  samples: number;
  /** When the latest sample was taken (our clock, ISO 8601). */
  at: string;
}

export class HeartbeatRtt {
  private seq: number;
  private readonly pending = new Map<number, number>();
  private readonly recent: Array<{ rtt: number; offset: number }> = [];
  private srtt: number | undefined;
  private last = 0;
  private count = 0;
  private lastAt = 0;

  constructor(
    private readonly now: () => number,
    random: () => number = Math.random,
  ) {
    this.seq = 2 ** 40 + Math.floor(Math.min(Math.max(random(), 0), 0.999_999) * 2 ** 40);
  }

  /** The next heartbeat to send; it is remembered until echoed or pushed out. */
  next(): { seq: number; unix_ms: number } {
    const seq = ++this.seq;
    const t = this.now();
    this.pending.set(seq, t);
    if (this.pending.size > MAX_PENDING) {
      const oldest = this.pending.keys().next().value as number;
      this.pending.delete(oldest);
    }
    return { seq, unix_ms: t };
  }

  /**
   * A heartbeat from upstream. Returns true when it answered one of ours (a sample was taken);
   * upstream-initiated beats, replays and malformed times are ignored.
   */
  echo(seq: unknown, peerUnixMs: unknown): boolean {
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq)) return false;
    const sent = this.pending.get(seq);
    if (sent === undefined) return false;
    this.pending.delete(seq);
    // Echoes answer in order; anything older than this one will not be answered any more.
    for (const k of [...this.pending.keys()]) if (k < seq) this.pending.delete(k);
    const t = this.now();
    const rtt = t - sent;
    if (!(rtt >= 0 && rtt <= MAX_RTT_MS)) return false;
    this.last = rtt;
    this.srtt = this.srtt === undefined ? rtt : (7 * this.srtt + rtt) / 8;
    this.count++;
    this.lastAt = t;
    if (
      typeof peerUnixMs === 'number' &&
      Number.isFinite(peerUnixMs) &&
      peerUnixMs > 0 &&
      peerUnixMs < MAX_UNIX_MS
    ) {
      this.recent.push({ rtt, offset: peerUnixMs - (sent + rtt / 2) });
      if (this.recent.length > FILTER) this.recent.shift();
    }
    return true;
  }

  /** A new connection: what was in flight on the old one will never be echoed. */
  reset(): void {
    this.pending.clear();
  }

  snapshot(): RttSnapshot | undefined {
    if (this.srtt === undefined) return undefined;
    const best = this.recent.reduce<{ rtt: number; offset: number } | undefined>(
      (b, s) => (b === undefined || s.rtt < b.rtt ? s : b),
      undefined,
    );
    return {
      srttMs: round(this.srtt),
      lastRttMs: round(this.last),
      ...(best ? { offsetMs: round(best.offset), offsetErrorMs: round(best.rtt / 2) } : {}),
      samples: this.count,
      at: new Date(this.lastAt).toISOString(),
    };
  }
}

const round = (v: number): number => Math.round(v * 10) / 10;
