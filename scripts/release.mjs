#!/usr/bin/env node
// `npm run release`: builds the release tarball an installer puts onto a Debian 12 host with
// no network access (docs/install.md). Layout inside tether-<version>/:
//   VERSION          the version, one line
//   BUILDINFO        key=value: node ABI and arch the native addons were built for, commit
//   SHA256SUMS       sha256sum(1) lines for every other file (install.sh checks them)
//   install.sh       the installer (also the uninstaller: --uninstall)
//   lib/             the bundle (tether.mjs and its tether-chunk-*.mjs, tether-cni.mjs,
//                    proto/, vendor/) and the
//                    native addons it loads from lib/node_modules
//   bin/             tether and tether-cni wrappers as installed to /usr/bin, /opt/cni/bin
//   systemd/         the units;  profiles/  the shipped profiles;  doc/  README and docs
// Output: dist/tether-<version>-linux-<arch>.tar.gz (and the staged tree next to it).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const version = pkg.version;
const name = `tether-${version}`;
const stage = join(dist, 'release', name);
const tarball = join(dist, `${name}-linux-${process.arch}.tar.gz`);

const step = (m) => process.stderr.write(`==> ${m}\n`);

step('bundling (scripts/bundle.mjs)');
execFileSync(process.execPath, [join(root, 'scripts/bundle.mjs')], { stdio: 'inherit' });

rmSync(join(dist, 'release'), { recursive: true, force: true });
mkdirSync(stage, { recursive: true });

step('bundle → lib/');
// tether.mjs loads its chunks (scripts/bundle.mjs CHUNK_PREFIX) from next to itself.
const chunks = readdirSync(dist).filter((f) => f.startsWith('tether-chunk-'));
if (!chunks.some((f) => f.endsWith('.mjs')))
  throw new Error('dist/tether-chunk-*.mjs are missing after the bundle');
for (const f of [
  'tether.mjs',
  'tether.mjs.map',
  ...chunks,
  'tether-cni.mjs',
  'tether-cni.mjs.map',
  'proto',
  'vendor',
]) {
  if (!existsSync(join(dist, f))) {
    if (f.startsWith('tether-cni')) continue; // the CNI entry is optional in bundle.mjs
    throw new Error(`dist/${f} is missing after the bundle`);
  }
  cpSync(join(dist, f), join(stage, 'lib', f), { recursive: true });
}

/**
 * Native addons stay outside the bundle (scripts/bundle.mjs EXTERNAL); they ship as the
 * built .node files plus the JavaScript that loads them, nothing of their sources or build
 * trees. `files` are paths inside the package; directories are copied without tests and maps.
 */
const ADDONS = [
  { pkg: 'better-sqlite3', files: ['package.json', 'LICENSE', 'lib', 'build/Release/better_sqlite3.node'] },
  // better-sqlite3 finds its .node through `bindings`, which needs file-uri-to-path.
  { pkg: 'bindings', files: ['package.json', 'LICENSE.md', 'bindings.js'] },
  { pkg: 'file-uri-to-path', files: ['package.json', 'LICENSE', 'index.js'] },
  { pkg: 'node-pty', files: ['package.json', 'LICENSE', 'lib', 'build/Release/pty.node'] },
  { pkg: 'sd-notify', files: ['package.json', 'LICENSE', 'index.js', 'build/Release/notify.node'] },
];
const SKIP = /(\.map|\.test\.js|\.d\.ts)$/;

function copyFiltered(src, dst) {
  if (statSync(src).isDirectory()) {
    for (const e of readdirSync(src)) {
      if (e === 'test' || e === 'tests' || SKIP.test(e)) continue;
      copyFiltered(join(src, e), join(dst, e));
    }
    return;
  }
  mkdirSync(dirname(dst), { recursive: true });
  cpSync(src, dst);
}

step('native addons → lib/node_modules/');
for (const a of ADDONS) {
  const from = join(root, 'node_modules', a.pkg);
  for (const f of a.files) {
    const src = join(from, f);
    if (!existsSync(src)) {
      if (f.startsWith('LICENSE')) continue;
      throw new Error(`node_modules/${a.pkg}/${f} is missing: run npm ci (it builds the native addons)`);
    }
    copyFiltered(src, join(stage, 'lib/node_modules', a.pkg, f));
  }
}

step('wrappers, units, profiles, docs, installer');
mkdirSync(join(stage, 'bin'));
const wrapper = (entry, what) =>
  `#!/bin/sh\n# ${what} (installed by Tether's install.sh; see /usr/share/doc/tether/install.md)\n` +
  '# TETHER_NODE_FLAGS: node flags that NODE_OPTIONS refuses (the node unit sets --lite-mode).\n' +
  `exec node \${TETHER_NODE_FLAGS:-} /usr/lib/tether/${entry} "$@"\n`;
writeFileSync(join(stage, 'bin/tether'), wrapper('tether.mjs', 'The tether CLI'));
if (existsSync(join(stage, 'lib/tether-cni.mjs')))
  writeFileSync(join(stage, 'bin/tether-cni'), wrapper('tether-cni.mjs', 'The tether-cni CNI plugin'));
for (const f of readdirSync(join(stage, 'bin'))) chmodSync(join(stage, 'bin', f), 0o755);
cpSync(join(root, 'installer/systemd'), join(stage, 'systemd'), { recursive: true });
cpSync(join(root, 'profiles'), join(stage, 'profiles'), { recursive: true });
mkdirSync(join(stage, 'doc'));
cpSync(join(root, 'README.md'), join(stage, 'doc/README.md'));
for (const f of readdirSync(join(root, 'docs')))
  if (f.endsWith('.md')) cpSync(join(root, 'docs', f), join(stage, 'doc', f));
cpSync(join(root, 'installer/install.sh'), join(stage, 'install.sh'));
cpSync(join(root, 'installer/firstboot-ready.mjs'), join(stage, 'lib/firstboot-ready.mjs'));
chmodSync(join(stage, 'install.sh'), 0o755);

writeFileSync(join(stage, 'VERSION'), `${version}\n`);
let commit = 'unknown';
try {
  commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
} catch {
  // not a git checkout (a source tarball): the commit stays unknown
}
writeFileSync(
  join(stage, 'BUILDINFO'),
  [
    `version=${version}`,
    // .node files only load into the Node.js ABI they were built for (process.versions.modules).
    `node_abi=${process.versions.modules}`,
    `node_version=${process.versions.node}`,
    `arch=${process.arch}`,
    `commit=${commit}`,
    '',
  ].join('\n'),
);

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)],
  );
}
const files = walk(stage)
  .map((f) => relative(stage, f))
  .sort();
const sums = files.map(
  (f) =>
    `${createHash('sha256')
      .update(readFileSync(join(stage, f)))
      .digest('hex')}  ${f}`,
);
writeFileSync(join(stage, 'SHA256SUMS'), `${sums.join('\n')}\n`);

step(`tarball → ${relative(root, tarball)}`);
rmSync(tarball, { force: true });
// Fixed owner and order so the same tree gives the same archive listing.
execFileSync(
  'tar',
  [
    '--sort=name',
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '-czf',
    tarball,
    '-C',
    join(dist, 'release'),
    name,
  ],
  { stdio: 'inherit' },
);
const bytes = statSync(tarball).size;
console.log(
  `${relative(root, tarball)} (${(bytes / 1024 / 1024).toFixed(1)} MiB, ${files.length + 1} files)`,
);
