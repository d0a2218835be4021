import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/controller/store/sqlite.js';

/**
 * Every revision a writer process acknowledged survives `kill -9` of that process: a child
 * writes in a loop and prints each revision after txn() returns; we SIGKILL it mid-loop,
 * reopen the store and check every printed revision is there (objects and history) and the
 * counter goes on from where it was.
 */
const repo = join(import.meta.dirname, '../..');
const fixture = join(import.meta.dirname, 'fixtures/store-writer.ts');
const root = mkdtempSync(join(tmpdir(), 'tether-durability-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Ack {
  revision: number;
  names: string[];
  i: number;
}

/** Runs the writer until it has acknowledged at least `minAcks` txns, then SIGKILLs it. */
async function writeAndKill(dir: string, minAcks: number): Promise<{ start: number; acks: Ack[] }> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', fixture, dir], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if ((out.match(/^ack /gm)?.length ?? 0) >= minAcks) {
        child.kill('SIGKILL');
        resolve();
      }
    });
    child.on('exit', () => reject(new Error(`writer exited early: ${err}`)));
  });
  const { signal } = await exited;
  expect(signal).toBe('SIGKILL');
  // Whatever the pipe still held was read before 'exit'; drop a torn last line.
  const lines = out.split('\n').filter((l) => /^(start|ack) /.test(l));
  const start = Number(lines.shift()!.split(' ')[1]);
  const acks = lines
    .map((l) => l.split(' '))
    .filter((p) => p.length === 4)
    .map(([, rev, names, i]) => ({ revision: Number(rev), names: names!.split(','), i: Number(i) }));
  return { start, acks };
}

function checkAcks(store: SqliteStore, acks: Ack[]): void {
  const head = store.revision();
  const events = store.history(0);
  const byRevision = new Map<number, typeof events>();
  for (const ev of events) byRevision.set(ev.revision, [...(byRevision.get(ev.revision) ?? []), ev]);
  // History has no holes and no partial transactions.
  expect([...byRevision.keys()]).toEqual(Array.from({ length: head }, (_, k) => k + 1));
  for (const evs of byRevision.values()) expect([1, 3]).toContain(evs.length);

  const lastAck = new Map<string, Ack>();
  for (const a of acks) {
    expect(a.revision).toBeLessThanOrEqual(head);
    const evs = byRevision.get(a.revision);
    expect(evs, `revision ${a.revision}`).toBeDefined();
    expect(evs!.map((e) => e.name)).toEqual(a.names);
    for (const e of evs!) {
      expect(e.type).toBe('put');
      if (e.type === 'put') expect(e.object.spec.description).toBe(`write ${a.i}`);
    }
    for (const n of a.names) lastAck.set(n, a);
  }
  // Each object is at least as new as its last acknowledged write.
  for (const [name, a] of lastAck) {
    const o = store.get('Site', name);
    expect(o, name).toBeDefined();
    expect(o!.revision).toBeGreaterThanOrEqual(a.revision);
    if (o!.revision === a.revision) expect(o!.object.spec.description).toBe(`write ${a.i}`);
  }
}

describe('SqliteStore durability under kill -9', () => {
  it('keeps every acknowledged revision and continues the counter', async () => {
    const dir = join(root, 'data');
    const first = await writeAndKill(dir, 400);
    expect(first.start).toBe(0);
    expect(first.acks.length).toBeGreaterThanOrEqual(400);
    // Acknowledged revisions are strictly increasing by one.
    expect(first.acks.map((a) => a.revision)).toEqual(first.acks.map((_, k) => k + 1));

    let store = new SqliteStore(dir);
    const head1 = store.revision();
    expect(head1).toBeGreaterThanOrEqual(first.acks.at(-1)!.revision);
    checkAcks(store, first.acks);
    store.close();

    // A second writer after the crash continues from the head, and is killed in turn.
    const second = await writeAndKill(dir, 200);
    expect(second.start).toBe(head1);
    expect(second.acks[0]!.revision).toBe(head1 + 1);
    store = new SqliteStore(dir);
    try {
      checkAcks(store, [...first.acks, ...second.acks]);
      expect(
        store.txn([
          {
            op: 'put',
            object: { apiVersion: 'tether.dev/v1', kind: 'Site', metadata: { name: 'z' }, spec: {} },
          },
        ]).revision,
      ).toBe(store.revision());
      expect(store.revision()).toBeGreaterThan(second.acks.at(-1)!.revision);
    } finally {
      store.close();
    }
  });
});
