import { randomInt } from 'node:crypto';
import { hostname } from 'node:os';
import { ListenClock } from '../lib/bounded-session.js';
import { isTetherError, TetherError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { Datastore } from './store/datastore.js';
import { EtcdStore, type RawKv } from './store/etcd.js';
import type { TxnExtras } from './store/store.js';

/**
 * Which replica runs the single writers (VNI and block allocation, endpoint ingestion,
 * compaction). Every replica serves sessions and reads from its own watch; only the leader
 * writes what must have one writer, and every such write carries `fence()` so a leader that
 * lost its term without knowing yet (a long GC pause, a partition) cannot commit it.
 */
export interface Leadership {
  /** True while this process holds the term (and may run the single writers). */
  isLeader(): boolean;
  /** What a single writer's transaction carries (TxnExtras.fence); undefined on a store
   *  with one writer by construction. TETHER_E_PRECONDITION when not the leader. */
  fence(): TxnExtras['fence'];
  /** Called on every change of isLeader(); returns an unsubscribe. */
  subscribe(fn: (leader: boolean) => void): () => void;
  /** The current leader as far as this process knows (for status, logs, metrics). */
  leader(): LeaderInfo | undefined;
  /** The term this process holds (the election key's create revision); 0 when not leader. */
  term(): number;
  /**
   * Whether this replica still hears from its datastore: on etcd, some lease call (grant or
   * keepalive) was answered within the last lease TTL. A replica that lost etcd serves a copy
   * that no longer moves, so it reports not ready and hands its sessions to the others.
   */
  reachable(): boolean;
  /** Called on every change of reachable(); returns an unsubscribe. */
  onReachable(fn: (reachable: boolean) => void): () => void;
  /** This replica's identity in the election. */
  readonly self: LeaderInfo;
  /** Gives the term up at once (revokes the lease), so another replica takes over without
   *  waiting for the TTL. */
  close(): Promise<void>;
}

export interface LeaderInfo {
  /** host:pid plus a random suffix: unique per process start. */
  id: string;
  /** The replica's gRPC address (what an operator dials), when known. */
  addr?: string;
  /** etcd revision at which the term began (0 for a single-writer store). */
  term: number;
}

export interface ElectionOptions {
  log: Logger;
  /** Lease TTL in seconds (default 5): a dead leader's term ends at most this long after its
   *  last keepalive. */
  ttlSeconds?: number;
  /** Election key, relative to the store's prefix (default "leader"). */
  key?: string;
  addr?: string;
}

export const DEFAULT_LEASE_TTL_SECONDS = 5;
const MAX_INFO_BYTES = 4096;

/** The leadership for a datastore: an etcd election, or "always" for memory/SQLite. */
export function openLeadership(ds: Datastore, opts: ElectionOptions): Leadership {
  if (ds instanceof EtcdStore) {
    const e = new EtcdElection(ds, opts);
    e.start();
    return e;
  }
  return new SoleWriter(newId(), opts.addr);
}

function newId(): string {
  return `${hostname()}:${process.pid}:${randomInt(0, 2 ** 32).toString(36)}`;
}

/** One process on a store no other process opens: the single writer by construction. */
export class SoleWriter implements Leadership {
  readonly self: LeaderInfo;
  constructor(id: string = newId(), addr?: string) {
    this.self = { id, term: 0, ...(addr ? { addr } : {}) };
  }
  isLeader(): boolean {
    return true;
  }
  fence(): TxnExtras['fence'] {
    return undefined;
  }
  subscribe(): () => void {
    return () => undefined;
  }
  leader(): LeaderInfo {
    return this.self;
  }
  term(): number {
    return 0;
  }
  reachable(): boolean {
    return true;
  }
  onReachable(): () => void {
    return () => undefined;
  }
  async close(): Promise<void> {}
}

/**
 * Lease-based election on etcd, as etcd's own concurrency package does it:
 *
 * 1. grant a lease (TTL `ttlSeconds`) and keep it alive on a stream, a keepalive every TTL/3;
 * 2. Txn: if the election key does not exist (create_revision == 0), put it with our lease;
 *    the winner's term is the key's create revision;
 * 3. everyone watches the key: its deletion (lease expired or revoked) starts a new round;
 *    the leader steps down when the key goes, changes hands, or its keepalives have not been
 *    answered for a TTL (it cannot know whether etcd still has the lease, so it assumes not,
 *    and abandons that lease for a new one).
 *
 * Fencing: a single writer's Txn compares the key's create revision with the term's, so a
 * write that arrives after the term ended (the old key expired, a new leader created it
 * anew at a higher revision) fails instead of interleaving with the new leader's writes.
 */
export class EtcdElection implements Leadership {
  readonly self: LeaderInfo;
  private readonly ttl: number;
  private readonly key: string;
  /** Create revision of the key we hold (0: none). Trusted only until `validUntil`. */
  private held = 0;
  /** performance.now() of sending the newest lease request etcd answered (grant or
   *  keepalive): etcd counts the TTL from when it took that request, so not earlier. */
  private leaseSentAt = 0;
  /** Reachability is judged on this clock, which leaves out this process's own stalls. */
  private readonly listen = new ListenClock(250, performance.now());
  /** When etcd last answered, on the listen clock. */
  private contactAt = performance.now();
  private isReachable = true;
  private contactTimer: NodeJS.Timeout | undefined;
  private current: LeaderInfo | undefined;
  private readonly subs = new Set<(leader: boolean) => void>();
  private readonly reachSubs = new Set<(reachable: boolean) => void>();
  private readonly abort = new AbortController();
  private loop: Promise<void> = Promise.resolve();
  private lease: number | undefined;

  constructor(
    private readonly store: EtcdStore,
    private readonly opts: ElectionOptions,
  ) {
    this.ttl = opts.ttlSeconds ?? DEFAULT_LEASE_TTL_SECONDS;
    if (!Number.isInteger(this.ttl) || this.ttl < 2 || this.ttl > 300)
      throw new TetherError('TETHER_E_CONFIG', `lease TTL ${this.ttl} s`, {
        field: 'leaseTtlSeconds',
        expected: 'an integer from 2 to 300',
      });
    this.key = opts.key ?? 'leader';
    this.self = { id: newId(), term: 0, ...(opts.addr ? { addr: opts.addr } : {}) };
  }

  start(): void {
    this.loop = this.run();
    // Reachability is judged on our own clock like the term: a whole TTL without any answer
    // from etcd means it expired our lease, whatever happens on the stream later.
    // Judged on the listen clock (src/lib/bounded-session.ts): this replica's own stalls do
    // not count, since the answers that came meanwhile are read only after the timer runs. A
    // storm of thousands of hellos stalled both replicas for seconds at a time, and each such
    // false "unreachable" closed all of a replica's sessions onto the other one.
    this.contactTimer = setInterval(() => {
      const listening = this.listen.tick(performance.now());
      if (this.isReachable && listening - this.contactAt >= this.ttl * 1000)
        this.setReachable(false, `no answer from etcd for ${this.ttl} s`);
    }, 250);
    this.contactTimer.unref();
  }

  /** Until when the term is certainly still ours: 80% of a TTL after the newest answered
   *  lease request was sent. Checked on every call, so a timer that fires late (a loaded
   *  event loop) cannot make this replica believe in a term etcd already ended. */
  private validUntil(): number {
    return this.leaseSentAt + this.ttl * 800;
  }

  isLeader(): boolean {
    return this.held > 0 && performance.now() < this.validUntil();
  }

  term(): number {
    return this.isLeader() ? this.held : 0;
  }

  reachable(): boolean {
    return this.isReachable;
  }

  onReachable(fn: (reachable: boolean) => void): () => void {
    this.reachSubs.add(fn);
    return () => this.reachSubs.delete(fn);
  }

  /** etcd answered something: it is reachable now. */
  private contact(): void {
    this.contactAt = this.listen.at(performance.now());
    if (!this.isReachable) this.setReachable(true, 'etcd answers again');
  }

  private setReachable(ok: boolean, why: string): void {
    this.isReachable = ok;
    if (ok) this.opts.log.info({ id: this.self.id, why }, 'datastore reachable again');
    else this.opts.log.warn({ id: this.self.id, why }, 'datastore unreachable');
    for (const fn of this.reachSubs) {
      try {
        fn(ok);
      } catch (e) {
        this.opts.log.error({ err: (e as Error).message }, 'reachability subscriber failed');
      }
    }
  }

  fence(): TxnExtras['fence'] {
    if (!this.isLeader())
      throw new TetherError('TETHER_E_PRECONDITION', 'this controller is not the leader', {
        field: 'leader',
        expected: `the leader (${this.current?.id ?? 'none elected yet'})`,
      });
    return { key: this.key, createRevision: this.held };
  }

  subscribe(fn: (leader: boolean) => void): () => void {
    this.subs.add(fn);
    return () => this.subs.delete(fn);
  }

  leader(): LeaderInfo | undefined {
    return this.current;
  }

  async close(): Promise<void> {
    if (this.abort.signal.aborted) return;
    this.abort.abort();
    clearInterval(this.contactTimer);
    await this.loop;
  }

  private setTerm(term: number, holder: LeaderInfo | undefined): void {
    const was = this.held > 0;
    this.held = term;
    this.current = holder;
    if (was !== term > 0) {
      this.opts.log.info(
        { leader: term > 0, term, id: this.self.id, holder: holder?.id },
        term > 0 ? 'controller became leader' : 'controller is not the leader',
      );
      for (const fn of this.subs) {
        try {
          fn(term > 0);
        } catch (e) {
          this.opts.log.error({ err: (e as Error).message }, 'leadership subscriber failed');
        }
      }
    }
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    let backoff = 200;
    while (!signal.aborted) {
      const round = new AbortController();
      const stop = () => round.abort();
      signal.addEventListener('abort', stop);
      try {
        await this.round(round);
        backoff = 200;
      } catch (e) {
        if (signal.aborted) break;
        this.opts.log.warn({ err: (e as Error).message }, 'leader election round failed; retrying');
      } finally {
        signal.removeEventListener('abort', stop);
        round.abort();
        this.setTerm(0, this.current?.id === this.self.id ? undefined : this.current);
      }
      if (signal.aborted) break;
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 2000);
    }
    // Resign: revoking the lease deletes the key now, not a TTL from now.
    if (this.lease !== undefined)
      await this.store.leaseRevoke(this.lease).catch((e: Error) => {
        this.opts.log.warn({ err: e.message }, 'could not revoke the election lease; it expires by itself');
      });
    this.lease = undefined;
    this.setTerm(0, undefined);
  }

  /** One lease: campaign, lead or follow, until the lease is lost or `round` aborts. */
  private async round(round: AbortController): Promise<void> {
    const id = randomInt(1, 2 ** 47) * 32 + randomInt(0, 32); // < 2^52: exact as a JS number
    const grantSent = performance.now();
    await this.store.leaseGrant(this.ttl, id);
    this.contact();
    this.leaseSentAt = grantSent;
    this.lease = id;
    const lost = this.keepAlive(id, round, grantSent);
    const value = Buffer.from(
      JSON.stringify({ id: this.self.id, ...(this.self.addr ? { addr: this.self.addr } : {}) }),
    );
    try {
      while (!round.signal.aborted) {
        const r = await this.store.createIfAbsent(this.key, value, id);
        this.contact();
        const kv = r.kv;
        if (kv && kv.lease === id) {
          // Ours: just created, or created by an earlier attempt whose answer was lost.
          this.setTerm(kv.createRevision, { ...this.self, term: kv.createRevision });
        } else {
          this.setTerm(0, kv ? holderOf(kv) : undefined);
        }
        // Wait for the key to change hands (or vanish), then campaign again.
        await Promise.race([this.untilChanged(kv, r.revision, round.signal), lost]);
        if (this.held > 0 && !round.signal.aborted) {
          // Our key went away (revoked by an operator, or expired): end the term at once.
          this.setTerm(0, undefined);
        }
      }
    } finally {
      if (!this.abort.signal.aborted) {
        // A lease we stopped keeping alive (lost keepalives) is abandoned, not revoked: etcd
        // may already have expired it; revoking is best effort.
        await this.store.leaseRevoke(id).catch(() => undefined);
        this.lease = undefined;
      }
    }
  }

  /**
   * Keeps lease `id` alive; resolves (and aborts `round`) once it is lost: etcd answered TTL
   * 0, the stream failed, or no answer came for 80% of a TTL counted from when the last
   * answered request was sent. Never rejects.
   */
  private keepAlive(id: number, round: AbortController, grantSent: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const call = this.store.leaseKeepAlive();
      // etcd renews the lease when it takes a keepalive, so an answer proves the lease good
      // for a TTL from when its request was SENT, not from when the answer came back.
      const sent: number[] = [];
      let lastAck = grantSent;
      let done = false;
      let stepDown: NodeJS.Timeout | undefined;
      const finish = (why: string) => {
        if (done) return;
        done = true;
        clearInterval(timer);
        clearTimeout(stepDown);
        call.cancel();
        // The term ends now, not once the round has cleaned up: revoking the lost lease can
        // itself hang for a call timeout on a path to etcd that went silent.
        this.setTerm(0, this.current?.id === this.self.id ? undefined : this.current);
        if (!round.signal.aborted) {
          this.opts.log.warn({ lease: id, why }, 'election lease lost');
          round.abort();
        }
        resolve();
      };
      // Its own deadline, not a check on the next send tick: ticks every TTL/3 would end the
      // term up to a whole TTL after the last answer, when etcd may have expired it already.
      const arm = () => {
        clearTimeout(stepDown);
        stepDown = setTimeout(
          () => finish('no keepalive answer for most of a TTL'),
          Math.max(0, lastAck + this.ttl * 800 - performance.now()),
        );
        stepDown.unref();
      };
      const send = () => {
        sent.push(performance.now());
        if (sent.length > 64) sent.shift();
        call.write({ ID: id });
      };
      const timer = setInterval(send, Math.max(200, (this.ttl * 1000) / 3));
      timer.unref();
      call.on('data', (m: { TTL: number }) => {
        const at = sent.shift();
        this.contact();
        if (m.TTL <= 0) finish('etcd says the lease is gone');
        else if (at !== undefined && at > lastAck) {
          lastAck = at;
          this.leaseSentAt = Math.max(this.leaseSentAt, at);
          arm();
        }
      });
      call.on('error', (e: Error) => finish(`keepalive stream failed: ${e.message}`));
      call.on('end', () => finish('keepalive stream ended'));
      round.signal.addEventListener('abort', () => finish('round ended'));
      arm();
      send();
    });
  }

  /** Resolves once the election key differs from `seen` (by create revision), or `signal`
   *  aborts. A broken watch re-reads the key and watches again. */
  private async untilChanged(
    seen: RawKv | undefined,
    fromRevision: number,
    signal: AbortSignal,
  ): Promise<void> {
    let from = fromRevision;
    const want = seen?.createRevision ?? 0;
    while (!signal.aborted) {
      try {
        for await (const ev of this.store.watchKey(this.key, from, signal)) {
          from = ev.revision;
          if (ev.type === 'delete' || ev.kv.createRevision !== want) return;
        }
        return; // aborted
      } catch (e) {
        if (signal.aborted) return;
        if (!isTetherError(e)) throw e;
        await sleep(200);
        const now = await this.store.getKey(this.key);
        this.contact();
        if ((now.kv?.createRevision ?? 0) !== want) return;
        from = now.revision;
      }
    }
  }
}

/** Who holds the key, from its value (written by a replica; bounded, never trusted blindly). */
function holderOf(kv: RawKv): LeaderInfo {
  let o: unknown;
  try {
    o = kv.value.length <= MAX_INFO_BYTES ? JSON.parse(kv.value.toString('utf8')) : undefined;
  } catch {
    o = undefined;
  }
  const v = o as { id?: unknown; addr?: unknown } | undefined;
  return {
    id: typeof v?.id === 'string' ? v.id.slice(0, 200) : '(unreadable)',
    ...(typeof v?.addr === 'string' ? { addr: v.addr.slice(0, 200) } : {}),
    term: kv.createRevision,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
