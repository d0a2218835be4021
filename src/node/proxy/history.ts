import type { Deleted__Output as Deleted } from '../../api/gen/tether/v1/Deleted.js';
import type { TetherObject } from '../../api/resource.js';
import { TetherError } from '../../lib/errors.js';
import { field, LineLog } from './line-log.js';

export interface HistoryEntry {
  revision: number;
  put: TetherObject[];
  deleted: Deleted[];
}

type Line = { t: 'base'; revision: number } | ({ t: 'delta' } & HistoryEntry);

function checkLine(v: Record<string, unknown>, where: string): Line {
  const revision = field<number>(v, 'revision', 'number', where);
  if (v.t === 'base') return { t: 'base', revision };
  if (v.t !== 'delta' || !Array.isArray(v.put) || !Array.isArray(v.deleted))
    throw new TetherError('TETHER_E_STATE', 'delta history record is neither a base nor a delta', {
      file: where,
      field: 't',
      expected: '"base", or "delta" with put and deleted arrays',
    });
  for (const o of v.put as unknown[]) {
    const m = (o as { metadata?: unknown } | null)?.metadata as Record<string, unknown> | undefined;
    if (typeof (o as { kind?: unknown } | null)?.kind !== 'string' || typeof m?.name !== 'string')
      throw new TetherError('TETHER_E_STATE', 'delta history record puts an object without kind and name', {
        file: where,
        field: 'put',
        expected: 'objects with kind and metadata.name',
      });
  }
  for (const d of v.deleted as unknown[]) {
    field<string>(d as Record<string, unknown>, 'kind', 'string', where);
    field<string>(d as Record<string, unknown>, 'name', 'string', where);
  }
  return { t: 'delta', revision, put: v.put as TetherObject[], deleted: v.deleted as Deleted[] };
}

export interface MergedDelta {
  put: TetherObject[];
  deleted: Deleted[];
}

export interface HistoryLimits {
  /** Deltas kept; older ones are dropped and the base moves up. */
  maxEntries: number;
  /** Objects kept over all deltas (a few big deltas must not hold the table twice). */
  maxObjects: number;
}

export const DEFAULT_HISTORY_LIMITS: HistoryLimits = { maxEntries: 1000, maxObjects: 2000 };

const key = (kind: string, name: string) => `${kind}/${name}`;

/**
 * The site-sliced deltas the proxy received, journaled, so that an agent that comes back
 * holding revision R gets only what changed since R (merged, like the controller's delta
 * from its store history) instead of the whole slice. Complete for every R ≥ `base`; an
 * agent older than that gets a snapshot.
 */
export class DeltaHistory {
  private entries: HistoryEntry[] = [];
  private objects = 0;
  private baseRev = 0;
  private readonly journal: LineLog<Line>;

  constructor(
    path: string,
    private readonly limits: HistoryLimits = DEFAULT_HISTORY_LIMITS,
  ) {
    this.journal = new LineLog<Line>(path, checkLine);
    for (const l of this.journal.loaded) {
      if (l.t === 'base') {
        this.entries = [];
        this.objects = 0;
        this.baseRev = l.revision;
      } else this.push({ revision: l.revision, put: l.put, deleted: l.deleted });
    }
    this.trim();
  }

  get base(): number {
    return this.baseRev;
  }

  get head(): number {
    return this.entries.at(-1)?.revision ?? this.baseRev;
  }

  get size(): number {
    return this.entries.length;
  }

  /** Starts over at `revision` (a snapshot without a usable diff, or a seed). */
  reset(revision: number): void {
    this.entries = [];
    this.objects = 0;
    this.baseRev = revision;
    this.journal.rewrite([{ t: 'base', revision }]);
  }

  /**
   * Starts over at `revision` in memory only (the file could not be written): the file then
   * ends below the slice's revision and is reset to it at the next load.
   */
  forget(revision: number): void {
    this.entries = [];
    this.objects = 0;
    this.baseRev = revision;
  }

  /** Records a delta (on disk when this returns). */
  append(entry: HistoryEntry): void {
    if (entry.revision <= this.head) return;
    this.journal.append({ t: 'delta', ...entry }, () => this.lines());
    this.push(entry);
    this.trim();
    // Rewritten only when most lines are dead, so an append costs one line, amortised.
    if (this.journal.lines > 2 * this.entries.length + 16) this.compact();
  }

  /** What changed after `held`, merged; undefined when the history does not reach back. */
  since(held: number): MergedDelta | undefined {
    if (held < this.baseRev) return undefined;
    const put = new Map<string, TetherObject>();
    const deleted = new Map<string, Deleted>();
    for (const e of this.entries) {
      if (e.revision <= held) continue;
      for (const o of e.put) {
        const k = key(o.kind, o.metadata.name);
        put.set(k, o);
        deleted.delete(k);
      }
      for (const d of e.deleted) {
        const k = key(d.kind, d.name);
        put.delete(k);
        deleted.set(k, { kind: d.kind, name: d.name });
      }
    }
    return { put: [...put.values()], deleted: [...deleted.values()] };
  }

  close(): void {
    this.journal.close();
  }

  private push(e: HistoryEntry): void {
    this.entries.push(e);
    this.objects += e.put.length + e.deleted.length;
  }

  /** Drops the oldest entries over the limits. */
  private trim(): void {
    while (
      this.entries.length > 0 &&
      (this.entries.length > this.limits.maxEntries || this.objects > this.limits.maxObjects)
    ) {
      const e = this.entries.shift()!;
      this.objects -= e.put.length + e.deleted.length;
      this.baseRev = e.revision;
    }
  }

  private compact(): void {
    this.journal.rewrite(this.lines());
  }

  private lines(): Line[] {
    return [{ t: 'base', revision: this.baseRev }, ...this.entries.map((e): Line => ({ t: 'delta', ...e }))];
  }
}
