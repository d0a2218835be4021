import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { journalArgs, keep, parseSince } from '../../../src/cli/commands/logs.js';
import {
  followLogFile,
  formatLogRecord,
  LineSplitter,
  MAX_LOG_LINE,
  parseLogLine,
  RotatingLogFile,
  readLogFileTail,
} from '../../../src/node/support/logs.js';

describe('parseLogLine', () => {
  it('reads pino lines, journald-prefixed lines and journalctl -o json entries', () => {
    const pino =
      '{"level":40,"time":"2026-12-03T10:00:00.000Z","pid":1,"name":"tether-node","msg":"session lost","peer":"c1"}';
    expect(parseLogLine(pino)).toEqual({
      level: 'warn',
      time: '2026-12-03T10:00:00.000Z',
      component: 'tether-node',
      msg: 'session lost',
      fields: { peer: 'c1' },
    });
    expect(parseLogLine(`<4>${pino}`).level).toBe('warn');
    const j = parseLogLine(JSON.stringify({ MESSAGE: pino, __REALTIME_TIMESTAMP: '1764756000000000' }));
    expect(j.msg).toBe('session lost');
    expect(parseLogLine('not json at all')).toMatchObject({ level: 'unknown', raw: 'not json at all' });
    expect(formatLogRecord(parseLogLine(pino))).toBe(
      '2026-12-03T10:00:00.000Z WARN  tether-node: session lost peer=c1',
    );
  });

  it('never throws, bounds what it keeps, and formats to one line', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 2000 }),
          fc.json({ maxDepth: 4 }),
          fc.json({ maxDepth: 3 }).map((m) => JSON.stringify({ MESSAGE: m })),
          fc.record({ level: fc.anything(), msg: fc.anything(), time: fc.anything() }).map((o) => {
            try {
              return JSON.stringify(o) ?? '';
            } catch {
              return '';
            }
          }),
        ),
        (line) => {
          const r = parseLogLine(line);
          expect(formatLogRecord(r)).not.toMatch(/[\r\n]/);
          if (r.raw !== undefined) expect(r.raw.length).toBeLessThanOrEqual(MAX_LOG_LINE + 1);
        },
      ),
      { numRuns: 1000 },
    );
    const huge = `{"msg":"${'x'.repeat(MAX_LOG_LINE + 10)}"}`;
    expect(parseLogLine(huge).raw?.length).toBe(MAX_LOG_LINE + 1);
  });

  it('filters by time and component; --since takes durations and ISO times', () => {
    const now = new Date('2026-12-03T12:00:00Z');
    expect(parseSince('15m', now).toISOString()).toBe('2026-12-03T11:45:00.000Z');
    expect(parseSince('2026-12-03T11:00:00Z').toISOString()).toBe('2026-12-03T11:00:00.000Z');
    expect(() => parseSince('yesterday-ish')).toThrow(/--since/);
    const r = parseLogLine('{"level":30,"time":"2026-12-03T11:50:00Z","name":"tether-firstboot","msg":"x"}');
    expect(keep(r, { since: parseSince('15m', now) })).toBe(true);
    expect(keep(r, { since: parseSince('5m', now) })).toBe(false);
    expect(keep(r, { component: 'firstboot' })).toBe(true);
    expect(keep(r, { component: 'node' })).toBe(false);
  });
});

describe('RotatingLogFile', () => {
  it('rotates into one older generation at the size bound', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-logfile-'));
    try {
      const f = new RotatingLogFile(join(dir, 'node.log'), 1000);
      for (let i = 0; i < 100; i++) f.write(`{"msg":"line ${String(i).padStart(3, '0')}"}\n`);
      expect(statSync(join(dir, 'node.log')).size).toBeLessThanOrEqual(1000);
      expect(statSync(join(dir, 'node.log.1')).size).toBeLessThanOrEqual(1000);
      expect(readFileSync(join(dir, 'node.log'), 'utf8')).toContain('line 099');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('LineSplitter', () => {
  it('gives the same lines however the stream is cut, and drops an over-long line whole (fuzz)', () => {
    const line = fc.oneof(
      fc.string({ maxLength: 20 }).map((s) => s.replace(/\n/g, ' ')),
      fc.constant('x'.repeat(MAX_LOG_LINE + 5)),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 10 }), (lines, cuts) => {
        const text = lines.map((l) => `${l}\n`).join('');
        const split = new LineSplitter();
        const got: string[] = [];
        let at = 0;
        for (const c of [...cuts.map((c) => c % (text.length + 1)).sort((a, b) => a - b), text.length]) {
          got.push(...split.push(text.slice(at, Math.max(at, c))));
          at = Math.max(at, c);
        }
        got.push(...split.end());
        // A line longer than the bound is dropped only when it arrived in pieces past it;
        // whatever comes out is a whole line of the input, in order.
        const kept = lines.filter((l) => l.length <= MAX_LOG_LINE);
        expect(got.filter((l) => l.length <= MAX_LOG_LINE)).toEqual(kept);
        for (const l of got) expect(lines).toContain(l);
      }),
      { numRuns: 300 },
    );
  });

  it('keeps the last line without a newline for end()', () => {
    const s = new LineSplitter();
    expect(s.push('a\nb')).toEqual(['a']);
    expect(s.end()).toEqual(['b']);
    expect(s.end()).toEqual([]);
  });
});

describe('following the log file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-s11follow-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function until(what: string, ok: () => boolean): Promise<void> {
    const t0 = Date.now();
    while (!ok()) {
      if (Date.now() - t0 > 30_000) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('reads on from the tail, across rotations and a truncation, without loss or repeats', async () => {
    const path = join(dir, 'node.log');
    const f = new RotatingLogFile(path, 200);
    f.write('old-1\n');
    f.write('old-2\n');
    const tail = readLogFileTail(path, 1024);
    expect(tail.text).toBe('old-1\nold-2\n');
    f.write('between\n'); // after the tail was read, before following starts
    const got: string[] = [];
    const stop = new AbortController();
    const done = followLogFile(path, (l) => got.push(l), {
      signal: stop.signal,
      pollMs: 10,
      ...(tail.from ? { from: tail.from } : {}),
    });
    const want = ['between'];
    for (let i = 0; i < 40; i++) {
      // 40 lines of ~40 bytes through a 200-byte file: a rotation every few lines, with a line
      // on each side of it between two polls. (Two rotations between polls lose a generation
      // on disk; RotatingLogFile keeps one.)
      const l = `line-${i}-${'y'.repeat(30)}`;
      f.write(`${l}\n`);
      want.push(l);
      if (i % 2 === 1) await until(`line ${i}`, () => got.includes(l));
    }
    await until('all lines', () => got.length >= want.length);
    expect(got).toEqual(want);
    // Truncated in place: read again from the start.
    writeFileSync(path, '');
    await new Promise((r) => setTimeout(r, 50));
    appendFileSync(path, 'after-truncate\n');
    await until('after truncate', () => got.includes('after-truncate'));
    stop.abort();
    await done;
    expect(got.filter((l) => l === 'after-truncate')).toHaveLength(1);
  });

  it('journalctl arguments: unit, JSON, directory, since, follow', () => {
    expect(journalArgs({}, { lines: 5 })).toEqual([
      '-u',
      'tether-node',
      '-o',
      'json',
      '--no-pager',
      '-n',
      '5',
    ]);
    expect(
      journalArgs({ since: new Date('2026-12-03T10:00:00Z') }, { lines: 100, follow: true, directory: '/j' }),
    ).toEqual([
      '-u',
      'tether-node',
      '-o',
      'json',
      '--no-pager',
      '-n',
      '100',
      '-D',
      '/j',
      '--since',
      '@1796292000',
      '-f',
    ]);
  });
});
