import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readStateCache, StateCache } from '../../src/node/cache.js';
import { expectedAt, SNAPSHOT_EVERY } from './fixtures/cache-model.js';

/**
 * Every revision the node's StateCache acknowledged (applyDelta/replace returned) survives
 * `kill -9`: a child applies a deterministic sequence of deltas and snapshots in a loop and
 * prints each revision after the call returns; we SIGKILL it after a random number of acks,
 * several rounds on the same files, and check the reopened cache holds at least the last
 * printed revision and exactly the state that revision means.
 */
const repo = join(import.meta.dirname, '../..');
const fixture = join(import.meta.dirname, 'fixtures/cache-writer.ts');
const root = mkdtempSync(join(tmpdir(), 'tether-cache-durability-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function writeAndKill(path: string, minAcks: number): Promise<{ start: number; acks: number[] }> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', fixture, path], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.on('exit', (_c, signal) => resolve(signal)),
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if ((out.match(/^ack \d+\n/gm)?.length ?? 0) >= minAcks) {
        child.kill('SIGKILL');
        resolve();
      }
    });
    child.on('exit', () => reject(new Error(`writer exited early: ${err}`)));
  });
  expect(await exited).toBe('SIGKILL');
  const lines = out.split('\n');
  const start = Number(/^start (\d+)$/.exec(lines[0] ?? '')?.[1]);
  // Only complete lines count: a torn last line was not (fully) printed.
  const acks = lines.slice(1, -1).map((l) => Number(/^ack (\d+)$/.exec(l)![1]));
  return { start, acks };
}

function expectConsistent(objects: ReadonlyArray<{ kind: string; metadata: { name: string } }>, rev: number) {
  const want = expectedAt(rev);
  const got = new Map(objects.map((o) => [`${o.kind}/${o.metadata.name}`, o]));
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [k, o] of want) expect(got.get(k), k).toEqual(o);
}

describe('StateCache durability under kill -9', () => {
  it('keeps every acknowledged revision, consistent, over many kills', async () => {
    const path = join(root, 'cache.json');
    let held = 0;
    const rounds = 8;
    for (let round = 0; round < rounds; round++) {
      // A few kills soon after start (recovery of a fresh cut tail), most mid-run.
      const minAcks =
        round % 3 === 0 ? 1 + Math.floor(Math.random() * 5) : 20 + Math.floor(Math.random() * 200);
      const { start, acks } = await writeAndKill(path, minAcks);
      expect(start).toBe(held);
      expect(acks.length).toBeGreaterThanOrEqual(minAcks);
      expect(acks).toEqual(acks.map((_, k) => start + 1 + k));
      const last = acks.at(-1)!;

      // A reader that changes nothing sees at least what was acknowledged.
      const peek = readStateCache(path);
      expect(peek.revision).toBeGreaterThanOrEqual(last);
      const cache = new StateCache(path);
      // At most the one write in flight when the signal came is there beyond the last ack.
      expect(cache.revision).toBeGreaterThanOrEqual(last);
      expect(cache.revision).toBeLessThanOrEqual(last + 1);
      expect(cache.snapshotRevision).toBe(Math.floor(cache.revision / SNAPSHOT_EVERY) * SNAPSHOT_EVERY);
      expectConsistent(cache.list(), cache.revision);
      held = cache.revision;
    }
    expect(held).toBeGreaterThan(2 * SNAPSHOT_EVERY);
    // Crashes mid-checkpoint leave no temp files behind once reopened.
    expect(readdirSync(root).sort()).toEqual(['cache.checkpoint', 'cache.journal']);
  });
});
