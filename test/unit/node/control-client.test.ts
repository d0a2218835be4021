// The control API's client (src/node/control-client.ts): its HTTP answer parser on any bytes,
// and the client against servers that answer in ways ours does not (no length, chunked,
// truncated, oversized, silent), each ending in a TetherError with a stable code.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { isTetherError } from '../../../src/lib/errors.js';
import {
  MAX_ANSWER_BYTES,
  MAX_HEAD_BYTES,
  readEvents,
  readHttpAnswer,
  readLiveStatus,
} from '../../../src/node/control-client.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-s11cc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ok = (body: string, extra = '') =>
  Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`);

describe('readHttpAnswer', () => {
  it('reads status and body by content-length, and waits while bytes are missing', () => {
    const a = readHttpAnswer(ok('{"a":1}', 'Content-Type: application/json\r\n'), false, 's');
    expect(a?.status).toBe(200);
    expect(a?.body.toString()).toBe('{"a":1}');
    const whole = ok('{"a":1}');
    for (let cut = 0; cut < whole.length; cut++)
      expect(readHttpAnswer(whole.subarray(0, cut), false, 's')).toBeUndefined();
  });

  it('without a length the body runs to the end of the connection', () => {
    const raw = Buffer.from('HTTP/1.0 404 Not Found\r\n\r\n{"error":{}}');
    expect(readHttpAnswer(raw, false, 's')).toBeUndefined();
    expect(readHttpAnswer(raw, true, 's')?.status).toBe(404);
  });

  it('refuses what it cannot read, with stable codes', () => {
    const code = (raw: string | Buffer, ended = true) => {
      try {
        readHttpAnswer(Buffer.from(raw), ended, 's');
        return 'none';
      } catch (e) {
        return isTetherError(e) ? e.code : 'not a TetherError';
      }
    };
    expect(code('')).toBe('TETHER_E_UNAVAILABLE');
    expect(code('HTTP/1.1 200 OK\r\ncontent-le')).toBe('TETHER_E_PARSE');
    expect(code('SSH-2.0-x\r\n\r\n')).toBe('TETHER_E_PARSE');
    expect(code('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n7\r\n{"a":1}\r\n0\r\n\r\n')).toBe(
      'TETHER_E_PARSE',
    );
    expect(code('HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nabcdef')).toBe(
      'TETHER_E_PARSE',
    );
    expect(code('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc')).toBe('TETHER_E_PARSE');
    expect(code('HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nabc')).toBe('TETHER_E_PARSE');
    expect(code('HTTP/1.1 200 OK\r\nno colon here\r\n\r\n')).toBe('TETHER_E_PARSE');
    expect(code(`HTTP/1.1 200 OK\r\nx: ${'a'.repeat(MAX_HEAD_BYTES)}`, false)).toBe('TETHER_E_PARSE');
    expect(code(`HTTP/1.1 200 OK\r\ncontent-length: ${MAX_ANSWER_BYTES + 1}\r\n\r\n`, false)).toBe(
      'TETHER_E_TOO_LARGE',
    );
    expect(code(Buffer.alloc(MAX_ANSWER_BYTES + 1, 0x61), false)).toBe('TETHER_E_TOO_LARGE');
  });

  it('any bytes, cut anywhere: an answer, undefined, or a TetherError (fuzz)', () => {
    const piece = fc.oneof(
      fc.constantFrom(
        'HTTP/1.1 200 OK',
        'HTTP/1.0 500 x',
        '\r\n',
        '\r\n\r\n',
        'content-length: 3',
        'Content-Length: 99999999999',
        'transfer-encoding: identity',
        ': ',
        '{}',
      ),
      fc.string({ maxLength: 12 }),
      fc.uint8Array({ maxLength: 12 }).map((u) => Buffer.from(u).toString('latin1')),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 12 }), fc.boolean(), (parts, ended) => {
        const raw = Buffer.from(parts.join(''), 'latin1');
        try {
          const a = readHttpAnswer(raw, ended, 'fuzz');
          if (a) {
            expect(a.status).toBeGreaterThanOrEqual(100);
            expect(a.body.length).toBeLessThanOrEqual(raw.length);
          } else expect(ended).toBe(false);
        } catch (e) {
          expect(isTetherError(e), String(e)).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

/** A unix-socket server that answers every connection with `answer(socket)`. */
async function rawServer(
  name: string,
  answer: (s: Socket) => void,
): Promise<{ path: string; server: Server }> {
  const path = join(dir, name);
  const server = createServer((s) => {
    s.once('data', () => answer(s));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(path, r));
  return { path, server };
}

describe('control API client against odd servers', () => {
  it('reads an HTTP/1.0 answer without a length, and names the status of an error answer', async () => {
    const { path, server } = await rawServer('plain.sock', (s) =>
      s.end('HTTP/1.0 200 OK\r\n\r\n{"events":[],"latest":0,"missed":0}'),
    );
    expect((await readEvents(path)).latest).toBe(0);
    server.close();
    const e = await rawServer('err.sock', (s) =>
      s.end('HTTP/1.1 503 Busy\r\ncontent-length: 35\r\n\r\n{"error":{"message":"not started"}}'),
    );
    await expect(readLiveStatus(e.path)).rejects.toMatchObject({
      code: 'TETHER_E_COMMAND',
      message: expect.stringContaining('503 not started'),
    });
    e.server.close();
  });

  it('refuses a chunked, a truncated, a non-JSON and an endless answer', async () => {
    const cases: Array<[string, (s: Socket) => void, string]> = [
      [
        'chunked.sock',
        (s) => s.end('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n'),
        'TETHER_E_PARSE',
      ],
      ['short.sock', (s) => s.end('HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n{"a":'), 'TETHER_E_PARSE'],
      ['text.sock', (s) => s.end('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello'), 'TETHER_E_PARSE'],
      [
        'endless.sock',
        (s) => {
          s.write('HTTP/1.1 200 OK\r\n\r\n');
          const chunk = Buffer.alloc(256 * 1024, 0x20);
          const pump = () => {
            while (!s.destroyed && s.write(chunk));
            if (!s.destroyed) s.once('drain', pump);
          };
          pump();
        },
        'TETHER_E_TOO_LARGE',
      ],
      ['closed.sock', (s) => s.destroy(), 'TETHER_E_UNAVAILABLE'],
    ];
    for (const [name, answer, code] of cases) {
      const { path, server } = await rawServer(name, answer);
      await expect(readLiveStatus(path), name).rejects.toMatchObject({ code });
      server.close();
    }
  });

  it('gives up on a server that never answers, as unavailable', async () => {
    const { path, server } = await rawServer('silent.sock', () => {});
    await expect(readLiveStatus(path, 300)).rejects.toMatchObject({
      code: 'TETHER_E_UNAVAILABLE',
      message: expect.stringContaining('no answer within 300 ms'),
    });
    server.close();
  });
});
