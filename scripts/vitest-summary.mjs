// Runs vitest and ends with one plain closing line, `N passed, N failed, N skipped`, that any
// CI reader understands whatever it knows of vitest's own output. Exits with vitest's code.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

const dir = mkdtempSync(join(tmpdir(), 'tether-vitest-'));
const out = join(dir, 'results.json');
const r = spawnSync(
  'npx',
  [
    'vitest',
    'run',
    '--reporter=default',
    '--reporter=json',
    `--outputFile.json=${out}`,
    ...process.argv.slice(2),
  ],
  { stdio: 'inherit' },
);
let code = r.status ?? 1;
try {
  const res = JSON.parse(readFileSync(out, 'utf8'));
  const skipped = (res.numPendingTests ?? 0) + (res.numTodoTests ?? 0);
  console.log(`${res.numPassedTests} passed, ${res.numFailedTests} failed, ${skipped} skipped`);
  if (res.numTotalTests === 0) code = code || 1;
  // A suite that skips (most often a root-only suite run without root) proves nothing; on a
  // developer's machine that is a choice, in CI it is a failure that names what was skipped.
  if (process.env.CI === 'true' && skipped > 0) {
    console.error(`CI=true: ${skipped} test(s) were skipped; CI runs every suite (as root):`);
    for (const file of res.testResults ?? []) {
      for (const t of file.assertionResults ?? []) {
        if (t.status === 'pending' || t.status === 'skipped' || t.status === 'todo')
          console.error(`  skipped: ${relative(process.cwd(), file.name)} › ${t.fullName}`);
      }
    }
    code = code || 1;
  }
} catch (e) {
  console.error(`no vitest results: ${e.message}`);
  code = code || 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit(code);
