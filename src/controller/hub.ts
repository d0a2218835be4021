import type * as grpc from '@grpc/grpc-js';
import type { ControllerMessage } from '../api/gen/tether/v1/ControllerMessage.js';
import type { Deleted } from '../api/gen/tether/v1/Deleted.js';
import type { NodeMessage__Output } from '../api/gen/tether/v1/NodeMessage.js';
import type { Resource } from '../api/gen/tether/v1/Resource.js';
import type { TetherObject } from '../api/resource.js';
import {
  BoundedSession,
  type BoundedSessionState,
  ListenClock,
  missedHeartbeats,
} from '../lib/bounded-session.js';
import { isTetherError, TetherError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { ControllerStore } from './mirror.js';
import { inSlice, type NetworkSites, nodeSummary, sitesOf, sliceView, vnCoversSite } from './slice.js';
import type { StoreEvent } from './store/store.js';

export type SessionCall = grpc.ServerDuplexStream<NodeMessage__Output, ControllerMessage>;

/** Per connected node or site proxy; kept small on purpose (10,000 of these in one process). */
export interface Session extends BoundedSessionState {
  /** The node whose certificate opened the session (for a proxy: the node hosting it). */
  node: string;
  site: string;
  /** 'node': a node's own session; 'proxy': a site proxy's WAN session for the whole site. */
  role: 'node' | 'proxy';
  call: SessionCall;
  bootId: string;
  /** Highest revision the peer acknowledged as on its disk. */
  acked: number;
  /** Highest revision sent. */
  sent: number;
  lastHeard: number;
  /** lastHeard on the hub's listen clock: what silence is judged by. */
  heardAt: number;
  connectedAt: number;
  /** The peer's heartbeat interval (Hello.heartbeat_ms, bounded; else the configured one). */
  heartbeatMs: number;
  /** When the controller last sent this session a heartbeat of its own (node sessions only). */
  lastBeat: number;
  /** Answers to endpoint reports that came while overflowed, sent after the snapshot (one per node). */
  held?: Map<string, ControllerMessage>;
}

export interface SessionInfo {
  node: string;
  site: string;
  acked: number;
  sent: number;
  connectedAt: string;
  lastHeard: string;
  /** Set for a node behind a site proxy: the node hosting the proxy. */
  via?: string;
  connected: boolean;
  bootId?: string;
}

/**
 * What the controller keeps of a node behind a site proxy, fed by the proxy's SiteAgents:
 * a few fields, not a session (10,000 proxied nodes must cost well under 10 KB each).
 */
export interface ProxiedNode {
  acked: number;
  connected: boolean;
  bootId: string;
  /** The node hosting the proxy that reported it. */
  via: string;
  site: string;
}

export interface SessionOptions {
  role?: 'node' | 'proxy';
  /** Hello.heartbeat_ms: 0 = the configured default; else bounded to HEARTBEAT_BOUNDS_MS. */
  heartbeatMs?: number;
}

/** A peer may declare a heartbeat interval within these bounds (ms). */
export const HEARTBEAT_BOUNDS_MS = { min: 1000, max: 120_000 } as const;

export function sessionHeartbeatMs(declared: number | undefined, fallback: number): number {
  if (!declared || !Number.isFinite(declared) || declared <= 0) return fallback;
  return Math.min(HEARTBEAT_BOUNDS_MS.max, Math.max(HEARTBEAT_BOUNDS_MS.min, Math.round(declared)));
}

export interface HubOptions {
  heartbeatMs: number;
  encode?: (m: ControllerMessage) => ControllerMessage;
  /** Wire size of an (encoded) message; the default is an estimate for unencoded ones. */
  sizeOf?: (m: ControllerMessage) => number;
  /** Per-session limit on bytes written but not yet taken by the transport (default 8 MiB). */
  sendQueueBytes?: number;
}

export const DEFAULT_SEND_QUEUE_BYTES = 8 * 1024 * 1024;

/** Rough wire size of an unencoded message: the bytes of its resources plus some framing. */
function estimateSize(m: ControllerMessage): number {
  let n = 32;
  for (const r of [...(m.delta?.put ?? []), ...(m.snapshot_chunk?.put ?? [])]) {
    const json = r.json;
    n += 32 + (typeof json === 'string' ? json.length : (json?.length ?? 0));
  }
  for (const d of m.delta?.deleted ?? []) n += 16 + (d.name?.length ?? 0);
  return n;
}

const SNAPSHOT_CHUNK = 500;

export function toResource(obj: TetherObject): Resource {
  return {
    kind: obj.kind,
    name: obj.metadata.name,
    json: Buffer.from(JSON.stringify(obj)),
    revision: obj.metadata.revision ?? 0,
  };
}

/** A network whose site coverage changed in one commit, with its endpoints and policies. */
interface MovedNetwork {
  name: string;
  before: readonly string[] | 'all' | undefined;
  members: TetherObject[];
}

interface SiteDelta {
  put: Map<string, TetherObject>;
  deleted: Map<string, Deleted>;
}

/**
 * Holds every node session and streams each node its slice of the store: a snapshot closed
 * by an explicit end marker, or only the changes since the revision the node holds, then
 * deltas as the store changes. Work is grouped by site: a change is sliced once per site,
 * not once per node.
 */
export class SessionHub {
  private readonly bySite = new Map<string, Set<Session>>();
  /** Direct node sessions. */
  private readonly byNode = new Map<string, Session>();
  /** The one site proxy session per site. */
  private readonly proxyBySite = new Map<string, Session>();
  /** Nodes behind a site proxy, as its SiteAgents describe them. */
  private readonly proxied = new Map<string, ProxiedNode>();
  /** Site → names in `proxied`: a proxy's complete list or its end touches its own site only. */
  private readonly proxiedBySite = new Map<string, Set<string>>();
  /** Approved node → its site, kept from store events: a proxy's SiteAgents (20 agents per
   *  message, per revision, per site) are checked with lookups, not store reads. */
  private readonly approvedSite = new Map<string, string>();
  /** VirtualNetwork name → the sites it covers, kept current from store events. */
  private readonly vnSites = new Map<string, readonly string[] | 'all'>();
  private readonly unsubscribe: () => void;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private snapCache: {
    revision: number;
    sites: Map<string, ControllerMessage[]>;
    nodesBySite?: Map<string, TetherObject[]>;
  } = {
    revision: -1,
    sites: new Map(),
  };
  private readonly encode: (m: ControllerMessage) => ControllerMessage;
  private readonly sizeOf: (m: ControllerMessage) => number;
  /** The sessions' send queue bound: deltas stop behind a stalled peer, a snapshot follows. */
  private readonly sends: BoundedSession<Session, ControllerMessage>;
  private seq = 0;
  /** Silence is judged on this clock, which leaves out the hub's own stalls. */
  private listen = new ListenClock(50, Date.now());
  /** How sessions were brought up to date when they opened: resumed by delta from the
   *  revision they held, or sent a snapshot (a stat for metrics, tests and benchmarks). */
  readonly initialSyncs = { delta: 0, snapshot: 0 };
  /** Snapshots resent after a send queue overflowed (a stat for tests and benchmarks). */
  get overflows(): number {
    return this.sends.overflows;
  }
  readonly networkSites: NetworkSites = (n) => this.vnSites.get(n);

  constructor(
    private readonly store: ControllerStore,
    private readonly log: Logger,
    private readonly opts: HubOptions,
  ) {
    this.encode = opts.encode ?? ((m) => m);
    this.sizeOf = opts.sizeOf ?? estimateSize;
    const limit = opts.sendQueueBytes || DEFAULT_SEND_QUEUE_BYTES;
    this.sends = new BoundedSession({
      limit,
      sizeOf: this.sizeOf,
      // The callback runs once the HTTP/2 stream has taken the frame (flow control let it
      // through): what is still counted in `queued` is what a stalled peer makes us hold.
      write: (s, m, written) => s.call.write(m, written),
      overflowed: (s) =>
        this.log.warn(
          { node: s.node, role: s.role, queuedBytes: s.queued, limit },
          'session send queue over its limit; dropping deltas until it drains, then a snapshot',
        ),
      failed: (s, e) => {
        this.log.warn({ node: s.node, err: e.message }, 'session write failed; dropping session');
        this.detach(s);
      },
      isOpen: (s) => this.isOpen(s),
      drained: (s) => this.drained(s),
    });
    for (const vn of store.list('VirtualNetwork').items) this.vnSites.set(vn.name, sitesOf(vn.object));
    for (const n of store.list('Node').items) this.noteNode(n.name, n.object);
    this.unsubscribe = store.subscribe((events) => this.onStoreEvents(events));
  }

  start(): void {
    // Sessions keep their own intervals (Hello.heartbeat_ms); the tick only needs to be
    // finer than the shortest of them.
    const tickMs = Math.max(50, Math.min(HEARTBEAT_BOUNDS_MS.min, this.opts.heartbeatMs));
    this.listen = new ListenClock(tickMs, Date.now());
    this.heartbeatTimer = setInterval(() => this.tick(), tickMs);
    this.heartbeatTimer.unref();
  }

  stop(reason = 'controller shutting down'): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.unsubscribe();
    for (const s of [...this.byNode.values(), ...this.proxyBySite.values()])
      this.close(s, 'TETHER_E_UNAVAILABLE', reason);
  }

  /** Ends every session (each peer then fails over to another replica), keeping the hub
   *  running for the sessions that come later. */
  closeAll(code: string, reason: string): number {
    const all = [...this.byNode.values(), ...this.proxyBySite.values()];
    for (const s of all) this.close(s, code, reason);
    return all.length;
  }

  /** Direct node sessions. */
  count(): number {
    return this.byNode.size;
  }

  /** Site proxy sessions. */
  proxyCount(): number {
    return this.proxyBySite.size;
  }

  /** Live facts of the site proxy session a node hosts (shown on its Node object). */
  proxyInfo(
    node: string,
    site: string,
  ):
    | {
        site: string;
        ackedRevision: number;
        sentRevision: number;
        heartbeatMs: number;
        queuedBytes: number;
        overflowed: boolean;
        connectedAt: string;
      }
    | undefined {
    const s = this.proxyBySite.get(site);
    if (!s || s.node !== node) return undefined;
    return {
      site,
      ackedRevision: s.acked,
      sentRevision: s.sent,
      heartbeatMs: s.heartbeatMs,
      queuedBytes: s.queued,
      overflowed: s.overflowed,
      connectedAt: new Date(s.connectedAt).toISOString(),
    };
  }

  /** The site proxy session of a site. */
  proxyOf(site: string): Session | undefined {
    return this.proxyBySite.get(site);
  }

  info(node: string): SessionInfo | undefined {
    const s = this.byNode.get(node);
    if (s) {
      return {
        node: s.node,
        site: s.site,
        acked: s.acked,
        sent: s.sent,
        connected: true,
        bootId: s.bootId,
        connectedAt: new Date(s.connectedAt).toISOString(),
        lastHeard: new Date(s.lastHeard).toISOString(),
      };
    }
    const p = this.proxied.get(node);
    if (!p) return undefined;
    const proxy = this.proxyBySite.get(p.site);
    return {
      node,
      site: p.site,
      acked: p.acked,
      sent: proxy?.sent ?? 0,
      connected: p.connected,
      bootId: p.bootId,
      via: p.via,
      connectedAt: proxy ? new Date(proxy.connectedAt).toISOString() : '',
      lastHeard: proxy ? new Date(proxy.lastHeard).toISOString() : '',
    };
  }

  /** Registers a session after its Hello and sends the initial sync. Synchronous with the
   *  store read, so no event can fall between the sync and the first delta. A proxy session
   *  replaces the site's older proxy session; a node session, the node's older one. */
  open(
    call: SessionCall,
    node: string,
    site: string,
    heldRevision: number,
    bootId: string,
    opts: SessionOptions = {},
  ): Session {
    const role = opts.role ?? 'node';
    const old = role === 'proxy' ? this.proxyBySite.get(site) : this.byNode.get(node);
    // A live proxy session is replaced only by the same node or a better-ranked one (the
    // election's order: by name); otherwise any node of the site could keep taking the site's
    // WAN session over (docs/proxy.md "The WAN session").
    if (
      old &&
      role === 'proxy' &&
      old.node !== node &&
      node > old.node &&
      Date.now() - old.lastHeard < 2 * old.heartbeatMs
    )
      throw new TetherError(
        'TETHER_E_CONFLICT',
        `site "${site}" has a live proxy session from node "${old.node}", which ranks before "${node}"`,
        { field: 'hello.role', expected: "the site's elected proxy" },
      );
    if (old)
      this.close(
        old,
        'TETHER_E_CONFLICT',
        role === 'proxy'
          ? 'replaced by a newer proxy session of the same site'
          : 'replaced by a newer session of the same node',
      );
    const now = Date.now();
    const s: Session = {
      node,
      site,
      role,
      call,
      bootId,
      acked: heldRevision,
      sent: heldRevision,
      lastHeard: now,
      heardAt: this.listen.at(now),
      connectedAt: now,
      heartbeatMs: sessionHeartbeatMs(opts.heartbeatMs, this.opts.heartbeatMs),
      lastBeat: now,
      queued: 0,
      overflowed: false,
    };
    if (role === 'proxy') this.proxyBySite.set(site, s);
    else this.byNode.set(node, s);
    let set = this.bySite.get(site);
    if (!set) {
      set = new Set();
      this.bySite.set(site, set);
    }
    set.add(s);
    this.initialSync(s, heldRevision);
    return s;
  }

  // ---- remote shell (docs/shell.md): frames ride the node's own session or its site proxy's.
  private readonly detachListeners = new Set<(s: Session) => void>();

  /** Called whenever a session ends (the shell broker ends the shells it carried). */
  onDetach(fn: (s: Session) => void): void {
    this.detachListeners.add(fn);
  }

  /** The session that reaches `node`: its own, else its site proxy's while the proxy reports
   *  it connected. */
  routeTo(node: string): Session | undefined {
    const s = this.byNode.get(node);
    if (s) return s;
    const p = this.proxied.get(node);
    return p?.connected ? this.proxyBySite.get(p.site) : undefined;
  }

  /** Writes one shell frame, counted in the session's send-queue bound; false when the
   *  session is gone or over its bound (the caller ends the shell). */
  sendShell(s: Session, msg: ControllerMessage): boolean {
    if (!this.isOpen(s)) return false;
    return this.send(s, this.encode(msg));
  }

  /** Removes a session whose call ended on its own. */
  detach(s: Session): void {
    for (const fn of this.detachListeners) fn(s);
    if (s.role === 'proxy') {
      if (this.proxyBySite.get(s.site) === s) {
        this.proxyBySite.delete(s.site);
        // Its agents are no longer reachable through it; the next proxy reports its own.
        for (const name of this.proxiedBySite.get(s.site) ?? []) this.proxied.delete(name);
        this.proxiedBySite.delete(s.site);
      }
    } else if (this.byNode.get(s.node) === s) this.byNode.delete(s.node);
    const set = this.bySite.get(s.site);
    set?.delete(s);
    if (set && set.size === 0) this.bySite.delete(s.site);
  }

  onMessage(s: Session, msg: NodeMessage__Output): void {
    s.lastHeard = Date.now();
    s.heardAt = this.listen.at(s.lastHeard);
    // Echo heartbeats so each peer's dead-WAN detection runs at its own interval.
    if (msg.heartbeat)
      this.send(s, this.encode({ heartbeat: { seq: msg.heartbeat.seq, unix_ms: Date.now() } }));
    if (msg.ack) {
      // Never more than was sent: a peer cannot show itself converged on what it never got.
      const acked = Math.min(Number(msg.ack.revision) || 0, s.sent);
      if (acked > s.acked) s.acked = acked;
    }
  }

  /**
   * A proxy's account of its agents. Only Approved nodes of the proxy's own site are kept
   * (a proxy cannot make the controller remember arbitrary names); `complete` marks every
   * other node it had reported as disconnected.
   */
  siteAgents(
    s: Session,
    msg: {
      agents: ReadonlyArray<{ node: string; acked: number | string; connected: boolean; boot_id: string }>;
      complete: boolean;
    },
  ): void {
    if (s.role !== 'proxy' || this.proxyBySite.get(s.site) !== s) return;
    const listed = msg.complete ? new Set<string>() : undefined;
    let names = this.proxiedBySite.get(s.site);
    for (const a of msg.agents) {
      if (this.approvedSite.get(a.node) !== s.site) continue;
      listed?.add(a.node);
      const acked = Math.max(0, Math.min(Number(a.acked) || 0, s.sent));
      const bootId = a.boot_id.length > 64 ? a.boot_id.slice(0, 64) : a.boot_id;
      const p = this.proxied.get(a.node);
      if (p) {
        p.acked = p.bootId === bootId ? Math.max(p.acked, acked) : acked;
        p.connected = a.connected;
        p.bootId = bootId;
        p.via = s.node;
      } else {
        this.proxied.set(a.node, { acked, connected: a.connected, bootId, via: s.node, site: s.site });
        if (!names) {
          names = new Set();
          this.proxiedBySite.set(s.site, names);
        }
        names.add(a.node);
      }
    }
    if (listed)
      for (const name of names ?? []) {
        const p = this.proxied.get(name);
        if (p && !listed.has(name)) p.connected = false;
      }
  }

  /** Ends a session at once (revocation, replacement, shutdown). */
  close(s: Session, code: string, reason: string): void {
    this.detach(s);
    try {
      s.call.write(this.encode({ goodbye: { code, reason } }));
      s.call.end();
    } catch {
      /* the stream may already be gone */
    }
  }

  /** Ends the node's own session and any site proxy session it hosts; forgets it as a
   *  proxied node. */
  closeNode(node: string, code: string, reason: string): boolean {
    let closed = false;
    const s = this.byNode.get(node);
    if (s) {
      this.close(s, code, reason);
      closed = true;
    }
    for (const p of [...this.proxyBySite.values()]) {
      if (p.node !== node) continue;
      this.close(p, code, reason);
      closed = true;
    }
    const p = this.proxied.get(node);
    if (p) {
      this.proxied.delete(node);
      this.proxiedBySite.get(p.site)?.delete(node);
    }
    return closed;
  }

  private initialSync(s: Session, held: number): void {
    const head = this.store.revision();
    if (held > 0 && held <= head) {
      try {
        const delta = this.deltaFromHistory(s.site, held);
        if (delta) {
          this.write(
            s,
            this.encode({
              delta: {
                revision: head,
                put: [...delta.put.values()].map(toResource),
                deleted: [...delta.deleted.values()],
              },
            }),
          );
          s.sent = head;
          this.initialSyncs.delta++;
          return;
        }
      } catch (e) {
        if (!isTetherError(e, 'TETHER_E_COMPACTED')) throw e;
      }
    }
    this.initialSyncs.snapshot++;
    this.snapshot(
      s,
      held === 0
        ? 'node holds nothing'
        : held > head
          ? 'node is ahead of the controller'
          : 'history compacted',
    );
  }

  /** Changes since `held` for a site, or undefined when the slice itself moved (a network
   *  changed its sites) and only a snapshot is certain to be right. */
  private deltaFromHistory(site: string, held: number): SiteDelta | undefined {
    const events = this.store.history(held);
    const d: SiteDelta = { put: new Map(), deleted: new Map() };
    for (const ev of events) {
      // A network that existed and now covers the site differently (or is gone) moves its
      // endpoints and policies in or out of the slice; history alone cannot say which of
      // them the node holds, so only a snapshot is certain. A new network moves nothing.
      if (ev.kind === 'VirtualNetwork' && ev.prev) {
        const after = ev.type === 'put' ? ev.object : undefined;
        if (vnCoversSite(ev.prev, site) !== vnCoversSite(after, site)) return undefined;
      }
      this.addEvent(d, site, ev);
    }
    return d;
  }

  private addEvent(d: SiteDelta, site: string, ev: StoreEvent): void {
    const key = `${ev.kind}/${ev.name}`;
    if (ev.type === 'put' && inSlice(site, ev.object, this.networkSites)) {
      d.put.set(key, sliceView(ev.object));
      d.deleted.delete(key);
    } else if (ev.prev && inSlice(site, ev.prev, this.networkSites)) {
      d.put.delete(key);
      d.deleted.set(key, { kind: ev.kind, name: ev.name });
    }
  }

  /** Kinds a slice can hold besides its Site and Nodes (see slice.ts); listing only these
   *  keeps token rows out of every snapshot. Nodes, most of a big store, are grouped by site
   *  once per revision instead of being scanned once per site. */
  private static readonly SLICE_KINDS = [
    'VirtualNetwork',
    'Endpoint',
    'NetworkPolicy',
    'Profile',
    'Gateway',
    'FloatingIP',
  ];

  private rosterOf(site: string): TetherObject[] {
    if (!this.snapCache.nodesBySite) {
      const by = new Map<string, TetherObject[]>();
      for (const it of this.store.list('Node').items) {
        const ns = (it.object.spec as { site?: unknown } | undefined)?.site;
        if (typeof ns !== 'string') continue;
        let l = by.get(ns);
        if (!l) {
          l = [];
          by.set(ns, l);
        }
        l.push(nodeSummary(it.object));
      }
      this.snapCache.nodesBySite = by;
    }
    return this.snapCache.nodesBySite.get(site) ?? [];
  }

  /** A site's snapshot body (chunks + end marker), encoded once per revision and shared by
   *  every node of the site: a reconnect storm after a controller restart costs one slice
   *  computation per site, not per node. */
  private siteSnapshot(site: string): { revision: number; messages: ControllerMessage[] } {
    const revision = this.store.revision();
    if (this.snapCache.revision !== revision) this.snapCache = { revision, sites: new Map() };
    const cached = this.snapCache.sites.get(site);
    if (cached) return { revision, messages: cached };
    const objects: TetherObject[] = [];
    const own = this.store.get('Site', site);
    if (own) objects.push(own.object);
    for (const kind of SessionHub.SLICE_KINDS) {
      for (const it of this.store.list(kind).items)
        if (inSlice(site, it.object, this.networkSites)) objects.push(sliceView(it.object));
    }
    objects.push(...this.rosterOf(site));
    const messages: ControllerMessage[] = [];
    for (let i = 0; i < objects.length; i += SNAPSHOT_CHUNK) {
      const put = objects.slice(i, i + SNAPSHOT_CHUNK).map(toResource);
      messages.push(this.encode({ snapshot_chunk: { revision, put, deleted: [] } }));
    }
    messages.push(this.encode({ snapshot_end: { revision, count: objects.length } }));
    this.snapCache.sites.set(site, messages);
    return { revision, messages };
  }

  /** A whole snapshot is written regardless of the queue limit: a peer needs all of it up
   *  to SnapshotEnd, and its chunks are shared by every session of the site. */
  private snapshot(s: Session, reason: string): void {
    const { revision, messages } = this.siteSnapshot(s.site);
    this.write(s, this.encode({ snapshot_begin: { revision, reason } }));
    for (const m of messages) this.write(s, m);
    s.sent = revision;
  }

  private noteNode(name: string, obj: TetherObject | undefined): void {
    const site = (obj?.spec as { site?: unknown } | undefined)?.site;
    const phase = (obj?.status as { phase?: unknown } | undefined)?.phase;
    if (typeof site === 'string' && phase === 'Approved') this.approvedSite.set(name, site);
    else this.approvedSite.delete(name);
  }

  private onStoreEvents(events: readonly StoreEvent[]): void {
    if (events.length === 0) return;
    for (const ev of events)
      if (ev.kind === 'Node') this.noteNode(ev.name, ev.type === 'put' ? ev.object : undefined);
    const revision = events[events.length - 1]!.revision;
    // Networks whose site coverage changed: their endpoints and policies enter or leave.
    const moved: MovedNetwork[] = [];
    for (const ev of events) {
      if (ev.kind !== 'VirtualNetwork') continue;
      const before = this.vnSites.get(ev.name);
      if (ev.type === 'put') this.vnSites.set(ev.name, sitesOf(ev.object));
      else this.vnSites.delete(ev.name);
      if (JSON.stringify(before) !== JSON.stringify(this.vnSites.get(ev.name))) {
        moved.push({ name: ev.name, before, members: this.membersOf(ev.name) });
      }
    }
    for (const [site, sessions] of this.bySite) {
      const d: SiteDelta = { put: new Map(), deleted: new Map() };
      for (const ev of events) this.addEvent(d, site, ev);
      for (const m of moved) this.addMovedNetwork(d, site, m);
      if (d.put.size === 0 && d.deleted.size === 0) continue;
      // Encoded once per site, written as the same bytes to every node of the site.
      const msg = this.encode({
        delta: { revision, put: [...d.put.values()].map(toResource), deleted: [...d.deleted.values()] },
      });
      for (const s of sessions) {
        if (this.send(s, msg)) s.sent = revision;
      }
    }
  }

  /** Endpoints and policies of a network: read once per moved network, not once per site. */
  private membersOf(network: string): TetherObject[] {
    return ['Endpoint', 'NetworkPolicy'].flatMap((kind) =>
      this.store
        .list(kind)
        .items.filter((it) => (it.object.spec as { network?: unknown }).network === network)
        .map((it) => it.object),
    );
  }

  private addMovedNetwork(d: SiteDelta, site: string, m: MovedNetwork): void {
    const covered = (v: readonly string[] | 'all' | undefined) => v === 'all' || Boolean(v?.includes(site));
    const is = covered(this.vnSites.get(m.name));
    if (covered(m.before) === is) return;
    for (const o of m.members) {
      const key = `${o.kind}/${o.metadata.name}`;
      if (is) d.put.set(key, o);
      else d.deleted.set(key, { kind: o.kind, name: o.metadata.name });
    }
  }

  /** Sends one message to a session outside the sync stream (an endpoint report's answer).
   *  One that comes while the session's queue is overflowed is held (the latest per node)
   *  and sent after the snapshot that follows the drain. */
  notify(s: Session, msg: ControllerMessage, key = s.node): void {
    const m = this.encode(msg);
    if (s.overflowed) {
      s.held ??= new Map();
      s.held.set(key, m);
      return;
    }
    this.send(s, m);
  }

  /**
   * Writes a message unless the session's send queue is over its limit: then the session
   * stops receiving deltas (they would only pile up in memory behind a stalled peer) until
   * the transport has taken everything, and then gets a fresh snapshot. Returns whether the
   * message was written.
   */
  private send(s: Session, msg: ControllerMessage): boolean {
    return this.sends.send(s, msg);
  }

  private write(s: Session, msg: ControllerMessage): boolean {
    return this.sends.write(s, msg);
  }

  /** The session's send queue drained after an overflow: resync it. */
  private drained(s: Session): void {
    this.log.info({ node: s.node, role: s.role }, 'session send queue drained; sending a snapshot');
    this.snapshot(s, 'send queue overflowed');
    const held = s.held;
    s.held = undefined;
    for (const m of held?.values() ?? []) this.send(s, m);
  }

  private isOpen(s: Session): boolean {
    return (s.role === 'proxy' ? this.proxyBySite.get(s.site) : this.byNode.get(s.node)) === s;
  }

  private tick(): void {
    const now = Date.now();
    const listening = this.listen.tick(now);
    let hb: ControllerMessage | undefined;
    for (const s of [...this.byNode.values(), ...this.proxyBySite.values()]) {
      if (missedHeartbeats(s.heardAt, s.heartbeatMs, listening)) {
        this.log.info({ node: s.node, role: s.role }, 'peer silent for 3 heartbeats; closing its session');
        this.close(s, 'TETHER_E_TIMEOUT', 'no heartbeat from peer');
        s.call.destroy?.();
        continue;
      }
      // A proxy's WAN session costs only its own heartbeats and their echoes.
      if (s.role === 'proxy' || now - s.lastBeat < s.heartbeatMs) continue;
      s.lastBeat = now;
      hb ??= this.encode({ heartbeat: { seq: ++this.seq, unix_ms: now } });
      this.send(s, hb);
    }
  }
}
