// What the bundled CLI loads before it answers (scripts/bundle.mjs splits it into an entry and
// chunks): `tether --version` and `tether status` must not statically reach gRPC, yaml,
// commander, pino or node:http — each was a measurable part of the start-up the issue bounds
// (BENCHMARKS.md, CLI start-up). A new import that drags one of them onto the status path fails
// here, with the chain of imports that did it.
import { join } from 'node:path';
import { build, type Metafile } from 'esbuild';
import { describe, expect, it } from 'vitest';

const REPO = join(import.meta.dirname, '../../..');

// The options that decide the module graph, as in scripts/bundle.mjs.
const result = await build({
  absWorkingDir: REPO,
  entryPoints: ['src/cli/main.ts'],
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['better-sqlite3', 'node-pty', 'sd-notify'],
  outdir: 'dist-test-unused',
  write: false,
  metafile: true,
  logLevel: 'silent',
});
const meta: Metafile = result.metafile;

/** Inputs reached from `from` over static imports, each with the input that first imported it. */
function staticClosure(from: string): Map<string, string | null> {
  const parent = new Map<string, string | null>([[from, null]]);
  const queue = [from];
  while (queue.length > 0) {
    const k = queue.shift() as string;
    for (const i of meta.inputs[k]?.imports ?? []) {
      if (i.kind !== 'import-statement' && i.kind !== 'require-call') continue;
      if (parent.has(i.path)) continue;
      parent.set(i.path, k);
      if (!i.external) queue.push(i.path);
    }
  }
  return parent;
}

function chain(parent: Map<string, string | null>, to: string): string {
  const path: string[] = [];
  for (let c: string | null | undefined = to; c; c = parent.get(c)) path.unshift(c);
  return path.join(' -> ');
}

const HEAVY = [/^node_modules\//, /^node:http2?$/, /^(node:)?https?$/];

describe('CLI start-up closure', () => {
  for (const from of ['src/cli/main.ts', 'src/cli/commands/status-fast.ts']) {
    it(`${from} reaches no dependency package and no node:http`, () => {
      const c = staticClosure(from);
      const heavy = (k: string) => HEAVY.some((re) => re.test(k));
      // Only where the chain enters a heavy module, not everything inside it.
      const bad = [...c.keys()].filter((k) => heavy(k) && !heavy(c.get(k) ?? ''));
      expect(bad.map((b) => chain(c, b))).toEqual([]);
    });
  }

  it('status is wired to its fast path and the fast path stays small', () => {
    const c = staticClosure('src/cli/commands/status-fast.ts');
    expect(c.has('src/cli/commands/status.ts')).toBe(true);
    const bytes = [...c.keys()].reduce((n, k) => n + (meta.inputs[k]?.bytes ?? 0), 0);
    // Source bytes, not minified; 60 KiB is twice today's (about 30).
    expect(bytes).toBeLessThan(60 * 1024);
  });
});
