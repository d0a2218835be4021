// The release tarball and its installer, against real parts: `npm run release` builds the
// tarball, install.sh installs it into a fresh root (a temp dir with this machine's node, ip,
// nft and sh and their libraries, entered with chroot), systemd checks the installed units,
// and the uninstaller removes everything it and Tether's programs made, down to network
// namespaces, links and nft tables in a namespace this test creates, leaving the tree
// exactly as it was.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO } from './support/proc.js';

const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const work = mkdtempSync(join(tmpdir(), 'tether-inst-'));
let pkgDir = '';

/** Per-run names for the kernel objects the uninstall test creates (namespaces are global). */
const tag = `${process.pid % 100000}`;
const NODE_NS = `t9n${tag}`;
const PREFIX = `t9i${tag}`;
const OTHER_PREFIX = `t9o${tag}`;
const createdNetns: string[] = [];

function sh(cmd: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv } = {}) {
  return spawnSync(cmd, args, { encoding: 'utf8', ...(opts.env ? { env: opts.env } : {}) });
}

function run(file: string, args: readonly string[], env?: NodeJS.ProcessEnv) {
  const r = sh(file, args, env ? { env } : {});
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Content digests by inode (the roots hard-link the host's node: hash it once). */
const digests = new Map<string, string>();
function digest(p: string, st: { dev: number; ino: number; size: number; mtimeMs: number }): string {
  const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
  let d = digests.get(key);
  if (!d) {
    d = createHash('sha256').update(readFileSync(p)).digest('hex');
    digests.set(key, d);
  }
  return d;
}

/** Every path under `root` with its type, mode and content (or link target). */
function snapshot(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of readdirSync(d).sort()) {
      const p = join(d, e);
      const st = lstatSync(p);
      const rel = relative(root, p);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) out.set(rel, `l ${readlinkSync(p)}`);
      else if (st.isDirectory()) {
        out.set(rel, `d ${mode}`);
        walk(p);
      } else out.set(rel, `f ${mode} ${digest(p, st)}`);
    }
  };
  walk(root);
  return out;
}

function diff(a: Map<string, string>, b: Map<string, string>): string[] {
  const keys = new Set([...a.keys(), ...b.keys()]);
  return [...keys]
    .sort()
    .flatMap((k) => (a.get(k) === b.get(k) ? [] : [`${k}: ${a.get(k) ?? '-'} → ${b.get(k) ?? '-'}`]));
}

/** Puts a host file at the same path in `root` (hard link when possible: same content, no copy). */
function place(root: string, path: string): void {
  const dst = join(root, path);
  if (existsSync(dst)) return;
  mkdirSync(dirname(dst), { recursive: true });
  const real = realpathSync(path);
  try {
    linkSync(real, dst);
  } catch {
    copyFileSync(real, dst);
  }
}

/**
 * A fresh Debian-like root (merged /usr) holding `programs` and the libraries they load, and
 * with `systemd`, this machine's systemd units (what `verify` resolves dependencies against).
 */
function makeRoot(programs: readonly string[], opts: { systemd?: boolean } = {}): string {
  const root = mkdtempSync(join(work, 'root-'));
  for (const d of [
    'usr/bin',
    'usr/sbin',
    'usr/lib',
    'usr/lib64',
    'usr/share/doc',
    'etc/sysctl.d',
    'var/lib',
    'run',
    'dev',
    'tmp',
  ]) {
    mkdirSync(join(root, d), { recursive: true });
  }
  for (const l of ['bin', 'sbin', 'lib', 'lib64']) symlinkSync(`usr/${l}`, join(root, l));
  if (opts.systemd) {
    mkdirSync(join(root, 'usr/lib/systemd'), { recursive: true });
    execFileSync('cp', ['-a', '--link', '/usr/lib/systemd/system', join(root, 'usr/lib/systemd/')]);
    mkdirSync(join(root, 'etc/systemd'), { recursive: true });
    execFileSync('cp', ['-a', '/etc/systemd/system', join(root, 'etc/systemd/')]);
  }
  for (const prog of programs) {
    place(root, prog);
    const ldd = sh('ldd', [prog]).stdout;
    for (const m of ldd.matchAll(/(\/\S+\.so[^\s]*)/g)) place(root, m[1] as string);
  }
  return root;
}

const HOST_PROGRAMS = ['/usr/bin/node', '/usr/sbin/ip', '/usr/sbin/nft', '/usr/bin/sh', '/usr/bin/env'];

beforeAll(() => {
  execFileSync(process.execPath, [join(REPO, 'scripts/release.mjs')], { cwd: REPO, stdio: 'pipe' });
  const tarball = join(REPO, 'dist', `tether-${VERSION}-linux-${process.arch}.tar.gz`);
  execFileSync('tar', ['-xzf', tarball, '-C', work]);
  pkgDir = join(work, `tether-${VERSION}`);
}, 120_000);

afterAll(() => {
  for (const ns of [NODE_NS, ...createdNetns]) sh('ip', ['netns', 'delete', ns]);
  rmSync(work, { recursive: true, force: true });
});

describe('release tarball', () => {
  it('runs as extracted: the bundle reports the VERSION file and loads its native addons', () => {
    expect(readFileSync(join(pkgDir, 'VERSION'), 'utf8')).toBe(`${VERSION}\n`);
    const v = run(process.execPath, [join(pkgDir, 'lib/tether.mjs'), '--version']);
    expect(v.stderr).toBe('');
    expect(v.stdout.trim()).toBe(VERSION);
    // The CLI is split (scripts/bundle.mjs): status loads its chunks from next to the entry,
    // and the whole command tree (help) every chunk a command module needs.
    const chunks = readdirSync(join(pkgDir, 'lib')).filter((f) => /^tether-chunk-.*\.mjs$/.test(f));
    expect(chunks.length).toBeGreaterThan(0);
    const s = run(process.execPath, [
      join(pkgDir, 'lib/tether.mjs'),
      'status',
      '--state-dir',
      join(work, 'none'),
    ]);
    expect(s.stderr).toContain('node is not enrolled');
    expect(s.stderr).toContain('[TETHER_E_STATE]');
    const h = run(process.execPath, [join(pkgDir, 'lib/tether.mjs'), '--help']);
    expect(h.stderr).toBe('');
    expect(h.stdout).toContain('status');
    // Each addon from the tarball's own node_modules, not the checkout's.
    const probe = [
      "const r = require('module').createRequire(process.argv[1] + '/');",
      "const D = r('better-sqlite3'); console.log(new D(':memory:').prepare('select 41 + 1 as x').get().x);",
      "console.log(typeof r('sd-notify').ready, typeof r('node-pty').spawn);",
      "console.log(r.resolve('better-sqlite3').startsWith(process.argv[1]));",
    ].join('\n');
    const a = run(process.execPath, ['-e', probe, join(pkgDir, 'lib')]);
    expect(a.stderr).toBe('');
    expect(a.stdout.trim().split('\n')).toEqual(['42', 'function function', 'true']);
    const info = readFileSync(join(pkgDir, 'BUILDINFO'), 'utf8');
    expect(info).toContain(`node_abi=${process.versions.modules}\n`);
  });

  it('SHA256SUMS lists every other file of the tarball with its digest', () => {
    const listed = readFileSync(join(pkgDir, 'SHA256SUMS'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.slice(66));
    const all = [...snapshot(pkgDir)].filter(([, v]) => v.startsWith('f ')).map(([k]) => k);
    expect(listed.sort()).toEqual(all.filter((f) => f !== 'SHA256SUMS').sort());
    const c = spawnSync('sha256sum', ['--strict', '--quiet', '-c', 'SHA256SUMS'], {
      cwd: pkgDir,
      encoding: 'utf8',
    });
    expect(c.status).toBe(0);
    for (const f of [
      'install.sh',
      'lib/tether.mjs',
      'systemd/tether-node.service',
      'systemd/tether-firstboot.service',
    ]) {
      expect(listed).toContain(f);
    }
    for (const a of [
      'better-sqlite3/build/Release/better_sqlite3.node',
      'sd-notify/build/Release/notify.node',
    ]) {
      expect(listed).toContain(`lib/node_modules/${a}`);
    }
  });
});

describe('install.sh', () => {
  const install = () => join(pkgDir, 'install.sh');

  it('refuses a root without nodejs, iproute2 and nftables, says what is missing, changes nothing', () => {
    for (const programs of [[], ['/usr/bin/node'], ['/usr/bin/node', '/usr/sbin/ip']]) {
      const root = makeRoot(programs);
      const before = snapshot(root);
      const r = run(install(), ['--root', root]);
      expect(r.code).toBe(2);
      if (!programs.includes('/usr/bin/node')) expect(r.stderr).toMatch(/nodejs >= 20 \(no node in /);
      if (!programs.includes('/usr/sbin/ip')) expect(r.stderr).toContain('iproute2 (no ip)');
      expect(r.stderr).toContain('nftables (no nft)');
      expect(r.stderr).toContain('nothing was changed');
      expect(diff(before, snapshot(root))).toEqual([]);
    }
  });

  it('refuses a Node.js older than 20 or of another module ABI', () => {
    for (const [ver, abi, want] of [
      ['18.19.0', '108', /nodejs >= 20 \(found node 18\.19\.0/],
      [
        '22.1.0',
        '127',
        /module ABI \d+, the one the native addons were built for \(node 22\.1\.0 at \/usr\/bin\/node has ABI 127/,
      ],
    ] as const) {
      const root = makeRoot(HOST_PROGRAMS.filter((p) => p !== '/usr/bin/node'));
      // A stand-in node that answers the installer's version probe as that version would.
      writeFileSync(join(root, 'usr/bin/node'), `#!/bin/sh\necho "${ver} ${abi}"\n`, { mode: 0o755 });
      const before = snapshot(root);
      const r = run(install(), ['--root', root]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(want);
      expect(diff(before, snapshot(root))).toEqual([]);
    }
  });

  it('refuses a tarball whose files do not match SHA256SUMS', () => {
    const copy = join(work, 'tampered');
    execFileSync('cp', ['-a', pkgDir, copy]);
    appendFileSync(join(copy, 'systemd/tether-node.service'), '\nExecStartPre=/bin/true\n');
    const root = makeRoot(HOST_PROGRAMS);
    const before = snapshot(root);
    const r = run(join(copy, 'install.sh'), ['--root', root]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('systemd/tether-node.service: FAILED');
    expect(r.stderr).toContain('do not match SHA256SUMS');
    expect(diff(before, snapshot(root))).toEqual([]);
    rmSync(copy, { recursive: true, force: true });
  });

  it('installs into a fresh root, units verify and are enabled, uninstall leaves the tree and the kernel as before', () => {
    const root = makeRoot(HOST_PROGRAMS, { systemd: true });
    const before = snapshot(root);

    const r = run(install(), ['--root', root]);
    expect(r.stderr).toContain(`Tether ${VERSION} installed onto ${root}`);
    expect(r.code).toBe(0);
    const unitDir = join(root, 'usr/lib/systemd/system');
    const units = readdirSync(unitDir)
      .filter((u) => u.startsWith('tether-'))
      .sort();
    expect(units).toEqual([
      'tether-controller.service',
      'tether-firstboot.service',
      'tether-node.service',
      'tether-profile.service',
    ]);
    // systemd itself on the installed tree: every ExecStart= resolves inside the root.
    const v = run('systemd-analyze', [
      'verify',
      `--root=${root}`,
      ...units.map((u) => join('/usr/lib/systemd/system', u)),
    ]);
    expect(v.stderr.trim()).toBe('');
    expect(v.code).toBe(0);
    for (const u of ['tether-firstboot.service', 'tether-node.service', 'tether-profile.service']) {
      expect(run('systemctl', [`--root=${root}`, 'is-enabled', u]).stdout.trim()).toBe('enabled');
    }
    expect(
      run('systemctl', [`--root=${root}`, 'is-enabled', 'tether-controller.service']).stdout.trim(),
    ).toBe('disabled');
    // The installed CLI runs in that root.
    // (Without this machine's extra CA bundle: its path does not exist in the root.)
    const { NODE_EXTRA_CA_CERTS: _ca, ...env } = process.env;
    const ver = run('chroot', [root, '/usr/bin/tether', '--version'], env);
    expect(ver.stderr).toBe('');
    expect(ver.stdout.trim()).toBe(VERSION);
    // A second install is refused (it would lose the record of the first).
    const again = run(install(), ['--root', root]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('already installed');

    // What a running node leaves: state, the site's settings, and kernel objects in its
    // namespace (a test namespace standing in for the host's).
    mkdirSync(join(root, 'var/lib/tether/node'), { recursive: true });
    writeFileSync(join(root, 'var/lib/tether/node/identity.yaml'), 'name: n1\n');
    mkdirSync(join(root, 'etc/tether'), { recursive: true });
    writeFileSync(join(root, 'etc/tether/node.env'), `TETHER_NETNS_PREFIX=${PREFIX}\n`);
    mkdirSync(join(root, 'etc/sysctl.d'), { recursive: true });
    writeFileSync(join(root, 'etc/sysctl.d/60-tether.conf'), 'vm.nr_hugepages = 0\n');
    const ip = (...a: string[]) => execFileSync('ip', a, { stdio: 'pipe' });
    const inNs = (...a: string[]) => execFileSync('ip', ['netns', 'exec', NODE_NS, ...a], { stdio: 'pipe' });
    ip('netns', 'add', NODE_NS);
    for (const ns of [`${PREFIX}-vn7`, `${PREFIX}-vn4242`, `${OTHER_PREFIX}-vn7`, `${PREFIX}-vn7x`]) {
      createdNetns.push(ns);
      ip('netns', 'add', ns);
    }
    inNs('ip', 'link', 'add', 'tvx7', 'type', 'vxlan', 'id', '7', 'dstport', '4789', 'nolearning');
    inNs('ip', 'link', 'add', 'tbo7', 'type', 'veth', 'peer', 'name', 'tbo0', 'netns', `${PREFIX}-vn7`);
    inNs('ip', 'link', 'add', 'tvxkeep', 'type', 'bridge'); // not a Tether name: stays
    const t = PREFIX.replace(/-/g, '_');
    execFileSync('ip', ['netns', 'exec', NODE_NS, 'nft', '-f', '-'], {
      input: `table ip tether_${t} {}\ntable ip tether_pm_${t} {}\ntable ip tether_${OTHER_PREFIX} {}\ntable ip keep_me {}\n`,
    });

    // The installed uninstaller (its name selects --uninstall).
    const u = run(join(root, 'usr/sbin/tether-uninstall'), ['--root', root, '--node-netns', NODE_NS]);
    expect(u.stderr).toContain(`Tether removed from ${root}`);
    expect(u.code).toBe(0);
    expect(diff(before, snapshot(root))).toEqual([]);

    const netns = run('ip', ['netns', 'list']).stdout;
    expect(netns).not.toMatch(new RegExp(`^${PREFIX}-vn(7|4242)\\b(?!x)`, 'm'));
    expect(netns).toMatch(new RegExp(`^${OTHER_PREFIX}-vn7\\b`, 'm'));
    expect(netns).toMatch(new RegExp(`^${PREFIX}-vn7x\\b`, 'm'));
    const links = inNs('ip', '-o', 'link', 'show').toString();
    expect(links).not.toMatch(/\b(tvx7|tbo7)[:@]/);
    expect(links).toMatch(/\btvxkeep:/);
    const tables = inNs('nft', 'list', 'tables').toString();
    expect(tables).not.toContain(`tether_${t}\n`);
    expect(tables).not.toContain(`tether_pm_${t}`);
    expect(tables).toContain(`table ip tether_${OTHER_PREFIX}`);
    expect(tables).toContain('table ip keep_me');
  });

  it('--keep-state keeps the node identity and settings; a later install and uninstall still leave the tree as before', () => {
    const root = makeRoot(HOST_PROGRAMS);
    const before = snapshot(root);
    expect(run(install(), ['--root', root]).code).toBe(0);
    mkdirSync(join(root, 'var/lib/tether/node'), { recursive: true });
    writeFileSync(join(root, 'var/lib/tether/node/identity.yaml'), 'name: n1\n');
    const k = run(install(), ['--uninstall', '--root', root, '--keep-state']);
    expect(k.code).toBe(0);
    expect(readFileSync(join(root, 'var/lib/tether/node/identity.yaml'), 'utf8')).toBe('name: n1\n');
    expect(existsSync(join(root, 'usr/lib/tether'))).toBe(false);
    expect(existsSync(join(root, 'usr/bin/tether'))).toBe(false);
    expect(run(install(), ['--root', root]).code).toBe(0);
    expect(run(install(), ['--uninstall', '--root', root]).code).toBe(0);
    expect(diff(before, snapshot(root))).toEqual([]);
  });

  it('refuses to overwrite files it did not install (uninstall would delete them), changes nothing', () => {
    for (const taken of [
      'usr/bin/tether',
      'opt/cni/bin/tether-cni',
      'usr/lib/systemd/system/tether-node.service',
    ]) {
      const root = makeRoot(HOST_PROGRAMS);
      mkdirSync(join(root, dirname(taken)), { recursive: true });
      writeFileSync(join(root, taken), 'someone else\n');
      const before = snapshot(root);
      const r = run(install(), ['--root', root]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('exist already and are not from this installer, nothing was changed');
      expect(r.stderr).toContain(`  - /${taken}\n`);
      expect(diff(before, snapshot(root))).toEqual([]);
    }
  });

  it('an install that fails part way is removed completely by uninstall', () => {
    const root = makeRoot(HOST_PROGRAMS);
    // A file where the installer needs a directory: it stops after the bundle is in place.
    writeFileSync(join(root, 'usr/share/doc/tether'), 'in the way\n');
    const before = snapshot(root);
    const r = run(install(), ['--root', root]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('failed part way');
    expect(existsSync(join(root, 'usr/lib/tether/tether.mjs'))).toBe(true);
    const u = run(install(), ['--uninstall', '--root', root]);
    expect(u.code).toBe(0);
    expect(diff(before, snapshot(root))).toEqual([]);
  });

  it('uninstall of a root with nothing installed says so and changes nothing', () => {
    const root = makeRoot([]);
    const before = snapshot(root);
    const r = run(install(), ['--uninstall', '--root', root]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no Tether installation recorded');
    expect(diff(before, snapshot(root))).toEqual([]);
  });
});
