// `npm run bench`: builds the bundle, runs the controller scale benchmark (a 1-node baseline,
// then N=1,000 and N=10,000) and every other test/bench/<name>-<name>.ts that exports run(),
// prints each result as a table and writes them all to bench-results.json. Among them:
// profile-load.ts (1 MiB / 40k-key profiles against JSON.parse and the yaml library's floor).
//   BENCH_NODES=1000,10000   override the sizes (the 1-node baseline always runs)
//   BENCH_ONLY=controller-scale   run only the named modules (comma separated)
import { execFileSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { run as controllerScale } from './controller-scale.js';
import { REPO } from './support/proc.js';

type Result = Record<string, number | string>;

const here = join(REPO, 'test/bench');
const results: Array<{ name: string; result: Result }> = [];

function table(name: string, r: Result): string {
  const rows = Object.entries(r).map(([k, v]) => [k, typeof v === 'number' ? v.toLocaleString('en-US') : v]);
  const w = Math.max(...rows.map(([k]) => String(k).length), 6);
  const line = '-'.repeat(w + 2 + Math.max(10, ...rows.map(([, v]) => String(v).length)));
  return [`\n== ${name}`, line, ...rows.map(([k, v]) => `${String(k).padEnd(w)}  ${v}`), line].join('\n');
}

function record(name: string, result: Result): void {
  results.push({ name, result });
  console.log(table(name, result));
  save();
}

function save(): void {
  const out = {
    date: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? '',
      memGiB: +(totalmem() / 2 ** 30).toFixed(1),
      kernel: release(),
      node: process.version,
    },
    results,
  };
  writeFileSync(join(REPO, 'bench-results.json'), `${JSON.stringify(out, null, 2)}\n`);
}

const only = process.env.BENCH_ONLY?.split(',').filter(Boolean);
const wanted = (name: string) => !only || only.includes(name);

async function main(): Promise<void> {
  console.log('building the bundle (npm run bundle) …');
  try {
    execFileSync(process.execPath, [join(REPO, 'scripts/bundle.mjs')], { stdio: 'inherit', cwd: REPO });
  } catch {
    console.log('bundle build failed; the controller and node will run from source through tsx');
  }

  if (wanted('controller-scale')) {
    const sizes = (process.env.BENCH_NODES ?? '1000,10000')
      .split(',')
      .map(Number)
      .filter((x) => x > 0);
    for (const nodes of [1, ...sizes]) {
      const name = `controller-scale N=${nodes}`;
      try {
        record(name, await controllerScale({ nodes, nodeDaemon: nodes === 1 }));
      } catch (e) {
        record(name, { nodes, error: (e as Error).stack ?? String(e) });
      }
    }
  }

  const others = readdirSync(here)
    .filter((f) => /^[a-z0-9]+-[a-z0-9-]+\.ts$/.test(f) && f !== 'controller-scale.ts')
    .sort();
  for (const f of others) {
    const name = f.replace(/\.ts$/, '');
    if (!wanted(name)) continue;
    if (name === 'vrouter-program' && process.getuid?.() !== 0) {
      console.log(`\n== ${name}: skipped (needs root for network namespaces)`);
      record(name, { skipped: 'needs root' });
      continue;
    }
    try {
      const mod = (await import(pathToFileURL(join(here, f)).href)) as {
        run?: (opts?: Record<string, unknown>) => Promise<Result>;
      };
      if (typeof mod.run !== 'function') {
        console.log(`\n== ${name}: no run() export; skipped`);
        continue;
      }
      record(name, await mod.run({}));
    } catch (e) {
      record(name, { error: (e as Error).stack ?? String(e) });
    }
  }
  console.log('\nwrote bench-results.json');
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
