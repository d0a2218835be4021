import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatastore, parseDatastoreUrl } from '../../src/controller/store/open.js';
import { etcdAvailable, startEtcd, type TestEtcd } from '../support/etcd.js';
import { obj } from '../unit/store/contract.js';
import { runTether } from './support/proc.js';

const have = etcdAvailable();

describe.skipIf(!have)('tether controller migrate sqlite -> etcd', () => {
  let etcd: TestEtcd;
  const root = mkdtempSync(join(tmpdir(), 'tether-migrate-'));
  const sqliteUrl = `sqlite:${join(root, 'ctl')}`;
  beforeAll(async () => {
    etcd = await startEtcd({ maxTxnOps: 16 });
    // A source with more objects than one etcd txn can take, several kinds, a deletion in
    // its history, an updated object and a report mark.
    const src = await openDatastore(parseDatastoreUrl(sqliteUrl));
    const ops = Array.from({ length: 40 }, (_, i) => ({
      op: 'put' as const,
      object: obj('Endpoint', `e${i}`, { ip: `10.0.0.${i}` }, { labels: { site: 's1' } }),
    }));
    await src.txn(ops);
    await src.txn([{ op: 'put', object: obj('Site', 's1', { region: 'eu' }) }]);
    await src.txn([{ op: 'put', object: obj('Site', 's1', { region: 'us' }) }]);
    await src.txn([{ op: 'put', object: obj('Site', 'gone') }]);
    await src.txn([{ op: 'delete', kind: 'Site', name: 'gone' }]);
    await src.txn([{ op: 'put', object: obj('Node', 'n1') }], {
      reportMarks: [{ node: 'n1', mark: { serial: '0a1b', bootId: 'boot-1', seq: 42, at: 1_700_000_000 } }],
    });
    await src.close();
  });
  afterAll(async () => {
    await etcd?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it('dry run counts and writes nothing; the copy preserves content and marks; a re-run is a no-op; a differing target needs --force', async () => {
    const to = etcd.url('/mig/');
    const base = [
      'controller',
      'migrate',
      '--from',
      sqliteUrl,
      '--to',
      to,
      '--max-txn-ops',
      '16',
      '-o',
      'json',
    ];
    const dry = await runTether([...base, '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(JSON.parse(dry.stdout)).toMatchObject({
      dryRun: true,
      objects: 42,
      byKind: { Endpoint: 40, Site: 1, Node: 1 },
      reportMarks: 1,
      created: 42,
    });
    const dst = await openDatastore(parseDatastoreUrl(to));
    expect((await dst.list()).items).toEqual([]);
    expect(await dst.revision()).toBe(0);

    const run = await runTether(base);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ dryRun: false, created: 42, unchanged: 0 });
    const src = await openDatastore(parseDatastoreUrl(sqliteUrl));
    const a = (await src.list()).items;
    const b = (await dst.list()).items;
    expect(b.map((o) => `${o.kind}/${o.name}`)).toEqual(a.map((o) => `${o.kind}/${o.name}`));
    const strip = (o: (typeof a)[number]) => {
      const { revision: _r, createRevision: _c, ...meta } = o.object.metadata;
      return { ...o.object, metadata: meta };
    };
    expect(b.map(strip)).toEqual(a.map(strip)); // creationTimestamp included
    expect(await dst.reportMark('n1')).toEqual(await src.reportMark('n1'));

    const again = await runTether(base);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ created: 0, configured: 0, unchanged: 42 });
    const rev = await dst.revision();

    // The target drifts: refused without --force (and nothing written), converges with it.
    await dst.txn([{ op: 'put', object: obj('Site', 's1', { region: 'changed' }) }]);
    const refused = await runTether(base);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/TETHER_E_PRECONDITION/);
    expect((await dst.get('Site', 's1'))?.object.spec).toEqual({ region: 'changed' });
    const forced = await runTether([...base, '--force']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(JSON.parse(forced.stdout)).toMatchObject({ configured: 1, unchanged: 41 });
    expect((await dst.get('Site', 's1'))?.object.spec).toEqual({ region: 'us' });
    expect(await dst.revision()).toBeGreaterThan(rev);
    await src.close();
    await dst.close();
  });

  it('bad URLs and flags fail with TETHER_E_CONFIG naming the flag, before opening anything', async () => {
    const r = await runTether(['controller', 'migrate', '--from', sqliteUrl, '--to', 'etcd://nowhere']);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/--to: .*TETHER_E_CONFIG/);
    const t = await runTether([
      'controller',
      'migrate',
      '--from',
      sqliteUrl,
      '--to',
      etcd.url(),
      '--etcd-ca',
      '/x',
    ]);
    expect(t.code).toBe(4);
    expect(t.stderr).toMatch(/TETHER_E_CONFIG/);
  });
});
