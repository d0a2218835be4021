import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { keep, parseSince } from '../../../src/cli/commands/logs.js';
import {
  formatLogRecord,
  MAX_LOG_LINE,
  parseLogLine,
  RotatingLogFile,
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
