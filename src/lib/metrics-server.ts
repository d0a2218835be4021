import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { TetherError } from './errors.js';

/**
 * `/metrics` (Prometheus text), `/livez` and `/readyz` on one small HTTP listener. The
 * listener is separate from the gRPC port so a scraper never needs a client certificate,
 * and it is `off` or loopback by default: a cell site has no open port.
 */

export type MetricsListen = 'off' | { host: string; port: number };

/** Parses `off` or `HOST:PORT` (IPv4 or `localhost`; port 0‥65535, 0 = any free port). */
export function parseMetricsListen(s: string, field = 'metrics listen'): MetricsListen {
  if (s === 'off') return 'off';
  const m = /^(localhost|\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(s.slice(0, 64));
  const port = m ? Number(m[2]) : -1;
  if (
    !m ||
    port > 65535 ||
    (m[1] !== 'localhost' && (m[1] as string).split('.').some((o) => Number(o) > 255))
  ) {
    throw new TetherError('TETHER_E_INVALID', `bad ${field} ${JSON.stringify(s.slice(0, 64))}`, {
      field,
      expected: '"off" or IPv4:PORT such as 127.0.0.1:9448',
    });
  }
  return { host: m[1] as string, port };
}

/** A probe answers ok, or the reasons it is not; `detail` lines ("key: value") follow the
 *  verdict in the body either way (who leads, which term). */
export type Probe = () => { ok: boolean; reasons: string[]; detail?: string[] };

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

export async function startMetricsServer(opts: {
  listen: { host: string; port: number };
  registry: Registry;
  livez: Probe;
  readyz: Probe;
}): Promise<MetricsServer> {
  const server = createServer({ maxHeaderSize: 8 * 1024 }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const text = (code: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(code, { 'content-type': type, 'content-length': String(Buffer.byteLength(body)) });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(405, 'GET only\n');
    if (path === '/livez' || path === '/readyz') {
      let r: ReturnType<Probe>;
      try {
        r = (path === '/livez' ? opts.livez : opts.readyz)();
      } catch (e) {
        r = { ok: false, reasons: [(e as Error).message] };
      }
      const detail = (r.detail ?? []).map((l) => `${l.slice(0, 500)}\n`).join('');
      return text(
        r.ok ? 200 : 503,
        (r.ok ? 'ok\n' : `not ok: ${r.reasons.join('; ').slice(0, 2000)}\n`) + detail,
      );
    }
    if (path === '/metrics') {
      opts.registry.metrics().then(
        (body) => text(200, body, opts.registry.contentType),
        (e: unknown) => text(500, `metrics unavailable: ${(e as Error).message}\n`),
      );
      return;
    }
    text(404, 'try /metrics, /livez or /readyz\n');
  });
  server.maxConnections = 16;
  server.headersTimeout = 5000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) =>
      reject(
        new TetherError(
          'TETHER_E_UNAVAILABLE',
          `metrics cannot listen on ${opts.listen.host}:${opts.listen.port}: ${e.message}`,
        ),
      ),
    );
    server.listen(opts.listen.port, opts.listen.host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
