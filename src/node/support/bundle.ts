import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  constants as fsc,
  fstatSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { TetherError } from '../../lib/errors.js';
import type { CommandRunner } from '../../lib/exec.js';
import { MAX_REDACT_BYTES, redactText } from './redact.js';

/**
 * The support bundle (`tether bundle`, docs/field.md): a gzipped tarball a technician hands
 * to the NOC. Every file in it passes through the redactor; a manifest lists each file with
 * its size and sha256 so the NOC can tell a truncated upload from a complete one, and
 * whatever was left out (over the size cap, unreadable) is named there with the reason.
 */

/** Total uncompressed bytes in a bundle by default; past it files are left out (and named). */
export const DEFAULT_BUNDLE_CAP = 32 * 1024 * 1024;
/** State-directory files larger than this are not copied (a cache of a big site is not config). */
const MAX_STATE_FILE = 2 * 1024 * 1024;
/** State-directory walk bound: depth and entries. */
const MAX_DEPTH = 3;
const MAX_ENTRIES = 2000;

export interface BundleEntry {
  path: string;
  bytes: number;
  sha256: string;
  /** Secrets replaced in it. */
  redactions: number;
}

export interface BundleManifest {
  format: 'tether-bundle/1';
  createdAt: string;
  node?: string;
  capBytes: number;
  files: BundleEntry[];
  omitted: Array<{ path: string; reason: string }>;
}

export interface BundleSources {
  stateDir: string;
  runner: CommandRunner;
  /** Structured parts computed by the caller (status view, diag result, versions). */
  parts: Record<string, unknown>;
  /** Log lines (already bounded by the caller). */
  logs?: string;
  node?: string;
  capBytes?: number;
  now?: () => Date;
}

/** Files of the state directory that are copied, redacted; sockets, fifos and big files are not. */
function stateFiles(root: string): { files: string[]; skipped: Array<{ path: string; reason: string }> } {
  const files: string[] = [];
  const skipped: Array<{ path: string; reason: string }> = [];
  const walk = (dir: string, depth: number): void => {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch (e) {
      skipped.push({ path: relative(root, dir) || '.', reason: `unreadable: ${(e as Error).message}` });
      return;
    }
    for (const n of names) {
      if (files.length + skipped.length >= MAX_ENTRIES) return;
      const p = join(dir, n);
      const rel = relative(root, p);
      let st: ReturnType<typeof lstatSync>;
      try {
        st = lstatSync(p);
      } catch (e) {
        // Gone between readdir and lstat (a daemon rotating a file): named, not fatal.
        skipped.push({ path: rel, reason: `unreadable: ${(e as Error).message}` });
        continue;
      }
      // The daemon's own log files go in once, as logs.jsonl, not twice against the cap.
      if (depth === 0 && n === 'logs' && st.isDirectory()) {
        skipped.push({ path: rel, reason: 'the logs are in logs.jsonl' });
        continue;
      }
      if (st.isDirectory()) {
        if (depth < MAX_DEPTH) walk(p, depth + 1);
        else skipped.push({ path: rel, reason: `deeper than ${MAX_DEPTH} levels` });
      } else if (st.isFile()) {
        if (st.size > MAX_STATE_FILE) skipped.push({ path: rel, reason: `over ${MAX_STATE_FILE} bytes` });
        else files.push(rel);
      }
      // symlinks, sockets, fifos: not followed, not copied
    }
  };
  walk(root, 0);
  return { files, skipped };
}

/**
 * Reads a regular file without following a symlink at its last component and with a size
 * bound checked on the open descriptor: the walk's lstat and this read are two steps, and a
 * file swapped for a symlink (to a key outside the state directory) or grown in between must
 * not end up in a bundle that leaves the site.
 */
export function readRegularFileNoFollow(path: string, maxBytes: number): Buffer {
  const fd = openSync(path, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new TetherError('TETHER_E_INVALID', `${path}: not a regular file`);
    if (st.size > maxBytes) throw new TetherError('TETHER_E_TOO_LARGE', `${path}: over ${maxBytes} bytes`);
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off);
  } finally {
    closeSync(fd);
  }
}

/** Kernel state Tether owns: its nft tables, vxlan/bridge/veth devices, routes and rules, BIRD. */
async function kernelParts(runner: CommandRunner, stateDir: string): Promise<Record<string, string>> {
  const run = async (cmd: string, args: string[]): Promise<string> => {
    try {
      const r = await runner.run(cmd, args, { allowFailure: true, timeoutMs: 5000 });
      return `$ ${cmd} ${args.join(' ')}\n${r.stdout}${r.stderr ? `\n[stderr]\n${r.stderr}` : ''}${r.code ? `\n[exit ${r.code}]` : ''}\n`;
    } catch (e) {
      return `$ ${cmd} ${args.join(' ')}\n[not run: ${(e as Error).message}]\n`;
    }
  };
  const out: Record<string, string> = {};
  const tables = await run('nft', ['list', 'tables']);
  let nft = tables;
  for (const m of tables.matchAll(/^table (\S+) (\S*tether\S*)$/gm)) {
    nft += await run('nft', ['list', 'table', m[1] as string, m[2] as string]);
  }
  out['kernel/nft.txt'] = nft;
  let links = '';
  for (const kind of ['vxlan', 'bridge', 'veth', 'vrf']) {
    links += await run('ip', ['-d', 'link', 'show', 'type', kind]);
  }
  out['kernel/ip-link.txt'] = links;
  out['kernel/ip-route.txt'] =
    (await run('ip', ['route', 'show', 'table', 'all'])) +
    (await run('ip', ['-d', 'neigh', 'show', 'nud', 'permanent']));
  out['kernel/ip-rule.txt'] = await run('ip', ['rule', 'show']);
  out['kernel/netns.txt'] = await run('ip', ['netns', 'list']);
  const birdSock = join(stateDir, 'gateway', 'bird.ctl');
  let bird = '';
  try {
    if (lstatSync(birdSock).isSocket()) {
      const { BirdClient } = await import('../../bgp/birdc.js');
      const c = new BirdClient(birdSock, 3000);
      try {
        bird += `greeting: ${await c.open()}\n`;
        for (const cmd of ['show status', 'show protocols all', 'show bfd sessions', 'show route count']) {
          const r = await c.command(cmd);
          bird += `> ${cmd}\n${r.lines.map((l) => l.text).join('\n')}\n`;
        }
      } finally {
        c.close();
      }
    }
  } catch (e) {
    bird += `[BIRD not reachable at ${birdSock}: ${(e as Error).message}]\n`;
  }
  if (bird) out['kernel/bird.txt'] = bird;
  return out;
}

/** Builds the bundle at `outFile` (a .tar.gz) and returns its manifest. */
export async function writeBundle(outFile: string, src: BundleSources): Promise<BundleManifest> {
  const cap = src.capBytes ?? DEFAULT_BUNDLE_CAP;
  if (!Number.isInteger(cap) || cap < 64 * 1024) {
    throw new TetherError('TETHER_E_INVALID', `bundle size cap ${cap}`, {
      field: '--max-size',
      expected: 'at least 65536 bytes',
    });
  }
  const now = src.now ?? (() => new Date());
  const top = `tether-bundle-${(src.node ?? 'node').replace(/[^A-Za-z0-9_.-]/g, '_')}-${now().toISOString().replace(/[:.]/g, '')}`;
  const work = mkdtempSync(join(tmpdir(), 'tether-bundle-'));
  const root = join(work, top);
  const manifest: BundleManifest = {
    format: 'tether-bundle/1',
    createdAt: now().toISOString(),
    ...(src.node ? { node: src.node } : {}),
    capBytes: cap,
    files: [],
    omitted: [],
  };
  let total = 0;
  const add = (path: string, content: string): void => {
    if (Buffer.byteLength(content) > MAX_REDACT_BYTES) {
      manifest.omitted.push({ path, reason: `over ${MAX_REDACT_BYTES} bytes` });
      return;
    }
    const r = redactText(content);
    const buf = Buffer.from(r.text);
    if (total + buf.length > cap) {
      manifest.omitted.push({ path, reason: `bundle size cap ${cap} bytes reached` });
      return;
    }
    total += buf.length;
    const file = join(root, path);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, buf, { mode: 0o600 });
    manifest.files.push({
      path,
      bytes: buf.length,
      sha256: createHash('sha256').update(buf).digest('hex'),
      redactions: r.count,
    });
  };
  try {
    // Small, most useful first: a capped bundle still has status and diag.
    for (const [name, value] of Object.entries(src.parts))
      add(`${name}.json`, `${JSON.stringify(value, null, 2)}\n`);
    for (const [name, text] of Object.entries(await kernelParts(src.runner, src.stateDir))) add(name, text);
    const sf = stateFiles(src.stateDir);
    for (const rel of sf.files) {
      let text: string;
      try {
        const b = readRegularFileNoFollow(join(src.stateDir, rel), MAX_STATE_FILE);
        if (b.includes(0)) {
          manifest.omitted.push({ path: `state/${rel}`, reason: 'binary' });
          continue;
        }
        text = b.toString('utf8');
      } catch (e) {
        manifest.omitted.push({ path: `state/${rel}`, reason: `unreadable: ${(e as Error).message}` });
        continue;
      }
      add(`state/${rel}`, text);
    }
    for (const s of sf.skipped) manifest.omitted.push({ path: `state/${s.path}`, reason: s.reason });
    if (src.logs !== undefined) add('logs.jsonl', src.logs);
    const m = `${JSON.stringify(manifest, null, 2)}\n`;
    writeFileSync(join(root, 'manifest.json'), m, { mode: 0o600 });
    const r = await src.runner.run('tar', ['-czf', outFile, '-C', work, top], {
      allowFailure: true,
      timeoutMs: 60_000,
    });
    if (r.code !== 0) {
      throw new TetherError('TETHER_E_COMMAND', `tar failed (${r.code}): ${r.stderr.trim().slice(0, 500)}`, {
        file: outFile,
      });
    }
    if (statSync(outFile).size === 0) throw new TetherError('TETHER_E_COMMAND', `empty bundle ${outFile}`);
    // Redacted, but still the site's configuration and logs: only its owner reads it.
    chmodSync(outFile, 0o600);
    return manifest;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
