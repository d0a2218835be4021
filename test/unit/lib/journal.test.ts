// The append-only journal (src/lib/journal.ts): framing, torn tails at every byte, checksum
// damage, size limits, checkpoint + log rotation (also a crash between the two renames), and
// a property test of recovery over random damage to either file.
import { randomBytes } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { isTetherError, TetherError } from '../../../src/lib/errors.js';
import { crc32, crc32Portable, Journal, type JournalOptions } from '../../../src/lib/journal.js';

const root = mkdtempSync(join(tmpdir(), 'tether-journal-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => {
  const d = join(root, `j${n++}`);
  mkdirSync(d);
  return d;
};

interface Rec {
  i: number;
  s: string;
}
interface State {
  sum: number;
  seen: number[];
}

function decodeRec(v: unknown, where: string): Rec {
  const r = v as Rec;
  if (typeof r?.i !== 'number' || typeof r.s !== 'string')
    throw new TetherError('TETHER_E_STATE', 'bad record', { file: where });
  return r;
}
function decodeState(v: unknown, where: string): State {
  const s = v as State;
  if (typeof s?.sum !== 'number' || !Array.isArray(s.seen))
    throw new TetherError('TETHER_E_STATE', 'bad state', { file: where });
  return s;
}

function opts(dir: string, over: Partial<JournalOptions<State, Rec>> = {}): JournalOptions<State, Rec> {
  return {
    path: join(dir, 'j'),
    maxRecordBytes: 4096,
    maxFileBytes: 1 << 20,
    checkpointRecords: 1000,
    checkpointBytes: 1 << 19,
    decodeState,
    decodeRecord: decodeRec,
    ...over,
  };
}

const rec = (i: number): Rec => ({ i, s: `record ${i} ${'x'.repeat(i % 17)}` });
const fold = (s: State | undefined, rs: readonly Rec[]): State => {
  const out = { sum: s?.sum ?? 0, seen: [...(s?.seen ?? [])] };
  for (const r of rs) {
    out.sum += r.i;
    out.seen.push(r.i);
  }
  return out;
};

/** Writes `count` records and returns the log's size before the last one was appended. */
function writeRecords(o: JournalOptions<State, Rec>, count: number): { before: number; after: number } {
  const { journal } = Journal.open(o);
  const all: Rec[] = [];
  let before = 0;
  for (let i = 1; i <= count; i++) {
    if (i === count) before = existsSync(journal.logPath) ? statSync(journal.logPath).size : 0;
    all.push(rec(i));
    journal.append(rec(i), () => fold(undefined, all.slice(0, -1)));
  }
  journal.close();
  return { before, after: statSync(journal.logPath).size };
}

function copyDir(from: string): string {
  const to = freshDir();
  for (const f of readdirSync(from)) copyFileSync(join(from, f), join(to, f));
  return to;
}

function expectStateError(fn: () => unknown, file?: string): TetherError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(isTetherError(err, 'TETHER_E_STATE'), String(err)).toBe(true);
  if (file) expect((err as TetherError).details.file).toBe(file);
  return err as TetherError;
}

describe('crc32', () => {
  it('matches the IEEE check value and zlib on any input, also when continued', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32Portable(Buffer.from('123456789'))).toBe(0xcbf43926);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 50 }), (a, b) => {
        expect(crc32Portable(a)).toBe(crc32(a));
        expect(crc32Portable(b, crc32Portable(a))).toBe(crc32(Buffer.concat([a, b])));
      }),
    );
  });
});

describe('Journal', () => {
  it('returns what was appended, in order, after reopening; nothing on a fresh path', () => {
    const o = opts(freshDir());
    const fresh = Journal.open(o);
    expect(fresh).toMatchObject({ state: undefined, records: [], exists: false });
    expect(existsSync(fresh.journal.logPath)).toBe(false);
    fresh.journal.close();
    writeRecords(o, 25);
    const again = Journal.open(o);
    expect(again.records).toEqual(Array.from({ length: 25 }, (_, k) => rec(k + 1)));
    expect(again.truncated).toBeUndefined();
    again.journal.append(rec(26), () => fold(undefined, again.records));
    again.journal.close();
    expect(Journal.open(o).records.map((r) => r.i)).toEqual(Array.from({ length: 26 }, (_, k) => k + 1));
  });

  it('cuts a torn last record at every byte offset and appends cleanly after it', () => {
    const base = freshDir();
    const o = opts(base);
    const { before, after } = writeRecords(o, 6);
    expect(after).toBeGreaterThan(before + 8);
    const five = Array.from({ length: 5 }, (_, k) => rec(k + 1));
    for (let cut = before; cut < after; cut++) {
      for (const fill of ['truncate', 'zeros', 'random'] as const) {
        const d = copyDir(base);
        const oo = opts(d);
        const log = `${oo.path}.journal`;
        const buf = readFileSync(log);
        if (fill === 'truncate') truncateSync(log, cut);
        else {
          // A crash can also leave the tail's blocks allocated with zeros or stale bytes.
          const tailBytes = fill === 'zeros' ? Buffer.alloc(after - cut) : randomBytes(after - cut);
          writeFileSync(log, Buffer.concat([buf.subarray(0, cut), tailBytes]));
        }
        const r = Journal.open(oo);
        expect(r.records, `cut at ${cut} (${fill})`).toEqual(five);
        if (cut > before) expect(r.truncated?.offset).toBe(before);
        expect(statSync(log).size).toBe(before);
        r.journal.append(rec(99), () => fold(undefined, five));
        r.journal.close();
        expect(Journal.open(oo).records).toEqual([...five, rec(99)]);
      }
    }
  });

  it('stops at a record whose checksum does not match, keeping the records before it', () => {
    const base = freshDir();
    const o = opts(base);
    writeRecords(o, 10);
    const log = `${o.path}.journal`;
    const good = Journal.read(o).records;
    // Find the 4th record's payload and flip one bit in it.
    const buf = readFileSync(log);
    let off = 8;
    off += 8 + buf.readUInt32LE(off); // header frame
    for (let k = 0; k < 3; k++) off += 8 + buf.readUInt32LE(off);
    buf[off + 8 + 3]! ^= 0x10;
    writeFileSync(log, buf);
    const r = Journal.open(o);
    expect(r.records).toEqual(good.slice(0, 3));
    expect(r.truncated).toMatchObject({ offset: off, reason: 'checksum mismatch' });
    r.journal.close();
  });

  it('refuses a damaged checkpoint, a damaged log header and foreign files with TETHER_E_STATE naming the file', () => {
    const base = freshDir();
    const o = opts(base);
    const { journal } = Journal.open(o);
    journal.checkpoint({ sum: 1, seen: [1] });
    journal.append(rec(2), () => ({ sum: 1, seen: [1] }));
    journal.close();
    const ckpt = `${o.path}.checkpoint`;
    const log = `${o.path}.journal`;
    for (const [file, at] of [
      [ckpt, 20],
      [ckpt, 3],
      [log, 12],
      [log, 0],
    ] as const) {
      const d = copyDir(base);
      const f = join(d, file.slice(base.length + 1));
      const buf = readFileSync(f);
      buf[at]! ^= 0x01;
      writeFileSync(f, buf);
      expectStateError(() => Journal.open(opts(d)), f);
      expectStateError(() => Journal.read(opts(d)), f);
    }
    const d = freshDir();
    writeFileSync(join(d, 'j.checkpoint'), '{"version":1,"objects":[]}');
    expectStateError(() => Journal.open(opts(d)), join(d, 'j.checkpoint'));
    const e = freshDir();
    mkdirSync(join(e, 'j.journal'));
    expectStateError(() => Journal.open(opts(e)), join(e, 'j.journal'));
  });

  it('refuses an oversize record with TETHER_E_TOO_LARGE naming the file and limit, writing nothing', () => {
    const o = opts(freshDir(), { maxRecordBytes: 100 });
    writeRecords(o, 3);
    const { journal, records } = Journal.open(o);
    const size = statSync(journal.logPath).size;
    let err: unknown;
    try {
      journal.append({ i: 4, s: 'y'.repeat(100) }, () => fold(undefined, records));
    } catch (e) {
      err = e;
    }
    expect(isTetherError(err, 'TETHER_E_TOO_LARGE')).toBe(true);
    expect((err as TetherError).details).toMatchObject({
      file: journal.logPath,
      expected: 'at most 100 bytes per record',
    });
    expect(statSync(journal.logPath).size).toBe(size);
    journal.append(rec(4), () => fold(undefined, records));
    journal.close();
    expect(Journal.open(o).records.map((r) => r.i)).toEqual([1, 2, 3, 4]);
  });

  it('bounds the files: refuses to read one over the limit, and a checkpoint that would exceed it', () => {
    const d = freshDir();
    const o = opts(d, { maxFileBytes: 2000 });
    writeRecords(o, 5);
    const log = `${o.path}.journal`;
    writeFileSync(log, Buffer.concat([readFileSync(log), Buffer.alloc(2000)]));
    let err: unknown;
    try {
      Journal.open(o);
    } catch (e) {
      err = e;
    }
    expect(isTetherError(err, 'TETHER_E_TOO_LARGE')).toBe(true);
    expect((err as TetherError).details).toMatchObject({ file: log, expected: 'at most 2000 bytes' });

    const { journal } = Journal.open(opts(freshDir(), { maxFileBytes: 2000 }));
    const huge: State = { sum: 0, seen: Array.from({ length: 1000 }, (_, k) => k) };
    expect(() => journal.checkpoint(huge)).toThrow(/checkpoint is \d+ bytes/);
    // A log at its limit is checkpointed first; when even that cannot fit, the append fails.
    const all: Rec[] = [];
    for (let i = 1; i <= 60; i++) {
      all.push(rec(i));
      journal.append(rec(i), () => fold(undefined, all.slice(0, -1)));
      expect(statSync(journal.logPath).size).toBeLessThanOrEqual(2000);
    }
    expect(journal.stats.generation).toBeGreaterThan(0);
    journal.close();
    const o2 = opts(join(journal.logPath, '..'), { maxFileBytes: 2000 });
    const r = Journal.open(o2);
    expect(fold(r.state, r.records)).toEqual(fold(undefined, all));
    // When the state no longer fits a checkpoint, the append that needs one fails, whole.
    let failed: unknown;
    for (let i = 61; i < 200 && !failed; i++) {
      try {
        r.journal.append(rec(i), () => huge);
        all.push(rec(i));
      } catch (e) {
        failed = e;
      }
    }
    expect(isTetherError(failed, 'TETHER_E_TOO_LARGE')).toBe(true);
    r.journal.close();
    const back = Journal.read(o2);
    expect(fold(back.state, back.records)).toEqual(fold(undefined, all));
  });

  it('checkpoints after N records or M bytes and replaces the log', () => {
    for (const over of [{ checkpointRecords: 5 }, { checkpointBytes: 150 }]) {
      const o = opts(freshDir(), over);
      const { journal } = Journal.open(o);
      const all: Rec[] = [];
      const generations: number[] = [];
      for (let i = 1; i <= 23; i++) {
        all.push(rec(i));
        journal.append(rec(i), () => fold(undefined, all.slice(0, -1)));
        generations.push(journal.stats.generation);
        if ('checkpointRecords' in over) expect(journal.stats.records).toBeLessThanOrEqual(5);
        else expect(journal.stats.logBytes).toBeLessThan(400);
      }
      expect(Math.max(...generations)).toBeGreaterThanOrEqual(3);
      // The generation only ever moves forward, one checkpoint at a time.
      for (let k = 1; k < generations.length; k++)
        expect(generations[k]! - generations[k - 1]!).toBeGreaterThanOrEqual(0);
      journal.close();
      const r = Journal.open(o);
      expect(r.state).toBeDefined();
      expect(r.records.length).toBeLessThan(23);
      expect(fold(r.state, r.records)).toEqual(fold(undefined, all));
      r.journal.close();
    }
  });

  it('recovers a crash between the checkpoint and the log rotation, and refuses a log newer than its checkpoint', () => {
    const d = freshDir();
    const o = opts(d);
    writeRecords(o, 4);
    const log = `${o.path}.journal`;
    const oldLog = readFileSync(log);
    const { journal, records } = Journal.open(o);
    journal.checkpoint(fold(undefined, records));
    journal.close();
    const newLog = readFileSync(log);
    // The checkpoint landed but the old log (generation 0) is still in place.
    writeFileSync(log, oldLog);
    const r = Journal.open(o);
    expect(r.state).toEqual(fold(undefined, records));
    expect(r.records).toEqual([]);
    expect(readFileSync(log).equals(newLog)).toBe(true);
    r.journal.close();
    // A log whose checkpoint is gone.
    rmSync(`${o.path}.checkpoint`);
    expectStateError(() => Journal.open(o), log);
  });

  it('removes temp files a crashed checkpoint left behind', () => {
    const d = freshDir();
    const o = opts(d);
    writeRecords(o, 2);
    writeFileSync(join(d, 'j.checkpoint.tmp-123-abcd'), 'half');
    writeFileSync(join(d, 'j.journal.tmp-9-ff'), 'half');
    writeFileSync(join(d, 'other.tmp-1'), 'not ours');
    Journal.open(o).journal.close();
    expect(readdirSync(d).sort()).toEqual(['j.journal', 'other.tmp-1']);
  });

  it('a second writer in the same process makes the first one stale instead of interleaving', () => {
    const o = opts(freshDir());
    const a = Journal.open(o).journal;
    a.append(rec(1), () => fold(undefined, []));
    const b = Journal.open(o);
    expect(b.records).toEqual([rec(1)]);
    expectStateError(() => a.append(rec(2), () => fold(undefined, [rec(1)])));
    b.journal.append(rec(2), () => fold(undefined, [rec(1)]));
    b.journal.close();
    expect(Journal.read(o).records).toEqual([rec(1), rec(2)]);
  });

  it('read() changes nothing, also with a torn tail', () => {
    const d = freshDir();
    const o = opts(d);
    const { before, after } = writeRecords(o, 3);
    truncateSync(`${o.path}.journal`, (before + after) >> 1);
    const bytes = readFileSync(`${o.path}.journal`);
    const r = Journal.read(o);
    expect(r.records).toEqual([rec(1), rec(2)]);
    expect(r.truncated).toBeDefined();
    expect(readFileSync(`${o.path}.journal`).equals(bytes)).toBe(true);
  });

  it('recovery under random damage only ever yields TETHER_E_STATE or what was written', () => {
    const base = freshDir();
    let runs = 0;
    fc.assert(
      fc.property(
        fc.array(fc.record({ i: fc.integer(), s: fc.string({ maxLength: 40 }) }), {
          minLength: 1,
          maxLength: 12,
        }),
        fc.option(fc.nat({ max: 11 })),
        fc.array(
          fc.record({
            checkpoint: fc.boolean(),
            at: fc.nat(),
            byte: fc.integer({ min: 0, max: 255 }),
          }),
          { minLength: 1, maxLength: 4 },
        ),
        fc.option(fc.nat()),
        (recs, checkpointAt, damage, cutAt) => {
          const d = join(base, `f${runs++}`);
          mkdirSync(d);
          const o = opts(d);
          const { journal } = Journal.open(o);
          let state: State | undefined;
          let after: Rec[] = [];
          recs.forEach((r, k) => {
            if (checkpointAt === k) {
              state = fold(state, after);
              journal.checkpoint(state);
              after = [];
            }
            journal.append(r, () => fold(state, after));
            after.push(r);
          });
          journal.close();
          for (const x of damage) {
            const f = x.checkpoint && state ? journal.checkpointPath : journal.logPath;
            const buf = readFileSync(f);
            buf[x.at % buf.length] = x.byte;
            writeFileSync(f, buf);
          }
          if (cutAt !== null) {
            const size = statSync(journal.logPath).size;
            truncateSync(journal.logPath, cutAt % (size + 1));
          }
          const check = (fn: () => { state: State | undefined; records: Rec[] }) => {
            let got: { state: State | undefined; records: Rec[] };
            try {
              got = fn();
            } catch (e) {
              expect(isTetherError(e, 'TETHER_E_STATE'), String((e as Error)?.stack ?? e)).toBe(true);
              return false;
            }
            expect(got.state).toEqual(state);
            expect(got.records).toEqual(after.slice(0, got.records.length));
            return true;
          };
          check(() => Journal.read(o));
          let reopened: Journal<State, Rec> | undefined;
          const ok = check(() => {
            const r = Journal.open(o);
            reopened = r.journal;
            return r;
          });
          if (ok && reopened) {
            // What recovery kept stays readable and appendable.
            const kept = Journal.read(o);
            reopened.append({ i: 1, s: 'after' }, () => fold(kept.state, kept.records));
            reopened.close();
            expect(Journal.read(o).records).toEqual([...kept.records, { i: 1, s: 'after' }]);
          }
          rmSync(d, { recursive: true, force: true });
        },
      ),
      { numRuns: 400 },
    );
  });
});
