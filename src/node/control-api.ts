import { chmodSync, lstatSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { TetherError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { DEFAULT_EVENTS_PER_ANSWER, MAX_STATUS_BYTES } from './control-client.js';
import {
  MAX_TRAFFIC_ENTRIES,
  type NodeEvent,
  type NodeLiveStatus,
  type NodeTraffic,
} from './control-types.js';

// The client half lives in control-client.ts and the answers' types in control-types.ts (the
// client must not load node:http: CLI start-up); what callers took from here still comes
// from here.
export {
  CONTROL_SOCKET,
  controlSocketPath,
  MAX_STATUS_BYTES,
  readEvents,
  readLiveStatus,
  readTraffic,
} from './control-client.js';
export type { NodeEvent, NodeLiveStatus, NodeTraffic, VtepStatus } from './control-types.js';
export { MAX_TRAFFIC_ENTRIES } from './control-types.js';

/**
 * The node's local control API: HTTP/1.1 on a unix socket (default `<state-dir>/control.sock`,
 * mode 0600, so only root reaches it), read by `tether status` and field tools for the live
 * state instead of polling the status file. Read-only; every answer is JSON and bounded.
 *
 *   GET /v1/status          NodeLiveStatus
 *   GET /v1/events?since=N  events with seq > N (at most `limit`, default 100, max 1000)
 *   GET /v1/traffic         NodeTraffic: link counters per network, policy counters
 *
 * See docs/node.md.
 */

export const EVENT_RING_SIZE = 1000;
export const MAX_EVENTS_PER_ANSWER = 1000;
/** Largest field value and message kept in an event: a ring of 1000 stays well under 1 MiB. */
const MAX_EVENT_TEXT = 512;
/** The last `capacity` events, with sequence numbers so a reader can ask for what it missed. */
export class EventRing {
  private readonly buf: NodeEvent[] = [];
  private seq = 0;

  constructor(
    readonly capacity = EVENT_RING_SIZE,
    private readonly now: () => Date = () => new Date(),
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new TetherError('TETHER_E_INTERNAL', `event ring capacity ${capacity}`);
    }
  }

  push(type: string, message: string, fields?: Record<string, string | number | boolean>): NodeEvent {
    const cut = (s: string) => (s.length > MAX_EVENT_TEXT ? `${s.slice(0, MAX_EVENT_TEXT)}…` : s);
    const ev: NodeEvent = {
      seq: ++this.seq,
      time: this.now().toISOString(),
      type: cut(type),
      message: cut(message),
    };
    if (fields) {
      ev.fields = {};
      for (const [k, v] of Object.entries(fields).slice(0, 32)) {
        ev.fields[cut(k)] = typeof v === 'string' ? cut(v) : v;
      }
    }
    this.buf.push(ev);
    if (this.buf.length > this.capacity) this.buf.shift();
    return ev;
  }

  /** The newest sequence number handed out (0 before the first event). */
  get latest(): number {
    return this.seq;
  }

  /**
   * Events with seq > `since`, oldest first, at most `limit`. `missed` counts events after
   * `since` that the ring no longer holds (the reader fell behind by more than the capacity).
   */
  since(
    since: number,
    limit = DEFAULT_EVENTS_PER_ANSWER,
  ): { events: NodeEvent[]; latest: number; missed: number } {
    const first = this.buf[0]?.seq ?? this.seq + 1;
    const missed = Math.max(0, first - since - 1);
    const events: NodeEvent[] = [];
    for (const e of this.buf) {
      if (e.seq <= since) continue;
      events.push(e);
      if (events.length >= limit) break;
    }
    return { events, latest: this.seq, missed: Math.min(missed, this.seq) };
  }
}

export interface ControlApiOptions {
  socketPath: string;
  status: () => NodeLiveStatus;
  events: EventRing;
  log: Logger;
  /** Absent: /v1/traffic answers 404 (a node without a vRouter). */
  traffic?: () => Promise<NodeTraffic>;
}

export interface ControlApi {
  close(): Promise<void>;
}

function sendJson(
  res: ServerResponse,
  code: number,
  body: unknown,
  extra: Record<string, string> = {},
): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(code, {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(text)),
    ...extra,
  });
  res.end(text);
}

function sendError(
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
  extra: Record<string, string> = {},
): void {
  sendJson(res, status, { error: { code, message } }, extra);
}

/** The status as JSON, within MAX_STATUS_BYTES: endpoints are cut first, and the answer says so. */
export function boundedStatusJson(s: NodeLiveStatus, maxBytes = MAX_STATUS_BYTES): unknown {
  const full = JSON.stringify(s);
  if (Buffer.byteLength(full) <= maxBytes) return s;
  const perEndpoint = Math.max(
    1,
    Math.ceil(Buffer.byteLength(JSON.stringify(s.endpoints)) / Math.max(1, s.endpoints.length)),
  );
  const rest = Buffer.byteLength(JSON.stringify({ ...s, endpoints: [] }));
  const keep = Math.max(0, Math.floor((maxBytes - rest - 256) / perEndpoint));
  const cut = {
    ...s,
    endpoints: s.endpoints.slice(0, keep),
    endpointsTruncated: { total: s.endpoints.length, shown: keep },
  };
  if (Buffer.byteLength(JSON.stringify(cut)) <= maxBytes) return cut;
  // Something other than the endpoint list is huge (a bug upstream): say so, bounded.
  return {
    node: s.node,
    site: s.site,
    error: { code: 'TETHER_E_TOO_LARGE', message: `status over ${maxBytes} bytes even without endpoints` },
  };
}

const ROUTES = new Set(['/v1/status', '/v1/events', '/v1/traffic']);

function handle(opts: ControlApiOptions, req: IncomingMessage, res: ServerResponse): void {
  // Requests carry no body; one that sends one is not read (and the connection is closed).
  const url = new URL(req.url ?? '/', 'http://control');
  if (!ROUTES.has(url.pathname)) {
    sendError(
      res,
      404,
      'TETHER_E_NOT_FOUND',
      `no such path ${url.pathname.slice(0, 200)}; try /v1/status, /v1/events or /v1/traffic`,
    );
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    sendError(
      res,
      405,
      'TETHER_E_INVALID',
      `${String(req.method).slice(0, 20)} not allowed on ${url.pathname}`,
      {
        allow: 'GET, HEAD',
      },
    );
    return;
  }
  if (url.pathname === '/v1/status') {
    let s: NodeLiveStatus;
    try {
      s = opts.status();
    } catch (e) {
      opts.log.warn({ err: (e as Error).message }, 'control API: status provider failed');
      sendError(res, 500, 'TETHER_E_INTERNAL', `status unavailable: ${(e as Error).message}`);
      return;
    }
    sendJson(res, 200, boundedStatusJson(s));
    return;
  }
  if (url.pathname === '/v1/traffic') {
    const t = opts.traffic;
    if (!t) {
      sendError(res, 404, 'TETHER_E_NOT_FOUND', 'no traffic counters: this node runs no vRouter');
      return;
    }
    t().then(
      (v) =>
        sendJson(res, 200, {
          at: v.at,
          links: v.links.slice(0, MAX_TRAFFIC_ENTRIES),
          policy: v.policy.slice(0, MAX_TRAFFIC_ENTRIES),
        }),
      (e: unknown) => {
        opts.log.warn({ err: (e as Error).message }, 'control API: traffic read failed');
        if (!res.headersSent)
          sendError(res, 500, 'TETHER_E_INTERNAL', `traffic unavailable: ${(e as Error).message}`);
      },
    );
    return;
  }
  const num = (name: string, def: number, max: number): number | undefined => {
    const v = url.searchParams.get(name);
    if (v === null) return def;
    if (!/^\d{1,15}$/.test(v) || Number(v) > max) return undefined;
    return Number(v);
  };
  const since = num('since', 0, Number.MAX_SAFE_INTEGER);
  const limit = num('limit', DEFAULT_EVENTS_PER_ANSWER, MAX_EVENTS_PER_ANSWER);
  if (since === undefined || limit === undefined || limit === 0) {
    sendError(
      res,
      400,
      'TETHER_E_INVALID',
      `bad query ${url.search.slice(0, 200)}: since is a non-negative integer, limit an integer from 1 to ${MAX_EVENTS_PER_ANSWER}`,
    );
    return;
  }
  sendJson(res, 200, opts.events.since(since, limit));
}

/** Is something answering on this unix socket? (A stale file from a killed daemon is not.) */
function socketLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Serves the control API on `socketPath`. A stale socket (left by a killed daemon) is
 * replaced; a live one (another daemon on the same state directory) is an error.
 */
export async function startControlApi(opts: ControlApiOptions): Promise<ControlApi> {
  const { socketPath } = opts;
  let exists = false;
  try {
    const st = lstatSync(socketPath);
    if (!st.isSocket()) {
      throw new TetherError('TETHER_E_PRECONDITION', `${socketPath} exists and is not a socket`, {
        file: socketPath,
        expected: 'a free path for the control socket',
      });
    }
    exists = true;
  } catch (e) {
    if (e instanceof TetherError) throw e;
  }
  if (exists) {
    if (await socketLive(socketPath)) {
      throw new TetherError('TETHER_E_PRECONDITION', `another process serves ${socketPath}`, {
        file: socketPath,
        expected: 'one node daemon per state directory',
      });
    }
    rmSync(socketPath, { force: true });
  }
  const server = createServer({ maxHeaderSize: 8 * 1024 }, (req, res) => {
    try {
      handle(opts, req, res);
    } catch (e) {
      opts.log.warn({ err: (e as Error).message }, 'control API request failed');
      if (!res.headersSent) sendError(res, 500, 'TETHER_E_INTERNAL', 'internal error');
      else res.destroy();
    }
  });
  server.maxConnections = 32;
  server.headersTimeout = 5000;
  server.requestTimeout = 10_000;
  server.keepAliveTimeout = 5000;
  // Bind with a umask that never lets the socket exist with wider permissions, then chmod.
  const oldMask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) =>
        reject(
          new TetherError('TETHER_E_UNAVAILABLE', `control API cannot listen on ${socketPath}: ${e.message}`),
        ),
      );
      server.listen(socketPath, () => resolve());
    });
  } finally {
    process.umask(oldMask);
  }
  chmodSync(socketPath, 0o600);
  opts.log.info({ socket: socketPath }, 'control API listening');
  return {
    close: async () => {
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
      rmSync(socketPath, { force: true });
    },
  };
}
