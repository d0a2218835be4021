import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { fsyncDir, writeFileAtomic } from '../../lib/atomic.js';
import { TetherError } from '../../lib/errors.js';
import { parseJson } from '../../lib/input.js';

/**
 * An append-only file of JSON lines, each fsynced before `append` returns: the proxy answers
 * (acks, report results) only after that, so whatever it acknowledged survives kill -9 or a
 * power cut. A torn last line (the crash came mid-write, so it was never acknowledged) is
 * dropped on load; damage anywhere else is TETHER_E_STATE, never silently skipped.
 */
export class LineJournal<T> {
  private fd: number | undefined;
  private count = 0;

  constructor(private readonly path: string) {}

  /** Lines on disk (after load or the last rewrite, plus appends). */
  get lines(): number {
    return this.count;
  }

  load(): T[] {
    if (!existsSync(this.path)) return [];
    const text = readFileSync(this.path, 'utf8');
    const raw = text.split('\n');
    const out: T[] = [];
    for (let i = 0; i < raw.length; i++) {
      const line = raw[i]!;
      if (line === '') continue;
      try {
        out.push(parseJson(line, { source: `${this.path}:${i + 1}` }) as T);
      } catch (e) {
        const last = raw.slice(i + 1).every((l) => l === '');
        if (last && !text.endsWith('\n')) break;
        throw new TetherError(
          'TETHER_E_STATE',
          `journal line ${i + 1} is unreadable: ${(e as Error).message}`,
          {
            file: this.path,
            line: i + 1,
          },
        );
      }
    }
    this.count = out.length;
    // A torn tail stays in the file until the next rewrite; appends start on a fresh line.
    if (text.length > 0 && !text.endsWith('\n')) this.rewrite(out);
    return out;
  }

  append(entries: readonly T[]): void {
    if (entries.length === 0) return;
    if (this.fd === undefined) {
      const dir = dirname(this.path);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const fresh = !existsSync(this.path);
      this.fd = openSync(this.path, 'a', 0o600);
      if (fresh) fsyncDir(dir);
    }
    const buf = Buffer.from(entries.map((e) => `${JSON.stringify(e)}\n`).join(''));
    let off = 0;
    while (off < buf.length) off += writeSync(this.fd, buf, off, buf.length - off);
    fsyncSync(this.fd);
    this.count += entries.length;
  }

  /** Replaces the file with `entries` atomically (compaction). */
  rewrite(entries: readonly T[]): void {
    this.close();
    writeFileAtomic(this.path, entries.map((e) => `${JSON.stringify(e)}\n`).join(''));
    this.count = entries.length;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
