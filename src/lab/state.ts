import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../lib/atomic.js';
import { TetherError } from '../lib/errors.js';
import type { LabNetwork, LabOptions } from './plan.js';

/** A process the lab started, identified by PID and the kernel's start time of that PID. */
export interface LabProcess {
  role: 'controller' | 'node' | 'impair';
  name: string;
  pid: number;
  /** Field 22 of /proc/PID/stat: tells our process from a later one that reused the PID. */
  startTime: string;
  ns: string;
  argv: string[];
  log: string;
}

export interface LabWorkload {
  name: string;
  ns: string;
  node: string;
  site: string;
  network: LabNetwork;
  containerId: string;
  ifname: string;
  hostIfname: string;
  ip: string;
  mac: string;
  gateway: string;
}

/**
 * Everything `up` created, recorded before (namespaces, directories) or right after
 * (processes) it is created and written atomically each time, so `down` after a crashed `up`
 * removes exactly what exists and nothing else.
 */
export interface LabState {
  version: 1;
  name: string;
  options: LabOptions;
  phase: 'building' | 'up' | 'failed';
  createdAt: string;
  /** True when `up` created the state directory itself (then `down` removes it). */
  createdStateDir: boolean;
  namespaces: string[];
  /** `--netns-prefix` of every node: `down` removes `<prefix>-vn<N>` namespaces. */
  netnsPrefixes: string[];
  processes: LabProcess[];
  workloads: LabWorkload[];
  networks: Partial<Record<LabNetwork, { vni: number }>>;
  /** WAN impairment per site (absent: none), so `lab wan status` shows it and `down` removes it. */
  wan?: Record<string, WanImpairment>;
  /** Per node, seconds from first boot's discovery to Ready (from its firstboot.json). */
  firstBootSeconds?: Record<string, number>;
  error?: string;
}

export interface WanImpairment {
  /** Every packet between the site and the controller dropped (nft in the WAN router). */
  cut: boolean;
  /** Added to each direction by the site's impairment proxy. */
  delayMs: number;
  /** Share of packets between the site and the controller dropped at random (nft numgen). */
  lossPct: number;
}

export function stateFile(stateDir: string): string {
  return join(stateDir, 'lab.json');
}

export function readLabState(stateDir: string): LabState | undefined {
  const f = stateFile(stateDir);
  if (!existsSync(f)) return undefined;
  try {
    const s = JSON.parse(readFileSync(f, 'utf8')) as LabState;
    if (s.version !== 1) throw new Error(`version ${String(s.version)}`);
    return s;
  } catch (e) {
    throw new TetherError('TETHER_E_STATE', `lab state file ${f} is unreadable: ${(e as Error).message}`, {
      file: f,
    });
  }
}

export function writeLabState(stateDir: string, s: LabState): void {
  writeFileAtomic(stateFile(stateDir), `${JSON.stringify(s, null, 2)}\n`, 0o600);
}
