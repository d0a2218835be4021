import { existsSync, readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { type HostFs, RootedHostFs } from '../../kernel/hw/hostfs.js';
import { TetherError } from '../../lib/errors.js';
import { parseJson } from '../../lib/json-input.js';
import type { RttSnapshot } from '../../lib/rtt.js';
import type { NodeStatusFile } from '../../node/agent/daemon.js';
import { controlSocketPath, readEvents, readLiveStatus } from '../../node/control-client.js';
import type { NodeEvent, NodeLiveStatus, VtepStatus } from '../../node/control-types.js';
import { assertEnrolled, nodePaths } from '../../node/paths.js';
import type { ShellDropCounts } from '../../node/proxy/shell-relay.js';
import { type HostStateView, readHostState } from '../../node/support/host-state.js';
import { DEFAULT_NODE_DIR } from '../defaults.js';
import { out, renderTable } from '../term.js';

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** What `tether status` shows, from the live control API or, when it is not reachable, the status file. */
export interface StatusView {
  /** `live`: read from the daemon's control socket; `file`: from status.json (daemon down or unreachable). */
  source: 'live' | 'file';
  sourceDetail: string;
  node: string;
  site: string;
  controller: string;
  daemon: 'running' | 'not running';
  session: string;
  sessionSince?: string | undefined;
  lastError?: string | undefined;
  upstream?: NodeLiveStatus['session']['upstream'];
  /** Heartbeat round trip to the upstream (which may be the site proxy). */
  upstreamRtt?: RttSnapshot;
  /** The WAN round trip and controller clock offset, where this node measures them. */
  wan?: NodeLiveStatus['wan'];
  proxy?: NodeLiveStatus['proxy'];
  revision: number;
  objects?: number;
  networks?: NodeLiveStatus['networks'];
  endpoints?: number;
  counters?: Record<string, number>;
  certNotAfter?: string | undefined;
  health?: { ok: boolean; degraded?: boolean; reasons: string[] } | undefined;
  updatedAt?: string | undefined;
  refusedEndpoints: Array<{ name: string; code: string; message: string; field?: string }>;
  recentEvents?: NodeEvent[];
  /** The local gateway and its BGP peers (live only, on a node its site's Gateway names). */
  gateway?: NodeLiveStatus['gateway'];
  /** This node's VTEP and the peer VTEPs the vRouter programs (live only). */
  vtep?: VtepStatus;
  /** Profile and its pending reboots, first-boot phase, SR-IOV VFs (read from the host). */
  host?: HostStateView;
}

export const RECENT_EVENTS_SHOWN = 10;

async function liveView(socket: string): Promise<StatusView> {
  // Both at once: one round trip of the start-up budget instead of two.
  const [s, ev] = await Promise.all([
    readLiveStatus(socket),
    readEvents(socket, 0, 1000).catch(() => undefined),
  ]);
  return {
    source: 'live',
    sourceDetail: `control API ${socket}`,
    node: s.node,
    site: s.site,
    controller: s.controller,
    daemon: 'running',
    session: s.session.phase,
    sessionSince: s.session.since,
    lastError: s.session.lastError,
    ...(s.session.upstream ? { upstream: s.session.upstream } : {}),
    ...(s.session.rtt ? { upstreamRtt: s.session.rtt } : {}),
    ...(s.wan ? { wan: s.wan } : {}),
    proxy: s.proxy,
    revision: s.revision,
    networks: s.networks,
    endpoints: s.endpoints.length,
    counters: s.counters,
    certNotAfter: s.certNotAfter,
    health: s.health,
    updatedAt: new Date().toISOString(),
    refusedEndpoints: s.refusedEndpoints ?? [],
    ...(ev ? { recentEvents: ev.events.slice(-RECENT_EVENTS_SHOWN) } : {}),
    ...(s.gateway && typeof s.gateway === 'object' ? { gateway: s.gateway } : {}),
    ...(s.vtep && typeof s.vtep === 'object' && Array.isArray(s.vtep.peers) ? { vtep: s.vtep } : {}),
  };
}

async function fileView(stateDir: string, why: string): Promise<StatusView> {
  // identity.ts loads yaml and the live path does not need it (start-up, BENCHMARKS.md).
  const id = (await import('../../node/identity.js')).loadIdentity(stateDir);
  const p = nodePaths(stateDir);
  const st = existsSync(p.status)
    ? (parseJson(readFileSync(p.status), { source: p.status }) as NodeStatusFile)
    : undefined;
  const running = st ? pidAlive(st.pid) : false;
  return {
    source: 'file',
    sourceDetail: `status file ${p.status} (${why})`,
    node: id.name,
    site: id.site,
    controller: id.controllers.join(','),
    daemon: running ? 'running' : 'not running',
    session: running ? (st?.session.phase ?? 'unknown') : 'none (daemon not running)',
    sessionSince: st?.session.since,
    lastError: st?.session.lastError,
    revision: st?.cache.revision ?? 0,
    objects: st?.cache.objects ?? 0,
    certNotAfter: st?.certNotAfter,
    health: st?.health,
    updatedAt: st?.updatedAt,
    refusedEndpoints: st?.session.endpoints?.refused ?? [],
  };
}

/** The live view when the daemon answers on its control socket, the status file otherwise. */
export async function nodeStatusView(
  stateDir: string,
  socket = controlSocketPath(stateDir),
  host: HostFs = new RootedHostFs('/'),
): Promise<StatusView> {
  // A directory that is no node is an error, not "down". The live path reads no more of the
  // identity than that it is there; the daemon serving the socket loaded all of it.
  assertEnrolled(stateDir);
  let v: StatusView;
  try {
    v = await liveView(socket);
  } catch (e) {
    const why = e instanceof TetherError ? e.message : String(e);
    v = await fileView(stateDir, `live API not reachable: ${why}`);
  }
  // From the host either way: a daemon that is down does not change the profile's state.
  v.host = await readHostState(host, stateDir);
  return v;
}

const ms = (v: number): string => `${v < 10 ? v.toFixed(1) : Math.round(v)} ms`;

/** `+1.2 s`, `-340 ms`: the peer's clock minus ours. */
function offset(v: number): string {
  const a = Math.abs(v);
  const t = a >= 1000 ? `${(a / 1000).toFixed(1)} s` : `${Math.round(a)} ms`;
  return `${v < 0 ? '-' : '+'}${t}`;
}

/** Rows for profile, pending reboots, first boot and VFs. */
function hostRows(h: HostStateView): string[][] {
  const rows: string[][] = [];
  const p = h.profile;
  const state: Record<typeof p.state, string> = {
    none: 'none applied',
    applied: 'applied',
    applying: `applying (${p.progress?.done ?? 0}/${p.progress?.total ?? 0} steps done)`,
    'awaiting-reboot': 'boot configuration written, reboot pending',
    rebooted: 'rebooted; runtime part waits for `tether profile apply`',
  };
  rows.push([
    'profile',
    `${p.name ? `${p.name}: ` : ''}${state[p.state]}${p.problem ? ` (${p.problem})` : ''}`,
  ]);
  const pending = p.pendingReboot ?? [];
  rows.push([
    'pending reboots',
    pending.length
      ? `1 (${pending.slice(0, 3).join('; ')}${pending.length > 3 ? `; +${pending.length - 3} more` : ''})`
      : h.firstBoot?.reboots.pending
        ? '1 (first boot is rebooting)'
        : '0',
  ]);
  const f = h.firstBoot;
  if (f)
    rows.push([
      'first boot',
      f.phase === 'failed'
        ? `failed in ${f.failedPhase ?? '?'}${f.lastError ? `: ${f.lastError.code} ${f.lastError.message}` : ''}`
        : `${f.phase}${f.step ? ` (${f.step.n}/${f.step.of})` : ''}${f.reboots.done ? `, ${f.reboots.done} reboot(s)` : ''}`,
    ]);
  for (const v of h.vfs) {
    const drivers = new Map<string, number>();
    for (const x of v.vfs) drivers.set(x.driver ?? 'unbound', (drivers.get(x.driver ?? 'unbound') ?? 0) + 1);
    rows.push([
      `VFs ${v.netdev ?? v.pf}`,
      `${v.numVfs}${v.totalVfs !== undefined ? ` of ${v.totalVfs}` : ''} on ${v.pf}${drivers.size ? ` (${[...drivers].map(([d, n]) => `${n} ${d}`).join(', ')})` : ''}`,
    ]);
  }
  return rows;
}

const SHELL_DROP_REASONS = [
  ['bad', 'bad frame'],
  ['notOwner', 'not its shell'],
  ['notAttached', 'node not attached'],
  ['notAllowed', 'not allowed'],
] as const;

/** `3 frame(s) since start (bad frame 1, not its shell 2)`; undefined when none were dropped. */
function shellDropsText(d: ShellDropCounts | undefined): string | undefined {
  if (!d || typeof d !== 'object') return undefined;
  const parts = SHELL_DROP_REASONS.map(([k, what]) => [what, Number(d[k]) || 0] as const).filter(
    ([, n]) => n > 0,
  );
  if (parts.length === 0) return undefined;
  const total = parts.reduce((t, [, n]) => t + n, 0);
  return `${total} frame(s) since start (${parts.map(([w, n]) => `${w} ${n}`).join(', ')})`;
}

export function renderView(v: StatusView): string {
  const rows: string[][] = [
    ['source', v.source === 'live' ? `live (${v.sourceDetail})` : v.sourceDetail],
    ['node', v.node],
    ['site', v.site],
    ['controller', v.controller],
    ['daemon', v.daemon],
    ['session', `${v.session}${v.sessionSince ? ` since ${v.sessionSince}` : ''}`],
  ];
  if (v.upstream)
    rows.push([
      'upstream',
      `${v.upstream.kind} ${v.upstream.address}${v.upstream.node ? ` (${v.upstream.node})` : ''}`,
    ]);
  if (v.wan) {
    const r = v.wan.rtt;
    rows.push([
      'WAN RTT',
      `${ms(r.srttMs)} (last ${ms(r.lastRttMs)}, ${r.samples} sample(s), ${v.wan.via === 'proxy' ? "site proxy's WAN session" : 'own session'})`,
    ]);
    if (r.offsetMs !== undefined)
      rows.push([
        'controller clock',
        `${offset(r.offsetMs)} against this node (±${ms(r.offsetErrorMs ?? 0)})`,
      ]);
  } else if (v.upstreamRtt && v.upstream?.kind === 'proxy')
    rows.push([
      'upstream RTT',
      `${ms(v.upstreamRtt.srttMs)} to the site proxy (WAN RTT: see the proxy node)`,
    ]);
  else if (v.source === 'live') rows.push(['WAN RTT', 'not measured yet']);
  if (v.proxy) {
    const sh = v.proxy.shells;
    rows.push([
      'proxy role',
      `${v.proxy.role}${v.proxy.activeNode ? `, active: ${v.proxy.activeNode}` : ''}${v.proxy.agents !== undefined ? `, ${v.proxy.agents} agent(s)` : ''}${v.proxy.role === 'active' && sh ? `, ${Number(sh.open)} shell(s) relayed` : ''}${v.proxy.wan ? `, WAN ${v.proxy.wan.phase}` : ''}`,
    ]);
    const drops = shellDropsText(sh?.dropped);
    if (drops) rows.push(['proxy shell drops', drops]);
  }
  rows.push(['revision held', String(v.revision)]);
  if (v.objects !== undefined) rows.push(['objects', String(v.objects)]);
  for (const n of v.networks ?? [])
    rows.push([
      `network ${n.name}`,
      `${n.vni !== undefined ? `VNI ${n.vni}, ` : ''}${n.localEndpoints} local, ${n.remoteEndpoints} remote endpoint(s)`,
    ]);
  if (v.endpoints !== undefined) rows.push(['endpoints', String(v.endpoints)]);
  if (v.vtep) {
    rows.push([
      'vtep',
      `${String(v.vtep.ip)} on ${String(v.vtep.ifname)}, underlay MTU ${Number(v.vtep.mtu)}, ${v.vtep.peers.length} peer VTEP(s)`,
    ]);
    for (const p of v.vtep.peers.slice(0, 64))
      rows.push([
        `peer ${String(p.node ?? p.vtep)}`,
        `${String(p.vtep)}${p.site ? ` (site ${String(p.site)})` : ''}: ${Array.isArray(p.networks) ? p.networks.map(String).join(', ') : ''}`,
      ]);
  }
  if (v.host) rows.push(...hostRows(v.host));
  for (const [k, n] of Object.entries(v.counters ?? {})) rows.push([`counter ${k}`, String(n)]);
  if (v.gateway) {
    const g = v.gateway;
    rows.push([
      'gateway',
      `${String(g.gateway)} (${String(g.role)}), BIRD ${g.running ? 'running' : 'not running'}${g.error ? `: ${String(g.error)}` : ''}`,
    ]);
    // The gateway HA role and why (docs/gateway.md "Gateway HA").
    if (typeof g.roleReason === 'string') rows.push(['gateway role', `${String(g.role)}: ${g.roleReason}`]);
    // Heartbeats from the other gateway node: taken, and dropped by reason (forged, replayed…).
    const hb = g.heartbeats;
    if (hb && typeof hb === 'object' && typeof hb.accepted === 'number') {
      const drops = Object.entries(hb.dropped && typeof hb.dropped === 'object' ? hb.dropped : {})
        .filter(([, n]) => typeof n === 'number' && n > 0)
        .slice(0, 16)
        .map(([k, n]) => `${k} ${Number(n)}`);
      rows.push([
        'gateway heartbeats',
        `${hb.accepted} accepted, ${drops.length ? `dropped: ${drops.join(', ')}` : 'none dropped'}`,
      ]);
    }
    // The answer came over a socket: print only what has the expected shape.
    for (const [name, p] of Object.entries(g.peers && typeof g.peers === 'object' ? g.peers : {}).slice(
      0,
      64,
    )) {
      if (!p || typeof p !== 'object') continue;
      rows.push([
        `bgp ${name}`,
        `${String(p.address)} AS${String(p.asn)} ${String(p.bgpState)} since ${String(p.since)}, ${Number(p.imported)} in/${Number(p.exported)} out${p.lastError ? `, ${String(p.lastError)}` : ''}`,
      ]);
    }
  }
  rows.push(['certificate expires', v.certNotAfter ?? 'unknown']);
  rows.push([
    'health',
    v.health
      ? v.health.ok
        ? 'ok'
        : `${v.health.degraded ? 'degraded: ' : ''}${v.health.reasons.join('; ')}`
      : 'unknown',
  ]);
  if (v.lastError) rows.push(['last disconnect', v.lastError]);
  for (const r of v.refusedEndpoints)
    rows.push(['refused endpoint', `${r.name}: ${r.message}${r.field ? ` (${r.field})` : ''} [${r.code}]`]);
  for (const e of v.recentEvents ?? []) rows.push([`event ${e.seq}`, `${e.time} ${e.type}: ${e.message}`]);
  return renderTable(['field', 'value'], rows);
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description(
      "this node: session and WAN RTT, proxy role, revision, networks, endpoints, peer VTEPs, profile and pending reboots, first-boot phase, VFs, counters, recent events (live from the daemon's control socket; the status file when the daemon is down)",
    )
    .option('--state-dir <dir>', 'node state directory', DEFAULT_NODE_DIR)
    .option('--socket <path>', 'control socket (default <state-dir>/control.sock)')
    .option('-o, --output <fmt>', 'json|yaml')
    .action(async (o: StatusOptions) => {
      process.exitCode = await runStatus(o);
    });
}

export interface StatusOptions {
  stateDir: string;
  socket?: string | undefined;
  output?: string | undefined;
}

/** `tether status` once its flags are parsed, by commander or by status-fast.ts; the exit code. */
export async function runStatus(o: StatusOptions): Promise<number> {
  if (o.output !== undefined && o.output !== 'json' && o.output !== 'yaml') {
    throw new TetherError('TETHER_E_INVALID', `bad output format "${o.output}"`, {
      field: '--output',
      expected: 'json or yaml',
    });
  }
  const view = await nodeStatusView(o.stateDir, o.socket ?? controlSocketPath(o.stateDir));
  // output.ts brings the yaml module: only -o loads it (start-up, BENCHMARKS.md).
  if (o.output) out((await import('../output.js')).renderStructured(view, o.output));
  else out(renderView(view));
  return view.daemon !== 'running' ? 1 : 0;
}
