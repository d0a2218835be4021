// StateCache on the journal: same API, one record per delta, a checkpoint per snapshot, the
// whole-file cache.json of earlier versions read once and migrated, bad files refused with
// TETHER_E_STATE (never a TypeError), and a failed write leaving memory untouched.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import { isTetherError, type TetherError } from '../../../src/lib/errors.js';
import { CACHE_JOURNAL_LIMITS, readStateCache, StateCache } from '../../../src/node/cache.js';

const root = mkdtempSync(join(tmpdir(), 'tether-cache-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const cachePath = () => {
  const d = join(root, `c${n++}`);
  mkdirSync(d);
  return join(d, 'cache.json');
};

const ep = (name: string, ip: string): TetherObject =>
  ({
    apiVersion: 'tether.dev/v1',
    kind: 'Endpoint',
    metadata: { name },
    spec: { network: 'n1', node: 'a', site: 's', mac: '02:00:00:00:00:01', ip, vtep: '192.0.2.1' },
  }) as TetherObject;
const net = (name: string): TetherObject =>
  ({ apiVersion: 'tether.dev/v1', kind: 'VirtualNetwork', metadata: { name }, spec: {} }) as TetherObject;

const names = (c: { list(): TetherObject[] }) =>
  c
    .list()
    .map((o) => `${o.kind}/${o.metadata.name}`)
    .sort();

function stateError(fn: () => unknown): TetherError {
  try {
    fn();
  } catch (e) {
    expect(isTetherError(e, 'TETHER_E_STATE'), String(e)).toBe(true);
    return e as TetherError;
  }
  throw new Error('expected TETHER_E_STATE');
}

describe('StateCache', () => {
  it('keeps deltas and snapshots across reopening', () => {
    const p = cachePath();
    const c = new StateCache(p);
    expect(c.revision).toBe(0);
    c.replace(10, [net('n1'), ep('e1', '10.0.0.1')]);
    c.applyDelta(11, [ep('e2', '10.0.0.2')], []);
    c.applyDelta(12, [ep('e1', '10.0.0.9')], [{ kind: 'Endpoint', name: 'e2' }]);
    const again = new StateCache(p);
    expect(again.revision).toBe(12);
    expect(again.snapshotRevision).toBe(10);
    expect(names(again)).toEqual(['Endpoint/e1', 'VirtualNetwork/n1']);
    expect((again.get('Endpoint', 'e1')!.spec as { ip: string }).ip).toBe('10.0.0.9');
    expect(again.list('VirtualNetwork')).toHaveLength(1);
    expect(again.replace(13, [net('n1')])).toEqual({ swept: 1 });
    expect(names(new StateCache(p))).toEqual(['VirtualNetwork/n1']);
    expect(readStateCache(p)).toMatchObject({ revision: 13, snapshotRevision: 13 });
  });

  it('shares equal objects with another cache of the process, and only equal ones', () => {
    const a = new StateCache(cachePath());
    const b = new StateCache(cachePath());
    a.replace(5, [net('n1'), ep('e1', '10.0.0.1'), ep('e2', '10.0.0.2')]);
    b.replace(5, [net('n1'), ep('e1', '10.0.0.1'), ep('e2', '10.0.0.9')]);
    expect(b.share((k, n) => a.get(k, n))).toBe(2);
    expect(b.get('Endpoint', 'e1')).toBe(a.get('Endpoint', 'e1'));
    expect(b.get('VirtualNetwork', 'n1')).toBe(a.get('VirtualNetwork', 'n1'));
    expect(b.get('Endpoint', 'e2')).not.toBe(a.get('Endpoint', 'e2'));
    expect((b.get('Endpoint', 'e2')!.spec as { ip: string }).ip).toBe('10.0.0.9');
    expect(b.share((k, n) => a.get(k, n))).toBe(0);
  });

  it('writes one journal record per delta and leaves the checkpoint alone', () => {
    const p = cachePath();
    const c = new StateCache(p);
    const big = Array.from({ length: 2000 }, (_, k) => ep(`e${k}`, `10.0.${k >> 8}.${k & 255}`));
    c.replace(1, big);
    const dir = join(p, '..');
    const ckpt = join(dir, 'cache.checkpoint');
    const log = join(dir, 'cache.journal');
    const ckptBytes = readFileSync(ckpt);
    let size = statSync(log).size;
    for (let r = 2; r < 20; r++) {
      const put = ep(`e${r}`, `10.1.0.${r}`);
      c.applyDelta(r, [put], []);
      const grown = statSync(log).size - size;
      // One frame: 8 bytes of header plus the record's JSON, nothing proportional to the slice.
      expect(grown).toBe(8 + JSON.stringify({ revision: r, put: [put], deleted: [] }).length);
      size += grown;
    }
    expect(readFileSync(ckpt).equals(ckptBytes)).toBe(true);
    expect(existsSync(p)).toBe(false);
    c.replace(20, big.slice(0, 10));
    expect(statSync(log).size).toBeLessThan(100);
    expect(new StateCache(p).list()).toHaveLength(10);
  });

  it('migrates a cache.json of the whole-file format once', () => {
    const p = cachePath();
    const old = {
      version: 1,
      revision: 42,
      snapshotRevision: 40,
      objects: [net('n1'), ep('e1', '10.0.0.1')],
    };
    writeFileSync(p, JSON.stringify(old));
    writeFileSync(`${p}.tmp-77-abcd`, '{"half');
    const c = new StateCache(p);
    expect(c.revision).toBe(42);
    expect(c.snapshotRevision).toBe(40);
    expect(names(c)).toEqual(['Endpoint/e1', 'VirtualNetwork/n1']);
    expect(readdirSync(join(p, '..')).sort()).toEqual(['cache.checkpoint', 'cache.journal']);
    c.applyDelta(43, [ep('e2', '10.0.0.2')], []);
    const again = new StateCache(p);
    expect(again.revision).toBe(43);
    expect(names(again)).toEqual(['Endpoint/e1', 'Endpoint/e2', 'VirtualNetwork/n1']);
  });

  it('with both formats present (a crash mid-migration, or an older version ran since) takes the newer', () => {
    const p = cachePath();
    const c = new StateCache(p);
    c.replace(5, [net('n1')]);
    c.applyDelta(6, [net('n2')], []);
    writeFileSync(p, JSON.stringify({ version: 1, revision: 6, snapshotRevision: 5, objects: [net('n1')] }));
    expect(names(new StateCache(p))).toEqual(['VirtualNetwork/n1', 'VirtualNetwork/n2']);
    expect(existsSync(p)).toBe(false);
    writeFileSync(p, JSON.stringify({ version: 1, revision: 9, snapshotRevision: 9, objects: [net('n9')] }));
    const newer = new StateCache(p);
    expect(newer.revision).toBe(9);
    expect(names(newer)).toEqual(['VirtualNetwork/n9']);
    expect(names(new StateCache(p))).toEqual(['VirtualNetwork/n9']);
    // A damaged leftover next to an intact journal is dropped.
    writeFileSync(p, '{"version":1,');
    expect(new StateCache(p).revision).toBe(9);
  });

  it('refuses bad cache files with TETHER_E_STATE naming the file, never a TypeError', () => {
    const bodies = [
      '{"version":1,',
      '[]',
      'null',
      '{"version":2,"objects":[]}',
      '{"version":1,"revision":1,"snapshotRevision":0,"objects":[null]}',
      '{"version":1,"revision":1,"snapshotRevision":0,"objects":[{"kind":"Site"}]}',
      '{"version":1,"revision":"7","snapshotRevision":0,"objects":[]}',
      '{"version":1,"revision":1,"snapshotRevision":0,"objects":{}}',
      `${'['.repeat(200)}${']'.repeat(200)}`,
    ];
    for (const body of bodies) {
      const p = cachePath();
      writeFileSync(p, body);
      const e = stateError(() => new StateCache(p));
      expect(e.details.file, body).toBe(p);
      stateError(() => readStateCache(p));
      // Nothing was half-migrated.
      expect(readdirSync(join(p, '..'))).toEqual(['cache.json']);
    }
  });

  it('an oversize delta changes nothing, on disk or in memory', () => {
    const p = cachePath();
    const c = new StateCache(p);
    c.replace(1, [net('n1')]);
    const huge = {
      ...net('n2'),
      spec: { pad: 'x'.repeat(CACHE_JOURNAL_LIMITS.maxRecordBytes) },
    } as TetherObject;
    let err: unknown;
    try {
      c.applyDelta(2, [huge], [{ kind: 'VirtualNetwork', name: 'n1' }]);
    } catch (e) {
      err = e;
    }
    expect(isTetherError(err, 'TETHER_E_TOO_LARGE')).toBe(true);
    expect(c.revision).toBe(1);
    expect(names(c)).toEqual(['VirtualNetwork/n1']);
    expect(names(new StateCache(p))).toEqual(['VirtualNetwork/n1']);
  });
});
