import { TetherError } from '../../lib/errors.js';
import { Journal } from '../../lib/journal.js';

/**
 * Bounds of the proxy's journals: a history delta is at most one gRPC message (4 MiB) of
 * objects; the checkpoint of a full history (2,000 objects) or of a site's reports is a few
 * MB. The caller decides when to compact (checkpoint), so the automatic bounds are only a
 * backstop.
 */
const LIMITS = {
  maxRecordBytes: 16 * 1024 * 1024,
  maxFileBytes: 256 * 1024 * 1024,
  checkpointRecords: 1 << 20,
  checkpointBytes: 64 * 1024 * 1024,
} as const;

/** A record of a proxy journal: an object with a string tag `t`; `check` validates the rest. */
export type LineCheck<L> = (v: Record<string, unknown>, where: string) => L;

/**
 * The proxy's durable logs (delta history, endpoint reports) on the project's Journal
 * (src/lib/journal.ts): each record is fdatasync'ed before `append` returns, so everything the
 * proxy acknowledged survives kill -9; a torn tail (never acknowledged) is cut on open, damage
 * elsewhere is TETHER_E_STATE. The checkpoint is the compacted list of records.
 */
export class LineLog<L> {
  private readonly journal: Journal<L[], L>;
  private onDisk: number;
  /** Records in the last checkpoint. */
  private checkpointed: number;
  readonly loaded: L[];

  constructor(path: string, check: LineCheck<L>) {
    const decodeRecord = (v: unknown, where: string): L => {
      if (
        v === null ||
        typeof v !== 'object' ||
        Array.isArray(v) ||
        typeof (v as { t?: unknown }).t !== 'string'
      )
        throw new TetherError('TETHER_E_STATE', 'proxy journal record is not an object with a tag', {
          file: where,
          field: 't',
          expected: 'a record tag',
        });
      return check(v as Record<string, unknown>, where);
    };
    const opened = Journal.open<L[], L>({
      path,
      ...LIMITS,
      decodeState: (v, where) => {
        if (!Array.isArray(v))
          throw new TetherError('TETHER_E_STATE', 'proxy journal checkpoint is not a list', {
            file: where,
            expected: 'an array of records',
          });
        return v.map((x) => decodeRecord(x, where));
      },
      decodeRecord,
    });
    this.journal = opened.journal;
    this.loaded = [...(opened.state ?? []), ...opened.records];
    this.checkpointed = opened.state?.length ?? 0;
    this.onDisk = this.loaded.length;
  }

  /** Records on disk (checkpoint plus log): the caller compacts when most are dead. */
  get lines(): number {
    return this.onDisk;
  }

  /** On disk when this returns. `state` is the compacted list before this record. */
  append(line: L, state: () => L[]): void {
    this.journal.append(line, () => {
      const s = state();
      this.checkpointed = s.length;
      return s;
    });
    this.onDisk = this.journal.stats.records + this.checkpointed;
  }

  /** Replaces everything with `lines` atomically (compaction). */
  rewrite(lines: L[]): void {
    this.journal.checkpoint(lines);
    this.checkpointed = lines.length;
    this.onDisk = lines.length;
  }

  close(): void {
    this.journal.close();
  }
}

export function field<T>(
  v: Record<string, unknown>,
  name: string,
  type: 'string' | 'number' | 'object',
  where: string,
): T {
  const x = v[name];
  const ok =
    type === 'number' ? Number.isSafeInteger(x) && (x as number) >= 0 : typeof x === type && x !== null;
  if (!ok)
    throw new TetherError('TETHER_E_STATE', `proxy journal record has a bad "${name}"`, {
      file: where,
      field: name,
      expected: type === 'number' ? 'an integer ≥ 0' : `a ${type}`,
    });
  return x as T;
}
