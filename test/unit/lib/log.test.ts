import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/lib/log.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-log-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function capture(journald: boolean, fn: (log: ReturnType<typeof createLogger>) => void): string[] {
  const file = join(dir, `${journald}-${Math.random()}.log`);
  const fd = openSync(file, 'w');
  fn(createLogger({ name: 't', level: 'debug', fd, journald }));
  closeSync(fd);
  return readFileSync(file, 'utf8').split('\n').filter(Boolean);
}

describe('logger', () => {
  it('prefixes syslog priorities for journald so levels survive', () => {
    const lines = capture(true, (l) => {
      l.debug('d');
      l.info('i');
      l.warn('w');
      l.error('e');
      l.fatal('f');
    });
    expect(lines.map((l) => l.slice(0, 3))).toEqual(['<7>', '<6>', '<4>', '<3>', '<2>']);
    expect(JSON.parse(lines[1]!.slice(3))).toMatchObject({ level: 30, msg: 'i', name: 't' });
  });

  it('writes plain JSON lines without journald and never logs secrets', () => {
    const lines = capture(false, (l) => l.info({ token: 'T10abc', key: 'PRIVATE', site: 'a' }, 'enrolled'));
    const rec = JSON.parse(lines[0]!);
    expect(rec).toMatchObject({ msg: 'enrolled', site: 'a', token: '[redacted]', key: '[redacted]' });
    expect(lines[0]).not.toContain('PRIVATE');
  });
});
