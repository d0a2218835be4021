import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ShellFrame__Output } from '../../../src/api/gen/tether/v1/ShellFrame.js';
import {
  checkData,
  checkFrame,
  checkReason,
  checkSessionId,
  checkSize,
  SHELL_LIMITS,
} from '../../../src/api/shell.js';
import { TetherError } from '../../../src/lib/errors.js';

const ID = '0f8e2b1c-1111-4222-8333-944455556666';

function frame(f: Partial<ShellFrame__Output>): ShellFrame__Output {
  return {
    session_id: ID,
    node: 'n1',
    open: null,
    resize: null,
    end: null,
    credit: 0,
    ...f,
  } as ShellFrame__Output;
}

/** Runs fn; it must return or throw a TetherError with a stable code and a field, never anything else. */
function clean(fn: () => unknown): TetherError | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    expect(e).toBeInstanceOf(TetherError);
    const t = e as TetherError;
    expect(t.code).toMatch(/^TETHER_E_[A-Z_]+$/);
    return t;
  }
}

describe('shell frame checks', () => {
  it('accepts good frames', () => {
    expect(checkFrame(frame({ op: 'data', data: Buffer.from('hi') }))).toMatchObject({ id: ID, op: 'data' });
    expect(checkFrame(frame({ op: 'resize', resize: { cols: 80, rows: 24 } }))).toEqual({
      id: ID,
      op: 'resize',
      cols: 80,
      rows: 24,
    });
    expect(checkFrame(frame({ op: 'credit', credit: 4096 }))).toEqual({ id: ID, op: 'credit', credit: 4096 });
    expect(
      checkFrame(
        frame({ op: 'end', end: { ending: 'exit', exit_code: 3, signal: 0, code: '', message: 'bye' } }),
      ),
    ).toMatchObject({ op: 'end', ending: 'exit', exitCode: 3 });
  });

  it('names the field of a bad size, id, data or credit', () => {
    expect(clean(() => checkSize(0, 24))?.details).toMatchObject({ field: 'shell.size.cols' });
    expect(clean(() => checkSize(80, 1001))?.details).toMatchObject({ field: 'shell.size.rows' });
    expect(clean(() => checkSize(80.5, 24))?.code).toBe('TETHER_E_INVALID');
    expect(clean(() => checkSessionId('../../etc/passwd'))?.details).toMatchObject({
      field: 'shell.session_id',
    });
    expect(clean(() => checkData(Buffer.alloc(SHELL_LIMITS.maxFrameBytes + 1)))?.code).toBe(
      'TETHER_E_TOO_LARGE',
    );
    expect(
      clean(() => checkFrame(frame({ op: 'credit', credit: SHELL_LIMITS.windowBytes + 1 })))?.details,
    ).toMatchObject({
      field: 'shell.credit',
    });
    expect(clean(() => checkReason('  x '))?.code).toBe('TETHER_E_PERMISSION');
  });

  it('gives a clear error for an operation whose fields are missing', () => {
    for (const op of ['open', 'data', 'end', 'resize'] as const) {
      const e = clean(() => checkFrame(frame({ op })));
      expect(e?.code, op).toBe('TETHER_E_INVALID');
    }
    expect(clean(() => checkFrame(frame({ op: undefined })))?.details).toMatchObject({ field: 'shell.op' });
  });

  it('an unknown ending, code or exit status is neutralised, not trusted', () => {
    const c = checkFrame(
      frame({
        op: 'end',
        end: { ending: 'pwned', exit_code: 1e9, signal: -7, code: 'rm -rf', message: 'x'.repeat(9000) },
      }),
    );
    expect(c).toMatchObject({ ending: 'error', exitCode: -1, signal: -1, code: '' });
    if (c.op === 'end') expect(c.message.length).toBe(500);
  });

  it('fuzz: any frame is accepted within limits or refused with a TetherError, never a crash', () => {
    const size = fc.record({
      cols: fc.oneof(fc.integer(), fc.double(), fc.constant(Number.NaN)),
      rows: fc.oneof(fc.integer(), fc.double()),
    });
    const arb = fc.record({
      session_id: fc.oneof(fc.string(), fc.constant(ID), fc.stringMatching(/^[a-z0-9-]{0,70}$/)),
      node: fc.string(),
      op: fc.constantFrom('open', 'data', 'resize', 'credit', 'end', undefined, 'bogus'),
      open: fc.option(
        fc.record({
          payload: fc.uint8Array({ maxLength: 5000 }).map((b) => Buffer.from(b)),
          signature: fc.uint8Array().map((b) => Buffer.from(b)),
          cert_pem: fc.string(),
        }),
      ),
      data: fc.option(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
          fc.constant(Buffer.alloc(SHELL_LIMITS.maxFrameBytes + 1)),
        ),
      ),
      resize: fc.option(size),
      credit: fc.oneof(fc.bigInt().map(String), fc.string()),
      end: fc.option(
        fc.record({
          ending: fc.string(),
          exit_code: fc.double(),
          signal: fc.integer(),
          code: fc.string(),
          message: fc.string(),
        }),
      ),
    });
    fc.assert(
      fc.property(arb, (f) => {
        const e = clean(() => checkFrame(f as unknown as ShellFrame__Output));
        if (e) return;
        const c = checkFrame(f as unknown as ShellFrame__Output);
        expect(c.id).toMatch(/^[a-z0-9-]{8,64}$/);
        if (c.op === 'data') expect(c.data.length).toBeLessThanOrEqual(SHELL_LIMITS.maxFrameBytes);
        if (c.op === 'resize') {
          expect(c.cols).toBeGreaterThanOrEqual(1);
          expect(c.rows).toBeLessThanOrEqual(SHELL_LIMITS.maxRows);
        }
        if (c.op === 'credit') expect(c.credit).toBeLessThanOrEqual(SHELL_LIMITS.windowBytes);
      }),
      { numRuns: 500 },
    );
  });
});
