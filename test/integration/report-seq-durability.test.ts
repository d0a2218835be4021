import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * The node's report sequence (src/lib/sequence.ts) under kill -9: a real child process hands
 * out numbers in a tight loop and is killed at random points, also mid-block and right after
 * start; every restart (with its clock stepped further back) continues above every number
 * any earlier run printed.
 */
const repo = join(import.meta.dirname, '../..');
const fixture = join(import.meta.dirname, 'fixtures/seq-writer.ts');
const root = mkdtempSync(join(tmpdir(), 'tether-seq-durability-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function runAndKill(path: string, block: number, now: number, minLines: number): Promise<number[]> {
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', fixture, path, `${block}`, `${now}`],
    {
      cwd: repo,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
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
      if ((out.match(/^n \d+\n/gm)?.length ?? 0) >= minLines) {
        child.kill('SIGKILL');
        resolve();
      }
    });
    child.on('exit', () => reject(new Error(`writer exited early: ${err}`)));
  });
  expect(await exited).toBe('SIGKILL');
  // Only complete lines count: a torn last line was not (fully) printed.
  return out
    .split('\n')
    .slice(0, -1)
    .map((l) => Number(/^n (\d+)$/.exec(l)![1]));
}

describe('report sequence under kill -9', () => {
  it('only ever grows across kills and restarts, with the clock stepped back each time', async () => {
    const path = join(root, 'report-seq.json');
    const block = 50;
    let highest = -1;
    for (let round = 0; round < 8; round++) {
      // Some kills right after start (inside the first block), most a few blocks in.
      const minLines =
        round % 3 === 0 ? 1 + Math.floor(Math.random() * 5) : 20 + Math.floor(Math.random() * 300);
      // The wall clock goes back by an hour every restart: it must not matter.
      const nums = await runAndKill(path, block, 10_000_000 - round * 3_600_000, minLines);
      expect(nums.length).toBeGreaterThanOrEqual(minLines);
      expect(nums[0]!).toBeGreaterThan(highest);
      for (let i = 1; i < nums.length; i++) expect(nums[i]).toBe(nums[i - 1]! + 1);
      highest = nums.at(-1)!;
      // The file holds the bound of the block in use: written once per block, not per number.
      const reserved = (JSON.parse(readFileSync(path, 'utf8')) as { reserved: number }).reserved;
      expect(reserved).toBeGreaterThan(highest);
      expect(reserved).toBeLessThanOrEqual(highest + 2 * block);
    }
  }, 120_000);
});
