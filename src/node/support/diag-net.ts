import { isIPv4 } from 'node:net';
import type { HostFs } from '../../kernel/hw/hostfs.js';
import { asTetherError } from '../../lib/errors.js';
import type { CommandRunner } from '../../lib/exec.js';
import { observe, readApplied } from '../../profiles/apply.js';
import { loadProfile, shippedProfilesDir } from '../../profiles/load.js';
import { planProfile } from '../../profiles/plan.js';
import { validateProfile } from '../../profiles/validate.js';
import type { NodeLiveStatus, VtepStatus } from '../control-api.js';
import { check, type DiagCheck } from './diag-check.js';
import { readProfileState } from './host-state.js';

/**
 * The `tether diag` checks that need the daemon's view or the host beyond the node's own
 * files (docs/field.md): clock skew against the controller, VTEP reachability and path MTU per
 * peer, profile drift. Like the rest of diag they never throw.
 */

/** Offset (beyond its error bound) above which the clock check warns, and fails. The failing
 *  bound is the 60 s of back-dating the controller gives every certificate it signs
 *  (src/lib/pki.ts): further behind, a renewed certificate is not yet valid here. */
export const CLOCK_WARN_MS = 1000;
export const CLOCK_FAIL_MS = 60_000;

function fmtOffset(v: number): string {
  const a = Math.abs(v);
  return `${a >= 1000 ? `${(a / 1000).toFixed(1)} s` : `${Math.round(a)} ms`} ${v < 0 ? 'behind' : 'ahead of'}`;
}

/**
 * Clock skew from the session's heartbeat echoes: the controller stamps every echo with its
 * own time (src/controller/hub.ts), so the node has the controller's clock once a minute or
 * more without asking anything new. Through a site proxy the echo carries the proxy node's
 * time; the proxy node's own WAN session is checked against the controller on that node.
 */
export function clockCheck(live: NodeLiveStatus | undefined): DiagCheck {
  const fix =
    'set the time from NTP: `timedatectl status` (NTP service active?), `chronyc sources`, `chronyc makestep`; the firewall must allow UDP 123 to the NTP server';
  const wan = live?.wan?.rtt;
  const viaProxy = !wan && live?.session.upstream?.kind === 'proxy' ? live.session.rtt : undefined;
  const r = wan ?? viaProxy;
  if (!r || r.offsetMs === undefined)
    return check(
      'clock',
      'warn',
      live
        ? 'no heartbeat echo from the controller yet: the skew cannot be measured'
        : 'the daemon is not answering: the skew cannot be measured',
      'see the session check; once the session is up, run diag again',
    );
  const against = viaProxy
    ? `the site proxy${live?.session.upstream?.node ? ` on ${live.session.upstream.node}` : ''}`
    : 'the controller';
  const sure = Math.abs(r.offsetMs) - (r.offsetErrorMs ?? 0);
  // offsetMs is the peer's clock minus ours: positive means this node is behind.
  const detail = `this node's clock is ${fmtOffset(-r.offsetMs)} ${against} (±${Math.round(r.offsetErrorMs ?? 0)} ms, from ${r.samples} heartbeat echoes)`;
  if (sure > CLOCK_FAIL_MS)
    return check(
      'clock',
      'fail',
      detail,
      `${fix}. Over ${CLOCK_FAIL_MS / 1000} s off, renewed certificates are not valid yet (or already expired) on this node`,
    );
  if (sure > CLOCK_WARN_MS) return check('clock', 'warn', detail, fix);
  return check('clock', 'pass', detail.replace("this node's clock is ", 'clock '));
}

/** Peer VTEPs probed at most (a node programs a few sites, not hundreds). */
export const MAX_PROBED_PEERS = 64;
const PARALLEL = 8;
/** Headers of an ICMP echo: IPv4 (20) + ICMP (8). */
const ICMP_HEADERS = 28;
/** What VXLAN adds to an inner Ethernet frame (outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14). */
export const VXLAN_OVERHEAD = 50;

interface PingResult {
  ok: boolean;
  /** The MTU the kernel or a router reported for the path (`mtu = N`, `mtu=N`). */
  mtu?: number;
  text: string;
}

async function ping(
  runner: CommandRunner,
  v: VtepStatus,
  peer: string,
  size: number | undefined,
  timeoutMs: number,
): Promise<PingResult> {
  const wait = String(Math.max(1, Math.ceil(timeoutMs / 1000)));
  // Not -q: the per-packet lines carry the MTU a router reported ("Frag needed and DF set
  // (mtu = 1400)", then "message too long, mtu=1400" from the route cache).
  const args = ['-n', '-c', '2', '-i', '0.2', '-W', wait, '-I', v.ip];
  if (size !== undefined) args.push('-M', 'do', '-s', String(size));
  args.push(peer);
  const r = await runner
    .run('ping', args, {
      allowFailure: true,
      timeoutMs: timeoutMs * 2 + 2000,
      ...(v.netns ? { netns: v.netns } : {}),
    })
    .catch((e: unknown) => ({ code: -1, stdout: '', stderr: asTetherError(e).message }));
  const text = `${r.stdout}\n${r.stderr}`.slice(0, 8192);
  const m = /mtu\s*=\s*(\d{3,5})/i.exec(text);
  const rx = /(\d+) (?:packets )?received/.exec(text);
  return {
    ok: r.code === 0 && Number(rx?.[1] ?? 0) > 0,
    ...(m ? { mtu: Number(m[1]) } : {}),
    text,
  };
}

/** The largest packet (IP size) that passes, by bisection between `lo` (passes) and `hi` (does not). */
async function bisect(
  runner: CommandRunner,
  v: VtepStatus,
  peer: string,
  lo: number,
  hi: number,
  timeoutMs: number,
): Promise<number> {
  let steps = 0;
  while (hi - lo > 1 && steps++ < 12) {
    const mid = Math.floor((lo + hi) / 2);
    if ((await ping(runner, v, peer, mid - ICMP_HEADERS, timeoutMs)).ok) lo = mid;
    else hi = mid;
  }
  return lo;
}

/**
 * One check per peer VTEP the vRouter programs (from the control API, that is from the
 * slice: never an address a peer reported about itself): `vtep <peer>` pings it from this
 * node's VTEP address, then sends a full-size packet with DF set (the underlay MTU the
 * vRouter assumes, which carries a full overlay frame of MTU − 50 after VXLAN). A path that
 * drops it has a lower MTU somewhere: workloads then see large packets vanish.
 */
export async function vtepChecks(
  live: NodeLiveStatus | undefined,
  runner: CommandRunner,
  timeoutMs: number,
): Promise<DiagCheck[]> {
  const v = live?.vtep;
  if (!v) return [];
  const peers = v.peers.filter((p) => isIPv4(p.vtep) && p.vtep !== v.ip);
  if (!isIPv4(v.ip))
    return [
      check(
        'vtep',
        'fail',
        `the daemon reports a VTEP "${String(v.ip).slice(0, 40)}" that is no IPv4 address`,
        'restart tether-node; report this to the NOC',
      ),
    ];
  if (peers.length === 0)
    return [check('vtep', 'pass', `${v.ip} on ${v.ifname}: no peer VTEPs programmed (no remote endpoints)`)];
  const out: DiagCheck[] = [];
  const probe = async (p: VtepStatus['peers'][number]): Promise<DiagCheck> => {
    const who = `${p.node ?? p.vtep}${p.site ? ` (site ${p.site})` : ''}`;
    const name = `vtep ${p.node ?? p.vtep}`;
    const small = await ping(runner, v, p.vtep, undefined, timeoutMs);
    if (!small.ok)
      return check(
        name,
        'fail',
        `peer VTEP ${p.vtep} of ${who} does not answer from ${v.ip} (networks ${p.networks.join(', ')}: traffic to its workloads is lost)`,
        `check the underlay route to ${p.vtep} (ip route get ${p.vtep} from ${v.ip}) and that firewalls on the path let UDP ${v.vxlanPort} (VXLAN) and ICMP through; is ${who} up?`,
      );
    const full = await ping(runner, v, p.vtep, v.mtu - ICMP_HEADERS, timeoutMs);
    if (full.ok)
      return check(
        name,
        'pass',
        `${p.vtep} of ${who} answers; ${v.mtu}-byte packets with DF pass (overlay MTU ${v.mtu - VXLAN_OVERHEAD})`,
      );
    const pmtu =
      full.mtu !== undefined && full.mtu < v.mtu
        ? full.mtu
        : await bisect(runner, v, p.vtep, 576, v.mtu, timeoutMs);
    return check(
      name,
      'fail',
      `path MTU to ${p.vtep} of ${who} is ${pmtu}, below the underlay MTU ${v.mtu} this node uses: overlay packets over ${pmtu - VXLAN_OVERHEAD} bytes are dropped`,
      `a link between this site and ${who} has MTU ${pmtu}: raise it to ${v.mtu} (ask the WAN provider or fix the router/switch port), or set the Site's underlayMtu to ${pmtu} so workloads get MTU ${pmtu - VXLAN_OVERHEAD}`,
    );
  };
  const todo = peers.slice(0, MAX_PROBED_PEERS);
  for (let i = 0; i < todo.length; i += PARALLEL)
    out.push(...(await Promise.all(todo.slice(i, i + PARALLEL).map(probe))));
  if (peers.length > todo.length)
    out.push(
      check(
        'vtep',
        'warn',
        `${peers.length - todo.length} more peer VTEPs not probed (limit ${MAX_PROBED_PEERS})`,
        'probe the rest by hand: ping -M do -s SIZE -I VTEP PEER',
      ),
    );
  return out;
}

/**
 * Profile drift: the profile's plan against a fresh read-back of the host (src/profiles); a
 * step means something changed behind Tether's back, or a reboot / re-apply is still due.
 */
export async function profileCheck(
  fs: HostFs,
  runner: CommandRunner,
  profilesDirs: readonly string[] = [],
): Promise<DiagCheck> {
  try {
    const st = await readProfileState(fs);
    if (st.problem)
      return check(
        'profile',
        'warn',
        `profile state damaged: ${st.problem}`,
        'run `tether profile apply PROFILE` to rewrite it',
      );
    if (!st.name) return check('profile', 'pass', 'no profile applied on this node');
    const name = st.name;
    if (st.state === 'awaiting-reboot')
      return check(
        'profile',
        'warn',
        `profile ${name}: boot configuration written, reboot pending (${(st.pendingReboot ?? []).slice(0, 2).join('; ')})`,
        'reboot the node in a maintenance window (systemctl reboot); first boot, or `tether profile apply` after it, finishes the profile',
      );
    if (st.state === 'rebooted' || st.state === 'applying')
      return check(
        'profile',
        'warn',
        `profile ${name}: ${st.state === 'rebooted' ? 'rebooted, runtime part not applied yet' : `an apply stopped half-way (${st.progress?.done}/${st.progress?.total} steps)`}`,
        `run \`tether profile apply ${name}\` (it resumes where it stopped)`,
      );
    const d = await profileDrift(fs, runner, name, profilesDirs);
    if (d.errors.length)
      return check(
        'profile',
        'fail',
        `profile ${name} does not fit this hardware any more: ${d.errors.slice(0, 2).join('; ')}`,
        'a NIC was replaced, moved or disabled in the BIOS: `tether profile check` lists what is missing; call the NOC before re-applying',
      );
    if (d.rebootPending)
      return check(
        'profile',
        'warn',
        `profile ${name}: only the reboot is missing`,
        'reboot the node in a maintenance window (systemctl reboot)',
      );
    if (d.steps.length)
      return check(
        'profile',
        'fail',
        `profile ${name} drifted: ${d.steps.length} step(s) to restore, e.g. ${d.steps
          .slice(0, 3)
          .map((s) => s.summary)
          .join('; ')}`,
        `\`tether profile plan ${name}\` shows every step; \`tether profile apply ${name}\` restores them (steps marked disruptive interrupt traffic)`,
      );
    return check('profile', 'pass', `profile ${name}: host matches it (nothing to apply)`);
  } catch (e) {
    return check(
      'profile',
      'warn',
      `cannot plan the profile: ${asTetherError(e).message}`,
      '`tether profile plan PROFILE` shows the error in full',
    );
  }
}

export interface DriftResult {
  profile: string;
  /** Steps apply would run now, with their summaries (empty: converged). */
  steps: Array<{ phase: 'boot' | 'runtime'; summary: string }>;
  /** The boot configuration is written; only the reboot is missing. */
  rebootPending: boolean;
  /** Hardware problems validation found (the profile does not fit any more). */
  errors: string[];
}

/**
 * Profile drift: the profile's desired state planned against a fresh read-back of the host
 * (the same observe → plan as `tether profile plan`), so anything changed behind Tether's back
 * (VF count, driver binding, MTU, a sysctl, a deleted drop-in) shows as a step to re-apply.
 */
export async function profileDrift(
  fs: HostFs,
  runner: CommandRunner,
  name: string,
  profilesDirs: readonly string[] = [],
): Promise<DriftResult> {
  const p = loadProfile(name, { searchPath: [...profilesDirs, shippedProfilesDir()] });
  const obs = await observe(fs, runner, p);
  const errors = validateProfile(p, obs.inv)
    .filter((i) => i.severity === 'error')
    .map((i) => i.message);
  if (errors.length) return { profile: p.name, steps: [], rebootPending: false, errors };
  const plan = planProfile(p, obs, readApplied(obs));
  return {
    profile: p.name,
    steps: plan.ops.map((o) => ({ phase: o.phase, summary: o.summary })),
    rebootPending: plan.reboot.pending,
    errors: [],
  };
}
