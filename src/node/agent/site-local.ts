import { existsSync, readFileSync } from 'node:fs';
import type { TetherObject } from '../../api/resource.js';
import { writeFileAtomic } from '../../lib/atomic.js';
import { TetherError } from '../../lib/errors.js';
import { INPUT_LIMITS, parseJson } from '../../lib/input.js';

interface SiteLocalFile {
  version: 1;
  seq: number;
  endpoints: TetherObject[];
  /** Nodes whose complete current set this is (SiteLocal.nodes); absent in older files. */
  nodes?: string[];
}

/**
 * The SiteLocal set (docs/proxy.md): endpoints of the site's other nodes that the site proxy
 * accepted while the controller has not confirmed them. Written to disk (write, fsync,
 * rename) before it is used, so an offline reboot forwards to them from disk alone.
 */
export class SiteLocalSet {
  private endpoints: TetherObject[] = [];
  private covered: string[] = [];
  private s = 0;

  constructor(private readonly path: string) {
    if (!existsSync(path)) return;
    let f: SiteLocalFile;
    try {
      f = parseJson(readFileSync(path, 'utf8'), {
        source: path,
        maxDepth: 2 * INPUT_LIMITS.maxDepth,
      }) as SiteLocalFile;
    } catch (e) {
      throw new TetherError('TETHER_E_STATE', `site-local set is unreadable: ${(e as Error).message}`, {
        file: path,
      });
    }
    if (
      typeof f !== 'object' ||
      f === null ||
      f.version !== 1 ||
      !Number.isSafeInteger(f.seq) ||
      !Array.isArray(f.endpoints) ||
      !f.endpoints.every(isEndpoint) ||
      (f.nodes !== undefined && !(Array.isArray(f.nodes) && f.nodes.every((n) => typeof n === 'string')))
    )
      throw new TetherError('TETHER_E_STATE', 'site-local set has an unknown format', {
        file: path,
        field: 'version',
        expected: '{version: 1, seq, endpoints: [Endpoint…]}',
      });
    this.s = f.seq;
    this.endpoints = f.endpoints;
    this.covered = f.nodes ?? [];
  }

  get seq(): number {
    return this.s;
  }

  list(): TetherObject[] {
    return this.endpoints;
  }

  /** Nodes whose endpoints come from this set, not from the slice (docs/proxy.md). */
  nodes(): readonly string[] {
    return this.covered;
  }

  /**
   * Replaces the set with the proxy's complete one; objects that are not Endpoints are
   * dropped. Returns whether anything changed (then it is on disk before this returns).
   */
  replace(seq: number, objects: readonly TetherObject[], nodes: readonly string[] = []): boolean {
    const next = objects.filter(isEndpoint);
    const covered = [...new Set(nodes.filter((n) => typeof n === 'string' && n.length > 0))].sort();
    const same = JSON.stringify([next, covered]) === JSON.stringify([this.endpoints, this.covered]);
    if (same && seq === this.s) return false;
    const f: SiteLocalFile = { version: 1, seq, endpoints: next, nodes: covered };
    writeFileAtomic(this.path, JSON.stringify(f), 0o600);
    this.s = seq;
    this.endpoints = next;
    this.covered = covered;
    return !same;
  }
}

function isEndpoint(o: unknown): o is TetherObject {
  const x = o as TetherObject | undefined;
  return (
    typeof x === 'object' &&
    x !== null &&
    x.kind === 'Endpoint' &&
    typeof x.metadata?.name === 'string' &&
    typeof x.spec === 'object' &&
    x.spec !== null
  );
}
