import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIRST_BOOT_PHASES } from '../../api/firstboot.js';
import { attr, type HostFs } from '../../kernel/hw/hostfs.js';
import { OWNED } from '../../profiles/owned.js';

/**
 * What `tether status` and `tether diag` read from the host rather than the daemon: the
 * profile's apply state (src/profiles, `/var/lib/tether/profile/`), first boot's phase
 * (`<state-dir>/firstboot.json`) and the SR-IOV VFs the profile configured, read back from
 * sysfs. Everything is read through a HostFs (the real `/`, or a fixture tree in tests);
 * a file that is missing or malformed is reported as such, never thrown. `tether status` loads
 * this module: it imports neither the planner nor first boot (gRPC, ajv), to start fast.
 */

/** `firstBootPaths(stateDir).state` (src/node/bootstrap/firstboot.ts), without loading first boot. */
const FIRST_BOOT_STATE = 'firstboot.json';

/** Largest state file looked at (the journal of a big profile is a few KiB). */
const MAX_STATE_FILE = 1024 * 1024;
/** VFs listed per PF (the kernel allows 256 on the largest NICs). */
const MAX_VFS_SHOWN = 256;

export interface ProfileState {
  /** The profile applied or being applied; absent when this node has none. */
  name?: string;
  /** `applied`: converged (applied.json); `applying`: a journal runs; `awaiting-reboot`;
   *  `rebooted`: the boot part took effect, the runtime part waits for the next apply. */
  state: 'none' | 'applied' | 'applying' | 'awaiting-reboot' | 'rebooted';
  /** Boot-time steps waiting for the reboot (their summaries), when a reboot is pending. */
  pendingReboot?: string[];
  /** Steps done / total of the journal, while it is not `done`. */
  progress?: { done: number; total: number };
  /** Why the state could not be read fully (a damaged file). */
  problem?: string;
}

export interface FirstBootView {
  phase: string;
  failedPhase?: string;
  lastError?: { phase: string; code: string; message: string };
  reboots: { done: number; planned?: number; pending: boolean };
  /** Phase N of M (1-based), for a phase of the list. */
  step?: { n: number; of: number };
}

export interface VfView {
  pf: string;
  /** The PF's netdev (absent when unbound). */
  netdev?: string;
  numVfs: number;
  totalVfs?: number;
  vfs: Array<{ index: number; pci: string; driver?: string; netdev?: string }>;
}

export interface HostStateView {
  profile: ProfileState;
  firstBoot?: FirstBootView;
  vfs: VfView[];
}

interface JournalShape {
  profile?: unknown;
  bootId?: unknown;
  state?: unknown;
  done?: unknown;
  ops?: unknown;
}

async function readJson(fs: HostFs, path: string): Promise<{ v?: unknown; problem?: string }> {
  const t = await fs.read(path);
  if (t === undefined) return {};
  if (t.length > MAX_STATE_FILE) return { problem: `${path} is over ${MAX_STATE_FILE} bytes` };
  try {
    return { v: JSON.parse(t) as unknown };
  } catch {
    return { problem: `${path} is not JSON` };
  }
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length <= 256 ? v : undefined);

export async function readProfileState(fs: HostFs): Promise<ProfileState> {
  const bootId = attr(await fs.read('/proc/sys/kernel/random/boot_id'));
  const j = await readJson(fs, OWNED.journal);
  const a = await readJson(fs, OWNED.applied);
  const appliedName = str((a.v as { profile?: unknown } | undefined)?.profile);
  const problem = j.problem ?? a.problem;
  const base = problem ? { problem } : {};
  const jr = j.v as JournalShape | undefined;
  if (jr && typeof jr === 'object' && jr.state !== 'done') {
    const name = str(jr.profile);
    const ops = (Array.isArray(jr.ops) ? (jr.ops as unknown[]) : []).filter(
      (o): o is { phase?: unknown; summary?: unknown } => typeof o === 'object' && o !== null,
    );
    const done = typeof jr.done === 'number' && Number.isInteger(jr.done) ? jr.done : 0;
    const named = name ? { name } : appliedName ? { name: appliedName } : {};
    if (jr.state === 'awaiting-reboot') {
      const boot = ops
        .filter((o) => o.phase === 'boot')
        .map((o) => str(o.summary) ?? 'boot configuration')
        .slice(0, 32);
      // The journal names the boot it was written in: another boot id means the reboot happened.
      if (bootId !== undefined && str(jr.bootId) !== undefined && jr.bootId !== bootId)
        return { ...named, state: 'rebooted', ...base };
      return { ...named, state: 'awaiting-reboot', pendingReboot: boot, ...base };
    }
    if (jr.state === 'running')
      return { ...named, state: 'applying', progress: { done, total: ops.length }, ...base };
  }
  if (appliedName) return { name: appliedName, state: 'applied', ...base };
  return { state: 'none', ...base };
}

export function readFirstBoot(stateDir: string): FirstBootView | undefined {
  let v: unknown;
  try {
    const t = readFileSync(join(stateDir, FIRST_BOOT_STATE));
    if (t.length > MAX_STATE_FILE)
      return { phase: 'unknown (state file too large)', reboots: { done: 0, pending: false } };
    v = JSON.parse(t.toString('utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return { phase: 'unknown (state file unreadable)', reboots: { done: 0, pending: false } };
  }
  const s = v as {
    phase?: unknown;
    failedPhase?: unknown;
    lastError?: { phase?: unknown; code?: unknown; message?: unknown };
    reboots?: { planned?: unknown; done?: unknown; pending?: unknown };
  };
  const phase = str(s?.phase) ?? 'unknown';
  const idx = (FIRST_BOOT_PHASES as readonly string[]).indexOf(phase);
  const le = s?.lastError;
  const planned = s?.reboots?.planned;
  return {
    phase,
    ...(str(s?.failedPhase) ? { failedPhase: str(s.failedPhase) as string } : {}),
    ...(le && typeof le === 'object'
      ? {
          lastError: {
            phase: str(le.phase) ?? '',
            code: str(le.code) ?? '',
            message: (typeof le.message === 'string' ? le.message : '').slice(0, 512),
          },
        }
      : {}),
    reboots: {
      done: typeof s?.reboots?.done === 'number' ? s.reboots.done : 0,
      ...(typeof planned === 'number' ? { planned } : {}),
      pending: typeof s?.reboots?.pending === 'object' && s.reboots.pending !== null,
    },
    ...(idx >= 0 ? { step: { n: idx + 1, of: FIRST_BOOT_PHASES.length } } : {}),
  };
}

/** The VFs of every PF the applied profile configured (applied.json `pfs`), from sysfs. */
export async function readProfileVfs(fs: HostFs): Promise<VfView[]> {
  const a = await readJson(fs, OWNED.applied);
  const pfs = (a.v as { pfs?: unknown } | undefined)?.pfs;
  if (!Array.isArray(pfs)) return [];
  // Loaded only on a node whose profile configured VFs: `tether status` elsewhere does not
  // pay for the hardware inventory's code (CLI start-up, test/unit/cli/startup-closure).
  const { pciDir, readVfs } = await import('../../kernel/hw/inventory.js');
  const out: VfView[] = [];
  for (const pf of pfs.slice(0, 64)) {
    // A PCI address only: the name becomes a sysfs path.
    if (typeof pf !== 'string' || !/^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(pf)) continue;
    const d = pciDir(pf);
    const numVfs = Number(attr(await fs.read(`${d}/sriov_numvfs`)) ?? 0) || 0;
    const total = Number(attr(await fs.read(`${d}/sriov_totalvfs`)));
    const netdev = (await fs.list(`${d}/net`))[0];
    const vfs = (await readVfs(fs, pf)).slice(0, MAX_VFS_SHOWN);
    out.push({
      pf,
      ...(netdev ? { netdev } : {}),
      numVfs,
      ...(Number.isFinite(total) ? { totalVfs: total } : {}),
      vfs: vfs.map((v) => ({
        index: v.index,
        pci: v.pci,
        ...(v.driverOverride && !v.driver
          ? { driver: `(${v.driverOverride})` }
          : v.driver
            ? { driver: v.driver }
            : {}),
        ...(v.netdevs[0] ? { netdev: v.netdevs[0] } : {}),
      })),
    });
  }
  return out;
}

export async function readHostState(fs: HostFs, stateDir: string): Promise<HostStateView> {
  const firstBoot = readFirstBoot(stateDir);
  return {
    profile: await readProfileState(fs),
    ...(firstBoot ? { firstBoot } : {}),
    vfs: await readProfileVfs(fs),
  };
}
