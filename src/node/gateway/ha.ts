import { createHash, createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
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
/**
 * A gateway node that counts: heard within the dead interval and with its session to the
 * router up. The one liveness rule of the role decision and of `activeGateway`.
 */
export function peerAlive(v: PeerView | undefined, nowMs: number, deadAfterMs: number): v is PeerView {
  return v !== undefined && nowMs - v.lastSeenMs <= deadAfterMs && v.eligible;
}

export function decideRole(i: HaInput): HaDecision {
  if (i.uplinkUpSinceMs === undefined) return { role: 'standby', reason: 'no session to the site router' };
  const myRank = i.ranked.indexOf(i.self);
  if (myRank < 0) return { role: 'standby', reason: 'not a gateway node of this Gateway' };
  if (i.listening) return { role: 'standby', reason: 'listening for the other gateway nodes' };
  const upFor = i.nowMs - i.uplinkUpSinceMs;
  const alive = (v: PeerView | undefined): v is PeerView => peerAlive(v, i.nowMs, i.deadAfterMs);
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
 * Which gateway node is active, as a node that is not deciding (the endpoint's node of a
 * floating IP, docs/gateway.md) sees it from the heartbeats: the best-ranked node that is
 * alive (`peerAlive`, the decision's own rule) and says it is active. The gateways' own
 * rule (`decideRole`) is what made that node say so; following its word rather than
 * re-deciding keeps an observer in step with the router, which prefers the node that
 * announces without the standby's prepend (during a preempt hold the better node is alive
 * and up but still standby). In a split both say active and the best-ranked is taken.
 * Undefined when no live node says it is active (nothing heard yet): the caller falls back.
 */
export function activeGateway(i: {
  ranked: readonly string[];
  peers: ReadonlyMap<string, PeerView>;
  nowMs: number;
  deadAfterMs: number;
}): string | undefined {
  return i.ranked.find((n) => {
    const v = i.peers.get(n);
    return peerAlive(v, i.nowMs, i.deadAfterMs) && v.role === 'active';
  });
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

/**
 * One public key a gateway node signs its heartbeats with: the SPKI of its node certificate
 * (ECDSA P-256), as its site-roster summary in the slice carries it (`Node.status.publicKey`).
 */
export interface HaPublicKey {
  /** First 8 bytes of SHA-256 of the SPKI DER: which key a signature claims to be from. */
  keyId: Buffer;
  key: KeyObject;
}

/** This node's own private key (the key of its node certificate) with its key id. */
export interface HaSigner {
  keyId: Buffer;
  key: KeyObject;
}

/**
 * Why a datagram on the heartbeat port was not taken (counted per reason, never thrown):
 * `malformed` not a heartbeat at all (size, header, body), `unknown-key` signed only with
 * keys that are not those of a node this Gateway lists (a node not listed, or a listed node
 * whose renewed key the slice does not carry yet), `bad-signature` a listed node's key id
 * whose signature does not verify (forged, altered), `wrong-signer` a body naming another
 * node than the one whose key signed it, `stale` its timestamp outside the replay window,
 * `replay` not newer than the last one taken from that node, `wrong-source` not from the
 * address the slice gives that node, `other-gateway` another Gateway's, `no-key` the slice
 * carries no key of any other node of this Gateway.
 */
export type HeartbeatDrop =
  | 'malformed'
  | 'unknown-key'
  | 'bad-signature'
  | 'wrong-signer'
  | 'stale'
  | 'replay'
  | 'wrong-source'
  | 'other-gateway'
  | 'no-key';

export const HEARTBEAT_DROPS: readonly HeartbeatDrop[] = [
  'malformed',
  'unknown-key',
  'bad-signature',
  'wrong-signer',
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
/** A P-256 SPKI is 91 bytes DER (124 base64 characters); room for nothing else. */
const MAX_SPKI_B64 = 128;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const KEY_ID_BYTES = 8;
const SIG_BYTES = 64;
/** Signatures per heartbeat: the current key, and the previous one right after a renewal. */
const MAX_SIGS = 2;

/** The key id of an SPKI (DER). */
export function keyIdOf(spkiDer: Uint8Array): Buffer {
  return createHash('sha256').update(spkiDer).digest().subarray(0, KEY_ID_BYTES);
}

const isP256 = (k: KeyObject): boolean =>
  k.asymmetricKeyType === 'ec' && k.asymmetricKeyDetails?.namedCurve === 'prime256v1';

/**
 * The public key a Node summary carries (`status.publicKey`, base64 SPKI DER); undefined for
 * anything that is not exactly a P-256 public key. Never throws: the slice may come through
 * a site proxy.
 */
export function haPublicKeyOf(node: TetherObject | undefined): HaPublicKey | undefined {
  const raw = (node?.status as { publicKey?: unknown } | undefined)?.publicKey;
  if (typeof raw !== 'string' || raw.length > MAX_SPKI_B64 || !BASE64.test(raw)) return undefined;
  const der = Buffer.from(raw, 'base64');
  try {
    const key = createPublicKey({ key: der, format: 'der', type: 'spki' });
    return isP256(key) ? { keyId: keyIdOf(der), key } : undefined;
  } catch {
    return undefined;
  }
}

/** The signer of a private key (PEM, the node's credentials); throws TETHER_E_STATE. */
export function haSignerOf(keyPem: string): HaSigner {
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (e) {
    throw new TetherError('TETHER_E_STATE', `gateway HA: node key unreadable: ${(e as Error).message}`);
  }
  if (!isP256(key)) throw new TetherError('TETHER_E_STATE', 'gateway HA: the node key is not ECDSA P-256');
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  return { keyId: keyIdOf(spki), key };
}

/*
 * Wire format (version 3; version 2 carried HMACs of a site-wide key, version 1 was unsigned
 * JSON; both are refused):
 *   0  'T' 'H'            magic
 *   2  0x03               version
 *   3  n                  signatures that follow, 1 or 2
 *   4  n × (key id 8 bytes, ECDSA P-256 / SHA-256 signature 64 bytes, IEEE P1363 r‖s)
 *   …  body: UTF-8 JSON {gateway, node, seq, ts, eligible, eligibleForMs, role}
 * Each signature is over DOMAIN ‖ body with the sending node's own key. A node signs with its
 * current key and, for a while after its certificate was renewed, its previous one too, so a
 * receiver whose slice does not carry the new key yet still hears it.
 */
const MAGIC0 = 0x54;
const MAGIC1 = 0x48;
const VERSION = 3;
const SIG_ENTRY = KEY_ID_BYTES + SIG_BYTES;
const DOMAIN = Buffer.from('tether gateway-ha heartbeat v3\0');

const signed = (body: Buffer): Buffer => Buffer.concat([DOMAIN, body]);

/** The datagram of `h` signed with `signers` (current first; at most two are used). */
export function encodeHeartbeat(h: Heartbeat, signers: readonly HaSigner[]): Buffer {
  const ss = signers.slice(0, MAX_SIGS);
  if (!ss.length) throw new TetherError('TETHER_E_INTERNAL', 'gateway HA: a heartbeat needs a key');
  const body = Buffer.from(JSON.stringify(h));
  const msg = signed(body);
  const head = Buffer.alloc(4 + ss.length * SIG_ENTRY);
  head[0] = MAGIC0;
  head[1] = MAGIC1;
  head[2] = VERSION;
  head[3] = ss.length;
  ss.forEach((s, i) => {
    const at = 4 + i * SIG_ENTRY;
    s.keyId.copy(head, at);
    sign('sha256', msg, { key: s.key, dsaEncoding: 'ieee-p1363' }).copy(head, at + KEY_ID_BYTES);
  });
  return Buffer.concat([head, body]);
}

/** The keys a receiver verifies with: those of the other nodes its Gateway lists. */
export interface HaVerifyKey extends HaPublicKey {
  node: string;
}

export type OpenedHeartbeat =
  | { ok: true; heartbeat: Heartbeat; signer: string }
  | { ok: false; drop: HeartbeatDrop };

/**
 * Authenticates and parses a datagram: a signature must verify with the key of a node the
 * Gateway lists before the body is parsed, so bytes signed by nobody listed never reach
 * JSON.parse, and the body must name the node whose key signed it. Never throws: this reads
 * the LAN.
 */
export function openHeartbeat(buf: Uint8Array, keys: readonly HaVerifyKey[]): OpenedHeartbeat {
  if (buf.byteLength > MAX_HEARTBEAT_BYTES || buf.byteLength < 4) return { ok: false, drop: 'malformed' };
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b[0] !== MAGIC0 || b[1] !== MAGIC1 || b[2] !== VERSION) return { ok: false, drop: 'malformed' };
  const n = b[3]!;
  const bodyAt = 4 + n * SIG_ENTRY;
  if (n < 1 || n > MAX_SIGS || b.byteLength <= bodyAt) return { ok: false, drop: 'malformed' };
  if (!keys.length) return { ok: false, drop: 'no-key' };
  const body = b.subarray(bodyAt);
  let msg: Buffer | undefined;
  let known = false;
  let signer: string | undefined;
  for (let i = 0; i < n && signer === undefined; i++) {
    const at = 4 + i * SIG_ENTRY;
    const id = b.subarray(at, at + KEY_ID_BYTES);
    const sig = b.subarray(at + KEY_ID_BYTES, at + SIG_ENTRY);
    for (const k of keys) {
      if (!k.keyId.equals(id)) continue;
      known = true;
      msg ??= signed(body);
      let ok = false;
      try {
        ok = verify('sha256', msg, { key: k.key, dsaEncoding: 'ieee-p1363' }, sig);
      } catch {
        // A signature that is not even a P1363 pair: the same as one that does not verify.
        ok = false;
      }
      if (ok) {
        signer = k.node;
        break;
      }
    }
  }
  if (signer === undefined) return { ok: false, drop: known ? 'bad-signature' : 'unknown-key' };
  const h = parseHeartbeatBody(body);
  // Signed by a listed node yet not a heartbeat: a bug of that node, counted as malformed.
  if (!h) return { ok: false, drop: 'malformed' };
  // A listed node may speak only for itself.
  if (h.node !== signer) return { ok: false, drop: 'wrong-signer' };
  return { ok: true, heartbeat: h, signer };
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

/**
 * The other gateway nodes, their underlay addresses (`Node.status.vtep` in the slice) and
 * the keys they sign heartbeats with (`Node.status.publicKey`). Only nodes the Gateway lists:
 * any other node of the site holds a valid key of its own, which must not count here.
 */
export function haPeers(
  self: string,
  gateway: TetherObject,
  slice: readonly TetherObject[],
): { peers: HaPeer[]; keys: HaVerifyKey[] } {
  const nodes = (gateway.spec as unknown as GatewaySpec).nodes ?? [];
  const peers: HaPeer[] = [];
  const keys: HaVerifyKey[] = [];
  for (const n of nodes) {
    if (n === self) continue;
    const obj = slice.find((o) => o.kind === 'Node' && o.metadata.name === n);
    const vtep = (obj?.status as { vtep?: unknown } | undefined)?.vtep;
    if (typeof vtep === 'string') peers.push({ node: n, address: vtep });
    const k = haPublicKeyOf(obj);
    if (k) keys.push({ ...k, node: n });
  }
  return { peers, keys };
}

/** What the monitor needs of the node's Gateway (ha-role.ts builds it from the slice). */
export interface HaGatewayView {
  name: string;
  ranked: readonly string[];
  peers: readonly HaPeer[];
  /** The listed peers' public keys. None: no heartbeat is taken, the node judges alone as
   *  in a split (a slice from a controller that puts no keys in the roster). */
  keys: readonly HaVerifyKey[];
  /** Some peer of the Gateway runs BFD: the session can end within a BFD detection time, so
   *  the uplink is read every round; without BFD only BGP's hold timer (≥ 3 s) ends it. */
  bfd: boolean;
  /** Nodes that are sent this node's heartbeats but send none back: the endpoint nodes of
   *  this Gateway's floating IPs, which follow the active gateway for their workloads' own
   *  outbound flows (docs/gateway.md "Floating IPs on another node"). */
  followers?: readonly HaPeer[];
  /** This node is not listed: it only listens (to `peers`, all the listed nodes), to know
   *  which one is active. It decides nothing and sends nothing. */
  observer?: boolean;
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
  /** This node's own signing keys, current first (its node certificate's key; after a
   *  renewal the previous one too, for a while). Read every round: a renewal applies. */
  signers: () => readonly HaSigner[];
  onChange: (d: HaDecision) => void;
  /** The active gateway as `activeGateway` sees it changed (checked every round, also on an
   *  observer): the endpoint's node re-plans its floating IP workloads' outbound mark. */
  onActiveChange?: (active: string | undefined) => void;
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
 * when it is signed with the key of another node this Gateway lists and names that node,
 * its timestamp is inside the replay window and newer than the last one of that node, and
 * it comes from that node's known address carrying this Gateway's name. Everything else is
 * counted.
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
  private lastActive: string | undefined;
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
    const g = this.o.gateway();
    return g && !g.observer ? this.current.role : 'active';
  }

  /**
   * The active gateway node of this node's Gateway as heard now (`activeGateway`): the
   * peers' heartbeats and, on a gateway node, its own decision. Undefined: nothing heard
   * (or no Gateway with HA), the caller's fallback applies.
   */
  active(): string | undefined {
    const g = this.o.gateway();
    if (!g) return undefined;
    const now = this.now();
    const deadAfterMs = this.o.deadAfterMs ?? 1000;
    let peers: ReadonlyMap<string, PeerView> = g.keys.length ? this.views : new Map();
    if (!g.observer) {
      const self: PeerView = {
        lastSeenMs: now,
        eligible: this.upSince !== undefined,
        eligibleForMs: this.upSince === undefined ? 0 : now - this.upSince,
        role: this.current.role,
      };
      peers = new Map([...peers, [this.o.node, self]]);
    }
    return activeGateway({ ranked: g.ranked, peers, nowMs: now, deadAfterMs });
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
    // A role heard changing moves the endpoint's node's outbound mark now, not a round later.
    this.checkActive();
  }

  /** The heartbeat a datagram carries, or why it is not taken. */
  private judge(g: HaGatewayView, buf: Buffer, from: string, now: number): Heartbeat | HeartbeatDrop {
    // The signature first: a datagram no listed node signed costs at most two ECDSA
    // verifications (none when no key id matches), never a JSON parse.
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
      if (g.observer) return;
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
        // Without peer keys nothing is heard: what was heard under a previous slice is not used.
        peers: keyed ? this.views : new Map(),
        nowMs: now,
        deadAfterMs: this.o.deadAfterMs ?? 1000,
        preemptHoldMs: this.o.preemptHoldMs ?? 5000,
        previous: this.current.role,
        listening: keyed && g.peers.length > 0 && now - this.startedAt < (this.o.deadAfterMs ?? 1000),
      });
      if (!keyed) d.reason = `${d.reason} (no peer HA key in the slice: judging alone)`;
      const signers = this.o.signers();
      if (signers.length && this.sock) {
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
          signers,
        );
        for (const p of [...g.peers, ...(g.followers ?? [])])
          this.sock.send(msg, this.o.port ?? HA_PORT, p.address);
      }
      if (d.role !== this.current.role) {
        this.o.log.info({ role: d.role, reason: d.reason }, 'gateway HA: role changed');
        this.current = d;
        this.o.onChange(d);
      } else this.current = d;
    } finally {
      this.ticking = false;
      this.checkActive();
    }
  }

  /** Tells the caller when the active gateway it would see moved (a peer's role changed or
   *  it fell silent): once per change, not every round. */
  private checkActive(): void {
    if (!this.o.onActiveChange) return;
    const a = this.active();
    if (a === this.lastActive) return;
    this.lastActive = a;
    this.o.onActiveChange(a);
  }
}
