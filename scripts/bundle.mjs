#!/usr/bin/env node
// Bundles the `tether` CLI (and the CNI plugin, when present) into single ESM files under
// dist/. Native addons stay external and load from node_modules; the proto files are copied
// next to the bundle because src/api/grpc.ts resolves them relative to its module URL.
import { cpSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');

/** Native addons (and what loads them): they cannot be inlined. */
const EXTERNAL = ['better-sqlite3', 'node-pty', 'sd-notify'];

/** CJS dependencies call require(); in an ESM bundle it has to be defined. */
const BANNER = [
  "import { createRequire as __tetherCreateRequire } from 'node:module';",
  'const require = __tetherCreateRequire(import.meta.url);',
].join('\n');

const entries = [
  { src: 'src/cli/main.ts', out: 'tether.mjs' },
  { src: 'src/cni/main.ts', out: 'tether-cni.mjs' },
];

mkdirSync(dist, { recursive: true });
for (const e of entries) {
  const entry = join(root, e.src);
  if (!existsSync(entry)) {
    console.log(`skip ${e.src} (not present)`);
    continue;
  }
  const t0 = Date.now();
  const res = await build({
    entryPoints: [entry],
    outfile: join(dist, e.out),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: true,
    external: EXTERNAL,
    banner: { js: BANNER },
    legalComments: 'none',
    logLevel: 'warning',
    metafile: true,
  });
  const bytes = Object.values(res.metafile.outputs).find((o) => o.entryPoint)?.bytes ?? 0;
  console.log(`${e.src} → dist/${e.out} (${(bytes / 1024).toFixed(0)} KiB, ${Date.now() - t0} ms)`);
}

const protoDst = join(dist, 'proto');
rmSync(protoDst, { recursive: true, force: true });
cpSync(join(root, 'src/api/proto'), protoDst, { recursive: true });
console.log('src/api/proto → dist/proto');
