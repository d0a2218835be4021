#!/usr/bin/env node
// Stages Tether into an extra tree for the node image: the bundle from dist/ (npm run
// bundle), the native addons it keeps external with their run-time dependencies (compiled
// here against Node 20's ABI, which the image's Node 20 shares), the `tether` and
// `tether-cni` launchers, and the node's units from installer/systemd.
//   node images/stage.mjs <stage-dir> <node-binary>
// When installer/systemd has no tether-firstboot.service yet, the image's own stand-in
// (images/node/join) is staged instead, so the image always boots into an enrollment.
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const [stage, nodeBin] = process.argv.slice(2);
if (!stage || !nodeBin) {
  console.error('usage: node images/stage.mjs <stage-dir> <node-binary>');
  process.exit(2);
}
const dist = join(root, 'dist');
for (const f of ['tether.mjs', 'proto', 'vendor']) {
  if (!existsSync(join(dist, f))) {
    console.error(`dist/${f} is missing: run \`npm run bundle\` first`);
    process.exit(1);
  }
}

rmSync(stage, { recursive: true, force: true });
const lib = join(stage, 'usr/lib/tether');
mkdirSync(lib, { recursive: true });

// The bundle, its proto files and the vendored data files it resolves next to itself.
for (const f of readdirSync(dist)) {
  if (/\.(mjs|map)$/.test(f) || f === 'proto' || f === 'vendor') cpSync(join(dist, f), join(lib, f), { recursive: true });
}

// The externals of scripts/bundle.mjs and what they require at run time. Build-time-only
// dependencies (prebuild-install fetches binaries, node-addon-api is headers) stay out.
const EXTERNAL = ['better-sqlite3', 'node-pty', 'sd-notify'];
const BUILD_ONLY = new Set(['prebuild-install', 'node-addon-api', 'nan']);
// Sources, build intermediates and docs are dead weight in a root slot.
const SKIP = new Set(['deps', 'src', 'test', 'tests', 'examples', 'third_party', 'prebuilds', 'scripts', 'typings', 'docs', 'obj.target', '.deps', 'binding.gyp', 'node-addon-api']);
const modules = join(root, 'node_modules');
const seen = new Set();
const queue = [...EXTERNAL];
while (queue.length > 0) {
  const name = queue.shift();
  if (seen.has(name) || BUILD_ONLY.has(name)) continue;
  seen.add(name);
  const src = join(modules, name);
  const pkg = JSON.parse(readFileSync(join(src, 'package.json'), 'utf8'));
  queue.push(...Object.keys(pkg.dependencies ?? {}));
  cpSync(src, join(lib, 'node_modules', name), {
    recursive: true,
    dereference: true,
    filter: (p) => {
      const rel = relative(src, p);
      const base = rel.split('/').pop() ?? '';
      if (SKIP.has(base) || base.endsWith('.md') || base === 'test_extension.node') return false;
      // From build/ only the compiled addons are needed.
      if (rel.startsWith('build/') && !rel.startsWith('build/Release') ) return false;
      if (rel.startsWith('build/Release/') && statSync(p).isFile() && !p.endsWith('.node')) return false;
      return true;
    },
  });
}
console.log(`native addons and their run-time dependencies: ${[...seen].sort().join(', ')}`);

const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
writeFileSync(join(lib, 'VERSION'), `${version}\n`);

// Node.js itself.
mkdirSync(join(stage, 'usr/bin'), { recursive: true });
copyFileSync(nodeBin, join(stage, 'usr/bin/node'));
chmodSync(join(stage, 'usr/bin/node'), 0o755);

const launcher = (file, entry) => {
  // TETHER_NODE_FLAGS: node flags that NODE_OPTIONS refuses (the node unit sets --lite-mode).
  writeFileSync(file, `#!/bin/sh\nexec /usr/bin/node \${TETHER_NODE_FLAGS:-} /usr/lib/tether/${entry} "$@"\n`);
  chmodSync(file, 0o755);
};
launcher(join(stage, 'usr/bin/tether'), 'tether.mjs');
if (existsSync(join(dist, 'tether-cni.mjs'))) {
  mkdirSync(join(stage, 'opt/cni/bin'), { recursive: true });
  launcher(join(stage, 'opt/cni/bin/tether-cni'), 'tether-cni.mjs');
}

// Units: everything a node runs (the controller's unit belongs to the central site).
const unitsSrc = join(root, 'installer/systemd');
const unitsDst = join(stage, 'usr/lib/systemd/system');
mkdirSync(unitsDst, { recursive: true });
const units = readdirSync(unitsSrc).filter((u) => /\.(service|timer|socket|path|target)$/.test(u) && !u.startsWith('tether-controller'));
for (const u of units) copyFileSync(join(unitsSrc, u), join(unitsDst, u));
if (!units.includes('tether-firstboot.service')) {
  const join_ = join(root, 'images/node/join');
  copyFileSync(join(join_, 'tether-image-join.service'), join(unitsDst, 'tether-image-join.service'));
  copyFileSync(join(join_, 'tether-image-join.sh'), join(lib, 'tether-image-join.sh'));
  chmodSync(join(lib, 'tether-image-join.sh'), 0o755);
  units.push('tether-image-join.service (stand-in for tether-firstboot.service)');
}
console.log(`units: ${units.join(', ')}`);
// tether-firstboot.service's ExecStartPost= (the Ready marker that skips first boot on later
// boots), where the installer puts it too (scripts/release.mjs: lib/ → /usr/lib/tether).
const ready = join(root, 'installer/firstboot-ready.mjs');
if (existsSync(ready)) copyFileSync(ready, join(lib, 'firstboot-ready.mjs'));

// Docs the units point at (Documentation=file:/usr/share/doc/tether/...).
const doc = join(stage, 'usr/share/doc/tether');
mkdirSync(doc, { recursive: true });
copyFileSync(join(root, 'README.md'), join(doc, 'README.md'));
for (const d of readdirSync(join(root, 'docs'))) copyFileSync(join(root, 'docs', d), join(doc, d));
