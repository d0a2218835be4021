import type { ReportMark } from '../../api/signed-report.js';
import { TetherError } from '../../lib/errors.js';
import { canonical } from './core.js';
import type { Datastore } from './datastore.js';
import { objectKey } from './keys.js';
import type { StoredObject, TxnOp } from './store.js';

export interface MigrateOptions {
  /** Count and compare, write nothing. */
  dryRun?: boolean;
  /** Overwrite a target that holds objects the source does not have identically. */
  force?: boolean;
  /** Objects per transaction (each one split further to fit etcd's --max-txn-ops). */
  batch?: number;
}

export interface MigrateReport {
  from: string;
  to: string;
  dryRun: boolean;
  /** Source revision the copy is a snapshot of. */
  sourceRevision: number;
  objects: number;
  byKind: Record<string, number>;
  reportMarks: number;
  /** What the copy does (or, in a dry run, would do) to each source object. */
  created: number;
  configured: number;
  unchanged: number;
  /** Objects in the target the source does not have: kept as they are (only with force). */
  targetOnly: number;
}

const DEFAULT_BATCH = 100;
const MARK_BATCH = 50;

const key = (o: { kind: string; name: string }) => objectKey(o.kind, o.name);

/**
 * One-way copy of every object and report mark from one Datastore to another (SQLite to
 * etcd), content preserved (spec, status, labels, creationTimestamp; revisions are the
 * target's own). Plan first, then apply: the plan compares the two snapshots, and a target
 * holding anything the source does not have identically is refused unless `force`. A target
 * holding only identical copies (an earlier or interrupted run) is not: a re-run converges
 * and writes only what is missing, so it is safe to repeat. The source must not change
 * meanwhile (stop the controller); the copy is verified against the source snapshot.
 */
export async function migrateDatastore(
  from: Datastore,
  to: Datastore,
  opts: MigrateOptions = {},
): Promise<MigrateReport> {
  const batch = Math.max(1, Math.floor(opts.batch ?? DEFAULT_BATCH));
  const src = await from.list();
  const marks: Array<{ node: string; mark: ReportMark }> = [];
  for (const o of src.items) {
    if (o.kind !== 'Node') continue;
    const mark = await from.reportMark(o.name);
    if (mark) marks.push({ node: o.name, mark });
  }
  const tgt = await to.list();
  const have = new Map(tgt.items.map((o) => [key(o), canonical(o.object)]));
  const srcKeys = new Set(src.items.map(key));
  const report: MigrateReport = {
    from: from.backend,
    to: to.backend,
    dryRun: opts.dryRun === true,
    sourceRevision: src.revision,
    objects: src.items.length,
    byKind: {},
    reportMarks: marks.length,
    created: 0,
    configured: 0,
    unchanged: 0,
    targetOnly: tgt.items.filter((o) => !srcKeys.has(key(o))).length,
  };
  const todo: StoredObject[] = [];
  const creating = new Set<string>();
  for (const o of src.items) {
    report.byKind[o.kind] = (report.byKind[o.kind] ?? 0) + 1;
    const t = have.get(key(o));
    if (t === undefined) {
      report.created++;
      creating.add(key(o));
    } else if (t !== canonical(o.object)) report.configured++;
    else {
      report.unchanged++;
      continue;
    }
    todo.push(o);
  }
  if ((report.configured > 0 || report.targetOnly > 0) && !opts.force)
    throw new TetherError(
      'TETHER_E_PRECONDITION',
      `target ${to.backend} store is not empty: ${report.configured} objects differ from the source and ${report.targetOnly} are not in it; --force overwrites the differing ones`,
      { field: '--to', expected: 'an empty target, or one holding only copies of the source', ...report },
    );
  if (opts.dryRun) return report;

  for (let i = 0; i < todo.length; i += batch) {
    const ops: TxnOp[] = todo.slice(i, i + batch).map((o) => ({ op: 'put', object: o.object }));
    // split: the puts are independent and idempotent, the copy needs no cross-batch atomicity.
    await to.txn(ops, { keepCreationTimestamp: true }, { split: true });
  }
  // Marks last: a mark never becomes durable before the Node (and endpoints) it vouches for.
  for (let i = 0; i < marks.length; i += MARK_BATCH)
    await to.txn([], { reportMarks: marks.slice(i, i + MARK_BATCH) }, { split: true });

  await verify(src.items, creating, marks, to);
  return report;
}

/** Content of every source object, creationTimestamp of the ones this run created (an
 *  existing copy keeps its own), and every mark. */
async function verify(
  items: readonly StoredObject[],
  created: ReadonlySet<string>,
  marks: ReadonlyArray<{ node: string; mark: ReportMark }>,
  to: Datastore,
): Promise<void> {
  const now = new Map((await to.list()).items.map((o) => [key(o), o]));
  for (const o of items) {
    const t = now.get(key(o));
    if (
      !t ||
      canonical(t.object) !== canonical(o.object) ||
      (created.has(key(o)) && t.object.metadata.creationTimestamp !== o.object.metadata.creationTimestamp)
    )
      throw new TetherError(
        'TETHER_E_STATE',
        `after the copy, ${key(o)} in the target differs from the source (did the source change?)`,
        {
          kind: o.kind,
          name: o.name,
        },
      );
  }
  for (const { node, mark } of marks) {
    const m = await to.reportMark(node);
    if (!m || m.serial !== mark.serial || m.bootId !== mark.bootId || m.seq !== mark.seq || m.at !== mark.at)
      throw new TetherError(
        'TETHER_E_STATE',
        `after the copy, the report mark of ${node} differs from the source`,
        { node },
      );
  }
}
