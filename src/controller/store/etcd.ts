import * as grpc from '@grpc/grpc-js';
import {
  type EtcdCompare,
  type EtcdKeyValue,
  type EtcdLeaseKeepAliveRequest,
  type EtcdLeaseKeepAliveResponse,
  type EtcdRequestOp,
  type EtcdTxnResponse,
  type EtcdWatchResponse,
  etcdProto,
  type KVClient,
  type LeaseClient,
  type WatchClient,
} from '../../api/etcd-grpc.js';
import type { TetherObject } from '../../api/resource.js';
import type { ReportMark } from '../../api/signed-report.js';
import { TetherError } from '../../lib/errors.js';
import { compactedError, compactTarget, opKey, planTxn, type Row } from './core.js';
import type { Datastore, TxnOptions, WatchBatch, WatchOptions } from './datastore.js';
import { byKindName, objectKey } from './keys.js';
import type { StoredObject, StoreEvent, TxnExtras, TxnOp, TxnResult } from './store.js';

export interface EtcdTls {
  /** PEM of the CA that signed etcd's server certificate (system roots without it). */
  ca?: Buffer;
  /** Client certificate and key (PEM), for an etcd started with --client-cert-auth. */
  cert?: Buffer;
  key?: Buffer;
  /** Name to check etcd's certificate against, when it differs from the dialled host. */
  serverName?: string;
}

export interface EtcdStoreOptions {
  /** host:port of each etcd member (IP literals, or a single host name). */
  endpoints: readonly string[];
  /** Key prefix of this Tether installation (default "/tether/"). */
  prefix?: string;
  tls?: EtcdTls;
  /** etcd's --max-txn-ops (default 128): the most compares, or writes, one Txn may carry. */
  maxTxnOps?: number;
  /** Deadline of one unary call (default 5000 ms). */
  callTimeoutMs?: number;
  now?: () => Date;
}

/** A value stored in etcd larger than this is refused as corrupt before JSON.parse. etcd's
 *  own default request limit is 1.5 MiB; this leaves room for a raised one. */
const MAX_VALUE_BYTES = 16 * 1024 * 1024;
/** Re-plans of a transaction whose keys changed between its read and its write. */
const MAX_ATTEMPTS = 8;
const MARK_FIELDS = ['serial', 'bootId', 'seq', 'at'] as const;

/**
 * The Datastore on etcd v3 (grpc-js on etcd's own KV/Watch protos). Layout under `prefix`:
 *
 *   o/<kind>/<name>  the object as JSON, without metadata.revision/createRevision: those are
 *                    etcd's mod_revision/create_revision of the key, stamped on every read;
 *   head             rewritten by every transaction that changes an object, so its
 *                    mod_revision is revision() (etcd's revision also counts marks, probes
 *                    and other tenants' keys; Tether's revisions are the subset that
 *                    changed objects, still etcd revisions);
 *   m/<node>         report marks (TxnExtras), written in the same etcd Txn as the objects;
 *   compacted        the revision compact() last compacted etcd to;
 *   probe            probe()'s write.
 *
 * A transaction reads the keys it touches (one Txn of Ranges), runs the same planTxn as
 * SQLite and memory (CAS checks, unchanged detection), and commits in one etcd Txn guarded
 * by a compare on each key's mod_revision: if any key moved in between it re-plans, so the
 * CAS semantics are the same as a local store's. history() and watch() are etcd watches
 * from fromRevision+1 with prev_kv; etcd's compaction surfaces as TETHER_E_COMPACTED.
 */
export class EtcdStore implements Datastore {
  readonly backend = 'etcd';
  private readonly kv: KVClient;
  private readonly watcher: WatchClient;
  private readonly leases: LeaseClient;
  private readonly prefix: string;
  private readonly maxTxnOps: number;
  private readonly callTimeoutMs: number;
  private readonly now: () => Date;
  private readonly calls = new Set<grpc.ClientDuplexStream<unknown, unknown>>();
  private seenCompacted = 0;
  /** Report-mark reads waiting for this turn's batch (reportMark). */
  private markReads: Map<string, MarkWaiter[]> | undefined;
  private probes = 0;
  private closed = false;

  constructor(opts: EtcdStoreOptions) {
    const proto = etcdProto();
    const target = grpcTarget(opts.endpoints);
    const creds = opts.tls
      ? grpc.credentials.createSsl(opts.tls.ca ?? null, opts.tls.key ?? null, opts.tls.cert ?? null)
      : grpc.credentials.createInsecure();
    const channelOptions: grpc.ChannelOptions = {
      'grpc.max_receive_message_length': 256 * 1024 * 1024,
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 2_000,
      ...(opts.tls?.serverName ? { 'grpc.ssl_target_name_override': opts.tls.serverName } : {}),
    };
    this.kv = new proto.etcdserverpb.KV(target, creds, channelOptions);
    // The watch shares the KV client's channel: one connection per controller.
    this.watcher = new proto.etcdserverpb.Watch(target, creds, {
      ...channelOptions,
      channelOverride: this.kv.getChannel(),
    });
    this.leases = new proto.etcdserverpb.Lease(target, creds, {
      ...channelOptions,
      channelOverride: this.kv.getChannel(),
    });
    this.prefix = opts.prefix ?? '/tether/';
    this.maxTxnOps = opts.maxTxnOps ?? 128;
    this.callTimeoutMs = opts.callTimeoutMs ?? 5000;
    this.now = opts.now ?? (() => new Date());
  }

  async revision(): Promise<number> {
    const r = await this.unary('Range', { key: this.key('head') });
    return r.kvs[0]?.mod_revision ?? 0;
  }

  async compactedRevision(): Promise<number> {
    const r = await this.unary('Range', { key: this.key('compacted') });
    const kv = r.kvs[0];
    const stored = kv ? Number.parseInt(kv.value.toString('utf8'), 10) : 0;
    return Math.max(Number.isSafeInteger(stored) ? stored : 0, this.seenCompacted);
  }

  async get(kind: string, name: string): Promise<StoredObject | undefined> {
    const r = await this.unary('Range', { key: this.objKey(kind, name) });
    const kv = r.kvs[0];
    return kv && this.stored(kv);
  }

  async list(kind?: string): Promise<{ revision: number; items: StoredObject[] }> {
    const p = kind === undefined ? this.key('o/') : this.key(`o/${kind}/`);
    // One Txn, so the head and the items are one snapshot of etcd.
    const r = await this.unary('Txn', {
      success: [
        { request_range: { key: this.key('head') } },
        { request_range: { key: p, range_end: prefixEnd(p) } },
      ],
    });
    const head = r.responses[0]?.response_range?.kvs[0]?.mod_revision ?? 0;
    const items = (r.responses[1]?.response_range?.kvs ?? []).map((kv) => this.stored(kv));
    items.sort(byKindName);
    return { revision: head, items };
  }

  /**
   * A node's mark, read fresh from etcd (a replay check must see what another replica stored).
   * Hellos of a reconnect storm come in bursts: the reads asked for in one turn of the event
   * loop share one Txn of Ranges per `maxTxnOps` nodes, one linearizable read of etcd each,
   * instead of a round trip per hello.
   */
  reportMark(node: string): Promise<ReportMark | undefined> {
    this.open();
    return new Promise((resolve, reject) => {
      if (!this.markReads) {
        this.markReads = new Map();
        setImmediate(() => this.readMarks());
      }
      let waiting = this.markReads.get(node);
      if (!waiting) {
        waiting = [];
        this.markReads.set(node, waiting);
      }
      waiting.push({ resolve, reject });
    });
  }

  private readMarks(): void {
    const reads = this.markReads ?? new Map<string, MarkWaiter[]>();
    this.markReads = undefined;
    const nodes = [...reads.keys()];
    for (let i = 0; i < nodes.length; i += this.maxTxnOps) {
      const chunk = nodes.slice(i, i + this.maxTxnOps);
      const settle = (n: string, fn: (w: MarkWaiter) => void) => {
        for (const w of reads.get(n) ?? []) fn(w);
      };
      let call: Promise<EtcdTxnResponse>;
      try {
        call = this.unary('Txn', {
          success: chunk.map((n) => ({ request_range: { key: this.key(`m/${n}`) } })),
        });
      } catch (e) {
        for (const n of chunk) settle(n, (w) => w.reject(e as Error));
        continue;
      }
      call.then(
        (r) =>
          chunk.forEach((n, j) => {
            const kv = r.responses[j]?.response_range?.kvs[0];
            try {
              const mark = kv && parseMark(kv.value, this.keyName(kv.key));
              settle(n, (w) => w.resolve(mark));
            } catch (e) {
              settle(n, (w) => w.reject(e as Error));
            }
          }),
        (e: Error) => {
          for (const n of chunk) settle(n, (w) => w.reject(e));
        },
      );
    }
  }

  async txn(ops: readonly TxnOp[], extras: TxnExtras = {}, opts: TxnOptions = {}): Promise<TxnResult> {
    this.open();
    const marks = extras.reportMarks ?? [];
    ops.forEach((op, i) => {
      const { kind } = opKey(op, i);
      if (kind.includes('/')) {
        throw new TetherError('TETHER_E_INVALID', `kind ${kind} contains "/"`, {
          field: `ops[${i}].kind`,
          expected: 'a kind without "/"',
        });
      }
    });
    if (this.cost(ops, marks.length) > this.maxTxnOps) {
      if (!opts.split) {
        throw new TetherError(
          'TETHER_E_TOO_LARGE',
          `transaction of ${ops.length} ops needs more than etcd's ${this.maxTxnOps} operations per transaction`,
          {
            field: 'ops',
            expected: `at most ${this.maxTxnOps - 1 - marks.length} ops in one atomic transaction on etcd`,
            maxTxnOps: this.maxTxnOps,
          },
        );
      }
      return this.splitTxn(ops, marks, extras.keepCreationTimestamp, extras.fence);
    }
    return this.atomicTxn(ops, marks, extras.keepCreationTimestamp, extras.fence);
  }

  /** Success ops a transaction needs: its writes, the head key, marks and the marks of
   *  deleted Nodes. Its compares (one per op) are always fewer. */
  private cost(ops: readonly TxnOp[], marks: number): number {
    const nodeDeletes = ops.filter((o) => o.op === 'delete' && o.kind === 'Node').length;
    return ops.length + 1 + marks + nodeDeletes;
  }

  private async splitTxn(
    ops: readonly TxnOp[],
    marks: NonNullable<TxnExtras['reportMarks']>,
    keepTs?: boolean,
    fence?: TxnExtras['fence'],
  ): Promise<TxnResult> {
    if (marks.length + 1 > this.maxTxnOps) {
      throw new TetherError('TETHER_E_TOO_LARGE', `${marks.length} report marks in one transaction`, {
        field: 'reportMarks',
        expected: `at most ${this.maxTxnOps - 1}`,
      });
    }
    const chunks: TxnOp[][] = [];
    let cur: TxnOp[] = [];
    for (const op of ops) {
      if (this.cost([...cur, op], 0) > this.maxTxnOps) {
        chunks.push(cur);
        cur = [];
      }
      cur.push(op);
    }
    chunks.push(cur);
    // The marks go with the last chunk (or after it): a mark never becomes durable before
    // every object it vouches for, so a crash in between makes the sender retry, not replay.
    const last = chunks.at(-1)!;
    if (this.cost(last, marks.length) > this.maxTxnOps) chunks.push([]);
    const out: TxnResult = { revision: 0, results: [] };
    for (const [i, chunk] of chunks.entries()) {
      const r = await this.atomicTxn(chunk, i === chunks.length - 1 ? marks : [], keepTs, fence);
      out.revision = Math.max(out.revision, r.revision);
      out.results.push(...r.results);
    }
    return out;
  }

  private async atomicTxn(
    ops: readonly TxnOp[],
    marks: NonNullable<TxnExtras['reportMarks']>,
    keepTs = false,
    fence?: TxnExtras['fence'],
  ): Promise<TxnResult> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const keys = ops.map((op, i) => {
        const { kind, name } = opKey(op, i);
        return this.objKey(kind, name);
      });
      const read = await this.unary('Txn', {
        success: [this.key('head'), ...keys].map((key) => ({ request_range: { key } })),
      });
      const head = read.responses[0]?.response_range?.kvs[0]?.mod_revision ?? 0;
      const rows = new Map<string, Row>();
      const modRevs: number[] = [];
      read.responses.slice(1).forEach((resp) => {
        const kv = resp.response_range?.kvs[0];
        modRevs.push(kv?.mod_revision ?? 0);
        if (kv) {
          const row = this.row(kv);
          rows.set(objectKey(row.kind, row.name), row);
        }
      });
      const plan = planTxn(ops, head, (k, n) => rows.get(objectKey(k, n)), this.now, keepTs);
      const success: EtcdRequestOp[] = [];
      for (const w of plan.writes) {
        const key = this.objKey(w.kind, w.name);
        if (w.type === 'put') success.push({ request_put: { key, value: unstamp(w.row!.json) } });
        else success.push({ request_delete_range: { key } });
        if (w.type === 'delete' && w.kind === 'Node')
          success.push({ request_delete_range: { key: this.key(`m/${w.name}`) } });
      }
      if (plan.writes.length > 0)
        success.push({ request_put: { key: this.key('head'), value: Buffer.alloc(0) } });
      for (const { node, mark } of marks)
        success.push({
          request_put: { key: this.key(`m/${node}`), value: Buffer.from(JSON.stringify(pickMark(mark))) },
        });
      if (success.length === 0) return plan.result;
      const compare: EtcdCompare[] = keys.map((key, i) => ({
        key,
        target: 'MOD',
        result: 'EQUAL',
        mod_revision: modRevs[i]!,
        target_union: 'mod_revision',
      }));
      // The fence is one more compare; on failure etcd then answers the election key, which
      // tells a lost term (refused, nothing written) from a key that moved (plan again).
      const fenceKey = fence ? this.key(fence.key) : undefined;
      if (fence && fenceKey)
        compare.push({
          key: fenceKey,
          target: 'CREATE',
          result: 'EQUAL',
          create_revision: fence.createRevision,
          target_union: 'create_revision',
        });
      const failure: EtcdRequestOp[] = fenceKey ? [{ request_range: { key: fenceKey } }] : [];
      const r: EtcdTxnResponse = await this.unary('Txn', { compare, success, failure });
      if (!r.succeeded) {
        const held = r.responses[0]?.response_range?.kvs[0]?.create_revision ?? 0;
        if (fence && held !== fence.createRevision) throw fenceError(fence, held);
        continue; // a key moved since the read: plan again on fresh rows
      }
      if (plan.writes.length === 0) return plan.result;
      const rev = r.header?.revision ?? 0;
      return {
        revision: rev,
        results: plan.result.results.map((x) => (x.action === 'unchanged' ? x : { ...x, revision: rev })),
      };
    }
    throw new TetherError(
      'TETHER_E_UNAVAILABLE',
      `transaction lost the race for its keys ${MAX_ATTEMPTS} times in a row; retry`,
      { attempts: MAX_ATTEMPTS },
    );
  }

  // ---- Primitives of the leader election (src/controller/leader.ts) ----

  /** Grants a lease of `ttlSeconds` under an ID of our choosing: etcd's own IDs use all 63
   *  bits, which a JS number (this proto's longs) cannot carry exactly. */
  async leaseGrant(ttlSeconds: number, id: number): Promise<{ id: number; ttl: number }> {
    const r = await this.leaseCall<{ ID: number; TTL: number; error: string }>('LeaseGrant', {
      TTL: ttlSeconds,
      ID: id,
    });
    if (r.error) throw new TetherError('TETHER_E_STATE', `etcd refused the lease: ${r.error}`);
    if (r.ID !== id) throw new TetherError('TETHER_E_STATE', `etcd granted lease ${r.ID}, asked for ${id}`);
    return { id: r.ID, ttl: r.TTL };
  }

  /** Revokes a lease: etcd deletes every key attached to it in the same revision. */
  async leaseRevoke(id: number): Promise<void> {
    await this.leaseCall('LeaseRevoke', { ID: id });
  }

  /** The keepalive stream; the caller writes `{ID}` and reads the remaining TTL (0: gone). */
  leaseKeepAlive(): grpc.ClientDuplexStream<EtcdLeaseKeepAliveRequest, EtcdLeaseKeepAliveResponse> {
    this.open();
    const call = this.leases.LeaseKeepAlive();
    const c = call as unknown as grpc.ClientDuplexStream<unknown, unknown>;
    this.calls.add(c);
    call.once('close', () => this.calls.delete(c));
    return call;
  }

  /**
   * Creates key `suffix` with `value` attached to `lease` if it does not exist, in one Txn;
   * either way answers the key as it is after the Txn, and etcd's revision then.
   */
  async createIfAbsent(suffix: string, value: Buffer, lease: number): Promise<CreatedKey> {
    const key = this.key(suffix);
    const r = await this.unary('Txn', {
      compare: [
        { key, target: 'CREATE', result: 'EQUAL', create_revision: 0, target_union: 'create_revision' },
      ],
      success: [{ request_put: { key, value, lease } }, { request_range: { key } }],
      failure: [{ request_range: { key } }],
    });
    const kv = r.responses.at(-1)?.response_range?.kvs[0];
    return {
      created: r.succeeded,
      revision: r.header?.revision ?? 0,
      ...(kv ? { kv: rawKv(kv) } : {}),
    };
  }

  /** Key `suffix` and etcd's revision of the read. */
  async getKey(suffix: string): Promise<{ revision: number; kv?: RawKv }> {
    const r = await this.unary('Range', { key: this.key(suffix) });
    const kv = r.kvs[0];
    return { revision: r.header?.revision ?? 0, ...(kv ? { kv: rawKv(kv) } : {}) };
  }

  /**
   * Changes of key `suffix` after `fromRevision`, until `signal` aborts. Not resumed on a
   * broken stream or compaction: the caller re-reads the key (getKey) and watches again,
   * which is all an election needs.
   */
  async *watchKey(suffix: string, fromRevision: number, signal: AbortSignal): AsyncGenerator<KeyChange> {
    this.open();
    const call = this.watcher.Watch();
    const c = call as grpc.ClientDuplexStream<unknown, unknown>;
    this.calls.add(c);
    const onAbort = () => call.cancel();
    signal.addEventListener('abort', onAbort);
    try {
      call.write({ create_request: { key: this.key(suffix), start_revision: fromRevision + 1 } });
      for await (const msg of call as AsyncIterable<EtcdWatchResponse>) {
        if (msg.compact_revision > 0 || msg.canceled)
          throw new TetherError(
            'TETHER_E_COMPACTED',
            `watch of ${suffix} ended: ${msg.cancel_reason || 'compacted'}`,
          );
        for (const ev of msg.events)
          if (ev.kv)
            yield {
              type: ev.type === 'PUT' ? 'put' : 'delete',
              revision: ev.kv.mod_revision,
              kv: rawKv(ev.kv),
            };
      }
      if (!signal.aborted) throw new TetherError('TETHER_E_UNAVAILABLE', `watch of ${suffix} ended`);
    } catch (e) {
      if (signal.aborted) return;
      throw grpcError(e);
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.calls.delete(c);
      call.cancel();
    }
  }

  private leaseCall<R>(method: 'LeaseGrant' | 'LeaseRevoke', req: object): Promise<R> {
    this.open();
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + this.callTimeoutMs);
      const fn = this.leases[method] as unknown as (
        r: unknown,
        o: grpc.CallOptions,
        cb: (e: grpc.ServiceError | null, v?: unknown) => void,
      ) => void;
      fn.call(this.leases, req, { deadline }, (err, res) => {
        if (err || res === undefined) reject(grpcError(err ?? new Error(`etcd ${method} returned nothing`)));
        else resolve(res as R);
      });
    });
  }

  async history(fromRevision: number, kind?: string): Promise<StoreEvent[]> {
    const compacted = await this.compactedRevision();
    if (fromRevision < compacted) throw compactedError(fromRevision, compacted);
    const head = await this.revision();
    if (head <= fromRevision) return [];
    const out: StoreEvent[] = [];
    // Whole object range (not per kind): the watch must reach `head`, the last object write.
    for await (const b of this.stream(fromRevision, {}, false)) {
      if (b.revision > head) break;
      out.push(...(kind === undefined ? b.events : b.events.filter((e) => e.kind === kind)));
      if (b.revision >= head) break;
    }
    return out;
  }

  watch(fromRevision: number, opts: WatchOptions = {}): AsyncIterable<WatchBatch> {
    return { [Symbol.asyncIterator]: () => this.stream(fromRevision, opts, true) };
  }

  /** One etcd watch from fromRevision+1; re-opened from the last delivered revision after a
   *  broken stream when `reconnect` (an etcd member restarting is not the consumer's
   *  problem), TETHER_E_COMPACTED when etcd has compacted past it. */
  private async *stream(
    fromRevision: number,
    opts: WatchOptions,
    reconnect: boolean,
  ): AsyncGenerator<WatchBatch> {
    this.open();
    const { kind, signal } = opts;
    const compacted = await this.compactedRevision();
    if (fromRevision < compacted) throw compactedError(fromRevision, compacted);
    const p = kind === undefined ? this.key('o/') : this.key(`o/${kind}/`);
    let last = fromRevision;
    let backoff = 100;
    while (!signal?.aborted && !this.closed) {
      const call = this.watcher.Watch();
      this.calls.add(call as grpc.ClientDuplexStream<unknown, unknown>);
      const onAbort = () => call.cancel();
      signal?.addEventListener('abort', onAbort);
      let failure: unknown;
      let resumeAt: number | undefined;
      try {
        call.write({
          create_request: { key: p, range_end: prefixEnd(p), start_revision: last + 1, prev_kv: true },
        });
        for await (const msg of call as AsyncIterable<EtcdWatchResponse>) {
          backoff = 100;
          if (msg.compact_revision > 0) {
            // etcd's compaction is cluster-wide: another tenant's compact may pass `last`
            // while none of our objects changed in (last, compact_revision], which is all
            // this consumer could have missed. Every object change rewrites `head`, and
            // etcd still serves reads at the compaction revision itself: if head as of
            // then is not newer than `last`, carry on from there, nothing was lost.
            if (await this.unchangedSince(last, msg.compact_revision)) {
              resumeAt = msg.compact_revision;
              break;
            }
            this.seenCompacted = Math.max(this.seenCompacted, msg.compact_revision);
            throw compactedError(last, msg.compact_revision);
          }
          if (msg.canceled) {
            throw new TetherError(
              'TETHER_E_STATE',
              `etcd cancelled the watch: ${msg.cancel_reason || 'no reason given'}`,
            );
          }
          for (const b of this.batches(msg)) {
            if (b.revision <= last) continue;
            last = b.revision;
            yield b;
          }
        }
      } catch (e) {
        if (e instanceof TetherError) throw e;
        failure = e;
      } finally {
        signal?.removeEventListener('abort', onAbort);
        this.calls.delete(call as grpc.ClientDuplexStream<unknown, unknown>);
        call.cancel();
      }
      if (signal?.aborted || this.closed) return;
      if (resumeAt !== undefined) {
        last = Math.max(last, resumeAt);
        continue;
      }
      if (!reconnect) throw grpcError(failure ?? new Error('watch stream ended'));
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 2000);
    }
  }

  /** True when no object changed in (last, at]: `head` read as of revision `at`. */
  private async unchangedSince(last: number, at: number): Promise<boolean> {
    try {
      const head = (await this.unary('Range', { key: this.key('head'), revision: at })).kvs[0];
      return (head?.mod_revision ?? 0) <= last;
    } catch {
      return false; // compacted further meanwhile, or unreachable: report it as compacted
    }
  }

  private batches(msg: EtcdWatchResponse): WatchBatch[] {
    const out: WatchBatch[] = [];
    for (const ev of msg.events) {
      const kv = ev.kv;
      if (!kv) continue;
      const { kind, name } = this.parseObjKey(kv.key);
      const rev = kv.mod_revision;
      let e: StoreEvent;
      if (ev.type === 'PUT') {
        e = { type: 'put', revision: rev, kind, name, object: this.stamped(kv) };
        if (ev.prev_kv) e.prev = this.stamped(ev.prev_kv);
      } else {
        const prev = ev.prev_kv
          ? this.stamped(ev.prev_kv)
          : // Only when etcd no longer has the previous version: the event still names the object.
            ({ apiVersion: 'tether.dev/v1', kind, metadata: { name }, spec: {} } as TetherObject);
        e = { type: 'delete', revision: rev, kind, name, prev };
      }
      const tail = out.at(-1);
      if (tail && tail.revision === rev) (tail.events as StoreEvent[]).push(e);
      else out.push({ revision: rev, events: [e] });
    }
    return out;
  }

  async probe(): Promise<void> {
    const n = ++this.probes;
    const value = `${process.pid}:${n}:${Date.now()}`;
    // A Put is acknowledged only once a quorum has it in its fsynced WAL.
    await this.unary('Put', { key: this.key('probe'), value: Buffer.from(value) });
    const back = (await this.unary('Range', { key: this.key('probe') })).kvs[0]?.value.toString('utf8');
    if (back !== value)
      throw new TetherError('TETHER_E_STATE', `etcd probe read back ${String(back)}, wrote ${value}`);
  }

  async compact(keepRevisions: number): Promise<void> {
    const to = compactTarget(await this.revision(), keepRevisions);
    if (to <= (await this.compactedRevision())) return;
    try {
      await this.unary('Compact', { revision: to, physical: true });
    } catch (e) {
      // Someone (etcd's --auto-compaction, another tenant) already compacted further.
      if (!(e instanceof TetherError && /compacted/.test(e.message))) throw e;
    }
    await this.unary('Put', { key: this.key('compacted'), value: Buffer.from(String(to)) });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.calls) c.cancel();
    this.kv.close();
  }

  private open(): void {
    if (this.closed) throw new TetherError('TETHER_E_STATE', 'etcd store is closed');
  }

  private key(suffix: string): Buffer {
    return Buffer.from(this.prefix + suffix, 'utf8');
  }

  private objKey(kind: string, name: string): Buffer {
    return this.key(`o/${kind}/${name}`);
  }

  private keyName(key: Buffer): string {
    return key.toString('utf8').slice(this.prefix.length);
  }

  private parseObjKey(key: Buffer): { kind: string; name: string } {
    return parseObjectKey(this.keyName(key));
  }

  private stamped(kv: EtcdKeyValue): TetherObject {
    const { kind, name } = this.parseObjKey(kv.key);
    return stampObject(kv.value, kind, name, kv.mod_revision, kv.create_revision);
  }

  private stored(kv: EtcdKeyValue): StoredObject {
    const { kind, name } = this.parseObjKey(kv.key);
    return {
      kind,
      name,
      revision: kv.mod_revision,
      createRevision: kv.create_revision,
      object: stampObject(kv.value, kind, name, kv.mod_revision, kv.create_revision),
    };
  }

  private row(kv: EtcdKeyValue): Row {
    const { kind, name } = this.parseObjKey(kv.key);
    return {
      kind,
      name,
      revision: kv.mod_revision,
      createRevision: kv.create_revision,
      json: stampValue(kv.value, kind, name, kv.mod_revision, kv.create_revision),
    };
  }

  private unary<M extends 'Range' | 'Put' | 'Txn' | 'Compact'>(
    method: M,
    req: Parameters<KVClient[M]>[0],
  ): Promise<Awaited<ReturnType<KvCall<M>>>> {
    this.open();
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + this.callTimeoutMs);
      const fn = this.kv[method] as unknown as (
        r: unknown,
        o: grpc.CallOptions,
        cb: (e: grpc.ServiceError | null, v?: unknown) => void,
      ) => void;
      fn.call(this.kv, req, { deadline }, (err, res) => {
        if (err || res === undefined) reject(grpcError(err ?? new Error(`etcd ${method} returned nothing`)));
        else resolve(res as Awaited<ReturnType<KvCall<M>>>);
      });
    });
  }
}

interface MarkWaiter {
  resolve: (m: ReportMark | undefined) => void;
  reject: (e: Error) => void;
}

/** A key of the election as etcd holds it. */
export interface RawKv {
  createRevision: number;
  modRevision: number;
  lease: number;
  value: Buffer;
}

export interface CreatedKey {
  created: boolean;
  revision: number;
  kv?: RawKv;
}

export interface KeyChange {
  type: 'put' | 'delete';
  revision: number;
  kv: RawKv;
}

function rawKv(kv: EtcdKeyValue): RawKv {
  return {
    createRevision: kv.create_revision,
    modRevision: kv.mod_revision,
    lease: kv.lease,
    value: kv.value,
  };
}

function fenceError(fence: NonNullable<TxnExtras['fence']>, held: number): TetherError {
  return new TetherError(
    'TETHER_E_PRECONDITION',
    held === 0
      ? 'this controller is no longer the leader: the election key is gone (lease expired or revoked)'
      : `this controller is no longer the leader: the election key was re-created at revision ${held}, this term began at ${fence.createRevision}`,
    { field: 'leader', expected: `election term ${fence.createRevision}`, fence: fence.createRevision, held },
  );
}

/** Response type of one KV method (the callback's value). */
type KvCall<M extends 'Range' | 'Put' | 'Txn' | 'Compact'> = () => Promise<
  Parameters<Extract<Parameters<KVClient[M]>[1], (...a: never[]) => unknown>>[1] extends infer R
    ? NonNullable<R>
    : never
>;

/** "o/<kind>/<name>" → kind and name; anything else is not an object key of ours. */
export function parseObjectKey(k: string): { kind: string; name: string } {
  const m = /^o\/([^/]+)\/(.+)$/s.exec(k);
  if (!m)
    throw new TetherError(
      'TETHER_E_STATE',
      `etcd key ${JSON.stringify(k.slice(0, 200))} is not an object key`,
    );
  return { kind: m[1]!, name: m[2]! };
}

/**
 * Checks a stored value and stamps the store-owned revisions onto it: a value that is not a
 * JSON object of that kind and name (someone wrote the key by hand, a bug, a torn restore)
 * is TETHER_E_STATE naming the key, never a crash later.
 */
export function stampValue(
  value: Buffer,
  kind: string,
  name: string,
  revision: number,
  createRevision: number,
): string {
  return JSON.stringify(stampObject(value, kind, name, revision, createRevision));
}

/** stampValue without the round trip through a string: what reads (list, watch) hand out.
 *  One JSON.parse per value instead of parse, stringify and parse again. */
export function stampObject(
  value: Buffer,
  kind: string,
  name: string,
  revision: number,
  createRevision: number,
): TetherObject {
  const where = `etcd key o/${kind}/${name}`;
  if (value.length > MAX_VALUE_BYTES)
    throw new TetherError('TETHER_E_STATE', `${where}: value of ${value.length} bytes`, {
      expected: `<= ${MAX_VALUE_BYTES}`,
    });
  let o: unknown;
  try {
    o = JSON.parse(value.toString('utf8'));
  } catch (e) {
    throw new TetherError('TETHER_E_STATE', `${where}: not JSON: ${(e as Error).message}`);
  }
  const obj = o as Partial<TetherObject> | null;
  if (
    !obj ||
    typeof obj !== 'object' ||
    Array.isArray(obj) ||
    obj.kind !== kind ||
    obj.metadata?.name !== name
  )
    throw new TetherError('TETHER_E_STATE', `${where}: value is not the ${kind} ${name}`, {
      expected: `a JSON object with kind ${kind} and metadata.name ${name}`,
    });
  obj.metadata = { ...obj.metadata, revision, createRevision };
  return obj as TetherObject;
}

function unstamp(json: string): Buffer {
  const o = JSON.parse(json) as TetherObject;
  const { revision: _r, createRevision: _c, ...meta } = o.metadata;
  return Buffer.from(JSON.stringify({ ...o, metadata: meta }), 'utf8');
}

function pickMark(m: ReportMark): ReportMark {
  return { serial: m.serial, bootId: m.bootId, seq: m.seq, at: m.at };
}

function parseMark(value: Buffer, key: string): ReportMark {
  let o: unknown;
  try {
    o = value.length <= 4096 ? JSON.parse(value.toString('utf8')) : undefined;
  } catch {
    o = undefined;
  }
  const m = o as Record<string, unknown> | undefined;
  const ok =
    m &&
    typeof m.serial === 'string' &&
    typeof m.bootId === 'string' &&
    Number.isSafeInteger(m.seq) &&
    Number.isSafeInteger(m.at);
  if (!ok)
    throw new TetherError('TETHER_E_STATE', `etcd key ${key}: not a report mark`, {
      expected: MARK_FIELDS.join(', '),
    });
  return pickMark(m as unknown as ReportMark);
}

/** The end of etcd's range for every key starting with `p`. */
export function prefixEnd(p: Buffer): Buffer {
  const end = Buffer.from(p);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]); // all 0xff: to the end of the keyspace
}

/** grpc-js target for a member list: pick_first over IP literals fails over in order. */
export function grpcTarget(endpoints: readonly string[]): string {
  if (endpoints.length === 0)
    throw new TetherError('TETHER_E_INVALID', 'no etcd endpoint', {
      field: 'datastore',
      expected: 'host:port[,host:port...]',
    });
  const v4 = endpoints.every((e) => /^\d{1,3}(\.\d{1,3}){3}:\d+$/.test(e));
  if (v4) return `ipv4:${endpoints.join(',')}`;
  const v6 = endpoints.every((e) => /^\[[0-9a-fA-F:.]+\]:\d+$/.test(e));
  if (v6) return `ipv6:${endpoints.join(',')}`;
  if (endpoints.length === 1) return `dns:${endpoints[0]}`;
  throw new TetherError('TETHER_E_INVALID', `etcd endpoints ${endpoints.join(',')} mix names and addresses`, {
    field: 'datastore',
    expected: 'IP addresses of one family, or a single host name',
  });
}

/** A gRPC failure as a TetherError: retryable ones as UNAVAILABLE/TIMEOUT, etcd's limits as
 *  TOO_LARGE, the rest as STATE. */
export function grpcError(e: unknown): TetherError {
  if (e instanceof TetherError) return e;
  const se = e as Partial<grpc.ServiceError>;
  const msg = se.details || (e instanceof Error ? e.message : String(e));
  const details = { grpc: se.code ?? null };
  if (/too many operations|request is too large|exceeds the limit/i.test(msg))
    return new TetherError('TETHER_E_TOO_LARGE', `etcd: ${msg}`, details, { cause: e });
  switch (se.code) {
    case grpc.status.UNAVAILABLE:
    case grpc.status.CANCELLED:
      return new TetherError('TETHER_E_UNAVAILABLE', `etcd unreachable: ${msg}`, details, { cause: e });
    case grpc.status.DEADLINE_EXCEEDED:
      return new TetherError('TETHER_E_TIMEOUT', `etcd did not answer in time: ${msg}`, details, {
        cause: e,
      });
    default:
      return new TetherError('TETHER_E_STATE', `etcd: ${msg}`, details, { cause: e });
  }
}
