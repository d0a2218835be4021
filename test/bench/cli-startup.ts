/**
 * Benchmark: CLI start-up (issue 11; goal: `tether status` on a node within 1.5× an empty
 * `node -e 0` on the same machine).
 *
 * In one run, interleaved round-robin so load on the machine hits every variant alike:
 *   node -e 0                    the floor
 *   bundle  --version / status   dist/tether.mjs (npm run bundle), as installed on a node
 *   checkout --version / status  bin/tether (TypeScript through tsx)
 * `status` asks a real control API (startControlApi on a unix socket in a temporary node
 * state directory, with an identity and an event ring) served from this process. Reported:
 * median and p90 wall time of each, and each median over the floor's.
 *
 * `npx tsx test/bench/cli-startup.ts` or `BENCH_ONLY=cli-startup npm run bench`.
 *   CLI_STARTUP_RUNS  runs per variant (default 20)
 *   CLI_STARTUP_ONLY  comma-separated variant names to run (default all; `node -e 0` always)
 *   CLI_STARTUP_BASELINE  another bundle's tether.mjs (e.g. main's, one file before the split),
 *                     run as `baseline --version` / `baseline status` in the same rounds
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { silentLogger } from '../../src/lib/log.js';
import { controlSocketPath, EventRing, startControlApi } from '../../src/node/control-api.js';
import { saveIdentity } from '../../src/node/identity.js';
import { REPO } from './support/proc.js';

const GOAL_RATIO = 1.5;

function timed(file: string, args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(file, args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    });
    let err = '';
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code !== 0) reject(new Error(`${file} ${args.join(' ')} exited ${code}: ${err.slice(0, 500)}`));
      else resolve(ms);
    });
  });
}

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] as number;
};

export async function run(): Promise<Record<string, number | string>> {
  const runs = Number(process.env.CLI_STARTUP_RUNS ?? 20);
  const bundle = join(REPO, 'dist/tether.mjs');
  if (!existsSync(bundle)) throw new Error('dist/tether.mjs missing: run `npm run bundle` first');
  const dir = mkdtempSync(join(tmpdir(), 't11-clistart-'));
  saveIdentity(
    dir,
    { name: 'bench-n1', site: 'bench-s1', controllers: ['127.0.0.1:7443'], caFingerprint: 'ab' },
    'ca',
    {
      keyPem: 'k',
      certPem: 'c',
    },
  );
  const events = new EventRing();
  for (let i = 0; i < 20; i++) events.push('session', `event ${i}`);
  const api = await startControlApi({
    socketPath: controlSocketPath(dir),
    events,
    log: silentLogger(),
    status: () => ({
      node: 'bench-n1',
      site: 'bench-s1',
      controller: '127.0.0.1:7443',
      pid: process.pid,
      startedAt: new Date().toISOString(),
      session: { phase: 'connected', since: new Date().toISOString() },
      proxy: { role: 'off' },
      revision: 42,
      snapshotRevision: 42,
      networks: [{ name: 'red', vni: 4097, localEndpoints: 2, remoteEndpoints: 6 }],
      endpoints: [],
      counters: { reconciles: 7, kernelErrors: 0 },
      health: { ok: true, reasons: [] },
    }),
  });
  const variants: Record<string, [string, string[]]> = {
    'node -e 0': [process.execPath, ['-e', '0']],
    'bundle --version': [process.execPath, [bundle, '--version']],
    'bundle status': [process.execPath, [bundle, 'status', '--state-dir', dir]],
    'checkout --version': [join(REPO, 'bin/tether'), ['--version']],
    'checkout status': [join(REPO, 'bin/tether'), ['status', '--state-dir', dir]],
  };
  const baseline = process.env.CLI_STARTUP_BASELINE;
  if (baseline) {
    variants['baseline --version'] = [process.execPath, [baseline, '--version']];
    variants['baseline status'] = [process.execPath, [baseline, 'status', '--state-dir', dir]];
  }
  const only = process.env.CLI_STARTUP_ONLY?.split(',').map((s) => s.trim());
  if (only)
    for (const k of Object.keys(variants))
      if (k !== 'node -e 0' && !k.startsWith('baseline') && !only.includes(k)) delete variants[k];
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
  try {
    // One warm-up each (page cache), then round-robin.
    for (const [file, args] of Object.values(variants)) await timed(file, args);
    for (let i = 0; i < runs; i++) {
      for (const [name, [file, args]] of Object.entries(variants))
        (times[name] as number[]).push(await timed(file, args));
    }
  } finally {
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const floor = quantile(times['node -e 0'] as number[], 0.5);
  const out: Record<string, number | string> = { runs };
  for (const [name, xs] of Object.entries(times)) {
    out[`${name} median ms`] = +quantile(xs, 0.5).toFixed(1);
    out[`${name} p90 ms`] = +quantile(xs, 0.9).toFixed(1);
    if (name !== 'node -e 0') out[`${name} / node -e 0`] = +(quantile(xs, 0.5) / floor).toFixed(2);
  }
  if (!times['bundle status']) return out;
  const ratio = quantile(times['bundle status'] as number[], 0.5) / floor;
  out.goal = `bundle status ≤ ${GOAL_RATIO}× node -e 0: ${ratio <= GOAL_RATIO ? 'met' : 'NOT met'} (${ratio.toFixed(2)}×)`;
  return out;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(await run());
}
