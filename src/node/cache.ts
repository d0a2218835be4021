import { existsSync, readFileSync } from 'node:fs';
import type { TetherObject } from '../api/resource.js';
import { writeFileAtomic } from '../lib/atomic.js';
import { TetherError } from '../lib/errors.js';
import { INPUT_LIMITS, parseJson } from '../lib/input.js';

interface CacheFile {
  version: 1;
  revision: number;
  /** Revision of the last full snapshot the cache was rebuilt from. */
  snapshotRevision: number;
  objects: TetherObject[];
}

/**
 * The node's copy of its slice of desired state. Every change is written to disk
 * (write, fsync, rename) before the controller is told it arrived, and the node starts from
 * this file after a restart — with or without a controller.
 */
export class StateCache {
  private objects = new Map<string, TetherObject>();
  private rev = 0;
  private snapRev = 0;

  constructor(private readonly path: string) {
    if (!existsSync(path)) return;
    let f: CacheFile;
    try {
      f = parseJson(readFileSync(path, 'utf8'), {
        source: path,
        maxDepth: 2 * INPUT_LIMITS.maxDepth,
      }) as CacheFile;
    } catch (e) {
      throw new TetherError('TETHER_E_STATE', `state cache is unreadable: ${(e as Error).message}`, {
        file: path,
      });
    }
    if (f.version !== 1 || !Array.isArray(f.objects)) {
      throw new TetherError('TETHER_E_STATE', 'state cache has an unknown format', {
        file: path,
        field: 'version',
        expected: '1',
      });
    }
    this.rev = f.revision;
    this.snapRev = f.snapshotRevision;
    for (const o of f.objects) this.objects.set(`${o.kind}/${o.metadata.name}`, o);
  }

  get revision(): number {
    return this.rev;
  }

  get snapshotRevision(): number {
    return this.snapRev;
  }

  list(kind?: string): TetherObject[] {
    const all = [...this.objects.values()];
    return kind ? all.filter((o) => o.kind === kind) : all;
  }

  get(kind: string, name: string): TetherObject | undefined {
    return this.objects.get(`${kind}/${name}`);
  }

  /** Applies a delta and persists it. */
  applyDelta(
    revision: number,
    put: readonly TetherObject[],
    deleted: ReadonlyArray<{ kind: string; name: string }>,
  ): void {
    for (const o of put) this.objects.set(`${o.kind}/${o.metadata.name}`, o);
    for (const d of deleted) this.objects.delete(`${d.kind}/${d.name}`);
    this.rev = Math.max(this.rev, revision);
    this.persist();
  }

  /** Replaces everything with a snapshot: what the snapshot did not re-send is swept. */
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
    const f: CacheFile = {
      version: 1,
      revision: this.rev,
      snapshotRevision: this.snapRev,
      objects: [...this.objects.values()],
    };
    writeFileAtomic(this.path, JSON.stringify(f), 0o600);
  }
}
