import type * as grpc from '@grpc/grpc-js';
import type { ControllerMessage } from '../api/gen/tether/v1/ControllerMessage.js';
import type { Deleted } from '../api/gen/tether/v1/Deleted.js';
import type { NodeMessage__Output } from '../api/gen/tether/v1/NodeMessage.js';
import type { Resource } from '../api/gen/tether/v1/Resource.js';
import type { TetherObject } from '../api/resource.js';
import { isTetherError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { inSlice, type NetworkSites, sitesOf, vnCoversSite } from './slice.js';
import type { Store, StoreEvent } from './store/store.js';

export type SessionCall = grpc.ServerDuplexStream<NodeMessage__Output, ControllerMessage>;

/** Per connected node; kept small on purpose (10,000 of these in one process). */
export interface Session {
  node: string;
  site: string;
  call: SessionCall;
  bootId: string;
  /** Highest revision the node acknowledged as on its disk. */
  acked: number;
  /** Highest revision sent. */
  sent: number;
  lastHeard: number;
  connectedAt: number;
}

export interface SessionInfo {
  node: string;
  site: string;
  acked: number;
  sent: number;
  connectedAt: string;
  lastHeard: string;
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
  private readonly byNode = new Map<string, Session>();
  /** VirtualNetwork name → the sites it covers, kept current from store events. */
  private readonly vnSites = new Map<string, readonly string[] | 'all'>();
  private readonly unsubscribe: () => void;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private snapCache: { revision: number; sites: Map<string, ControllerMessage[]> } = {
    revision: -1,
    sites: new Map(),
  };
  private readonly encode: (m: ControllerMessage) => ControllerMessage;
  private seq = 0;
  readonly networkSites: NetworkSites = (n) => this.vnSites.get(n);

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly opts: { heartbeatMs: number; encode?: (m: ControllerMessage) => ControllerMessage },
  ) {
    this.encode = opts.encode ?? ((m) => m);
    for (const vn of store.list('VirtualNetwork').items) this.vnSites.set(vn.name, sitesOf(vn.object));
    this.unsubscribe = store.subscribe((events) => this.onStoreEvents(events));
  }

  start(): void {
    this.heartbeatTimer = setInterval(() => this.tick(), this.opts.heartbeatMs);
    this.heartbeatTimer.unref();
  }

  stop(reason = 'controller shutting down'): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.unsubscribe();
    for (const s of [...this.byNode.values()]) this.close(s, 'TETHER_E_UNAVAILABLE', reason);
  }

  count(): number {
    return this.byNode.size;
  }

  info(node: string): SessionInfo | undefined {
    const s = this.byNode.get(node);
    if (!s) return undefined;
    return {
      node: s.node,
      site: s.site,
      acked: s.acked,
      sent: s.sent,
      connectedAt: new Date(s.connectedAt).toISOString(),
      lastHeard: new Date(s.lastHeard).toISOString(),
    };
  }

  /** Registers a session after its Hello and sends the initial sync. Synchronous with the
   *  store read, so no event can fall between the sync and the first delta. */
  open(call: SessionCall, node: string, site: string, heldRevision: number, bootId: string): Session {
    const old = this.byNode.get(node);
    if (old) this.close(old, 'TETHER_E_CONFLICT', 'replaced by a newer session of the same node');
    const now = Date.now();
    const s: Session = {
      node,
      site,
      call,
      bootId,
      acked: heldRevision,
      sent: heldRevision,
      lastHeard: now,
      connectedAt: now,
    };
    this.byNode.set(node, s);
    let set = this.bySite.get(site);
    if (!set) {
      set = new Set();
      this.bySite.set(site, set);
    }
    set.add(s);
    this.initialSync(s, heldRevision);
    return s;
  }

  /** Removes a session whose call ended on its own. */
  detach(s: Session): void {
    if (this.byNode.get(s.node) === s) this.byNode.delete(s.node);
    const set = this.bySite.get(s.site);
    set?.delete(s);
    if (set && set.size === 0) this.bySite.delete(s.site);
  }

  onMessage(s: Session, msg: NodeMessage__Output): void {
    s.lastHeard = Date.now();
    // Echo heartbeats so each node's dead-WAN detection runs at its own interval.
    if (msg.heartbeat) this.send(s, { heartbeat: { seq: msg.heartbeat.seq, unix_ms: Date.now() } });
    if (msg.ack) {
      if (msg.ack.revision > s.acked) s.acked = msg.ack.revision;
    }
  }

  /** Ends a node's session at once (revocation, replacement, shutdown). */
  close(s: Session, code: string, reason: string): void {
    this.detach(s);
    try {
      s.call.write({ goodbye: { code, reason } });
      s.call.end();
    } catch {
      /* the stream may already be gone */
    }
  }

  closeNode(node: string, code: string, reason: string): boolean {
    const s = this.byNode.get(node);
    if (!s) return false;
    this.close(s, code, reason);
    return true;
  }

  private initialSync(s: Session, held: number): void {
    const head = this.store.revision();
    if (held > 0 && held <= head) {
      try {
        const delta = this.deltaFromHistory(s.site, held);
        if (delta) {
          this.send(s, {
            delta: {
              revision: head,
              put: [...delta.put.values()].map(toResource),
              deleted: [...delta.deleted.values()],
            },
          });
          s.sent = head;
          return;
        }
      } catch (e) {
        if (!isTetherError(e, 'TETHER_E_COMPACTED')) throw e;
      }
    }
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
      d.put.set(key, ev.object);
      d.deleted.delete(key);
    } else if (ev.prev && inSlice(site, ev.prev, this.networkSites)) {
      d.put.delete(key);
      d.deleted.set(key, { kind: ev.kind, name: ev.name });
    }
  }

  /** Kinds a slice can hold (see slice.ts); listing only these keeps Node and token rows,
   *  which are most of a big store, out of every snapshot. */
  private static readonly SLICE_KINDS = ['VirtualNetwork', 'Endpoint', 'NetworkPolicy', 'Profile'];

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
        if (inSlice(site, it.object, this.networkSites)) objects.push(it.object);
    }
    const messages: ControllerMessage[] = [];
    for (let i = 0; i < objects.length; i += SNAPSHOT_CHUNK) {
      const put = objects.slice(i, i + SNAPSHOT_CHUNK).map(toResource);
      messages.push(this.encode({ snapshot_chunk: { revision, put, deleted: [] } }));
    }
    messages.push(this.encode({ snapshot_end: { revision, count: objects.length } }));
    this.snapCache.sites.set(site, messages);
    return { revision, messages };
  }

  private snapshot(s: Session, reason: string): void {
    const { revision, messages } = this.siteSnapshot(s.site);
    this.send(s, { snapshot_begin: { revision, reason } });
    for (const m of messages) this.send(s, m);
    s.sent = revision;
  }

  private onStoreEvents(events: readonly StoreEvent[]): void {
    if (events.length === 0) return;
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
        this.send(s, msg);
        s.sent = revision;
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

  /** Sends one message to a session outside the sync stream (e.g. an endpoint report's answer). */
  notify(s: Session, msg: ControllerMessage): void {
    this.send(s, msg);
  }

  private send(s: Session, msg: ControllerMessage): void {
    try {
      s.call.write(msg);
    } catch (e) {
      this.log.warn({ node: s.node, err: (e as Error).message }, 'session write failed; dropping session');
      this.detach(s);
    }
  }

  private tick(): void {
    const now = Date.now();
    const deadline = now - 3 * this.opts.heartbeatMs;
    const hb = this.encode({ heartbeat: { seq: ++this.seq, unix_ms: now } });
    for (const s of [...this.byNode.values()]) {
      if (s.lastHeard < deadline) {
        this.log.info({ node: s.node }, 'node silent for 3 heartbeats; closing its session');
        this.close(s, 'TETHER_E_TIMEOUT', 'no heartbeat from node');
        s.call.destroy?.();
        continue;
      }
      this.send(s, hb);
    }
  }
}
