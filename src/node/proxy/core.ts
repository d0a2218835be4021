import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_CLAIM_LIMITS } from '../../api/claims.js';
import type { AgentState } from '../../api/gen/tether/v1/AgentState.js';
import type { ControllerMessage } from '../../api/gen/tether/v1/ControllerMessage.js';
import type { Deleted__Output as Deleted } from '../../api/gen/tether/v1/Deleted.js';
import type { EndpointReportResult__Output } from '../../api/gen/tether/v1/EndpointReportResult.js';
import type { GatewayReport__Output } from '../../api/gen/tether/v1/GatewayReport.js';
import type { Hello__Output } from '../../api/gen/tether/v1/Hello.js';
import type { NodeMessage__Output } from '../../api/gen/tether/v1/NodeMessage.js';
import type { Resource } from '../../api/gen/tether/v1/Resource.js';
import type { ShellFrame, ShellFrame__Output } from '../../api/gen/tether/v1/ShellFrame.js';
import type { SiteAgents } from '../../api/gen/tether/v1/SiteAgents.js';
import type { VirtualNetwork } from '../../api/kinds.js';
import type { TetherObject } from '../../api/resource.js';
import type { SignedReportWire } from '../../api/signed-report.js';
import { BoundedSession, type BoundedSessionState, missedHeartbeats } from '../../lib/bounded-session.js';
import { asTetherError, TetherError } from '../../lib/errors.js';
import { collectGarbage } from '../../lib/gc.js';
import type { Logger } from '../../lib/log.js';
import { Pacer } from '../../lib/pacer.js';
import { StateCache } from '../cache.js';
import { encodedBytes } from './encoded.js';
import { type LocalResult, SiteLocalSet, type SliceView } from './headless.js';
import { DEFAULT_HISTORY_LIMITS, DeltaHistory, type HistoryLimits } from './history.js';
import { type RosterEntry, rosterOf, rosterRefusal } from './roster.js';
import { ShellRelay } from './shell-relay.js';

/** The agent on the other end of a session, as its TLS certificate names it. */
export interface AgentPeer {
  node: string;
  site: string;
  /** Serial of the certificate it presented (normalised hex). */
  serial: string;
  certPem: string;
}

/** Where an agent session's messages go: a gRPC stream, or a function in tests. */
export interface AgentLink {
  /** `written` runs once the transport has taken the message (what is still queued until
   *  then counts against the session's send queue bound). */
  write(m: ControllerMessage, written?: () => void): void;
  end(): void;
}

/** The WAN session as the core sees it. */
export interface Uplink {
  readonly up: boolean;
  siteAgents(m: SiteAgents): void;
  relay(node: string, wire: SignedReportWire): void;
  /** An agent's gateway status (live, docs/gateway.md), for the controller's view. */
  relayGateway(node: string, report: GatewayReport__Output): void;
  /** A remote-shell frame of an agent, named by its certificate (docs/shell.md); false when
   *  the WAN session is down. */
  relayShell(f: ShellFrame): boolean;
}

export interface AgentSession extends BoundedSessionState {
  peer: AgentPeer;
  link: AgentLink;
  bootId: string;
  underlayIp: string;
  /** Highest revision the agent acknowledged. */
  acked: number;
  /** Highest revision it holds or was sent: nothing at or below it is sent again. */
  sent: number;
  lastHeard: number;
  connectedAt: number;
  closed: boolean;
  /** The newest endpoint answer that came while overflowed (sent after the snapshot). */
  heldResult?: ControllerMessage;
  /** Endpoint reports, newest wins, at most one per `reportIntervalMs` reaches the journal. */
  reports: Pacer<SignedWire | undefined>;
  /** Shells ended while the send queue was overflowed: their end frames go after the drain,
   *  so the agent's pty does not outlive them. */
  shellEnds?: ShellFrame[];
}

type SignedWire = { payload: Buffer; signature: Buffer; cert_serial: string };

export interface ProxyCoreOptions {
  /** Directory of the proxy's own durable state (slice, delta history, report journal). */
  dir: string;
  node: string;
  site: string;
  log: Logger;
  /** Interval of the heartbeats the proxy sends its agents (the controller's default: 5 s). */
  heartbeatMs?: number;
  history?: HistoryLimits;
  /** Coalescing window of SiteAgents updates on the WAN. */
  siteAgentsDelayMs?: number;
  /** Minimum time between two reports of one agent that are checked and journaled (500 ms). */
  reportIntervalMs?: number;
  /** Endpoints one report may hold (the controller's claim limit). */
  maxReportEndpoints?: number;
  /** Bound of the SiteLocal message's endpoints (default 3 MiB, under MAX_MESSAGE_BYTES). */
  siteLocalMaxBytes?: number;
  /** Bound of one agent session's send queue (bytes the transport has not taken yet). */
  sendQueueBytes?: number;
  /** The roster changed (after the sessions it refuses were closed): the transport closes
   *  the connections of the certificates it dropped. */
  onRosterChange?: (prev: ReadonlyMap<string, RosterEntry>, next: ReadonlyMap<string, RosterEntry>) => void;
  /** Serializes a message once (ProxyServer.encode): snapshot chunks are shared as bytes by
   *  every agent they are written to. Without it, each agent's stream encodes them. */
  encode?: (m: ControllerMessage) => ControllerMessage;
  /** Runs at the end of a burst (src/lib/gc.ts; tests count the calls). */
  collectGarbage?: () => void;
  now?: () => number;
}

export const DEFAULT_AGENT_QUEUE_BYTES = 8 * 1024 * 1024;
/** Room for the SiteLocal set in one message: MAX_MESSAGE_BYTES (4 MiB) less framing margin. */
export const SITE_LOCAL_MAX_BYTES = 3 * 1024 * 1024;

/** What a message costs in the send queue: its objects' JSON dominates. */
function sizeOf(m: ControllerMessage): number {
  const bytes = encodedBytes(m);
  if (bytes) return bytes.length + 5;
  let n = 64;
  const body = m.delta ?? m.snapshot_chunk;
  for (const r of body?.put ?? []) n += (r.json as Buffer | undefined)?.length ?? 0;
  for (const r of m.site_local?.endpoints ?? []) n += (r.json as Buffer | undefined)?.length ?? 0;
  // Operator input: what an agent that stops reading would otherwise let pile up uncounted.
  n += (m.shell?.data as Uint8Array | undefined)?.length ?? 0;
  n += (m.shell?.open?.payload as Uint8Array | undefined)?.length ?? 0;
  n += m.shell?.open?.cert_pem?.length ?? 0;
  return n;
}

const SNAPSHOT_CHUNK = 500;
/** How long an encoded snapshot is kept for agents connecting together (a takeover). */
const SNAPSHOT_KEEP_MS = 5000;

export function toResource(obj: TetherObject): Resource {
  return {
    kind: obj.kind,
    name: obj.metadata.name,
    json: Buffer.from(JSON.stringify(obj)),
    revision: obj.metadata.revision ?? 0,
  };
}

const keyOf = (kind: string, name: string) => `${kind}/${name}`;

/**
 * The site proxy without its transports: the durable slice (same revisions as the
 * controller), the bounded history of deltas, the agent sessions with the controller's
 * semantics and the headless SiteLocal set. The gRPC server and the WAN client feed it; tests
 * drive it in one process.
 */
export class ProxyCore {
  readonly cache: StateCache;
  readonly history: DeltaHistory;
  readonly local: SiteLocalSet;
  uplink: Uplink | undefined;
  private roster: Map<string, RosterEntry>;
  private readonly agents = new Map<string, AgentSession>();
  /** Remote shells relayed between the controller and this site's attached agents. */
  readonly shells: ShellRelay;
  private readonly dirtyAgents = new Set<string>();
  private readonly relayed = new Map<string, number>();
  /** Per agent node (admitted: at most the site roster), its latest gateway report: live
   *  status the controller is sent again whenever the WAN session comes back. */
  private readonly gatewayReports = new Map<string, GatewayReport__Output>();
  private agentsTimer: NodeJS.Timeout | undefined;
  private hbTimer: NodeJS.Timeout | undefined;
  private hbSeq = 0;
  private snapCache: { revision: number; messages: ControllerMessage[] } | undefined;
  private snapTimer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  private readonly hbMs: number;
  /** The agents' send queue bound (an agent that stops reading gets a snapshot once drained). */
  private readonly sends: BoundedSession<AgentSession, ControllerMessage>;
  /** Sessions whose queue overflowed, since the core started (status, tests). */
  get overflows(): number {
    return this.sends.overflows;
  }
  private siteLocalCache:
    | { seq: number; msg: { endpoints: Resource[]; seq: number; nodes: string[] } }
    | undefined;
  /** Per node, the entries last refused for the SiteLocal bound (told to the node once). */
  private readonly overBound = new Map<string, string>();

  constructor(private readonly opts: ProxyCoreOptions) {
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    this.now = opts.now ?? Date.now;
    this.hbMs = opts.heartbeatMs ?? 5000;
    const limit = opts.sendQueueBytes || DEFAULT_AGENT_QUEUE_BYTES;
    this.sends = new BoundedSession({
      limit,
      sizeOf,
      write: (s, m, written) => s.link.write(m, written),
      // An agent that stops reading must not make the proxy hold every delta in memory.
      overflowed: (s) =>
        this.opts.log.warn(
          { node: s.peer.node, queuedBytes: s.queued, limit },
          'agent send queue over its limit; dropping deltas until it drains, then a snapshot',
        ),
      failed: (s, e) => {
        this.opts.log.warn({ node: s.peer.node, err: e.message }, 'agent write failed; dropping session');
        this.detach(s);
      },
      isOpen: (s) => !s.closed,
      drained: (s) => this.drained(s),
    });
    this.shells = new ShellRelay({
      log: opts.log.child({ component: 'shell-relay' }),
      toAgent: (node, f) => this.shellToAgent(node, f),
      toController: (f) => this.uplink?.relayShell(f) ?? false,
    });
    this.cache = new StateCache(join(opts.dir, 'slice.json'));
    this.history = new DeltaHistory(join(opts.dir, 'history'), opts.history ?? DEFAULT_HISTORY_LIMITS);
    // A history that does not end where the slice does (a crash between the two writes, or a
    // slice replaced by a seed) cannot answer for revisions it does not cover.
    if (this.history.head !== this.cache.revision) this.history.reset(this.cache.revision);
    this.roster = rosterOf(this.cache.list('Node'), opts.site);
    const view: SliceView = {
      get revision() {
        return cacheRef.revision;
      },
      network: (n) => this.cache.get('VirtualNetwork', n) as VirtualNetwork | undefined,
      // Read from the slice itself when SiteLocal is recomputed: no second index of 10,000
      // endpoints held for that.
      endpoints: () => cacheRef.list('Endpoint'),
      roster: () => this.roster,
    };
    const cacheRef = this.cache;
    this.local = new SiteLocalSet(join(opts.dir, 'reports'), opts.site, view);
  }

  start(): void {
    this.hbTimer = setInterval(() => this.tick(), this.hbMs);
    this.hbTimer.unref();
  }

  stop(reason = 'site proxy stopping'): void {
    clearInterval(this.hbTimer);
    clearTimeout(this.agentsTimer);
    clearTimeout(this.snapTimer);
    for (const s of [...this.agents.values()]) this.close(s, 'TETHER_E_UNAVAILABLE', reason);
    this.history.close();
    this.local.close();
  }

  get revision(): number {
    return this.cache.revision;
  }

  siteRoster(): ReadonlyMap<string, RosterEntry> {
    return this.roster;
  }

  agentCount(): number {
    return this.agents.size;
  }

  agentInfo(node: string): { acked: number; sent: number } | undefined {
    const s = this.agents.get(node);
    return s ? { acked: s.acked, sent: s.sent } : undefined;
  }

  // ------------------------------------------------------------------ upstream side

  /**
   * A newer slice than the proxy holds, from this node's own agent cache (a takeover while the
   * WAN is down): the new proxy serves its agents from it at once.
   */
  seed(revision: number, objects: readonly TetherObject[]): boolean {
    if (revision <= this.cache.revision) return false;
    this.cache.replace(revision, objects);
    this.history.reset(revision);
    this.afterSliceChange(true);
    this.armBurstEnd();
    this.opts.log.info({ revision, objects: objects.length }, 'site proxy seeded from the local agent cache');
    return true;
  }

  /** A delta from the controller: on disk when this returns, then sent to every agent. */
  applyDelta(revision: number, put: TetherObject[], deleted: Deleted[]): void {
    const prev = this.cache.revision;
    this.cache.applyDelta(revision, put, deleted);
    this.recordHistory(() => {
      if (revision > prev)
        this.history.append({ revision, put, deleted: deleted.map((d) => ({ kind: d.kind, name: d.name })) });
      else if (put.length || deleted.length) this.history.reset(this.cache.revision);
    });
    const touched = [...put.map((o) => o.kind), ...deleted.map((d) => d.kind)];
    this.afterSliceChange(touched.some((k) => k === 'Node' || k === 'Endpoint' || k === 'VirtualNetwork'));
    if (put.length === 0 && deleted.length === 0) return;
    this.forward(revision, put, deleted, prev);
  }

  /**
   * A snapshot from the controller, complete (its SnapshotEnd arrived): what it did not
   * re-send is swept, and the agents receive exactly the difference as one delta.
   */
  applySnapshot(revision: number, objects: TetherObject[]): { swept: number } {
    const prev = this.cache.revision;
    // Compared object by object against what the cache holds, not through a table of every
    // held object's JSON: that table (a few MB for a 10,000-object slice) was the peak of a
    // snapshot burst, left as promoted garbage (BENCHMARKS.md, proxy-rss).
    const put: TetherObject[] = [];
    const seen = new Set<string>();
    for (const o of objects) {
      seen.add(keyOf(o.kind, o.metadata.name));
      const held = this.cache.get(o.kind, o.metadata.name);
      if (!held || JSON.stringify(held) !== JSON.stringify(o)) put.push(o);
    }
    const deleted: Deleted[] = [];
    for (const o of this.cache.values())
      if (!seen.has(keyOf(o.kind, o.metadata.name))) deleted.push({ kind: o.kind, name: o.metadata.name });
    const { swept } = this.cache.replace(revision, objects);
    const limits = this.opts.history ?? DEFAULT_HISTORY_LIMITS;
    this.recordHistory(() => {
      if (prev > 0 && revision > prev && put.length + deleted.length <= limits.maxObjects)
        this.history.append({ revision, put, deleted });
      else this.history.reset(revision);
    });
    this.afterSliceChange(true);
    if (put.length || deleted.length || revision !== prev) this.forward(revision, put, deleted, prev);
    this.armBurstEnd();
    return { swept };
  }

  /**
   * The slice is on disk already; a history that cannot be written must not lose the change
   * for the agents: it starts over at the slice's revision (agents behind it resume with a
   * snapshot) and the delta is still forwarded.
   */
  private recordHistory(write: () => void): void {
    try {
      write();
    } catch (e) {
      this.history.forget(this.cache.revision);
      this.opts.log.error(
        { revision: this.cache.revision, err: (e as Error).message },
        'site proxy history not written; history cleared (agents behind this revision get a snapshot)',
      );
    }
  }

  /** The controller's answer to a relayed report. */
  onResult(r: EndpointReportResult__Output): void {
    if (!r.node) return;
    // One relayed report per node is in flight, so the answer is to that one.
    const order = this.relayed.get(r.node);
    this.relayed.delete(r.node);
    if (
      order !== undefined &&
      this.local.answered(
        r.node,
        order,
        r.refused.map((x) => x.name),
      )
    )
      this.broadcastSiteLocal();
    const s = this.agents.get(r.node);
    if (s) this.send(s, { endpoint_result: { ...r } });
    this.relayNext(r.node);
  }

  /** Relays the node's newest unanswered report unless one of its reports is in flight. */
  private relayNext(node: string): void {
    const up = this.uplink;
    if (!up?.up || this.relayed.has(node)) return;
    const p = this.local.pending().find((x) => x.node === node);
    if (!p) return;
    this.relayed.set(p.node, p.order);
    up.relay(p.node, p.wire);
  }

  /** The WAN session is (again) up: the complete agent set, then the reports not yet answered. */
  onUplinkUp(): void {
    const up = this.uplink;
    if (!up) return;
    up.siteAgents({ agents: [...this.agents.values()].map((s) => this.agentState(s)), complete: true });
    this.dirtyAgents.clear();
    // A new WAN session: what was in flight on the old one will not be answered.
    this.relayed.clear();
    for (const p of this.local.pending()) {
      this.relayed.set(p.node, p.order);
      up.relay(p.node, p.wire);
    }
    for (const [node, r] of this.gatewayReports) up.relayGateway(node, r);
  }

  /** The WAN session ended: the shells it carried are over (the controller ended them). */
  onUplinkDown(): void {
    this.shells.uplinkGone();
  }

  /** A shell frame from the controller for one of this site's agents. */
  shellFromController(f: ShellFrame__Output): void {
    this.shells.fromController(f);
  }

  private shellToAgent(node: string, f: ShellFrame): boolean {
    const s = this.agents.get(node);
    if (!s || s.closed) return false;
    if (this.send(s, { shell: f })) return true;
    // Over its bound: input is dropped and the relay ends the shell; the end itself must
    // still reach the agent once it drains.
    if (s.overflowed) {
      s.shellEnds ??= [];
      if (s.shellEnds.length < 64 && !s.shellEnds.some((e) => e.session_id === f.session_id))
        s.shellEnds.push({
          session_id: f.session_id,
          node,
          end: {
            ending: 'node-lost',
            exit_code: -1,
            signal: 0,
            code: 'TETHER_E_UNAVAILABLE',
            message: 'the node stopped reading its session',
          },
        });
    }
    return false;
  }

  // ------------------------------------------------------------------ agent side

  /**
   * Opens an agent's session after its hello and sends its initial sync; throws a
   * TetherError (nothing opened) when the site roster does not list its certificate.
   */
  open(link: AgentLink, peer: AgentPeer, hello: Hello__Output): AgentSession {
    this.admit(peer);
    if (hello.node_name && hello.node_name !== peer.node)
      throw new TetherError(
        'TETHER_E_PERMISSION',
        `hello names "${hello.node_name}", the certificate "${peer.node}"`,
        {
          field: 'hello.node_name',
        },
      );
    const held =
      Number.isSafeInteger(hello.held_revision) && hello.held_revision > 0 ? hello.held_revision : 0;
    const old = this.agents.get(peer.node);
    if (old) this.close(old, 'TETHER_E_CONFLICT', 'replaced by a newer session of the same node');
    const now = this.now();
    const s: AgentSession = {
      peer,
      link,
      bootId: hello.boot_id,
      underlayIp: hello.underlay_ip,
      acked: held,
      sent: held,
      lastHeard: now,
      connectedAt: now,
      closed: false,
      queued: 0,
      overflowed: false,
      reports: new Pacer(this.opts.reportIntervalMs ?? 500, (w) => this.report(s, w), this.now, {
        unref: true,
      }),
    };
    this.agents.set(peer.node, s);
    this.initialSync(s, held);
    this.send(s, { site_local: this.siteLocalMessage() });
    this.markAgent(s);
    return s;
  }

  /**
   * Throws the TetherError that refuses this peer (other site, not Approved in the roster with
   * that serial): checked before a call is registered, and again at hello.
   */
  admit(peer: AgentPeer): void {
    if (peer.site !== this.opts.site)
      throw new TetherError(
        'TETHER_E_PERMISSION',
        `node "${peer.node}" is in site "${peer.site}", not "${this.opts.site}"`,
      );
    const why = rosterRefusal(this.roster, peer.node, peer.serial);
    if (why) throw new TetherError(why.code, why.message);
  }

  message(s: AgentSession, m: NodeMessage__Output): void {
    if (s.closed) return;
    s.lastHeard = this.now();
    if (m.heartbeat) this.send(s, { heartbeat: { seq: m.heartbeat.seq, unix_ms: this.now() } });
    if (m.ack && m.ack.revision > s.acked) {
      s.acked = m.ack.revision;
      this.markAgent(s);
    }
    if (m.endpoints) s.reports.offer(m.endpoints.signed ?? undefined);
    // Relayed as the agent's own (its certificate's name); the controller checks the claims.
    if (m.gateway) {
      this.gatewayReports.set(s.peer.node, m.gateway);
      if (this.uplink?.up) this.uplink.relayGateway(s.peer.node, m.gateway);
    }
    // Named by the certificate; the relay checks the agent runs that shell.
    if (m.shell) this.shells.fromAgent(s.peer.node, m.shell);
  }

  /** The agent's stream ended on its own. */
  detach(s: AgentSession): void {
    if (s.closed) return;
    s.closed = true;
    s.reports.stop();
    if (this.agents.get(s.peer.node) === s) {
      this.agents.delete(s.peer.node);
      this.markAgent(s);
      // Its pty host ends them on its side when the session drops (src/node/agent/session.ts).
      this.shells.agentGone(s.peer.node);
    }
  }

  close(s: AgentSession, code: string, reason: string): void {
    this.detach(s);
    try {
      s.link.write({ goodbye: { code, reason }, msg: 'goodbye' });
      s.link.end();
    } catch {
      /* the stream may already be gone */
    }
  }

  /** Ends every agent session (this node steps down, or stops). */
  closeAll(code: string, reason: string): void {
    for (const s of [...this.agents.values()]) this.close(s, code, reason);
  }

  private report(s: AgentSession, signed: SignedWire | undefined): void {
    if (s.closed) return;
    let res: LocalResult & { changed: boolean };
    try {
      if (!signed || signed.payload.length === 0)
        throw new TetherError('TETHER_E_INVALID', 'an endpoint report to a site proxy must be signed', {
          field: 'endpoints.signed',
          expected: "the report signed by the node's key (src/api/signed-report.ts)",
        });
      this.checkReportSize(signed.payload);
      res = this.local.accept(s.peer.node, s.peer.certPem, signed);
    } catch (e) {
      const err = asTetherError(e);
      this.opts.log.warn(
        { node: s.peer.node, code: err.code, err: err.message },
        'endpoint report refused by the site proxy',
      );
      this.send(s, {
        endpoint_result: {
          revision: this.cache.revision,
          accepted: 0,
          refused: [{ name: '*', code: err.code, message: err.message, field: err.details.field ?? '' }],
          node: s.peer.node,
        },
      });
      return;
    }
    // On disk: now it may be answered, relayed and reflected.
    this.send(s, {
      endpoint_result: {
        revision: res.revision,
        accepted: res.accepted,
        refused: res.refused,
        node: s.peer.node,
      },
    });
    if (res.changed) this.broadcastSiteLocal();
    this.relayNext(s.peer.node);
  }

  /** A report the controller would refuse whole for its size is not journaled either. */
  private checkReportSize(payload: Buffer): void {
    const max = this.opts.maxReportEndpoints ?? DEFAULT_CLAIM_LIMITS.maxEndpoints;
    let n = 0;
    try {
      const eps = (JSON.parse(payload.toString('utf8')) as { endpoints?: unknown }).endpoints;
      n = Array.isArray(eps) ? eps.length : 0;
    } catch {
      return; // not JSON: verifyReport names what is wrong with it
    }
    if (n > max)
      throw new TetherError(
        'TETHER_E_TOO_LARGE',
        `report holds ${n} endpoints; at most ${max} are accepted (nothing changed)`,
        { field: 'endpoints', expected: `at most ${max} endpoints` },
      );
  }

  private initialSync(s: AgentSession, held: number): void {
    const head = this.cache.revision;
    if (held > head) return; // ahead of this proxy: no rollback, it resumes once we catch up
    if (held > 0) {
      const d = this.history.since(held);
      if (d) {
        this.send(s, { delta: { revision: head, put: d.put.map(toResource), deleted: d.deleted } });
        s.sent = head;
        return;
      }
    }
    this.snapshot(s, held === 0 ? 'node holds nothing' : 'older than the site proxy keeps history for');
  }

  private snapshot(s: AgentSession, reason: string): void {
    const revision = this.cache.revision;
    if (this.snapCache?.revision !== revision) {
      const objects = this.cache.list();
      const messages: ControllerMessage[] = [];
      const encode = this.opts.encode ?? ((m: ControllerMessage) => m);
      for (let i = 0; i < objects.length; i += SNAPSHOT_CHUNK)
        messages.push(
          encode({
            snapshot_chunk: {
              revision,
              put: objects.slice(i, i + SNAPSHOT_CHUNK).map(toResource),
              deleted: [],
            },
            msg: 'snapshot_chunk',
          }),
        );
      messages.push({ snapshot_end: { revision, count: objects.length }, msg: 'snapshot_end' });
      this.snapCache = { revision, messages };
    }
    // Whole or not at all: the bound is checked before the next message after it.
    this.send(s, { snapshot_begin: { revision, reason } });
    for (const m of this.snapCache.messages) this.send(s, m, true);
    s.sent = revision;
    // Shared by agents that connect together (a takeover); released soon after, since the
    // encoded table would otherwise stay in a DU node's memory for as long as nothing changes.
    this.armBurstEnd();
  }

  /**
   * The end of a burst (snapshots to agents, a snapshot or seed of the slice) is
   * `SNAPSHOT_KEEP_MS` after its last part, once every agent has taken what it was written:
   * the encoded snapshot is dropped and the garbage the burst left is collected at once.
   */
  private armBurstEnd(): void {
    clearTimeout(this.snapTimer);
    this.snapTimer = setTimeout(() => this.burstEnded(), SNAPSHOT_KEEP_MS);
    this.snapTimer.unref();
  }

  private burstEnded(): void {
    // Still being written: those messages hold the encoding anyway; look again later.
    if ([...this.agents.values()].some((s) => s.queued > 0 && !s.closed)) {
      this.armBurstEnd();
      return;
    }
    this.snapCache = undefined;
    // A site's snapshot to 19 agents leaves ~8 MB of promoted garbage that an idle daemon
    // keeps resident for minutes (BENCHMARKS.md, proxy-rss); a full collection of the
    // ~25 MB heap takes a few ms.
    (this.opts.collectGarbage ?? collectGarbage)();
  }

  private forward(revision: number, put: TetherObject[], deleted: Deleted[], prevHead: number): void {
    let msg: ControllerMessage | undefined;
    for (const s of this.agents.values()) {
      if (revision <= s.sent) continue;
      if (s.sent > prevHead) {
        // Ahead of the proxy's previous head: the difference from there may miss what the
        // agent has beyond it; only a snapshot is certain.
        this.snapshot(s, 'resync after the site proxy caught up');
        continue;
      }
      // One encoding for every agent (a resync's merged delta can be large).
      const encode = this.opts.encode ?? ((m: ControllerMessage) => m);
      msg ??= encode({ delta: { revision, put: put.map(toResource), deleted }, msg: 'delta' });
      this.send(s, msg);
      s.sent = revision;
    }
  }

  private afterSliceChange(rosterMayChange: boolean): void {
    this.snapCache = undefined;
    if (!rosterMayChange) return;
    const prev = this.roster;
    this.roster = rosterOf(this.cache.list('Node'), this.opts.site);
    for (const s of [...this.agents.values()]) {
      const why = rosterRefusal(this.roster, s.peer.node, s.peer.serial);
      if (why) {
        this.opts.log.warn({ node: s.peer.node, code: why.code, err: why.message }, 'closing agent session');
        this.close(s, why.code, why.message);
      }
    }
    this.opts.onRosterChange?.(prev, this.roster);
    if (this.local.recompute()) this.broadcastSiteLocal();
  }

  /**
   * The SiteLocal set as one message, bounded so that it always fits a gRPC message: entries
   * are kept in journal order (those the controller already accepted first, then the pending
   * reports' in the order they were journaled) and the rest is refused to their nodes.
   */
  private siteLocalMessage(): { endpoints: Resource[]; seq: number; nodes: string[] } {
    const { endpoints, seq, nodes } = this.local.set;
    if (this.siteLocalCache?.seq === seq) return this.siteLocalCache.msg;
    const cap = this.opts.siteLocalMaxBytes ?? SITE_LOCAL_MAX_BYTES;
    const rank = new Map<string, number>();
    for (const [i, p] of this.local.pending().entries()) rank.set(p.node, i);
    const nodeOf = (o: TetherObject) => String((o.spec as { node?: unknown } | undefined)?.node ?? '');
    const ordered = endpoints
      .map((o, i) => ({ o, i, r: rank.get(nodeOf(o)) ?? -1 }))
      .sort((a, b) => a.r - b.r || a.i - b.i);
    const kept: Resource[] = [];
    const over = new Map<string, string[]>();
    let total = 0;
    for (const { o } of ordered) {
      const r = toResource(o);
      const size = (r.json as Buffer).length + o.kind.length + o.metadata.name.length + 32;
      if (total + size > cap) {
        const node = nodeOf(o);
        over.set(node, [...(over.get(node) ?? []), o.metadata.name]);
        continue;
      }
      total += size;
      kept.push(r);
    }
    kept.sort((a, b) => ((a.name ?? '') < (b.name ?? '') ? -1 : 1));
    const msg = { endpoints: kept, seq, nodes };
    this.siteLocalCache = { seq, msg };
    this.tellOverBound(over, cap);
    return msg;
  }

  private tellOverBound(over: Map<string, string[]>, cap: number): void {
    for (const node of [...this.overBound.keys()]) if (!over.has(node)) this.overBound.delete(node);
    for (const [node, names] of over) {
      const key = names.join(' ');
      if (this.overBound.get(node) === key) continue;
      this.overBound.set(node, key);
      this.opts.log.warn(
        { node, refused: names.length, limitBytes: cap },
        'site-local set full; entries refused',
      );
      const s = this.agents.get(node);
      if (!s) continue;
      this.send(s, {
        endpoint_result: {
          revision: this.cache.revision,
          accepted: 0,
          refused: names.map((name) => ({
            name,
            code: 'TETHER_E_TOO_LARGE',
            message: `the site's site-local set is full (${cap} bytes); not forwarded until the controller confirms it`,
            field: 'endpoints',
          })),
          node,
        },
      });
    }
  }

  private broadcastSiteLocal(): void {
    const msg: ControllerMessage = { site_local: this.siteLocalMessage(), msg: 'site_local' };
    for (const s of this.agents.values()) this.send(s, msg);
  }

  private agentState(s: AgentSession): AgentState {
    return {
      node: s.peer.node,
      acked: s.acked,
      connected: !s.closed,
      boot_id: s.bootId,
      underlay_ip: s.underlayIp,
    };
  }

  /** Queues the agent for the next coalesced SiteAgents message. */
  private markAgent(s: AgentSession): void {
    this.dirtyAgents.add(s.peer.node);
    if (this.agentsTimer) return;
    this.agentsTimer = setTimeout(() => {
      this.agentsTimer = undefined;
      const up = this.uplink;
      if (!up?.up || this.dirtyAgents.size === 0) return;
      const agents: AgentState[] = [];
      for (const node of this.dirtyAgents) {
        const live = this.agents.get(node);
        agents.push(
          live ? this.agentState(live) : { node, acked: 0, connected: false, boot_id: '', underlay_ip: '' },
        );
      }
      this.dirtyAgents.clear();
      up.siteAgents({ agents, complete: false });
    }, this.opts.siteAgentsDelayMs ?? 200);
    this.agentsTimer.unref();
  }

  private send(s: AgentSession, m: ControllerMessage, whole = false): boolean {
    if (s.closed) return false;
    if (!m.msg && !encodedBytes(m)) {
      const k = Object.keys(m).find((x) => x !== 'msg') as ControllerMessage['msg'];
      m = { ...m, msg: k };
    }
    // Everything else is replaced by the snapshot after the drain; an answer is not.
    const sent = this.sends.send(s, m, whole);
    if (!sent && s.overflowed && m.endpoint_result) s.heldResult = m;
    return sent;
  }

  /** The agent's send queue drained after an overflow: resync it. */
  private drained(s: AgentSession): void {
    this.opts.log.info({ node: s.peer.node }, 'agent send queue drained; sending a snapshot');
    // An agent ahead of the proxy keeps what it has: a snapshot here would roll it back.
    if (s.sent <= this.cache.revision) this.snapshot(s, 'send queue overflowed');
    this.send(s, { site_local: this.siteLocalMessage() }, true);
    const held = s.heldResult;
    s.heldResult = undefined;
    if (held) this.send(s, held, true);
    const ends = s.shellEnds ?? [];
    s.shellEnds = undefined;
    for (const shell of ends) this.send(s, { shell }, true);
  }

  private tick(): void {
    const now = this.now();
    const hb: ControllerMessage = { heartbeat: { seq: ++this.hbSeq, unix_ms: now }, msg: 'heartbeat' };
    for (const s of [...this.agents.values()]) {
      if (missedHeartbeats(s.lastHeard, this.hbMs, now)) {
        this.close(s, 'TETHER_E_TIMEOUT', 'no heartbeat from node');
        continue;
      }
      this.send(s, hb);
    }
  }
}
