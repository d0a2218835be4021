import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { printable, printableDeep } from '../../../src/lib/printable.js';
import { formatLogRecord, parseLogLine } from '../../../src/node/support/logs.js';

// biome-ignore lint/suspicious/noControlCharactersInRegex: looking for control characters
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

describe('printable', () => {
  it('leaves no control character in any string, and keeps printable text as it is', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (s) => {
        expect(printable(s)).not.toMatch(CONTROL);
      }),
      { numRuns: 1000 },
    );
    expect(printable('node gw-a: BGP up ✓')).toBe('node gw-a: BGP up ✓');
    expect(printableDeep({ a: ['\u001b[2J', { b: '\u009b31m' }], n: 3 })).toEqual({
      a: ['\ufffd[2J', { b: '\ufffd31m' }],
      n: 3,
    });
  });

  it('a log line carrying escape sequences prints without them', () => {
    const line = JSON.stringify({
      level: 30,
      time: 1,
      msg: 'title \u001b]0;owned\u0007 clear \u001b[2J',
      component: 'x\u001b[31m',
      extra: '\u001b[?25l',
    });
    const r = parseLogLine(line);
    expect(r).toBeDefined();
    if (r) expect(formatLogRecord(r)).not.toMatch(CONTROL);
  });
});
