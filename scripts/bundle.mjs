#!/usr/bin/env node
// Bundles the `tether` CLI (and the CNI plugin, when present) into ESM files under dist/.
// Native addons stay external and load from node_modules; the proto files are copied next to
// the bundle because src/api/grpc.ts resolves them relative to its module URL.
//
// The CLI is split (esbuild `splitting`): dist/tether.mjs is a small entry and every lazily
// imported command module, with what only it needs, is a chunk dist/tether-chunk-<hash>.mjs
// loaded on use. As one 1.8 MB file, V8 compiled all of it before `tether status` could run
// (BENCHMARKS.md "CLI start-up"). The chunks sit next to the entry, not in a subdirectory,
// because bundled code resolves proto/, vendor/ and profiles relative to its own module URL.
// CHUNK_PREFIX is what scripts/release.mjs and images/stage.mjs copy along with the entry.
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

/** Native addons (and what loads them): they cannot be inlined. */
const EXTERNAL = ['better-sqlite3', 'node-pty', 'sd-notify'];

/** CJS dependencies call require(); in an ESM bundle it has to be defined. __tetherVendorDir
 *  stands in for __dirname in bundled dependencies (see vendorDirname below). */
const BANNER = [
  "import { createRequire as __tetherCreateRequire } from 'node:module';",
  "import { fileURLToPath as __tetherFileURLToPath } from 'node:url';",
  'const require = __tetherCreateRequire(import.meta.url);',
  "const __tetherVendorDir = (rel) => __tetherFileURLToPath(new URL('./vendor/' + rel, import.meta.url));",
].join('\n');

/** Data files that bundled dependencies load at run time through __dirname; copied to
 *  dist/vendor/<package path> so that __dirname-relative paths still resolve. */
const VENDOR_ASSETS = ['grpc-health-check/proto', '@grpc/grpc-js/proto'];

/** Dependencies that use __dirname (grpc-health-check and grpc-js load .proto files next to
 *  themselves) get it defined as the matching directory under dist/vendor. */
const vendorDirname = {
  name: 'vendor-dirname',
  setup(b) {
    b.onLoad({ filter: /[\\/]node_modules[\\/].*\.c?js$/ }, (args) => {
      const src = readFileSync(args.path, 'utf8');
      if (!/\b__dirname\b/.test(src)) return undefined;
      // The package path after the last node_modules/: esbuild hands over real paths, so in a
      // checkout whose node_modules is a symlink, a path relative to <root>/node_modules would
      // climb out of it ("../../…") and point the bundle at a vendor dir that does not exist.
      const parts = dirname(args.path).split(sep);
      const rel = parts.slice(parts.lastIndexOf('node_modules') + 1).join('/');
      return { contents: `var __dirname = __tetherVendorDir(${JSON.stringify(rel)});\n${src}`, loader: 'js' };
    });
  },
};

/** Output file names of the CLI's chunks (see the top of this file). */
export const CHUNK_PREFIX = 'tether-chunk-';

const entries = [
  { src: 'src/cli/main.ts', out: 'tether.mjs', split: true },
  // The CNI plugin runs once per pod event and loads everything it has: one file.
  { src: 'src/cni/main.ts', out: 'tether-cni.mjs', split: false },
];

mkdirSync(dist, { recursive: true });
// Chunk names carry a content hash: those of an earlier build would pile up.
for (const f of readdirSync(dist)) if (f.startsWith(CHUNK_PREFIX)) rmSync(join(dist, f));
for (const e of entries) {
  const entry = join(root, e.src);
  if (!existsSync(entry)) {
    console.log(`skip ${e.src} (not present)`);
    continue;
  }
  const t0 = Date.now();
  const res = await build({
    entryPoints: [entry],
    ...(e.split
      ? {
          outdir: dist,
          splitting: true,
          entryNames: e.out.replace(/\.mjs$/, ''),
          chunkNames: `${CHUNK_PREFIX}[hash]`,
          outExtension: { '.js': '.mjs' },
        }
      : { outfile: join(dist, e.out) }),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: true,
    external: EXTERNAL,
    banner: { js: BANNER },
    legalComments: 'none',
    // Minified: less source held in memory and parsed at start (node daemon RSS −5 MB);
    // the sourcemap maps stack traces back (node --enable-source-maps). BUNDLE_MINIFY=0 to skip.
    minify: process.env.BUNDLE_MINIFY !== '0',
    keepNames: true,
    logLevel: 'warning',
    metafile: true,
    plugins: [vendorDirname],
    // npm sets npm_package_version only under `npm run`; an installed node started by systemd
    // still reports its version (`tether --version`, the version a node tells the controller).
    define: { 'process.env.npm_package_version': JSON.stringify(version) },
  });
  // BUNDLE_METAFILE=<dir>: esbuild's metafile for each entry (what each chunk holds and imports).
  if (process.env.BUNDLE_METAFILE)
    writeFileSync(join(process.env.BUNDLE_METAFILE, `${e.out}.meta.json`), JSON.stringify(res.metafile));
  const code = Object.entries(res.metafile.outputs).filter(([k]) => k.endsWith('.mjs'));
  // Every dynamically imported module is an entryPoint in the metafile too: find ours by name.
  const entryBytes = code.find(([k]) => k.endsWith(`/${e.out}`) || k === e.out)?.[1].bytes ?? 0;
  const total = code.reduce((n, [, o]) => n + o.bytes, 0);
  const chunks = code.length - 1;
  console.log(
    `${e.src} → dist/${e.out} (${(entryBytes / 1024).toFixed(0)} KiB` +
      (chunks > 0 ? ` + ${chunks} chunks, ${(total / 1024).toFixed(0)} KiB in all` : '') +
      `, ${Date.now() - t0} ms)`,
  );
}

const protoDst = join(dist, 'proto');
rmSync(protoDst, { recursive: true, force: true });
cpSync(join(root, 'src/api/proto'), protoDst, { recursive: true });
console.log('src/api/proto → dist/proto');
rmSync(join(dist, 'vendor'), { recursive: true, force: true });
for (const a of VENDOR_ASSETS) {
  cpSync(join(root, 'node_modules', a), join(dist, 'vendor', a), { recursive: true });
  console.log(`node_modules/${a} → dist/vendor/${a}`);
}
