// The node's state cache with 10,000 remote endpoints: what one small delta costs on disk.
// Baseline: the whole-file cache used before the journal (kept below exactly as it was:
// JSON of the whole slice, write, fsync, rename, fsync dir, on every delta), against
// StateCache on the journal (one CRC-framed record, fdatasync). Same directory, same path,
// same slice, same 200 deltas of one endpoint each; bytes are the process's own write
// syscalls (/proc/self/io wchar) and what reached the block layer (write_bytes).
//   npm run bench (BENCH_ONLY=cache-journal) or: npx tsx test/bench/cache-journal.ts
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TetherObject } from '../../src/api/resource.js';
import { writeFileAtomic } from '../../src/lib/atomic.js';
import { INPUT_LIMITS, parseJson } from '../../src/lib/input.js';
import { CACHE_JOURNAL_LIMITS, StateCache } from '../../src/node/cache.js';

type Result = Record<string, number | string>;

const ENDPOINTS = 10_000;
const DELTAS = 200;

interface CacheLike {
  applyDelta(
    revision: number,
    put: readonly TetherObject[],
    deleted: ReadonlyArray<{ kind: string; name: string }>,
  ): void;
  replace(revision: number, objects: readonly TetherObject[]): { swept: number };
  readonly revision: number;
}

/** The StateCache of commit 872a427 (before the journal), persistence unchanged. */
class WholeFileCache implements CacheLike {
  private objects = new Map<string, TetherObject>();
  private rev = 0;
  private snapRev = 0;

  constructor(private readonly path: string) {
    if (!existsSync(path)) return;
    const f = parseJson(readFileSync(path, 'utf8'), {
      source: path,
      maxDepth: 2 * INPUT_LIMITS.maxDepth,
    }) as {
      revision: number;
      snapshotRevision: number;
      objects: TetherObject[];
    };
    this.rev = f.revision;
    this.snapRev = f.snapshotRevision;
    for (const o of f.objects) this.objects.set(`${o.kind}/${o.metadata.name}`, o);
  }

  get revision(): number {
    return this.rev;
  }

  applyDelta(
    revision: number,
    put: readonly TetherObject[],
    deleted: ReadonlyArray<{ kind: string; name: string }>,
  ) {
    for (const o of put) this.objects.set(`${o.kind}/${o.metadata.name}`, o);
    for (const d of deleted) this.objects.delete(`${d.kind}/${d.name}`);
    this.rev = Math.max(this.rev, revision);
    this.persist();
  }

  replace(revision: number, objects: readonly TetherObject[]): { swept: number } {
    const keep = new Map<string, TetherObject>(objects.map((o) => [`${o.kind}/${o.metadata.name}`, o]));
    let swept = 0;
    for (const k of this.objects.keys()) if (!keep.has(k)) swept++;
    this.objects = keep;
    this.rev = revision;
    this.snapRev = revision;
    this.persist();
    return { swept };
  }

  private persist(): void {
    const f = {
      version: 1,
      revision: this.rev,
      snapshotRevision: this.snapRev,
      objects: [...this.objects.values()],
    };
    writeFileAtomic(this.path, JSON.stringify(f), 0o600);
  }
}

/** A remote endpoint as the controller reflects it (the shape of src/controller/endpoints.ts). */
function endpoint(k: number, gen = 0): TetherObject {
  const node = `du-${String(k % 500).padStart(3, '0')}`;
  return {
    apiVersion: 'tether.dev/v1',
    kind: 'Endpoint',
    metadata: {
      name: `${node}.pod-${k}`,
      labels: { app: `ran-${k % 20}`, 'tether.dev/site': `site-${k % 50}` },
      revision: 1000 + k + gen,
    },
    spec: {
      network: `net-${k % 8}`,
      node,
      site: `site-${k % 50}`,
      mac: `02:00:${[(k >> 16) & 255, (k >> 8) & 255, k & 255, gen & 255].map((b) => b.toString(16).padStart(2, '0')).join(':')}`,
      ip: `10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}`,
      vtep: `192.168.${(k % 500) >> 8}.${(k % 500) & 255}`,
      hostIfname: `veth${k.toString(16)}`,
      labels: { app: `ran-${k % 20}`, tier: gen % 2 ? 'blue' : 'green' },
    },
  } as TetherObject;
}

function io(): { wchar: number; writeBytes: number } {
  const t = readFileSync('/proc/self/io', 'utf8');
  const get = (k: string) => Number(new RegExp(`^${k}: (\\d+)$`, 'm').exec(t)?.[1] ?? Number.NaN);
  return { wchar: get('wchar'), writeBytes: get('write_bytes') };
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const ms = (x: number) => +x.toFixed(3);

function measure(label: string, open: () => CacheLike, slice: TetherObject[], out: Result): void {
  const cache = open();
  cache.replace(1, slice);
  const times: number[] = [];
  const before = io();
  for (let d = 0; d < DELTAS; d++) {
    const k = (d * 7919) % ENDPOINTS;
    const put = [endpoint(k, d + 1)];
    const t = performance.now();
    cache.applyDelta(2 + d, put, []);
    times.push(performance.now() - t);
  }
  const after = io();
  out[`${label}: bytes written per delta (write syscalls)`] = Math.round(
    (after.wchar - before.wchar) / DELTAS,
  );
  out[`${label}: bytes to the block layer per delta`] = Math.round(
    (after.writeBytes - before.writeBytes) / DELTAS,
  );
  out[`${label}: ms per delta, mean`] = ms(times.reduce((a, b) => a + b, 0) / DELTAS);
  out[`${label}: ms per delta, median`] = ms(pct(times, 50));
  out[`${label}: ms per delta, p99`] = ms(pct(times, 99));
  const t = performance.now();
  const reopened = open();
  out[`${label}: reopen (recovery) ms`] = ms(performance.now() - t);
  if (reopened.revision !== 1 + DELTAS) throw new Error(`${label}: reopened at ${reopened.revision}`);
}

export async function run(): Promise<Result> {
  // Not os.tmpdir() when it is a tmpfs (fsync free there): the state dir's filesystem is what counts.
  const dir = mkdtempSync(join(process.env.BENCH_CACHE_DIR ?? tmpdir(), 'tether-bench-cache-'));
  const path = join(dir, 'cache.json');
  const out: Result = {};
  try {
    const slice = Array.from({ length: ENDPOINTS }, (_, k) => endpoint(k));
    out.endpoints = ENDPOINTS;
    out.deltas = DELTAS;
    out['slice JSON bytes'] = Buffer.byteLength(JSON.stringify({ version: 1, objects: slice }));
    out['one delta record JSON bytes'] = Buffer.byteLength(
      JSON.stringify({ revision: 2, put: [endpoint(0, 1)], deleted: [] }),
    );

    measure('whole-file (baseline)', () => new WholeFileCache(path), slice, out);
    rmSync(path, { force: true });

    measure('journal', () => new StateCache(path), slice, out);
    // What a checkpoint costs, and that cost spread over the records between two of them.
    const cache = new StateCache(path);
    const before = io();
    const t = performance.now();
    cache.replace(1000, slice);
    const ckptMs = performance.now() - t;
    const ckptBytes = io().wchar - before.wchar;
    out['journal: checkpoint (replace) bytes'] = ckptBytes;
    out['journal: checkpoint (replace) ms'] = ms(ckptMs);
    const every = CACHE_JOURNAL_LIMITS.checkpointRecords;
    out[`journal: bytes per delta incl. a checkpoint every ${every} records`] = Math.round(
      (out['journal: bytes written per delta (write syscalls)'] as number) + ckptBytes / every,
    );
    out[`journal: ms per delta incl. a checkpoint every ${every} records`] = ms(
      (out['journal: ms per delta, mean'] as number) + ckptMs / every,
    );
    out['bytes ratio (baseline / journal, per delta)'] = +(
      (out['whole-file (baseline): bytes written per delta (write syscalls)'] as number) /
      (out['journal: bytes written per delta (write syscalls)'] as number)
    ).toFixed(0);
    out['ms ratio (baseline / journal, mean per delta)'] = +(
      (out['whole-file (baseline): ms per delta, mean'] as number) /
      (out['journal: ms per delta, mean'] as number)
    ).toFixed(1);
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1]?.endsWith('cache-journal.ts')) {
  run().then(
    (r) => {
      for (const [k, v] of Object.entries(r)) console.log(`${k.padEnd(62)} ${v}`);
    },
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
