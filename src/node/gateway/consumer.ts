import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FloatingIPSpec, GatewaySpec } from '../../api/gateway-kinds.js';
import type { GatewayReport } from '../../api/gen/tether/v1/GatewayReport.js';
import type { TetherObject } from '../../api/resource.js';
import type { BgpPeerState } from '../../bgp/birdc.js';
import { BirdDaemon, type BirdStatus } from '../../bgp/daemon.js';
import { peerProtocol, renderBirdConfig } from '../../bgp/render.js';
import type { Kernel, KernelOp, NetnsRef, NftTable, NsState, ObservedRoute } from '../../kernel/types.js';
import { writeFileAtomic } from '../../lib/atomic.js';
import { asTetherError, TetherError } from '../../lib/errors.js';
import { parseJson } from '../../lib/input.js';
import type { Logger } from '../../lib/log.js';
import type { ApplyOutcome, StateConsumer } from '../agent/reconcile.js';
import type { DurableState } from '../agent/session.js';
import type { DesiredNodeNetwork } from '../vrouter/model.js';
import { names } from '../vrouter/model.js';
import { desiredFor, type GatewayRole, type HeartbeatCounters } from './ha.js';
import {
  desiredGateway,
  FIP_SYSCTLS,
  FIP_TABLE,
  type FipBinding,
  type FipReturn,
  fipBridgeTable,
  fipMacFor,
  fipReturnRouting,
  fipRoutes,
  fipSysctls,
  fipTable,
  type GatewayDesired,
  isFipRule,
  isFipTable,
} from './model.js';

/**
 * The local gateway as a reconcile consumer of `tether node run`: from the node's slice
 * (its site's Gateway, the FloatingIPs naming it) to BIRD's configuration and the floating
 * IP dataplane. Desired state is computed by pure functions (model.ts, `planFip`), planned
 * against what the kernel holds (read back every pass), applied; BIRD is given a new config
 * only when the rendered text changed (BirdDaemon: `configure check`, then `configure`).
 */

export type { GatewayRole } from './ha.js';

export interface GatewayPeerStatus {
  address: string;
  asn: number;
  /** BIRD's protocol state (`up`, `start`, `down`) and the BGP state (`Established`, …). */
  state: string;
  bgpState: string;
  since: string;
  /** Prefixes received (imported) and sent (exported) on the session. */
  imported: number;
  exported: number;
  lastError?: string;
}

/** What this node's gateway reports: node status (`tether status`) and the controller. */
export interface GatewayNodeStatus {
  gateway: string;
  role: GatewayRole;
  /** Why this role (the HA decision's reason; absent without HA). */
  roleReason?: string;
  /** HA heartbeats taken and dropped by reason (absent without HA; docs/gateway.md). */
  heartbeats?: HeartbeatCounters;
  running: boolean;
  configHash?: string;
  restarts: number;
  /** Why the last apply failed (BIRD refused, not installed, kernel refused); the previous
   *  working config keeps running. */
  error?: string;
  peers: Record<string, GatewayPeerStatus>;
  /** Prefixes this node asks BIRD to announce. */
  announced: number;
  bound: Array<{
    name: string;
    address: string;
    network: string;
    endpoint: string;
    ip: string;
    /** The node hosting the endpoint (this one, or another reached over VXLAN). */
    endpointNode: string;
  }>;
  /** Networks where this node is the endpoint's node of another gateway's floating IPs. */
  returnPaths?: Array<{ network: string; gateways: string[]; workloads: string[] }>;
  unbound: Array<{ name: string; reason: string }>;
  updatedAt: string;
}

export interface GatewayConsumerOptions {
  node: string;
  site: string;
  /** The node's underlay address: BIRD's router id unless the Gateway names one. */
  vtep?: string;
  /** Where BIRD's config and socket live (`<state-dir>/gateway`). */
  stateDir: string;
  kernel: Kernel;
  log: Logger;
  /** The bird binary (default `bird` on PATH). */
  birdBin?: string;
  /** The node namespace (BIRD runs there, floating IP routes go there); tests set it. */
  nodeNetns?: string;
  /** The vRouter's plan of the current pass (networks, VNIs, breakout transit, local
   *  endpoints); undefined with --no-vrouter, then no floating IP can be bound here. */
  network?: () => DesiredNodeNetwork | undefined;
  /** The node's own endpoints (from its CNI registry), which floating IPs may target. */
  localEndpoints?: () => readonly TetherObject[];
  /** The floating IP return paths of the vRouter's plan of this pass (NodeNetworking
   *  computes them with `fipReturnFor` and adds the gateways' next hops to its networks). */
  fipReturns?: () => readonly FipReturn[];
  /**
   * The HA decision input (src/node/gateway/ha.ts builds it): a standby node keeps its BGP
   * sessions and its floating IP dataplane, and announces everything with its AS prepended.
   * Read on every pass; whoever changes it kicks the reconcile loop (`agent.refresh()`).
   */
  role?: () => GatewayRole;
  /** The gateway node this node hears is active (GatewayHa.active(): the HA heartbeats of
   *  the Gateway's nodes, also on the endpoint's node of their floating IPs). Read on every
   *  pass; a change kicks the reconcile loop. Absent or undefined: the first-ranked. */
  activeGateway?: () => string | undefined;
  /** The HA decision's reason, for status. */
  roleReason?: () => string | undefined;
  /** The HA monitor's heartbeat counters, for the status (undefined without HA). */
  heartbeats?: () => HeartbeatCounters | undefined;
  /** BIRD restart backoff (tests shorten it). */
  birdBackoff?: { baseMs: number; capMs: number };
  now?: () => number;
  /** How often BIRD's session state is read back (default 5 s), and where it goes. */
  statusIntervalMs?: number;
  onStatus?: (s: GatewayNodeStatus | undefined) => void;
}

/** The report a node sends upstream (NodeMessage.gateway) from its status. */
export function toReport(s: GatewayNodeStatus): GatewayReport {
  return {
    gateway: s.gateway,
    role: s.role,
    running: s.running,
    config_hash: s.configHash ?? '',
    error: s.error ?? '',
    peers: Object.entries(s.peers).map(([name, p]) => ({
      name,
      state: p.state,
      bgp_state: p.bgpState,
      imported: p.imported,
      exported: p.exported,
      since: p.since,
      last_error: p.lastError ?? '',
    })),
    bound: s.bound.map((b) => `${b.name}=${b.address}>${b.ip}@${b.endpointNode}`),
    announced: s.announced,
  };
}

/** The Gateway this node serves: its site's, with the node listed (or no list). */
export function gatewayFor(
  node: string,
  site: string,
  slice: readonly TetherObject[],
): TetherObject | undefined {
  return slice
    .filter((o) => o.kind === 'Gateway')
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))
    .find((g) => {
      const s = g.spec as unknown as GatewaySpec;
      return s.site === site && (!s.nodes || s.nodes.includes(node));
    });
}

/** The site's endpoints a floating IP may target: this node's own (its CNI registry, the
 *  freshest) and the others' from the slice. */
export function siteEndpoints(
  slice: readonly TetherObject[],
  local: readonly TetherObject[],
): TetherObject[] {
  const mine = new Set(local.map((e) => e.metadata.name));
  return [...local, ...slice.filter((o) => o.kind === 'Endpoint' && !mine.has(o.metadata.name))];
}

const fp = (t: Omit<NftTable, 'fingerprint'>): string =>
  createHash('sha256').update(JSON.stringify(t)).digest('hex').slice(0, 16);

export interface FipPlanInput {
  bindings: readonly FipBinding[];
  network: DesiredNodeNetwork | undefined;
  nodeNetns: NetnsRef;
  /** This node's name and VTEP (its MAC for bindings whose endpoint is elsewhere). */
  node?: string;
  vtep?: string;
  /** Return paths this node serves as an endpoint's node (`fipReturnFor`). */
  returns?: readonly FipReturn[];
  /** The gateway node believed active (the HA heartbeats this node hears): the return
   *  paths' workloads' own new outbound flows take its mark; absent, the first-ranked's. */
  active?: string | undefined;
  /** Read-back of each network namespace (the tether_fip tables, fwmark rules and the
   *  routes of numbered tables, the redirect sysctls), by VNI. */
  vnState: ReadonlyMap<number, NsState | undefined>;
  /** Tether-protocol routes of the node namespace. */
  nodeRoutes: readonly ObservedRoute[];
  /** Floating IP routes this consumer installed before (its record on disk). */
  owned: readonly string[];
}

export interface FipPlan {
  /** Per network namespace: nft ops (one transaction each). */
  nft: Array<{ netns: string; ops: KernelOp[] }>;
  /** Per network namespace: policy routing ops (one ip batch each) and sysctls. */
  vnIp: Array<{ netns: string; ops: KernelOp[] }>;
  vnSysctl: Array<{ netns: string; ops: KernelOp[] }>;
  /** Node namespace route ops (one ip batch). */
  routes: KernelOp[];
  /** /32s and `nft:<netns>` tables that exist after this plan (the new record). */
  owned: string[];
}

/**
 * Plans the floating IP dataplane against the kernel's read-back: in each network namespace
 * the `ip` and `bridge` `tether_fip` tables (replaced when a fingerprint differs, deleted when
 * not wanted), the return path's fwmark rules and tables; a /32 per floating IP in the node
 * namespace. Routes this consumer once installed and no longer wants are deleted, and
 * nobody else's (rules and tables by their reserved numbers, in Tether's namespaces). Pure.
 */
export function planFip(i: FipPlanInput): FipPlan {
  const nft: FipPlan['nft'] = [];
  const vnIp: FipPlan['vnIp'] = [];
  const vnSysctl: FipPlan['vnSysctl'] = [];
  const tables: string[] = [];
  const prefix = i.network?.netnsPrefix;
  const byVni = new Map<number, FipBinding[]>();
  for (const b of i.bindings) byVni.set(b.vni, [...(byVni.get(b.vni) ?? []), b]);
  const retByVni = new Map((i.returns ?? []).map((r) => [r.vni, r]));
  const owned = new Set(i.owned);
  for (const net of i.network?.networks ?? []) {
    if (!prefix) break;
    const ns = names.vnNetns(prefix, net.vni);
    const obs = i.vnState.get(net.vni);
    if (!obs) continue; // the vRouter has not made it yet: next pass
    const mine = byVni.get(net.vni) ?? [];
    const ret = retByVni.get(net.vni);
    const away = i.node !== undefined && i.vtep !== undefined && mine.some((b) => b.endpointNode !== i.node);
    const want = [
      fipTable(mine, { ...(i.node !== undefined ? { node: i.node } : {}), ret, active: i.active }),
      fipBridgeTable({
        vni: net.vni,
        gatewayMac: net.gatewayMac,
        ...(away ? { selfMac: fipMacFor(i.vtep!) } : {}),
        ...(ret ? { ret } : {}),
      }),
    ];
    const ops: KernelOp[] = [];
    for (const [family, t] of [
      ['ip', want[0]],
      ['bridge', want[1]],
    ] as const) {
      const have = obs.nft.find((x) => x.family === family && x.name === FIP_TABLE);
      if (!t) {
        if (have) ops.push({ op: 'nft-table-del', netns: ns, family, table: FIP_TABLE });
        continue;
      }
      const w = { ...t, fingerprint: fp(t) };
      if (have?.fingerprint !== w.fingerprint) ops.push({ op: 'nft-table', netns: ns, table: w });
    }
    if (ops.length) nft.push({ netns: ns, ops });
    // Policy routing of the return path.
    const routing = ret ? fipReturnRouting(ret, ns) : { rules: [], routes: [] };
    const ipOps: KernelOp[] = [];
    const ruleKey = (r: { priority: number; fwmark: number; table: number }) =>
      `${r.priority} ${r.fwmark} ${r.table}`;
    const haveRules = (obs.rules ?? []).filter(isFipRule);
    const wantRules = new Set(routing.rules.map(ruleKey));
    const haveRuleKeys = new Set(haveRules.map(ruleKey));
    for (const r of haveRules)
      if (!wantRules.has(ruleKey(r))) ipOps.push({ op: 'rule-del', netns: ns, ...r });
    for (const r of routing.rules) if (!haveRuleKeys.has(ruleKey(r))) ipOps.push(r);
    const routeKey = (r: { table?: number; dst: string; via?: string; dev: string; onlink?: boolean }) =>
      `${r.table} ${r.dst} ${r.via ?? ''} ${r.dev} ${r.onlink ? 'onlink' : ''}`;
    const haveRoutes = (obs.tableRoutes ?? []).filter((r) => isFipTable(r.table));
    const wantRoutes = new Set(routing.routes.map(routeKey));
    const wantTables = new Set(routing.routes.map((r) => `${r.table} ${r.dst}`));
    const haveRouteKeys = new Set(haveRoutes.map(routeKey));
    for (const r of haveRoutes)
      if (!wantTables.has(`${r.table} ${r.dst}`))
        ipOps.push({
          op: 'route-del',
          netns: ns,
          dst: r.dst,
          dev: r.dev,
          table: r.table,
          ...(r.via ? { via: r.via } : {}),
        });
    for (const r of routing.routes)
      if (!haveRouteKeys.has(routeKey(r)) && wantRoutes.has(routeKey(r))) ipOps.push(r);
    if (ipOps.length) vnIp.push({ netns: ns, ops: ipOps });
    // Redirects off while this namespace forwards gateways' traffic back out of its bridge,
    // the kernel's default (1) whenever it does not: a desired value of every pass that reads
    // the namespace back, so a restore interrupted by a crash or a failed write is done by a
    // later pass (the namespace stays in the record until it is). Forwarding has no value
    // without a return path: the vRouter turns it on for breakout and never off.
    const sys: KernelOp[] = [];
    for (const { key, value } of fipSysctls(ret !== undefined)) {
      const v = obs.sysctl[key];
      if (v !== undefined && v !== value) sys.push({ op: 'sysctl', netns: ns, key, value });
    }
    if (sys.length) vnSysctl.push({ netns: ns, ops: sys });
    if (want[0] || want[1] || sys.length) tables.push(`nft:${ns}`);
  }
  const transit = new Map((i.network?.networks ?? []).map((n) => [n.vni, n.breakoutTransit?.vnIp]));
  const want = fipRoutes(i.bindings, (v) => transit.get(v), i.nodeNetns);
  const wantDst = new Set(want.map((o) => (o as { dst: string }).dst));
  const key = (r: { dst: string; via?: string; dev: string }) => `${r.dst} ${r.via ?? ''} ${r.dev}`;
  const have = new Set(i.nodeRoutes.map(key));
  const routes: KernelOp[] = [];
  for (const r of i.nodeRoutes) {
    if (!owned.has(r.dst) || wantDst.has(r.dst)) continue;
    routes.push({
      op: 'route-del',
      netns: i.nodeNetns,
      dst: r.dst,
      dev: r.dev,
      ...(r.via ? { via: r.via } : {}),
    });
  }
  for (const o of want) if (!have.has(key(o as { dst: string; via?: string; dev: string }))) routes.push(o);
  return { nft, vnIp, vnSysctl, routes, owned: [...wantDst, ...tables].sort() };
}

/** The status of one node's gateway from BIRD's answer: pure, so it is unit-tested. */
export function gatewayStatus(args: {
  gateway: TetherObject;
  role: GatewayRole;
  bird: BirdStatus;
  desired: GatewayDesired | undefined;
  error: string | undefined;
  now: number;
  returns?: readonly FipReturn[];
}): GatewayNodeStatus {
  const spec = args.gateway.spec as unknown as GatewaySpec;
  const peers: Record<string, GatewayPeerStatus> = {};
  const byProto = new Map<string, BgpPeerState>(args.bird.peers.map((p) => [p.protocol, p]));
  for (const p of spec.peers) {
    const b = byProto.get(peerProtocol(p.name));
    peers[p.name] = {
      address: p.address,
      asn: p.asn,
      state: b?.proto ?? (args.bird.running ? 'unknown' : 'down'),
      bgpState: b?.bgpState ?? 'Idle',
      since: b?.since ?? '',
      imported: b?.imported ?? 0,
      exported: b?.exported ?? 0,
      ...(b?.lastError ? { lastError: b.lastError } : {}),
    };
  }
  const error = args.error ?? args.bird.error;
  return {
    gateway: args.gateway.metadata.name,
    role: args.role,
    running: args.bird.running,
    ...(args.bird.configHash ? { configHash: args.bird.configHash } : {}),
    restarts: args.bird.restarts,
    ...(error ? { error } : {}),
    peers,
    announced: args.desired ? new Set(args.desired.bird.announce).size : 0,
    bound: (args.desired?.bindings ?? []).map((b) => ({
      name: b.name,
      address: b.address,
      network: b.network,
      endpoint: b.endpoint,
      ip: b.ip,
      endpointNode: b.endpointNode,
    })),
    unbound: args.desired?.unbound ?? [],
    ...(args.returns?.length
      ? {
          returnPaths: args.returns.map((r) => ({
            network: r.network,
            gateways: r.hops.map((h) => h.node),
            workloads: r.workloads.map((w) => w.ip),
          })),
        }
      : {}),
    updatedAt: new Date(args.now).toISOString(),
  };
}

const OWNED_FILE = 'fip-routes.json';
const MAX_OWNED_BYTES = 1 << 20;

export class GatewayConsumer implements StateConsumer {
  readonly name = 'gateway';
  readonly bird: BirdDaemon;
  private last:
    | {
        gateway: TetherObject;
        desired: GatewayDesired | undefined;
        role: GatewayRole;
        returns: readonly FipReturn[];
      }
    | undefined;
  private lastError: string | undefined;
  private owned: string[];
  private statusTimer: NodeJS.Timeout | undefined;
  private current: GatewayNodeStatus | undefined;
  private lastSent = '';

  constructor(private readonly opts: GatewayConsumerOptions) {
    mkdirSync(opts.stateDir, { recursive: true, mode: 0o750 });
    this.bird = new BirdDaemon({
      stateDir: opts.stateDir,
      ...(opts.birdBin ? { birdBin: opts.birdBin } : {}),
      ...(opts.nodeNetns ? { netns: opts.nodeNetns } : {}),
      ...(opts.birdBackoff ? { backoff: opts.birdBackoff } : {}),
      onLog: (line) => opts.log.debug({ component: 'bird' }, line.trimEnd()),
    });
    this.owned = this.readOwned();
  }

  private get ownedPath(): string {
    return join(this.opts.stateDir, OWNED_FILE);
  }

  private readOwned(): string[] {
    if (!existsSync(this.ownedPath)) return [];
    try {
      const text = readFileSync(this.ownedPath, 'utf8');
      if (text.length > MAX_OWNED_BYTES) throw new Error(`larger than ${MAX_OWNED_BYTES} bytes`);
      const v = parseJson(text, { source: this.ownedPath });
      return Array.isArray(v)
        ? v.filter((x): x is string => typeof x === 'string' && /^([\d.]+\/32|nft:[\w-]{1,64})$/.test(x))
        : [];
    } catch (e) {
      this.opts.log.warn(
        { file: this.ownedPath, err: (e as Error).message },
        'gateway: unreadable route record; starting empty',
      );
      return [];
    }
  }

  private writeOwned(list: readonly string[]): void {
    writeFileAtomic(this.ownedPath, JSON.stringify([...new Set(list)].sort()), 0o640);
  }

  /** A node restart finds BIRD's last working config on disk and starts it before the first
   *  pass, so the site router's graceful-restart timer is met without waiting for upstream. */
  async start(): Promise<void> {
    this.statusTimer = setInterval(() => void this.refreshStatus(), this.opts.statusIntervalMs ?? 5000);
    this.statusTimer.unref();
    if (!existsSync(this.bird.confPath)) return;
    await this.bird.start({ recovery: true }).catch((e: unknown) => {
      this.lastError = asTetherError(e).message;
      this.opts.log.error({ err: this.lastError }, 'gateway: BIRD did not start from its config on disk');
    });
  }

  /**
   * Stops BIRD with `graceful restart` (RFC 4724): peers keep the routes while the node daemon
   * is away (it restarts BIRD from the same config). A deleted Gateway stops BIRD in apply()
   * instead, without the flag, so the routes are withdrawn.
   */
  async stop(): Promise<void> {
    clearInterval(this.statusTimer);
    await this.bird.stop({ graceful: true });
  }

  /** The last status read back (what `tether status` shows without asking BIRD). */
  get lastStatus(): GatewayNodeStatus | undefined {
    return this.current;
  }

  /** Reads BIRD's state back and hands it on when it changed (not on every tick). */
  async refreshStatus(): Promise<GatewayNodeStatus | undefined> {
    try {
      this.current = await this.status();
    } catch (e) {
      this.opts.log.warn({ err: asTetherError(e).message }, 'gateway: cannot read BIRD state');
      return this.current;
    }
    const { updatedAt: _u, ...shape } = this.current ?? { updatedAt: '' };
    const key = JSON.stringify(shape);
    if (key !== this.lastSent) {
      this.lastSent = key;
      this.opts.onStatus?.(this.current);
    }
    return this.current;
  }

  async apply(state: DurableState): Promise<ApplyOutcome> {
    const slice = state.list();
    const gw = gatewayFor(this.opts.node, this.opts.site, slice);
    const changes: string[] = [];
    // The return path of other gateways' floating IPs whose endpoint is here: on any node of
    // the site, gateway or not.
    const returns = this.opts.fipReturns?.() ?? [];
    const active = this.opts.activeGateway?.();
    if (!gw) {
      const had = this.last !== undefined || (await this.bird.status()).running;
      this.last = undefined;
      this.lastError = undefined;
      await this.applyFip([], returns, active, changes);
      if (had) {
        await this.bird.stop();
        changes.push('gateway removed: BIRD stopped, routes withdrawn');
        void this.refreshStatus();
      }
      return { changes };
    }
    const role = this.opts.role?.() ?? 'active';
    const errors: string[] = [];
    let desired: GatewayDesired | undefined;
    try {
      const net = this.opts.network?.();
      const site = slice.find((o) => o.kind === 'Site' && o.metadata.name === this.opts.site);
      const breakoutVni = new Map(
        (net?.networks ?? []).filter((n) => n.breakoutTransit).map((n) => [n.name, n.vni] as const),
      );
      const spec = gw.spec as unknown as GatewaySpec;
      desired = desiredGateway({
        node: this.opts.node,
        vtep: this.opts.vtep ?? spec.routerId ?? '',
        gateway: gw,
        ...(site ? { site } : {}),
        floatingIps: slice.filter(
          (o) =>
            o.kind === 'FloatingIP' && (o.spec as unknown as FloatingIPSpec).gateway === gw.metadata.name,
        ),
        endpoints: siteEndpoints(slice, this.opts.localEndpoints?.() ?? []),
        vniOf: (n) => breakoutVni.get(n),
      });
      // Both roles install the same dataplane; a standby only announces with a longer AS
      // path, so a failover is the router's routing change and nothing to install here.
      desired = desiredFor(desired, role);
    } catch (e) {
      errors.push(`gateway ${gw.metadata.name}: ${asTetherError(e).message}`);
    }
    this.last = { gateway: gw, desired, role, returns };
    if (desired) {
      // Dataplane first: a floating IP is announced only once it forwards.
      try {
        await this.applyFip(desired.bindings, returns, active, changes);
      } catch (e) {
        errors.push(asTetherError(e).message);
      }
      try {
        const text = renderBirdConfig(desired.bird);
        if ((await this.bird.apply(text)).changed) changes.push(`BIRD config ${hash(text)} applied`);
      } catch (e) {
        errors.push(asTetherError(e).message);
      }
    }
    this.lastError = errors.length ? errors.join('; ') : undefined;
    void this.refreshStatus();
    if (this.lastError)
      throw new TetherError('TETHER_E_COMMAND', this.lastError, { field: `Gateway/${gw.metadata.name}` });
    return { changes };
  }

  private async applyFip(
    bindings: readonly FipBinding[],
    returns: readonly FipReturn[],
    active: string | undefined,
    changes: string[],
  ): Promise<void> {
    // Nothing wanted and nothing of ours left: no read-back (a node without floating IPs
    // pays no process per pass).
    if (!bindings.length && !returns.length && !this.owned.length) return;
    const k = this.opts.kernel;
    const network = this.opts.network?.();
    const vnState = new Map<number, NsState | undefined>();
    for (const n of network?.networks ?? [])
      vnState.set(
        n.vni,
        await k.readNs(names.vnNetns(network!.netnsPrefix, n.vni), {
          nftTables: [
            { family: 'ip', name: FIP_TABLE },
            { family: 'bridge', name: FIP_TABLE },
          ],
          rules: true,
          sysctls: FIP_SYSCTLS.map((x) => x.key),
        }),
      );
    const node = await k.readNs(this.opts.nodeNetns);
    const plan = planFip({
      bindings,
      network,
      nodeNetns: this.opts.nodeNetns,
      node: this.opts.node,
      ...(this.opts.vtep ? { vtep: this.opts.vtep } : {}),
      returns,
      active,
      vnState,
      nodeRoutes: node?.routes ?? [],
      owned: this.owned,
    });
    // The record covers what is about to be installed before it is: a crash between the two
    // leaves routes we know to remove, never ones we forgot.
    const union = [...new Set([...this.owned, ...plan.owned])];
    if (union.length !== this.owned.length) this.writeOwned(union);
    const failures: string[] = [];
    for (const t of plan.nft) {
      const r = await k.apply('nft', t.netns, t.ops);
      failures.push(...r.failures.map((f) => `${t.netns}: ${f.message}`));
      if (!r.failures.length)
        changes.push(
          `${t.netns}: ${t.ops.map((o) => o.op).join(',')} ${FIP_TABLE} (${t.ops.map((o) => (o.op === 'nft-table' ? o.table.family : o.op === 'nft-table-del' ? o.family : '')).join(',')})`,
        );
    }
    for (const t of plan.vnIp) {
      const r = await k.apply('ip', t.netns, t.ops);
      failures.push(...r.failures.map((f) => `${t.netns}: ${f.message}`));
      changes.push(...t.ops.map((o) => `${t.netns}: ${o.op}`));
    }
    for (const t of plan.vnSysctl) {
      const r = await k.apply('sysctl', t.netns, t.ops);
      failures.push(...r.failures.map((f) => `${t.netns}: ${f.message}`));
      changes.push(...t.ops.map((o) => `${t.netns}: ${o.op === 'sysctl' ? `${o.key}=${o.value}` : o.op}`));
    }
    if (plan.routes.length) {
      const r = await k.apply('ip', this.opts.nodeNetns, plan.routes);
      failures.push(...r.failures.map((f) => f.message));
      changes.push(...plan.routes.map((o) => `${o.op} ${(o as { dst: string }).dst}`));
    }
    if (failures.length)
      throw new TetherError(
        'TETHER_E_KERNEL',
        `floating IP dataplane did not converge: ${failures.join('; ')}`,
      );
    if (plan.owned.join() !== this.owned.join()) this.writeOwned(plan.owned);
    this.owned = plan.owned;
  }

  /** The node's gateway status (undefined: no Gateway for this node). */
  async status(): Promise<GatewayNodeStatus | undefined> {
    if (!this.last) return undefined;
    const st = gatewayStatus({
      gateway: this.last.gateway,
      role: this.last.role,
      bird: await this.bird.status(),
      desired: this.last.desired,
      returns: this.last.returns,
      error: this.lastError,
      now: (this.opts.now ?? Date.now)(),
    });
    const reason = this.opts.roleReason?.();
    const heartbeats = this.opts.heartbeats?.();
    return {
      ...st,
      ...(reason ? { roleReason: reason } : {}),
      ...(heartbeats ? { heartbeats } : {}),
    };
  }
}

const hash = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 12);
