// The client side of the node's control API (src/node/control-api.ts serves it): what
// `tether status`, the dashboard and diag read the live state with.
//
// It speaks the little HTTP it needs over node:net instead of node:http. Loading node:http
// (seven internal modules compiled at first use) was a good part of `tether status`'s start-up
// budget (BENCHMARKS.md "CLI start-up"); this module imports only node:net and node:path. The
// server is ours and always answers with a Content-Length (control-api.ts sendJson), but the
// parser below still treats every answer as untrusted bytes: bounded, and malformed input is a
// TetherError, never a throw of anything else.
import { connect } from 'node:net';
import { join } from 'node:path';
import { TetherError } from '../lib/errors.js';
import { parseJson } from '../lib/json-input.js';
import type { NodeEvent, NodeLiveStatus, NodeTraffic } from './control-types.js';

export const CONTROL_SOCKET = 'control.sock';
export const controlSocketPath = (stateDir: string): string => join(stateDir, CONTROL_SOCKET);

/** Largest status answer; past it the server cuts the endpoint list (and says so). */
export const MAX_STATUS_BYTES = 4 * 1024 * 1024;
/** Largest answer the client accepts (the server's bound plus headroom). */
export const MAX_ANSWER_BYTES = MAX_STATUS_BYTES + 64 * 1024;
/** Status line and headers; node:http's own server default is 16 KiB. */
export const MAX_HEAD_BYTES = 16 * 1024;
/** Events per answer when the client names no limit (client and server default). */
export const DEFAULT_EVENTS_PER_ANSWER = 100;

export interface HttpAnswer {
  status: number;
  body: Buffer;
}

const STATUS_LINE = /^HTTP\/1\.[01] ([1-5]\d\d)(?: [\x20-\x7e\t]*)?$/;
const HEADER_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\x20-\x7e\t]*?)[ \t]*$/;

/**
 * The answer in `raw` (everything read from the socket so far), or undefined while it is not
 * complete yet and more may come (`ended` false). A complete answer has its whole head and as
 * many body bytes as its Content-Length says; without a Content-Length the body runs to the
 * end of the connection (HTTP/1.0 style), so it is complete only once `ended`.
 */
export function readHttpAnswer(raw: Buffer, ended: boolean, source: string): HttpAnswer | undefined {
  const bad = (why: string) =>
    new TetherError('TETHER_E_PARSE', `${source}: malformed HTTP answer: ${why}`, {
      expected: 'an HTTP/1.1 answer with a JSON body',
    });
  if (raw.length > MAX_ANSWER_BYTES)
    throw new TetherError(
      'TETHER_E_TOO_LARGE',
      `${source}: control API answer over ${MAX_ANSWER_BYTES} bytes`,
    );
  const headEnd = raw.indexOf('\r\n\r\n');
  if (headEnd < 0 || headEnd > MAX_HEAD_BYTES) {
    if (headEnd > MAX_HEAD_BYTES || raw.length > MAX_HEAD_BYTES + 4)
      throw bad(`head over ${MAX_HEAD_BYTES} bytes`);
    if (ended && raw.length === 0)
      // As node:http says "socket hang up": the server went away, it did not answer badly.
      throw new TetherError('TETHER_E_UNAVAILABLE', `${source}: connection closed without an answer`);
    if (ended) throw bad('connection closed inside the head');
    return undefined;
  }
  const lines = raw.subarray(0, headEnd).toString('latin1').split('\r\n');
  const m = STATUS_LINE.exec(lines[0] ?? '');
  if (!m) throw bad('no HTTP/1.x status line');
  let length: number | undefined;
  for (const line of lines.slice(1)) {
    const h = HEADER_LINE.exec(line);
    if (!h) throw bad('a header line is not "name: value"');
    const name = (h[1] as string).toLowerCase();
    const value = h[2] as string;
    if (name === 'transfer-encoding' && value.toLowerCase() !== 'identity')
      throw bad(`transfer-encoding ${value} is not supported`);
    if (name === 'content-length') {
      if (!/^\d{1,10}$/.test(value) || (length !== undefined && length !== Number(value)))
        throw bad('bad content-length');
      length = Number(value);
    }
  }
  const body = raw.subarray(headEnd + 4);
  if (length === undefined) return ended ? { status: Number(m[1]), body } : undefined;
  if (length > MAX_ANSWER_BYTES)
    throw new TetherError(
      'TETHER_E_TOO_LARGE',
      `${source}: control API answer over ${MAX_ANSWER_BYTES} bytes`,
    );
  if (body.length < length) {
    if (ended) throw bad(`connection closed after ${body.length} of ${length} body bytes`);
    return undefined;
  }
  if (body.length > length) throw bad('more bytes than content-length');
  return { status: Number(m[1]), body };
}

function get(socketPath: string, path: string, timeoutMs: number): Promise<unknown> {
  const source = `${socketPath} ${path}`;
  return new Promise((resolve, reject) => {
    // Paths are built here from numbers; a control character would split the request.
    if (!/^\/[\x21-\x7e]*$/.test(path)) {
      reject(new TetherError('TETHER_E_INTERNAL', `bad request path ${JSON.stringify(path)}`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const sock = connect(socketPath);
    const finish = (e: unknown, value?: unknown) => {
      if (done) return;
      done = true;
      sock.destroy();
      if (e) reject(e);
      else resolve(value);
    };
    const tryAnswer = (ended: boolean) => {
      let a: HttpAnswer | undefined;
      try {
        a = readHttpAnswer(Buffer.concat(chunks, size), ended, source);
      } catch (e) {
        finish(e);
        return;
      }
      if (a === undefined) return;
      try {
        const body = parseJson(a.body, { source }) as { error?: { code?: string; message?: string } };
        if (a.status !== 200) {
          const msg = typeof body?.error?.message === 'string' ? body.error.message : '';
          finish(new TetherError('TETHER_E_COMMAND', `control API ${path}: ${a.status} ${msg}`.trim()));
        } else finish(undefined, body);
      } catch (e) {
        finish(e);
      }
    };
    sock.setTimeout(timeoutMs, () =>
      finish(
        new TetherError(
          'TETHER_E_UNAVAILABLE',
          `control API at ${socketPath}: no answer within ${timeoutMs} ms`,
        ),
      ),
    );
    sock.on('connect', () => {
      // Connection: close, so that an answer without a length still ends.
      sock.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    });
    sock.on('data', (b: Buffer) => {
      size += b.length;
      chunks.push(b);
      tryAnswer(false);
    });
    sock.on('end', () => tryAnswer(true));
    sock.on('error', (e: NodeJS.ErrnoException) =>
      finish(
        new TetherError('TETHER_E_UNAVAILABLE', `control API at ${socketPath}: ${e.message}`, {
          ...(e.code ? { reason: e.code } : {}),
        }),
      ),
    );
    sock.on('close', () =>
      finish(new TetherError('TETHER_E_UNAVAILABLE', `control API at ${socketPath}: connection closed`)),
    );
  });
}

export function readLiveStatus(socketPath: string, timeoutMs = 2000): Promise<NodeLiveStatus> {
  return get(socketPath, '/v1/status', timeoutMs) as Promise<NodeLiveStatus>;
}

export function readTraffic(socketPath: string, timeoutMs = 5000): Promise<NodeTraffic> {
  return get(socketPath, '/v1/traffic', timeoutMs) as Promise<NodeTraffic>;
}

export function readEvents(
  socketPath: string,
  since = 0,
  limit = DEFAULT_EVENTS_PER_ANSWER,
  timeoutMs = 2000,
): Promise<{ events: NodeEvent[]; latest: number; missed: number }> {
  return get(socketPath, `/v1/events?since=${since}&limit=${limit}`, timeoutMs) as Promise<{
    events: NodeEvent[];
    latest: number;
    missed: number;
  }>;
}
