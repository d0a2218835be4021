import { createSocket, type Socket } from 'node:dgram';
import type { GatewaySpec } from '../../api/gateway-kinds.js';
import type { TetherObject } from '../../api/resource.js';
import type { BirdConfig } from '../../bgp/render.js';
import { TetherError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import type { GatewayDesired } from './model.js';

/**
 * Gateway HA inside the site (docs/gateway.md "Gateway HA"): which of the site's gateway nodes
 * is active is decided on each node from what it sees itself — its own BGP/BFD session to the
 * site router and a heartbeat between the gateway nodes over the site LAN — never from a
 * central lease. Both nodes keep their sessions and the floating IP dataplane installed; the
 * standby announces everything with a prepended AS path, so the router's own BFD moves the
 * traffic the moment the active's session drops, and this decision only sets preference.
 */

/** The role the HA decision gives this node; `active` without HA (a single gateway node). */
export type GatewayRole = 'active' | 'standby';

/** AS-path prepends a standby adds to every route it announces. */
export const STANDBY_PREPEND = 3;
/** UDP port of the gateway heartbeat (site LAN, between the gateway nodes' underlay addresses). */
export const HA_PORT = 4791;
const MAX_HEARTBEAT_BYTES = 512;

export interface PeerView {
  /** When a valid heartbeat of this node last arrived (ms, local clock). */
  lastSeenMs: number;
  /** It has a session up to the router and has had it for `eligibleForMs`. */
  eligible: boolean;
  eligibleForMs: number;
  role: GatewayRole;
}

export interface HaInput {
  self: string;
  /** The Gateway's `spec.nodes`, best first (absent: this node alone). */
  ranked: readonly string[];
  /** Since when this node's own session to a router has been up (undefined: it is down). */
  uplinkUpSinceMs: number | undefined;
  peers: ReadonlyMap<string, PeerView>;
  nowMs: number;
  /** A peer silent this long is dead. */
  deadAfterMs: number;
  /** A returning better node takes the role back only after its session has been up this
   *  long (and a node never takes over from a live active before then): no flapping. */
  preemptHoldMs: number;
  /** This node's role of the last round (hysteresis: who holds the role keeps it). */
  previous: GatewayRole;
  /** Just started, not yet a deadAfter of listening: do not claim the role before hearing
   *  whether another node holds it. */
  listening?: boolean;
}

export interface HaDecision {
  role: GatewayRole;
  reason: string;
}

/**
 * The role, pure: a node is active when its own session to the router is up and no node
 * ranked above it is alive with its session up. Two rules keep a returning better node from
 * making the role flap: it waits out the preempt hold while a lower node is active, and a
 * lower active node hands over only once the better one has been up for the hold (or says
 * it is active); a standby never claims the role while a better node is up. A node whose
 * session is down is standby: the router no longer sends it anything anyway. With no
 * heartbeat (split), each node judges alone: both may be active, and the router chooses
 * between two equal announcements (docs/gateway.md).
 */
export function decideRole(i: HaInput): HaDecision {
  if (i.uplinkUpSinceMs === undefined) return { role: 'standby', reason: 'no session to the site router' };
  const myRank = i.ranked.indexOf(i.self);
  if (myRank < 0) return { role: 'standby', reason: 'not a gateway node of this Gateway' };
  if (i.listening) return { role: 'standby', reason: 'listening for the other gateway nodes' };
  const upFor = i.nowMs - i.uplinkUpSinceMs;
  const alive = (v: PeerView | undefined): v is PeerView =>
    v !== undefined && i.nowMs - v.lastSeenMs <= i.deadAfterMs && v.eligible;
  for (const n of i.ranked.slice(0, myRank)) {
    const v = i.peers.get(n);
    if (!alive(v)) continue;
    if (i.previous === 'standby') return { role: 'standby', reason: `${n} ranks above and is up` };
    if (v.eligibleForMs >= i.preemptHoldMs || v.role === 'active')
      return { role: 'standby', reason: `${n} ranks above and is up` };
  }
  if (upFor < i.preemptHoldMs)
    for (const n of i.ranked.slice(myRank + 1)) {
      const v = i.peers.get(n);
      if (alive(v) && v.role === 'active')
        return { role: 'standby', reason: `${n} is active; waiting out the preempt hold` };
    }
  return { role: 'active', reason: myRank === 0 ? 'first-ranked and up' : 'no node ranked above is up' };
}

/**
 * The BIRD config of a node in `role`: a standby announces the same routes with its AS
 * prepended, so a router prefers the active's while both are there and uses the standby's
 * as soon as the active's session is gone (BFD), with nothing to install at failover.
 */
export function birdConfigFor(bird: BirdConfig, role: GatewayRole): BirdConfig {
  if (role === 'active') return bird;
  return { ...bird, prepend: STANDBY_PREPEND };
}

/** The desired state of a node in `role`: the dataplane is the same in both roles. */
export function desiredFor(d: GatewayDesired, role: GatewayRole): GatewayDesired {
  return { ...d, bird: birdConfigFor(d.bird, role) };
}

export interface Heartbeat {
  gateway: string;
  node: string;
  seq: number;
  eligible: boolean;
  eligibleForMs: number;
  role: GatewayRole;
}

const NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/**
 * Parses a heartbeat datagram; undefined for anything that is not exactly one (too large,
 * not JSON, missing or ill-typed fields). Never throws: this reads the LAN.
 */
export function parseHeartbeat(buf: Uint8Array): Heartbeat | undefined {
  if (buf.byteLength > MAX_HEARTBEAT_BYTES) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(buf).toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  if (o.v !== 1) return undefined;
  const { gateway, node, seq, eligible, eligibleForMs, role } = o;
  if (typeof gateway !== 'string' || !NAME.test(gateway)) return undefined;
  if (typeof node !== 'string' || !NAME.test(node)) return undefined;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) return undefined;
  if (typeof eligible !== 'boolean') return undefined;
  if (typeof eligibleForMs !== 'number' || !Number.isSafeInteger(eligibleForMs) || eligibleForMs < 0)
    return undefined;
  if (role !== 'active' && role !== 'standby') return undefined;
  return { gateway, node, seq, eligible, eligibleForMs, role };
}

export function encodeHeartbeat(h: Heartbeat): Buffer {
  return Buffer.from(JSON.stringify({ v: 1, ...h }));
}

export interface HaPeer {
  node: string;
  address: string;
}

/** The other gateway nodes and their underlay addresses (`Node.status.vtep` in the slice). */
export function haPeers(self: string, gateway: TetherObject, slice: readonly TetherObject[]): HaPeer[] {
  const nodes = (gateway.spec as unknown as GatewaySpec).nodes ?? [];
  const out: HaPeer[] = [];
  for (const n of nodes) {
    if (n === self) continue;
    const obj = slice.find((o) => o.kind === 'Node' && o.metadata.name === n);
    const vtep = (obj?.status as { vtep?: unknown } | undefined)?.vtep;
    if (typeof vtep === 'string') out.push({ node: n, address: vtep });
  }
  return out;
}

export interface HaMonitorOptions {
  node: string;
  /** The Gateway this node serves now (undefined: none, the monitor idles). */
  gateway: () => { name: string; ranked: readonly string[]; peers: readonly HaPeer[] } | undefined;
  /** Is a session to a site router up (BGP Established; with BFD a BFD failure ends it)? */
  uplinkUp: () => Promise<boolean>;
  /** Where heartbeats are received (the node's underlay address) and the port. */
  bindAddress: string;
  port?: number;
  intervalMs?: number;
  deadAfterMs?: number;
  preemptHoldMs?: number;
  onChange: (d: HaDecision) => void;
  log: Logger;
  now?: () => number;
}

/**
 * Runs the decision on this node: every interval it checks its own uplink (bounded: a BIRD
 * that does not answer counts as down), sends a heartbeat to each peer gateway node and
 * recomputes the role. Heartbeats are accepted only from a peer's known address carrying
 * that peer's name and this Gateway's name.
 */
export class HaMonitor {
  private sock: Socket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private seq = 0;
  private upSince: number | undefined;
  private readonly views = new Map<string, PeerView>();
  private current: HaDecision = { role: 'standby', reason: 'starting' };
  private ticking = false;
  private startedAt = 0;

  constructor(private readonly o: HaMonitorOptions) {}

  get decision(): HaDecision {
    return this.current;
  }

  get role(): GatewayRole {
    return this.o.gateway() ? this.current.role : 'active';
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  async start(): Promise<void> {
    const sock = createSocket({ type: 'udp4' });
    await new Promise<void>((resolve, reject) => {
      sock.once('error', (e) =>
        reject(new TetherError('TETHER_E_UNAVAILABLE', `gateway HA heartbeat socket: ${e.message}`)),
      );
      sock.bind(this.o.port ?? HA_PORT, this.o.bindAddress, () => resolve());
    });
    sock.on('error', (e) => this.o.log.warn({ err: e.message }, 'gateway HA: heartbeat socket error'));
    sock.on('message', (buf, from) => this.receive(buf, from.address));
    this.sock = sock;
    this.startedAt = this.now();
    this.timer = setInterval(() => void this.tick(), this.o.intervalMs ?? 100);
    this.timer.unref();
    await this.tick();
  }

  stop(): void {
    clearInterval(this.timer);
    this.sock?.close();
    this.sock = undefined;
  }

  private receive(buf: Buffer, from: string): void {
    // Parse first: a datagram that is not a heartbeat costs no look at the slice.
    const h = parseHeartbeat(buf);
    if (!h) return;
    const g = this.o.gateway();
    if (!g || h.gateway !== g.name) return;
    // The claim is checked against what the slice says of that node: its own address only.
    if (!g.peers.some((p) => p.node === h.node && p.address === from)) return;
    this.views.set(h.node, {
      lastSeenMs: this.now(),
      eligible: h.eligible,
      eligibleForMs: h.eligibleForMs,
      role: h.role,
    });
  }

  /** One round: uplink check, heartbeat out, decision. Exposed for tests. */
  async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      const g = this.o.gateway();
      if (!g) return;
      const interval = this.o.intervalMs ?? 100;
      const up = await Promise.race([
        this.o.uplinkUp().catch(() => false),
        new Promise<boolean>((r) => setTimeout(() => r(false), Math.max(interval * 3, 300)).unref()),
      ]);
      const now = this.now();
      if (!up) this.upSince = undefined;
      else this.upSince ??= now;
      const d = decideRole({
        self: this.o.node,
        ranked: g.ranked.length ? g.ranked : [this.o.node],
        uplinkUpSinceMs: this.upSince,
        peers: this.views,
        nowMs: now,
        deadAfterMs: this.o.deadAfterMs ?? 1000,
        preemptHoldMs: this.o.preemptHoldMs ?? 5000,
        previous: this.current.role,
        listening: g.peers.length > 0 && now - this.startedAt < (this.o.deadAfterMs ?? 1000),
      });
      const msg = encodeHeartbeat({
        gateway: g.name,
        node: this.o.node,
        seq: this.seq++,
        eligible: this.upSince !== undefined,
        eligibleForMs: this.upSince === undefined ? 0 : now - this.upSince,
        role: d.role,
      });
      for (const p of g.peers) this.sock?.send(msg, this.o.port ?? HA_PORT, p.address);
      if (d.role !== this.current.role) {
        this.o.log.info({ role: d.role, reason: d.reason }, 'gateway HA: role changed');
        this.current = d;
        this.o.onChange(d);
      } else this.current = d;
    } finally {
      this.ticking = false;
    }
  }
}
