import { createHmac, timingSafeEqual } from 'node:crypto';
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
  /** The sender's clock (ms), strictly increasing per sender: the replay check. */
  ts: number;
  eligible: boolean;
  eligibleForMs: number;
  role: GatewayRole;
}

/** One HA heartbeat key (`Gateway.status.haKeys` in the slice, decoded). */
export interface HaKey {
  generation: number;
  key: Buffer;
}

/**
 * Why a datagram on the heartbeat port was not taken (counted per reason, never thrown):
 * `malformed` not a heartbeat at all (size, header, body), `unknown-key` signed only with key
 * generations this node does not hold, `bad-mac` a held generation whose MAC does not verify
 * (wrong key, altered), `stale` its timestamp outside the replay window, `replay` not newer
 * than the last one taken from that node, `wrong-source` a name the slice does not place at
 * the sender's address, `other-gateway` another Gateway's, `no-key` this node holds no key.
 */
export type HeartbeatDrop =
  | 'malformed'
  | 'unknown-key'
  | 'bad-mac'
  | 'stale'
  | 'replay'
  | 'wrong-source'
  | 'other-gateway'
  | 'no-key';

export const HEARTBEAT_DROPS: readonly HeartbeatDrop[] = [
  'malformed',
  'unknown-key',
  'bad-mac',
  'stale',
  'replay',
  'wrong-source',
  'other-gateway',
  'no-key',
];

export interface HeartbeatCounters {
  accepted: number;
  dropped: Record<HeartbeatDrop, number>;
}

const NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const BASE64 = /^[A-Za-z0-9+/]{43}=$/;
const KEY_BYTES = 32;
const MAX_KEYS = 2;

/**
 * The heartbeat keys of a Gateway as the slice carries them (`status.haKeys`, current first):
 * at most two, each a u32 generation and 32 bytes of base64; anything else is left out.
 */
export function haKeysOf(gateway: TetherObject): HaKey[] {
  const raw = (gateway.status as { haKeys?: unknown } | undefined)?.haKeys;
  if (!Array.isArray(raw)) return [];
  const out: HaKey[] = [];
  for (const k of raw.slice(0, MAX_KEYS)) {
    if (typeof k !== 'object' || k === null) continue;
    const { generation, secret } = k as { generation?: unknown; secret?: unknown };
    if (typeof generation !== 'number' || !Number.isSafeInteger(generation)) continue;
    if (generation < 0 || generation > 0xffffffff) continue;
    if (typeof secret !== 'string' || !BASE64.test(secret)) continue;
    if (out.some((o) => o.generation === generation)) continue;
    const key = Buffer.from(secret, 'base64');
    if (key.byteLength === KEY_BYTES) out.push({ generation, key });
  }
  return out;
}

/*
 * Wire format (version 2; version 1 was unsigned JSON and is refused):
 *   0  'T' 'H'            magic
 *   2  0x02               version
 *   3  n                  MACs that follow, 1 or 2
 *   4  n × (generation u32 BE, HMAC-SHA256 32 bytes)
 *   …  body: UTF-8 JSON {gateway, node, seq, ts, eligible, eligibleForMs, role}
 * Each MAC is HMAC-SHA256(key of that generation, DOMAIN ‖ body). A sender signs with every
 * key it holds (current and previous), so during a rotation a node that has the new slice
 * and one that has not yet still hear each other.
 */
const MAGIC0 = 0x54;
const MAGIC1 = 0x48;
const VERSION = 2;
const MAC_BYTES = 32;
const DOMAIN = Buffer.from('tether gateway-ha heartbeat v2\0');

const mac = (key: Buffer, body: Buffer): Buffer =>
  createHmac('sha256', key).update(DOMAIN).update(body).digest();

/** The datagram of `h` signed with `keys` (current first; at most two are used). */
export function encodeHeartbeat(h: Heartbeat, keys: readonly HaKey[]): Buffer {
  const ks = keys.slice(0, MAX_KEYS);
  if (!ks.length) throw new TetherError('TETHER_E_INTERNAL', 'gateway HA: a heartbeat needs a key');
  const body = Buffer.from(JSON.stringify(h));
  const head = Buffer.alloc(4 + ks.length * (4 + MAC_BYTES));
  head[0] = MAGIC0;
  head[1] = MAGIC1;
  head[2] = VERSION;
  head[3] = ks.length;
  ks.forEach((k, i) => {
    const at = 4 + i * (4 + MAC_BYTES);
    head.writeUInt32BE(k.generation, at);
    mac(k.key, body).copy(head, at + 4);
  });
  return Buffer.concat([head, body]);
}

export type OpenedHeartbeat = { ok: true; heartbeat: Heartbeat } | { ok: false; drop: HeartbeatDrop };

/**
 * Authenticates and parses a datagram: the MAC is checked (constant time) before the body is
 * parsed, so unauthenticated bytes never reach JSON.parse. Never throws: this reads the LAN.
 */
export function openHeartbeat(buf: Uint8Array, keys: readonly HaKey[]): OpenedHeartbeat {
  if (buf.byteLength > MAX_HEARTBEAT_BYTES || buf.byteLength < 4) return { ok: false, drop: 'malformed' };
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b[0] !== MAGIC0 || b[1] !== MAGIC1 || b[2] !== VERSION) return { ok: false, drop: 'malformed' };
  const n = b[3]!;
  const bodyAt = 4 + n * (4 + MAC_BYTES);
  if (n < 1 || n > MAX_KEYS || b.byteLength <= bodyAt) return { ok: false, drop: 'malformed' };
  if (!keys.length) return { ok: false, drop: 'no-key' };
  const body = b.subarray(bodyAt);
  let held = false;
  let verified = false;
  for (let i = 0; i < n && !verified; i++) {
    const at = 4 + i * (4 + MAC_BYTES);
    const k = keys.find((x) => x.generation === b.readUInt32BE(at));
    if (!k) continue;
    held = true;
    verified = timingSafeEqual(mac(k.key, body), b.subarray(at + 4, at + 4 + MAC_BYTES));
  }
  if (!verified) return { ok: false, drop: held ? 'bad-mac' : 'unknown-key' };
  const h = parseHeartbeatBody(body);
  // Signed by a key holder yet not a heartbeat: a bug of that node, counted as malformed.
  return h ? { ok: true, heartbeat: h } : { ok: false, drop: 'malformed' };
}

/**
 * The body of a heartbeat; undefined for anything that is not exactly one (not JSON,
 * missing or ill-typed fields). Never throws.
 */
export function parseHeartbeatBody(buf: Uint8Array): Heartbeat | undefined {
  if (buf.byteLength > MAX_HEARTBEAT_BYTES) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(buf).toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  const { gateway, node, seq, ts, eligible, eligibleForMs, role } = o;
  if (typeof gateway !== 'string' || !NAME.test(gateway)) return undefined;
  if (typeof node !== 'string' || !NAME.test(node)) return undefined;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) return undefined;
  if (typeof ts !== 'number' || !Number.isSafeInteger(ts) || ts < 0) return undefined;
  if (typeof eligible !== 'boolean') return undefined;
  if (typeof eligibleForMs !== 'number' || !Number.isSafeInteger(eligibleForMs) || eligibleForMs < 0)
    return undefined;
  if (role !== 'active' && role !== 'standby') return undefined;
  return { gateway, node, seq, ts, eligible, eligibleForMs, role };
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

/** What the monitor needs of the node's Gateway (ha-role.ts builds it from the slice). */
export interface HaGatewayView {
  name: string;
  ranked: readonly string[];
  peers: readonly HaPeer[];
  /** Heartbeat keys, current first. None: no heartbeat is sent or taken, the node judges
   *  alone as in a split (a slice from a controller that distributes no keys). */
  keys: readonly HaKey[];
  /** Some peer of the Gateway runs BFD: the session can end within a BFD detection time, so
   *  the uplink is read every round; without BFD only BGP's hold timer (≥ 3 s) ends it. */
  bfd: boolean;
}

export interface HaMonitorOptions {
  node: string;
  /** The Gateway this node serves now (undefined: none, the monitor idles). */
  gateway: () => HaGatewayView | undefined;
  /** Is a session to a site router up (BGP Established; with BFD a BFD failure ends it)? */
  uplinkUp: () => Promise<boolean>;
  /** Where heartbeats are received (the node's underlay address) and the port. */
  bindAddress: string;
  port?: number;
  intervalMs?: number;
  /** How often the uplink is read when no peer runs BFD (default 1 s: a third of the
   *  shortest BGP hold time); with BFD it is read every `intervalMs`. */
  slowUplinkMs?: number;
  deadAfterMs?: number;
  preemptHoldMs?: number;
  /** A heartbeat whose timestamp is further than this from the local clock is dropped as
   *  stale (default 30 s: the site's nodes' clocks may drift apart while headless). */
  replayWindowMs?: number;
  onChange: (d: HaDecision) => void;
  log: Logger;
  now?: () => number;
}

/** Per peer: the newest heartbeat timestamp taken, and when (local clock). */
interface ReplayMark {
  ts: number;
  atMs: number;
}

/**
 * Runs the decision on this node: every interval it checks its own uplink (bounded: a BIRD
 * that does not answer counts as down; without BFD at most once a second), sends a signed
 * heartbeat to each peer gateway node and recomputes the role. A heartbeat is taken only
 * when its MAC verifies with a key of this Gateway, its timestamp is inside the replay
 * window and newer than the last one of that node, and it comes from that node's known
 * address carrying that node's name and this Gateway's name. Everything else is counted.
 */
export class HaMonitor {
  private sock: Socket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private seq = 0;
  private lastTs = 0;
  private upSince: number | undefined;
  private lastUplink: { atMs: number; up: boolean } | undefined;
  private uplinkReads = 0;
  private readonly views = new Map<string, PeerView>();
  private readonly marks = new Map<string, ReplayMark>();
  private current: HaDecision = { role: 'standby', reason: 'starting' };
  private ticking = false;
  private startedAt = 0;
  private readonly counters: HeartbeatCounters = {
    accepted: 0,
    dropped: Object.fromEntries(HEARTBEAT_DROPS.map((d) => [d, 0])) as Record<HeartbeatDrop, number>,
  };
  private readonly warnedAt = new Map<HeartbeatDrop, number>();

  constructor(private readonly o: HaMonitorOptions) {}

  get decision(): HaDecision {
    return this.current;
  }

  get role(): GatewayRole {
    return this.o.gateway() ? this.current.role : 'active';
  }

  /** Heartbeats taken and dropped (per reason) since start: node status and metrics. */
  get heartbeats(): HeartbeatCounters {
    return { accepted: this.counters.accepted, dropped: { ...this.counters.dropped } };
  }

  /** How many times the uplink was read (the bench compares polling policies with it). */
  get uplinkChecks(): number {
    return this.uplinkReads;
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

  private drop(reason: HeartbeatDrop, from: string): void {
    this.counters.dropped[reason]++;
    // One line per reason a minute: a flood of forged datagrams must not flood the log.
    const now = this.now();
    const last = this.warnedAt.get(reason);
    if (last !== undefined && now - last < 60_000) return;
    this.warnedAt.set(reason, now);
    this.o.log.warn(
      { reason, from, dropped: this.counters.dropped[reason] },
      'gateway HA: heartbeat dropped',
    );
  }

  /** One datagram off the LAN. Exposed for tests. */
  receive(buf: Buffer, from: string): void {
    const g = this.o.gateway();
    if (!g) return;
    const now = this.now();
    const r = this.judge(g, buf, from, now);
    if (typeof r === 'string') {
      this.drop(r, from);
      return;
    }
    this.marks.set(r.node, { ts: r.ts, atMs: now });
    this.counters.accepted++;
    this.views.set(r.node, {
      lastSeenMs: now,
      eligible: r.eligible,
      eligibleForMs: r.eligibleForMs,
      role: r.role,
    });
  }

  /** The heartbeat a datagram carries, or why it is not taken. */
  private judge(g: HaGatewayView, buf: Buffer, from: string, now: number): Heartbeat | HeartbeatDrop {
    // The MAC first: an unauthenticated datagram costs one HMAC, never a JSON parse.
    const r = openHeartbeat(buf, g.keys);
    if (!r.ok) return r.drop;
    const h = r.heartbeat;
    if (h.gateway !== g.name) return 'other-gateway';
    // The claim is checked against what the slice says of that node: its own address only.
    if (!g.peers.some((p) => p.node === h.node && p.address === from)) return 'wrong-source';
    const window = this.o.replayWindowMs ?? 30_000;
    if (Math.abs(h.ts - now) > window) return 'stale';
    // A node silent for two windows is forgotten, so one whose clock stepped back is heard
    // again: by then anything recorded from it is outside the window and dropped as stale.
    const mark = this.marks.get(h.node);
    if (mark && now - mark.atMs <= 2 * window && h.ts <= mark.ts) return 'replay';
    return h;
  }

  /** The uplink: read now with BFD or when the last read is a slow interval old. */
  private async uplink(g: HaGatewayView, interval: number): Promise<boolean> {
    const now = this.now();
    const slow = Math.max(interval, this.o.slowUplinkMs ?? 1000);
    if (!g.bfd && this.lastUplink && now - this.lastUplink.atMs < slow) return this.lastUplink.up;
    this.uplinkReads++;
    let timer: NodeJS.Timeout | undefined;
    const up = await Promise.race([
      this.o.uplinkUp().catch(() => false),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), Math.max(interval * 3, 300));
      }),
    ]);
    clearTimeout(timer);
    this.lastUplink = { atMs: this.now(), up };
    return up;
  }

  /** One round: uplink check, heartbeat out, decision. Exposed for tests. */
  async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      const g = this.o.gateway();
      if (!g) return;
      const interval = this.o.intervalMs ?? 100;
      const up = await this.uplink(g, interval);
      const now = this.now();
      if (!up) this.upSince = undefined;
      else this.upSince ??= now;
      const keyed = g.keys.length > 0;
      const d = decideRole({
        self: this.o.node,
        ranked: g.ranked.length ? g.ranked : [this.o.node],
        uplinkUpSinceMs: this.upSince,
        // Without keys nothing is heard: what was heard under a previous slice is not used.
        peers: keyed ? this.views : new Map(),
        nowMs: now,
        deadAfterMs: this.o.deadAfterMs ?? 1000,
        preemptHoldMs: this.o.preemptHoldMs ?? 5000,
        previous: this.current.role,
        listening: keyed && g.peers.length > 0 && now - this.startedAt < (this.o.deadAfterMs ?? 1000),
      });
      if (!keyed) d.reason = `${d.reason} (no HA key in the slice: heartbeats off, judging alone)`;
      if (keyed && this.sock) {
        this.lastTs = Math.max(now, this.lastTs + 1);
        const msg = encodeHeartbeat(
          {
            gateway: g.name,
            node: this.o.node,
            seq: this.seq++,
            ts: this.lastTs,
            eligible: this.upSince !== undefined,
            eligibleForMs: this.upSince === undefined ? 0 : now - this.upSince,
            role: d.role,
          },
          g.keys,
        );
        for (const p of g.peers) this.sock.send(msg, this.o.port ?? HA_PORT, p.address);
      }
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
