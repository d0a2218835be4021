import type { Datastore } from '../../controller/store/datastore.js';
import { migrateDatastore } from '../../controller/store/migrate.js';
import { type DatastoreTlsFiles, openDatastore, parseDatastoreUrl } from '../../controller/store/open.js';
import { TetherError } from '../../lib/errors.js';
import { out, renderStructured, say } from '../output.js';

export interface MigrateFlags {
  from: string;
  to: string;
  dryRun?: boolean;
  force?: boolean;
  etcdCa?: string;
  etcdCert?: string;
  etcdKey?: string;
  maxTxnOps: string;
  output?: string;
}

/** `tether controller migrate`: parse both URLs before opening either, so a typo changes
 *  nothing; then plan, and apply unless --dry-run. */
export async function migrateCommand(o: MigrateFlags): Promise<void> {
  const from = parseDatastoreUrl(o.from, '--from');
  const to = parseDatastoreUrl(o.to, '--to');
  const maxTxnOps = Number(o.maxTxnOps);
  if (!Number.isInteger(maxTxnOps) || maxTxnOps < 4 || maxTxnOps > 100_000)
    throw new TetherError('TETHER_E_CONFIG', `--max-txn-ops ${o.maxTxnOps}`, {
      field: '--max-txn-ops',
      expected: 'an integer 4..100000',
    });
  if (from.backend === 'memory' || to.backend === 'memory')
    throw new TetherError('TETHER_E_CONFIG', 'memory: holds nothing to migrate from or to', {
      field: from.backend === 'memory' ? '--from' : '--to',
      expected: 'sqlite:DATA_DIR or etcd[s]://...',
    });
  if (JSON.stringify(from) === JSON.stringify(to))
    throw new TetherError('TETHER_E_CONFIG', '--from and --to name the same store', {
      field: '--to',
      expected: 'another store',
    });
  const tls: DatastoreTlsFiles = {
    ...(o.etcdCa ? { caFile: o.etcdCa } : {}),
    ...(o.etcdCert ? { certFile: o.etcdCert } : {}),
    ...(o.etcdKey ? { keyFile: o.etcdKey } : {}),
  };
  const anyTls = (from.backend === 'etcd' && from.tls) || (to.backend === 'etcd' && to.tls);
  if (Object.keys(tls).length > 0 && !anyTls)
    throw new TetherError(
      'TETHER_E_CONFIG',
      '--etcd-ca/--etcd-cert/--etcd-key given without an etcds:// store',
      {
        field: '--etcd-ca',
        expected: 'etcds://host:port with TLS options',
      },
    );
  const tlsFor = (s: typeof from) => (s.backend === 'etcd' && s.tls ? tls : {});
  let src: Datastore | undefined;
  let dst: Datastore | undefined;
  try {
    src = await openDatastore(from, { field: '--from', tls: tlsFor(from), maxTxnOps });
    dst = await openDatastore(to, { field: '--to', tls: tlsFor(to), maxTxnOps });
    const r = await migrateDatastore(src, dst, { dryRun: o.dryRun === true, force: o.force === true });
    if (o.output === 'json' || o.output === 'yaml') {
      out(renderStructured(r, o.output));
      return;
    }
    const kinds = Object.entries(r.byKind)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ');
    say(
      `${r.dryRun ? 'dry run: would copy' : 'copied'} ${r.objects} objects (${kinds || 'none'}) and ${r.reportMarks} report marks from ${r.from} revision ${r.sourceRevision} to ${r.to}`,
    );
    say(
      `  created ${r.created}, overwritten ${r.configured}, already there ${r.unchanged}, only in target ${r.targetOnly}`,
    );
  } finally {
    await src?.close();
    await dst?.close();
  }
}
