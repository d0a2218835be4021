import { chmodSync, existsSync, rmSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type Server as HttpServer,
  request as httpRequest,
} from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { TetherError } from '../lib/errors.js';

/**
 * The lab's WAN impairment proxy: a userspace TCP relay in front of the controller (these
 * kernels have no netem, see ARCHITECTURE.md "Facts learned"). Each site's nodes reach the
 * controller through their own listener, so a site's delay is set without touching the
 * others. Every chunk read from one side is held for `delayMs` and then written to the other
 * side, in the order it was read; bytes are counted each way (the idle-WAN benchmark reads
 * them). Packet loss is not emulated here: the lab drops a random share of packets with nft in
 * the WAN router, which TCP really has to recover from (docs/lab.md).
 */

export interface ImpairOptions {
  /** Where the nodes connect (the lab: the controller's address, the site's own port). */
  listen: { host: string; port: number };
  /** Where the proxy connects (the controller). */
  target: { host: string; port: number };
  /** Added to every chunk in each direction, so a round trip gains 2 × delayMs. */
  delayMs?: number;
  /**
   * Bytes one direction of one connection may hold in userspace (its delay queue plus what
   * the socket has not written yet) before the proxy stops reading the sender: a slow reader
   * pushes back on the writer through TCP instead of growing this process.
   */
  maxBufferedBytes?: number;
}

export interface ImpairCounters {
  /** Bytes written to the target (the controller), i.e. node → controller. */
  bytesToTarget: number;
  /** Bytes written back to the clients, i.e. controller → node. */
  bytesFromTarget: number;
  connectionsAccepted: number;
  connectionsOpen: number;
  /** Directions currently not reading because their peer is not keeping up. */
  pausedDirections: number;
  /** Bytes held in userspace right now, over every connection and direction. */
  bufferedBytes: number;
  delayMs: number;
}

export const DEFAULT_IMPAIR_BUFFER = 1 << 20;
export const MAX_DELAY_MS = 60_000;

export function checkDelayMs(v: unknown, field = 'delayMs'): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_DELAY_MS) {
    throw new TetherError('TETHER_E_INVALID', `bad delay ${String(v)}`, {
      field,
      expected: `an integer number of milliseconds from 0 to ${MAX_DELAY_MS}`,
    });
  }
  return v;
}

/** One direction of one relayed connection: read from `src`, hold, write to `dst`. */
class Direction {
  /** Chunks in arrival order; `chunk: undefined` is the sender's FIN, delayed like data. */
  private readonly queue: Array<{ chunk: Buffer | undefined; due: number }> = [];
  private queued = 0;
  private timer: NodeJS.Timeout | undefined;
  private waitingDrain = false;
  private ended = false;
  private closeDst = false;
  paused = false;

  constructor(
    private readonly src: Socket,
    private readonly dst: Socket,
    private readonly proxy: ImpairProxy,
    private readonly onWritten: (n: number) => void,
  ) {
    src.on('data', (chunk: Buffer) => {
      this.queue.push({ chunk, due: Date.now() + proxy.delayMs });
      this.queued += chunk.length;
      this.checkPressure();
      this.pump();
    });
    src.on('end', () => {
      this.queue.push({ chunk: undefined, due: Date.now() + proxy.delayMs });
      this.pump();
    });
    dst.on('drain', () => {
      this.waitingDrain = false;
      this.checkPressure();
      this.pump();
    });
  }

  buffered(): number {
    return this.queued + this.dst.writableLength;
  }

  private checkPressure(): void {
    const max = this.proxy.maxBufferedBytes;
    const b = this.buffered();
    if (!this.paused && b >= max) {
      this.paused = true;
      this.src.pause();
    } else if (this.paused && b <= max / 2) {
      this.paused = false;
      this.src.resume();
    }
  }

  private pump(): void {
    if (this.timer || this.waitingDrain || this.dst.destroyed) return;
    for (;;) {
      const head = this.queue[0];
      if (!head) break;
      const wait = head.due - Date.now();
      if (wait > 0) {
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.pump();
        }, wait);
        return;
      }
      this.queue.shift();
      if (!head.chunk) {
        this.ended = true;
        continue;
      }
      this.queued -= head.chunk.length;
      const more = this.dst.write(head.chunk);
      this.onWritten(head.chunk.length);
      if (!more) {
        this.waitingDrain = true;
        this.checkPressure();
        return;
      }
    }
    this.checkPressure();
    // The sender closed its side and everything it sent has been handed on: close ours.
    if ((this.ended || this.closeDst) && this.queue.length === 0) {
      if (!this.dst.writableEnded) this.dst.end();
      if (this.closeDst) this.dst.destroySoon();
    }
  }

  /** The source is gone for good: deliver what it sent, then close the destination entirely. */
  closeAfterFlush(): void {
    this.closeDst = true;
    this.pump();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
    this.queued = 0;
  }
}

export class ImpairProxy {
  delayMs: number;
  readonly maxBufferedBytes: number;
  private server: Server | undefined;
  private readonly conns = new Set<{ up: Direction; down: Direction; a: Socket; b: Socket }>();
  private bytesToTarget = 0;
  private bytesFromTarget = 0;
  private accepted = 0;

  constructor(private readonly opts: ImpairOptions) {
    this.delayMs = checkDelayMs(opts.delayMs ?? 0);
    this.maxBufferedBytes = opts.maxBufferedBytes ?? DEFAULT_IMPAIR_BUFFER;
  }

  setDelay(ms: number): void {
    this.delayMs = checkDelayMs(ms);
  }

  /** Resolves with the port it listens on (useful with `listen.port` 0). */
  async start(): Promise<number> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) =>
      this.accept(client),
    );
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) =>
        reject(
          new TetherError(
            'TETHER_E_UNAVAILABLE',
            `impairment proxy cannot listen on ${this.opts.listen.host}:${this.opts.listen.port}: ${e.message}`,
          ),
        ),
      );
      server.listen(this.opts.listen.port, this.opts.listen.host, () => resolve());
    });
    const addr = server.address();
    return typeof addr === 'object' && addr ? addr.port : this.opts.listen.port;
  }

  private accept(client: Socket): void {
    this.accepted++;
    const upstream = connect({
      host: this.opts.target.host,
      port: this.opts.target.port,
      allowHalfOpen: true,
    });
    upstream.pause();
    const conn = {
      a: client,
      b: upstream,
      up: new Direction(client, upstream, this, (n) => {
        this.bytesToTarget += n;
      }),
      down: new Direction(upstream, client, this, (n) => {
        this.bytesFromTarget += n;
      }),
    };
    this.conns.add(conn);
    upstream.once('connect', () => {
      client.resume();
      upstream.resume();
    });
    let closed = 0;
    // One side gone entirely: what it sent is still delivered (its Direction flushes and then
    // ends the peer), after which the peer is closed too, as a server's close() would be seen
    // by a direct client. An error (a reset) is passed on as a reset, at once.
    const sideClosed = (peer: Socket, from: Direction) => (hadError: boolean) => {
      if (hadError) peer.resetAndDestroy();
      else from.closeAfterFlush();
      if (++closed === 2) {
        conn.up.stop();
        conn.down.stop();
        this.conns.delete(conn);
      }
    };
    client.on('error', () => {});
    upstream.on('error', () => {});
    client.once('close', sideClosed(upstream, conn.up));
    upstream.once('close', sideClosed(client, conn.down));
  }

  counters(): ImpairCounters {
    let paused = 0;
    let buffered = 0;
    for (const c of this.conns) {
      for (const d of [c.up, c.down]) {
        if (d.paused) paused++;
        buffered += d.buffered();
      }
    }
    return {
      bytesToTarget: this.bytesToTarget,
      bytesFromTarget: this.bytesFromTarget,
      connectionsAccepted: this.accepted,
      connectionsOpen: this.conns.size,
      pausedDirections: paused,
      bufferedBytes: buffered,
      delayMs: this.delayMs,
    };
  }

  async close(): Promise<void> {
    for (const c of this.conns) {
      c.up.stop();
      c.down.stop();
      c.a.destroy();
      c.b.destroy();
    }
    this.conns.clear();
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}

// ------------------------------------------------------------------------------------------
// control: a tiny HTTP API on a unix socket, so `tether lab wan delay|status` can change and
// read a running proxy (GET /v1/counters, PUT /v1/delay {"delayMs": N}).

const MAX_CONTROL_BODY = 4096;

export async function serveImpairControl(proxy: ImpairProxy, socketPath: string): Promise<HttpServer> {
  if (existsSync(socketPath)) rmSync(socketPath, { force: true });
  const server = createHttpServer((req, res) => {
    const send = (code: number, body: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(body)}\n`);
    };
    if (req.url === '/v1/counters' && req.method === 'GET') return send(200, proxy.counters());
    if (req.url === '/v1/delay' && req.method === 'PUT') {
      let body = '';
      let tooBig = false;
      req.on('data', (b: Buffer) => {
        body += b.toString();
        if (body.length > MAX_CONTROL_BODY && !tooBig) {
          tooBig = true;
          send(413, { code: 'TETHER_E_TOO_LARGE', message: `body over ${MAX_CONTROL_BODY} bytes` });
          req.destroy();
        }
      });
      req.on('end', () => {
        if (tooBig) return;
        try {
          const v = (JSON.parse(body) as { delayMs?: unknown }).delayMs;
          proxy.setDelay(checkDelayMs(v));
          send(200, proxy.counters());
        } catch (e) {
          send(400, { code: 'TETHER_E_INVALID', message: (e as Error).message });
        }
      });
      return;
    }
    send(req.url === '/v1/counters' || req.url === '/v1/delay' ? 405 : 404, {
      code: 'TETHER_E_NOT_FOUND',
      message: `${req.method} ${req.url} is not served here`,
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  chmodSync(socketPath, 0o600);
  return server;
}

/** Talks to a running proxy's control socket. */
export function impairControl(
  socketPath: string,
  method: 'GET' | 'PUT',
  path: '/v1/counters' | '/v1/delay',
  body?: unknown,
  timeoutMs = 5000,
): Promise<ImpairCounters> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ socketPath, method, path, timeout: timeoutMs }, (res) => {
      let text = '';
      res.on('data', (b: Buffer) => {
        text += b.toString();
        if (text.length > 64 * 1024) req.destroy(new Error('answer too large'));
      });
      res.on('end', () => {
        try {
          const v = JSON.parse(text) as ImpairCounters & { code?: string; message?: string };
          if (res.statusCode !== 200) {
            reject(new TetherError('TETHER_E_COMMAND', `impairment proxy: ${v.message ?? text.trim()}`));
          } else resolve(v);
        } catch (e) {
          reject(
            new TetherError(
              'TETHER_E_COMMAND',
              `impairment proxy answered ${text.slice(0, 200)}: ${(e as Error).message}`,
            ),
          );
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (e) =>
      reject(new TetherError('TETHER_E_UNAVAILABLE', `impairment proxy at ${socketPath}: ${e.message}`)),
    );
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}
