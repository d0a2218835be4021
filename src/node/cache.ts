import { existsSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { TetherObject } from '../api/resource.js';
import { fsyncDir } from '../lib/atomic.js';
import { isTetherError, TetherError } from '../lib/errors.js';
import { INPUT_LIMITS, parseJson, readInputFile } from '../lib/input.js';
import { Journal, type JournalOptions, type Recovered } from '../lib/journal.js';

/** The state a checkpoint holds; also the whole-file format written before the journal. */
interface CacheFile {
  version: 1;
  revision: number;
  /** Revision of the last full snapshot the cache was rebuilt from. */
  snapshotRevision: number;
  objects: TetherObject[];
}

/** One journal record: a delta exactly as applyDelta received it. */
interface DeltaRecord {
  revision: number;
  put: TetherObject[];
  deleted: Array<{ kind: string; name: string }>;
}

/**
 * Bounds of the cache's journal. A delta arrives in one gRPC message of at most 4 MiB, so a
 * record is a few MiB at worst; the checkpoint of a 10,000-endpoint slice is about 4 MB, and
 * the file bound leaves room for large Endpoint labels without letting a damaged or hostile
 * file make the daemon read gigabytes. A checkpoint every 4,096 records or 8 MiB of log
 * keeps recovery short and costs a fraction of a checkpoint per delta.
 */
export const CACHE_JOURNAL_LIMITS = {
  maxRecordBytes: 16 * 1024 * 1024,
  maxFileBytes: 256 * 1024 * 1024,
  checkpointRecords: 4096,
  checkpointBytes: 8 * 1024 * 1024,
} as const;

/** The journal's base path for a cache path: `…/cache.json` → `…/cache` (.checkpoint, .journal). */
export function cacheJournalBase(path: string): string {
  return path.endsWith('.json') ? path.slice(0, -'.json'.length) : path;
}

const key = (kind: string, name: string) => `${kind}/${name}`;

function applyRecord(objects: Map<string, TetherObject>, rec: DeltaRecord): void {
  for (const o of rec.put) objects.set(key(o.kind, o.metadata.name), o);
  for (const d of rec.deleted) objects.delete(key(d.kind, d.name));
}

function bad(where: string, field: string, expected: string): TetherError {
  return new TetherError('TETHER_E_STATE', `state cache is inconsistent: ${field} is not ${expected}`, {
    file: where,
    field,
    expected,
  });
}

const isRevision = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function checkObject(o: unknown, where: string, field: string): TetherObject {
  const x = o as { kind?: unknown; metadata?: { name?: unknown } } | null;
  if (x === null || typeof x !== 'object' || Array.isArray(x)) throw bad(where, field, 'an object');
  if (typeof x.kind !== 'string' || x.kind === '') throw bad(where, `${field}.kind`, 'a non-empty string');
  if (x.metadata === null || typeof x.metadata !== 'object' || typeof x.metadata.name !== 'string')
    throw bad(where, `${field}.metadata.name`, 'a string');
  return o as TetherObject;
}

function decodeState(v: unknown, where: string): CacheFile {
  const f = v as Partial<CacheFile> | null;
  if (f === null || typeof f !== 'object' || f.version !== 1) {
    throw new TetherError('TETHER_E_STATE', 'state cache has an unknown format', {
      file: where,
      field: 'version',
      expected: '1',
    });
  }
  if (!isRevision(f.revision)) throw bad(where, 'revision', 'an integer ≥ 0');
  if (!isRevision(f.snapshotRevision)) throw bad(where, 'snapshotRevision', 'an integer ≥ 0');
  if (!Array.isArray(f.objects)) throw bad(where, 'objects', 'an array');
  for (const [i, o] of f.objects.entries()) checkObject(o, where, `objects[${i}]`);
  return f as CacheFile;
}

function decodeRecord(v: unknown, where: string): DeltaRecord {
  const r = v as Partial<DeltaRecord> | null;
  if (r === null || typeof r !== 'object') throw bad(where, 'record', 'an object');
  if (!isRevision(r.revision)) throw bad(where, 'revision', 'an integer ≥ 0');
  if (!Array.isArray(r.put)) throw bad(where, 'put', 'an array');
  if (!Array.isArray(r.deleted)) throw bad(where, 'deleted', 'an array');
  for (const [i, o] of r.put.entries()) checkObject(o, where, `put[${i}]`);
  r.deleted.forEach((d, i) => {
    if (d === null || typeof d !== 'object' || typeof d.kind !== 'string' || typeof d.name !== 'string')
      throw bad(where, `deleted[${i}]`, 'an object with string kind and name');
  });
  return r as DeltaRecord;
}

function journalOptions(path: string): JournalOptions<CacheFile, DeltaRecord> {
  return {
    path: cacheJournalBase(path),
    ...CACHE_JOURNAL_LIMITS,
    // Objects nest up to INPUT_LIMITS.maxDepth; the checkpoint and record wrappers add a few.
    maxDepth: 2 * INPUT_LIMITS.maxDepth,
    decodeState,
    decodeRecord,
  };
}

/** Reads a cache file in the format written before the journal (one JSON document). */
function readLegacy(path: string): CacheFile {
  let text: string;
  try {
    text = readInputFile(path, { maxBytes: CACHE_JOURNAL_LIMITS.maxFileBytes });
  } catch (e) {
    if (isTetherError(e)) throw e;
    throw new TetherError('TETHER_E_STATE', `state cache is unreadable: ${(e as Error).message}`, {
      file: path,
    });
  }
  let v: unknown;
  try {
    v = parseJson(text, { source: path, maxDepth: 2 * INPUT_LIMITS.maxDepth });
  } catch (e) {
    throw new TetherError('TETHER_E_STATE', `state cache is unreadable: ${(e as Error).message}`, {
      file: path,
    });
  }
  return decodeState(v, path);
}

/**
 * The node's copy of its slice of desired state. Stored as a journal (src/lib/journal.ts):
 * each delta is one record appended and fdatasync'ed before applyDelta returns, so before the
 * controller is told it arrived; a snapshot (replace) is written as a checkpoint. The node
 * starts from these files after a restart, with or without a controller. A `cache.json` in
 * the earlier whole-file format is read once and migrated.
 */
export class StateCache {
  private objects = new Map<string, TetherObject>();
  private rev = 0;
  private snapRev = 0;
  private readonly journal: Journal<CacheFile, DeltaRecord>;

  constructor(private readonly path: string) {
    const opened = Journal.open(journalOptions(path));
    this.journal = opened.journal;
    this.restore(opened);
    this.migrate(opened.exists);
  }

  get revision(): number {
    return this.rev;
  }

  get snapshotRevision(): number {
    return this.snapRev;
  }

  list(kind?: string): TetherObject[] {
    if (!kind) return [...this.objects.values()];
    // Called for the few Nodes of a 10,000-object slice after every delta (the proxy's
    // roster): no copy of the whole table to filter.
    const out: TetherObject[] = [];
    for (const o of this.objects.values()) if (o.kind === kind) out.push(o);
    return out;
  }

  /** The held objects without a copy; not to be kept across a change of the cache. */
  values(): IterableIterator<TetherObject> {
    return this.objects.values();
  }

  get(kind: string, name: string): TetherObject | undefined {
    return this.objects.get(key(kind, name));
  }

  /** Applies a delta after it is on disk; on error nothing changed, on disk or in memory. */
  applyDelta(
    revision: number,
    put: readonly TetherObject[],
    deleted: ReadonlyArray<{ kind: string; name: string }>,
  ): void {
    const rec: DeltaRecord = {
      revision,
      put: [...put],
      deleted: deleted.map((d) => ({ kind: d.kind, name: d.name })),
    };
    this.journal.append(rec, () => this.state());
    this.apply(rec);
  }

  /**
   * Replaces in memory each held object by `lookup`'s one where both have the same JSON (the
   * node's agent cache and its site proxy's slice, loaded from disk as two copies): one
   * parsed copy instead of two. Nothing on disk changes. Returns how many were shared.
   */
  share(lookup: (kind: string, name: string) => TetherObject | undefined): number {
    let n = 0;
    for (const [k, o] of this.objects) {
      const other = lookup(o.kind, o.metadata.name);
      if (!other || other === o) continue;
      if (JSON.stringify(other) !== JSON.stringify(o)) continue;
      this.objects.set(k, other);
      n++;
    }
    return n;
  }

  /** Replaces everything with a snapshot: what the snapshot did not re-send is swept. */
  replace(revision: number, objects: readonly TetherObject[]): { swept: number } {
    const keep = new Map<string, TetherObject>(objects.map((o) => [key(o.kind, o.metadata.name), o]));
    let swept = 0;
    for (const k of this.objects.keys()) if (!keep.has(k)) swept++;
    this.journal.checkpoint({
      version: 1,
      revision,
      snapshotRevision: revision,
      objects: [...keep.values()],
    });
    this.objects = keep;
    this.rev = revision;
    this.snapRev = revision;
    return { swept };
  }

  private state(): CacheFile {
    return {
      version: 1,
      revision: this.rev,
      snapshotRevision: this.snapRev,
      objects: [...this.objects.values()],
    };
  }

  private restore(r: Recovered<CacheFile, DeltaRecord>): void {
    if (r.state) this.load(r.state);
    for (const rec of r.records) this.apply(rec);
  }

  private load(f: CacheFile): void {
    this.objects = new Map(f.objects.map((o) => [key(o.kind, o.metadata.name), o]));
    this.rev = f.revision;
    this.snapRev = f.snapshotRevision;
  }

  private apply(rec: DeltaRecord): void {
    applyRecord(this.objects, rec);
    this.rev = Math.max(this.rev, rec.revision);
  }

  /**
   * A `cache.json` of the whole-file format: taken over as the first checkpoint, then
   * removed. With journal files present too (a crash between those two steps, or a run of
   * an older version in between), the newer of the two wins.
   */
  private migrate(journalExists: boolean): void {
    const legacy = this.path;
    if (legacy === this.journal.checkpointPath || legacy === this.journal.logPath) return;
    removeTempFiles(legacy);
    if (!existsSync(legacy)) return;
    if (!statSync(legacy).isFile()) {
      throw new TetherError('TETHER_E_STATE', 'state cache path is not a regular file', { file: legacy });
    }
    let f: CacheFile | undefined;
    if (journalExists) {
      try {
        f = readLegacy(legacy);
      } catch {
        // The journal is intact; a damaged leftover of the old format holds nothing it needs.
        f = undefined;
      }
      if (f && f.revision <= this.rev) f = undefined;
    } else {
      f = readLegacy(legacy);
    }
    if (f) {
      this.journal.checkpoint(f);
      this.load(f);
    }
    unlinkSync(legacy);
    fsyncDir(dirname(legacy));
  }
}

/** Temp files the whole-file writer (writeFileAtomic) left after a crash. */
function removeTempFiles(path: string): void {
  const dir = dirname(path);
  if (!existsSync(dir)) return;
  const prefix = `${basename(path)}.tmp-`;
  for (const f of readdirSync(dir)) {
    if (!f.startsWith(prefix)) continue;
    try {
      unlinkSync(join(dir, f));
    } catch {
      // Already gone: nothing to clean.
    }
  }
}

/**
 * Reads a node's cache without changing its files, for tools and tests that look at the
 * state of a daemon that may be running (and appending) at the same moment.
 */
export function readStateCache(path: string): {
  revision: number;
  snapshotRevision: number;
  objects: TetherObject[];
} {
  const r = Journal.read(journalOptions(path));
  if (!r.exists) {
    if (!existsSync(path)) return { revision: 0, snapshotRevision: 0, objects: [] };
    const f = readLegacy(path);
    return { revision: f.revision, snapshotRevision: f.snapshotRevision, objects: f.objects };
  }
  const objects = new Map<string, TetherObject>();
  let revision = r.state?.revision ?? 0;
  for (const o of r.state?.objects ?? []) objects.set(key(o.kind, o.metadata.name), o);
  for (const rec of r.records) {
    applyRecord(objects, rec);
    revision = Math.max(revision, rec.revision);
  }
  return { revision, snapshotRevision: r.state?.snapshotRevision ?? 0, objects: [...objects.values()] };
}
