// Process helpers for the benchmarks: children we own by PID, with a raised fd limit, and
// their resident memory read from /proc.
import { type ChildProcess, type StdioOptions, spawn } from 'node:child_process';
import { existsSync, openSync, readFileSync } from 'node:fs';
import { type Ran, REPO, runProcess } from '../../integration/support/proc.js';

export { REPO };
export const TSX_LOADER = `${REPO}node_modules/tsx/dist/esm/index.mjs`;
export const BUNDLE = `${REPO}dist/tether.mjs`;
/** The hard limit on these machines is 20000; 10,000 sessions plus the rest fit under it. */
export const FD_LIMIT = 20_000;

export type Flavor = 'bundle' | 'tsx';

/** node argv for running the tether CLI from the bundle or from source through tsx. */
export function tetherArgv(flavor: Flavor): string[] {
  return flavor === 'bundle' ? [BUNDLE] : ['--import', TSX_LOADER, `${REPO}src/cli/main.ts`];
}

/** The environment of the shipped node unit (installer/systemd/tether-node.service: V8 heap
 *  flags, malloc settings, TETHER_NODE_FLAGS), so a bench runs the daemon as it ships;
 *  BENCH_UNIT_FLAGS=0 measures without it. NODE_ENV is left to the caller. */
export function unitEnv(): Record<string, string> {
  if (process.env.BENCH_UNIT_FLAGS === '0') return {};
  const unit = readFileSync(`${REPO}installer/systemd/tether-node.service`, 'utf8');
  const env: Record<string, string> = {};
  // Environment=K=V or Environment="K=V W" (a value with spaces is quoted whole).
  for (const m of unit.matchAll(/^Environment=("?)([A-Z_]+)=(.*?)\1$/gm))
    if (m[2] !== 'NODE_ENV') env[m[2]!] = m[3]!.trim();
  return env;
}

/** The flags the unit's wrapper (/usr/bin/tether) puts on node's own command line: V8 flags
 *  NODE_OPTIONS refuses, like --lite-mode. */
export function unitNodeFlags(env: Record<string, string> = unitEnv()): string[] {
  return (env.TETHER_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
}

export function bundleExists(): boolean {
  return existsSync(BUNDLE);
}

export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export interface Child {
  child: ChildProcess;
  pid: number;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `node ARGS` through a shell that raises the fd limit and then execs, so the PID we
 *  hold is node's own. Output goes to `logFile` (or to ours when 'inherit'). */
export function spawnNode(
  nodeArgs: readonly string[],
  opts: { logFile?: string; ipc?: boolean; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Child {
  const cmd = `ulimit -n ${FD_LIMIT} 2>/dev/null || ulimit -n $(ulimit -Hn); exec ${[process.execPath, ...nodeArgs].map(shellQuote).join(' ')}`;
  const out = opts.logFile ? openSync(opts.logFile, 'a') : 'inherit';
  const stdio: StdioOptions = opts.ipc ? ['ignore', out, out, 'ipc'] : ['ignore', out, out];
  const child = spawn('bash', ['-c', cmd], {
    stdio,
    cwd: opts.cwd ?? REPO,
    env: { ...process.env, NO_COLOR: '1', ...opts.env },
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    pid: child.pid ?? -1,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Runs `node ARGS` to completion and returns its output. */
export function runNode(nodeArgs: readonly string[], timeoutMs = 60_000): Promise<Ran> {
  return runProcess(process.execPath, nodeArgs, { cwd: REPO, timeoutMs });
}

/** Resident set size of a process in KiB (VmRSS), and its peak (VmHWM). */
export function rssKiB(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? Number.NaN);
  return { rss: field('VmRSS'), hwm: field('VmHWM') };
}

/** CPU time (user + system) a process has used so far, ms (/proc/PID/stat, clock ticks of
 *  1/100 s on Linux). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

/**
 * Anonymous resident memory of a process by kind of mapping (/proc/PID/smaps): `brk` is
 * malloc's main heap ([heap]; with MALLOC_ARENA_MAX=1 its only arena, apart from the large
 * blocks it maps one by one), `anon` every other anonymous mapping (V8's heap pages, large
 * malloc blocks, thread stacks). KiB.
 */
export function anonKiB(pid: number): { brk: number; anon: number } {
  let brk = 0;
  let anon = 0;
  let kind: 'brk' | 'anon' | 'file' = 'file';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (head) {
      const path = head[2] ?? '';
      kind = path === '[heap]' ? 'brk' : head[1] === '0' && !path.startsWith('/') ? 'anon' : 'file';
      continue;
    }
    const m = /^Anonymous:\s+(\d+) kB/.exec(line);
    if (!m) continue;
    if (kind === 'brk') brk += Number(m[1]);
    else if (kind === 'anon') anon += Number(m[1]);
  }
  return { brk, anon };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Cross-process comparable wall clock in ms with sub-ms resolution. */
export const nowMs = () => performance.timeOrigin + performance.now();

// One polling helper for tests and benchmarks.
export { freePort, waitFor } from '../../integration/support/proc.js';

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? Number.NaN;
}
