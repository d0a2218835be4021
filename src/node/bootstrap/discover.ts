import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asTetherError, describeError, TetherError } from '../../lib/errors.js';
import type { CommandRunner } from '../../lib/exec.js';
import { type BootstrapConfig, checkBootstrap, MAX_BOOTSTRAP_BYTES, parseBootstrap } from './config.js';

/**
 * Bootstrap discovery (docs/node.md "First boot"): the sources in their fixed order, first
 * valid hit wins. A source that holds an invalid configuration is reported and the next one
 * is tried, so a config drive can rescue a broken image default; when nothing valid is
 * found the caller enters maintenance mode with `maintenanceMessage`.
 */
export const SOURCES = ['state', 'image', 'cmdline', 'config-drive', 'dhcp', 'local-file'] as const;
export type SourceName = (typeof SOURCES)[number];

export const DEFAULTS = {
  imagePath: '/usr/lib/tether/bootstrap.yaml',
  localFile: '/etc/tether/bootstrap.yaml',
  cmdline: '/proc/cmdline',
  labels: ['TETHER', 'CIDATA', 'cidata'],
  vendorClass: 'tether',
  dhcpTimeoutSeconds: 10,
} as const;

export interface DiscoveryOptions {
  /** The persisted copy first boot writes (`<state-dir>/bootstrap.yaml`). */
  statePath: string;
  imagePath?: string;
  localFile?: string;
  /** Stands in for /proc/cmdline in tests. */
  cmdlinePath?: string;
  /** Filesystem labels of a config drive. */
  labels?: readonly string[];
  /** Block devices to consider instead of asking blkid for every device with a label. */
  devices?: readonly string[];
  /** Directories holding a config drive's files, looked at instead of block devices: a
   *  drive the platform has mounted already, or the lab's per-node drive. */
  driveDirs?: readonly string[];
  /** Interfaces DHCP asks on; default: every interface with a device behind it (a NIC). */
  dhcpInterfaces?: readonly string[];
  /** Off: skip DHCP (a node with a static WAN, or tests of other sources). */
  dhcp?: boolean;
  dhcpTimeoutSeconds?: number;
  vendorClass?: string;
  /** Sources to skip (first boot skips `state` when it looks again after a failure). */
  skip?: readonly SourceName[];
  runner: CommandRunner;
  /** Progress for the console. */
  progress?: (line: string) => void;
}

export interface Found {
  source: SourceName;
  /** Where exactly: a path, a device, `eth0 option 143`. */
  origin: string;
  config: BootstrapConfig;
  /** The configuration as text (what first boot persists). */
  text: string;
}

export interface Miss {
  source: SourceName;
  where: string;
  why: string;
}

export type Discovery = { found: Found; misses: Miss[] } | { found?: undefined; misses: Miss[] };

const readBounded = (path: string, name = path): string => {
  const st = statSync(path);
  if (!st.isFile()) throw new TetherError('TETHER_E_INVALID', 'is not a regular file', { file: name });
  if (st.size > MAX_BOOTSTRAP_BYTES)
    throw new TetherError('TETHER_E_TOO_LARGE', `bootstrap configuration is ${st.size} bytes`, {
      file: name,
      expected: `at most ${MAX_BOOTSTRAP_BYTES} bytes`,
    });
  return readFileSync(path, 'utf8');
};

const why = (e: unknown) => describeError(asTetherError(e));

export async function discover(opts: DiscoveryOptions): Promise<Discovery> {
  const misses: Miss[] = [];
  const say = opts.progress ?? (() => {});
  const skip = new Set(opts.skip ?? []);
  const fromFile = (source: SourceName, path: string): Found | undefined => {
    if (!existsSync(path)) {
      misses.push({ source, where: path, why: 'not there' });
      return undefined;
    }
    try {
      const text = readBounded(path);
      return { source, origin: path, config: parseBootstrap(text, path), text };
    } catch (e) {
      misses.push({ source, where: path, why: why(e) });
      return undefined;
    }
  };
  const steps: Record<SourceName, () => Promise<Found | undefined> | Found | undefined> = {
    state: () => fromFile('state', opts.statePath),
    image: () => fromFile('image', opts.imagePath ?? DEFAULTS.imagePath),
    cmdline: () => fromCmdline(opts.cmdlinePath ?? DEFAULTS.cmdline, misses),
    'config-drive': () => fromConfigDrive(opts, misses, say),
    dhcp: () => {
      if (opts.dhcp === false) {
        misses.push({ source: 'dhcp', where: '-', why: 'turned off' });
        return undefined;
      }
      return fromDhcp(opts, misses, say);
    },
    'local-file': () => fromFile('local-file', opts.localFile ?? DEFAULTS.localFile),
  };
  for (const s of SOURCES) {
    if (skip.has(s)) continue;
    say(`looking for bootstrap configuration: ${s}`);
    const f = await steps[s]();
    if (f) return { found: f, misses };
  }
  return { misses };
}

// ── kernel command line ────────────────────────────────────────────────────────────────────

/**
 * `tether.bootstrap=VALUE`: VALUE starting with `/` is a path to a bootstrap file; otherwise
 * it is the file itself, base64url-encoded (RFC 4648 §5, padding optional), since a kernel
 * argument cannot hold spaces or newlines.
 */
function fromCmdline(path: string, misses: Miss[]): Found | undefined {
  let line: string;
  try {
    line = readBounded(path).slice(0, 64 * 1024);
  } catch (e) {
    misses.push({ source: 'cmdline', where: path, why: why(e) });
    return undefined;
  }
  const args = line
    .trim()
    .split(/\s+/)
    .filter((a) => a.startsWith('tether.bootstrap='));
  const arg = args.at(-1);
  if (!arg) {
    misses.push({ source: 'cmdline', where: path, why: 'no tether.bootstrap= argument' });
    return undefined;
  }
  const value = arg.slice('tether.bootstrap='.length);
  const name = `kernel command line (${path}) tether.bootstrap`;
  try {
    if (value.startsWith('/')) {
      const text = readBounded(value);
      return { source: 'cmdline', origin: value, config: parseBootstrap(text, value), text };
    }
    if (!/^[A-Za-z0-9_-]+={0,2}$/.test(value))
      throw new TetherError('TETHER_E_INVALID', 'is neither a path nor base64url', {
        file: name,
        expected:
          'tether.bootstrap=/path/to/bootstrap.yaml or tether.bootstrap=<base64url of bootstrap.yaml>',
      });
    const text = Buffer.from(value, 'base64url').toString('utf8');
    return { source: 'cmdline', origin: name, config: parseBootstrap(text, name), text };
  } catch (e) {
    misses.push({ source: 'cmdline', where: name, why: why(e) });
    return undefined;
  }
}

// ── config drive ───────────────────────────────────────────────────────────────────────────

async function devicesWithLabel(runner: CommandRunner, label: string): Promise<string[]> {
  // -c /dev/null: no cache, so a drive plugged in a moment ago is seen.
  const r = await runner.run('blkid', ['-c', '/dev/null', '-t', `LABEL=${label}`, '-o', 'device'], {
    allowFailure: true,
    timeoutMs: 15_000,
  });
  return r.code === 0 ? r.stdout.split('\n').filter(Boolean) : [];
}

async function labelOf(runner: CommandRunner, dev: string): Promise<string | undefined> {
  const r = await runner.run('blkid', ['-c', '/dev/null', '-o', 'value', '-s', 'LABEL', dev], {
    allowFailure: true,
    timeoutMs: 15_000,
  });
  return r.code === 0 ? r.stdout.trim() : undefined;
}

async function fromConfigDrive(
  opts: DiscoveryOptions,
  misses: Miss[],
  say: (l: string) => void,
): Promise<Found | undefined> {
  if (opts.driveDirs) return fromDriveDirs(opts.driveDirs, misses, say);
  const labels = opts.labels ?? DEFAULTS.labels;
  const candidates: Array<{ dev: string; label: string }> = [];
  if (opts.devices) {
    for (const dev of opts.devices) {
      const label = await labelOf(opts.runner, dev);
      if (label && labels.includes(label)) candidates.push({ dev, label });
      else
        misses.push({ source: 'config-drive', where: dev, why: `label is ${label ? `"${label}"` : 'none'}` });
    }
  } else {
    for (const label of labels)
      for (const dev of await devicesWithLabel(opts.runner, label)) candidates.push({ dev, label });
  }
  if (candidates.length === 0) {
    misses.push({
      source: 'config-drive',
      where: opts.devices ? opts.devices.join(', ') : 'block devices',
      why: `no filesystem labelled ${labels.join(' or ')}`,
    });
    return undefined;
  }
  for (const { dev, label } of candidates) {
    say(`config drive ${dev} (label ${label}): mounting read-only`);
    const dir = mkdtempSync(join(tmpdir(), 'tether-cfgdrive-'));
    let mounted = false;
    try {
      const m = await opts.runner.run('mount', ['-o', 'ro,nosuid,nodev,noexec', dev, dir], {
        allowFailure: true,
        timeoutMs: 30_000,
      });
      if (m.code !== 0) {
        misses.push({
          source: 'config-drive',
          where: dev,
          why: `cannot mount: ${m.stderr.trim() || `exit ${m.code}`}`,
        });
        continue;
      }
      mounted = true;
      const f = fromDriveTree(dir, dev, `${dev}:/`, misses);
      if (f) return f;
    } finally {
      if (mounted) await opts.runner.run('umount', [dir], { allowFailure: true, timeoutMs: 30_000 });
      try {
        rmdirSync(dir);
      } catch {
        // still mounted (umount failed): leave the directory rather than delete through it
      }
    }
  }
  return undefined;
}

/** bootstrap.yaml (any case) at the top of a config drive's tree (mounted at `dir`). */
function fromDriveTree(dir: string, drive: string, prefix: string, misses: Miss[]): Found | undefined {
  let name: string | undefined;
  try {
    name = readdirSync(dir).find((n) => n.toLowerCase() === 'bootstrap.yaml');
  } catch (e) {
    misses.push({ source: 'config-drive', where: drive, why: why(e) });
    return undefined;
  }
  if (!name) {
    misses.push({ source: 'config-drive', where: drive, why: 'holds no bootstrap.yaml' });
    return undefined;
  }
  const where = `${prefix}${name}`;
  try {
    const text = readBounded(join(dir, name), where);
    return { source: 'config-drive', origin: where, config: parseBootstrap(text, where), text };
  } catch (e) {
    misses.push({ source: 'config-drive', where, why: why(e) });
    return undefined;
  }
}

function fromDriveDirs(dirs: readonly string[], misses: Miss[], say: (l: string) => void): Found | undefined {
  for (const dir of dirs) {
    if (!existsSync(dir) || !statSync(dir).isDirectory()) {
      misses.push({ source: 'config-drive', where: dir, why: 'no such directory' });
      continue;
    }
    say(`config drive directory ${dir}`);
    const f = fromDriveTree(dir, dir, `${dir.replace(/\/+$/, '')}/`, misses);
    if (f) return f;
  }
  return undefined;
}

// ── DHCP ───────────────────────────────────────────────────────────────────────────────────

/**
 * Bootstrap URIs of RFC 8572's DHCPv4 option 143 (a list of 16-bit length + URI) or of
 * option 43 (sub-option 1, one URI each, sent for vendor class `tether`). Tether's URI is
 * `tether://HOST:PORT?token=<token>&site=<site>[&ca=<64 hex>][&profile=P][&name=N]` (`ca`
 * defaults to the fingerprint in the token: an option holds at most 255 bytes); several
 * URIs list several controllers (the other fields are taken from the first).
 */
export function parseOption143(hex: string): string[] {
  const b = Buffer.from(hex, 'hex');
  const out: string[] = [];
  let i = 0;
  while (i + 2 <= b.length) {
    const n = b.readUInt16BE(i);
    i += 2;
    if (i + n > b.length) break;
    out.push(b.subarray(i, i + n).toString('utf8'));
    i += n;
  }
  return out;
}

export function parseOption43(hex: string): string[] {
  const b = Buffer.from(hex, 'hex');
  const out: string[] = [];
  let i = 0;
  while (i + 2 <= b.length) {
    const code = b[i]!;
    const n = b[i + 1]!;
    i += 2;
    if (code === 0) continue;
    if (code === 255 || i + n > b.length) break;
    if (code === 1) out.push(b.subarray(i, i + n).toString('utf8'));
    i += n;
  }
  return out;
}

/** Bootstrap configuration from `tether://` URIs (option 143/43): the same checks as a file. */
export function configFromUris(uris: readonly string[], origin: string): BootstrapConfig {
  const controllers: string[] = [];
  let first: URL | undefined;
  for (const [i, u] of uris.entries()) {
    let url: URL;
    try {
      url = new URL(u);
    } catch {
      throw new TetherError('TETHER_E_INVALID', `URI ${i + 1} is not a URI`, {
        file: origin,
        field: `uri[${i}]`,
        expected: 'tether://HOST:PORT?ca=…&token=…&site=…',
      });
    }
    if (url.protocol !== 'tether:') continue;
    first ??= url;
    controllers.push(url.host);
  }
  if (!first)
    throw new TetherError('TETHER_E_INVALID', 'no tether:// URI', {
      file: origin,
      field: 'uri',
      expected: 'tether://HOST:PORT?ca=…&token=…&site=…',
    });
  const q = first.searchParams;
  const obj: Record<string, unknown> = {
    apiVersion: 'tether.dev/v1',
    kind: 'Bootstrap',
    controllers,
    // A DHCP option holds at most 255 bytes: `ca` may be left out, the token carries it.
    ...(q.has('ca')
      ? { caFingerprint: q.get('ca') }
      : /^T10[0-9a-f]{64}::/.test(q.get('token') ?? '')
        ? { caFingerprint: q.get('token')!.slice(3, 67) }
        : {}),
    ...(q.has('token') ? { token: q.get('token') } : {}),
    ...(q.has('site') ? { site: q.get('site') } : {}),
    ...(q.has('profile') ? { profile: q.get('profile') } : {}),
    ...(q.has('name') ? { nodeName: q.get('name') } : {}),
  };
  return checkBootstrap(obj, origin);
}

function physicalInterfaces(): string[] {
  try {
    return readdirSync('/sys/class/net')
      .filter((n) => n !== 'lo' && existsSync(`/sys/class/net/${n}/device`))
      .sort();
  } catch {
    return [];
  }
}

/**
 * Asks DHCP on each WAN candidate with busybox udhcpc: it binds to the interface itself (raw
 * socket, so it works before the interface has an address), sends the vendor class, requests
 * options 43 and 143, and hands every option to our script as `optNNN` hex, which the script
 * writes to a file. The script configures nothing: the address is networkd's business.
 */
async function fromDhcp(
  opts: DiscoveryOptions,
  misses: Miss[],
  say: (l: string) => void,
): Promise<Found | undefined> {
  const ifs = opts.dhcpInterfaces ?? physicalInterfaces();
  if (ifs.length === 0) {
    misses.push({ source: 'dhcp', where: '-', why: 'no network interface to ask on' });
    return undefined;
  }
  const timeout = opts.dhcpTimeoutSeconds ?? DEFAULTS.dhcpTimeoutSeconds;
  for (const ifname of ifs) {
    say(
      `DHCP on ${ifname}: asking for option 143 / 43 (vendor class ${opts.vendorClass ?? DEFAULTS.vendorClass})`,
    );
    const dir = mkdtempSync(join(tmpdir(), 'tether-dhcp-'));
    const out = join(dir, 'lease');
    const script = join(dir, 'script');
    writeFileSync(
      script,
      `#!/bin/sh\n[ "$1" = bound ] || [ "$1" = renew ] || exit 0\n{ echo "opt143=$opt143"; echo "opt43=$opt43"; echo "ip=$ip"; } > "${out}"\n`,
      { mode: 0o700 },
    );
    try {
      // -t tries × -T seconds bounds the wait; -q quits once bound; -n fails without a lease.
      const tries = Math.max(1, Math.ceil(timeout / 2));
      const r = await opts.runner.run(
        'busybox',
        [
          'udhcpc',
          '-f',
          '-q',
          '-n',
          '-i',
          ifname,
          '-s',
          script,
          '-t',
          String(tries),
          '-T',
          '2',
          '-A',
          '1',
          '-V',
          opts.vendorClass ?? DEFAULTS.vendorClass,
          '-O',
          '43',
          '-O',
          '143',
        ],
        { allowFailure: true, timeoutMs: (timeout + 10) * 1000 },
      );
      if (!existsSync(out)) {
        misses.push({
          source: 'dhcp',
          where: ifname,
          why: `no DHCP lease within ${timeout} s${r.code ? ` (udhcpc exit ${r.code})` : ''}`,
        });
        continue;
      }
      const lease = Object.fromEntries(
        readFileSync(out, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      ) as Record<string, string>;
      for (const [code, parse] of [
        ['143', parseOption143],
        ['43', parseOption43],
      ] as const) {
        const hex = lease[`opt${code}`] ?? '';
        if (!/^(?:[0-9a-fA-F]{2})+$/.test(hex)) continue;
        const origin = `DHCP option ${code} on ${ifname}`;
        const uris = parse(hex);
        try {
          const config = configFromUris(uris, origin);
          return { source: 'dhcp', origin, config, text: bootstrapText(config) };
        } catch (e) {
          misses.push({ source: 'dhcp', where: origin, why: why(e) });
        }
      }
      misses.push({
        source: 'dhcp',
        where: ifname,
        why: `lease ${lease.ip ?? ''} carries no usable option 143 or 43`,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return undefined;
}

export function bootstrapText(c: BootstrapConfig): string {
  return `${JSON.stringify(c, null, 2)}\n`;
}

// ── maintenance mode ───────────────────────────────────────────────────────────────────────

const SOURCE_TITLE: Record<SourceName, string> = {
  state: 'state on disk',
  image: 'image',
  cmdline: 'kernel command line',
  'config-drive': 'config drive',
  dhcp: 'DHCP',
  'local-file': 'local file',
};

/** What the console says when no source gave a configuration: what is missing, where it was
 *  looked for, and each way to provide it, in words a field technician can act on. */
export function maintenanceMessage(
  misses: readonly Miss[],
  opts: { localFile?: string; retrySeconds: number },
): string {
  const lines = [
    'TETHER MAINTENANCE MODE: this node has no bootstrap configuration.',
    'It needs: the controller address, the controller CA fingerprint, a join token and the site name.',
    'Looked in (in this order):',
  ];
  for (const m of misses) lines.push(`  - ${SOURCE_TITLE[m.source]}: ${m.where}: ${m.why}`);
  lines.push(
    'To provide it, do ONE of these:',
    '  1. Plug in a USB stick whose filesystem is labelled TETHER (or CIDATA) with a file',
    '     bootstrap.yaml on it (ask the central site for this file).',
    '  2. Ask the network team to serve DHCP option 143 (RFC 8572) or option 43 with vendor',
    '     class "tether" on the WAN, carrying tether://CONTROLLER:PORT?token=…&site=…',
    `  3. Copy bootstrap.yaml to ${opts.localFile ?? DEFAULTS.localFile} on this node.`,
    `This node looks again every ${opts.retrySeconds} s; nothing else needs to be done.`,
  );
  return lines.join('\n');
}
