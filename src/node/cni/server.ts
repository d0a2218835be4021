/**
 * CniServer: the node agent's endpoint for the tether-cni plugin. HTTP/1.1 + JSON on a unix
 * socket (mode 0600: only root, the runtime's user, calls CNI plugins). Requests are served
 * one at a time through the registry, which persists before each answer. Protocol: docs/cni.md.
 */
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { asTetherError, type ErrorCode, TetherError } from '../../lib/errors.js';
import { parseJson } from '../../lib/input.js';
import type { Logger } from '../../lib/log.js';
import type { AllocateRequest, AttachmentKey, EndpointRegistry, PortMapping } from './registry.js';

export interface CniServerOptions {
  socketPath: string;
  registry: EndpointRegistry;
  logger?: Logger;
  /** Largest request body accepted (bytes). */
  maxBodyBytes?: number;
}

const CONTAINER_ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const IFNAME_RE = /^[^\s/:]{1,15}$/;
const HOST_IFNAME_RE = /^[a-zA-Z0-9_.-]{1,15}$/;
const IP_RE = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
const NETWORK_RE = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;

const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  TETHER_E_INVALID: 400,
  TETHER_E_PARSE: 400,
  TETHER_E_NOT_FOUND: 404,
  TETHER_E_CONFLICT: 409,
  TETHER_E_EXHAUSTED: 409,
  TETHER_E_TOO_LARGE: 413,
  TETHER_E_UNAVAILABLE: 503,
  TETHER_E_KERNEL: 502,
};

function invalid(field: string, expected: string): TetherError {
  return new TetherError('TETHER_E_INVALID', `invalid request: ${field}`, { field, expected });
}

function obj(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw invalid('(body)', 'a JSON object');
  return body as Record<string, unknown>;
}

function str(o: Record<string, unknown>, field: string, re: RegExp, expected: string): string {
  const v = o[field];
  if (typeof v !== 'string' || !re.test(v)) throw invalid(field, expected);
  return v;
}

function key(o: Record<string, unknown>): AttachmentKey {
  return {
    containerId: str(o, 'containerId', CONTAINER_ID_RE, 'a container id'),
    ifname: str(o, 'ifname', IFNAME_RE, 'an interface name (1-15 bytes)'),
  };
}

function network(o: Record<string, unknown>): string {
  return str(o, 'network', NETWORK_RE, 'a VirtualNetwork name');
}

/** Validates hostPort mappings (the plugin checked them too: the node trusts no client). */
export function parsePortMappings(v: unknown, field: string): PortMapping[] {
  if (!Array.isArray(v)) throw invalid(field, 'an array of {hostPort, containerPort, protocol, hostIP?}');
  const port = (x: unknown): x is number =>
    typeof x === 'number' && Number.isInteger(x) && x >= 1 && x <= 65535;
  const seen = new Set<string>();
  return v.map((m, i) => {
    const o = obj(m);
    const f = `${field}[${i}]`;
    if (!port(o.hostPort)) throw invalid(`${f}.hostPort`, 'an integer 1-65535');
    if (!port(o.containerPort)) throw invalid(`${f}.containerPort`, 'an integer 1-65535');
    if (o.protocol !== 'tcp' && o.protocol !== 'udp') throw invalid(`${f}.protocol`, '"tcp" or "udp"');
    const out: PortMapping = { hostPort: o.hostPort, containerPort: o.containerPort, protocol: o.protocol };
    if (o.hostIP !== undefined) out.hostIP = str(o, 'hostIP', IP_RE, 'an IPv4 address of the node');
    const k = `${out.protocol}/${out.hostPort}`;
    if (seen.has(k)) throw invalid(`${f}.hostPort`, `host port ${k} once`);
    seen.add(k);
    return out;
  });
}

/** Validates the body of POST /v1/add. */
export function parseAddBody(body: unknown): AllocateRequest {
  const o = obj(body);
  const req: AllocateRequest = {
    ...key(o),
    network: network(o),
    hostIfname: str(o, 'hostIfname', HOST_IFNAME_RE, 'an interface name (1-15 of [a-zA-Z0-9_.-])'),
  };
  if (o.netns !== undefined) req.netns = str(o, 'netns', /^\/\S*$/, 'an absolute path');
  if (o.ip !== undefined) req.ip = str(o, 'ip', IP_RE, 'an IPv4 address (a static address)');
  if (o.prefixLength !== undefined) {
    if (
      typeof o.prefixLength !== 'number' ||
      !Number.isInteger(o.prefixLength) ||
      o.prefixLength < 1 ||
      o.prefixLength > 32
    )
      throw invalid('prefixLength', 'an integer 1-32');
    req.prefixLength = o.prefixLength;
  }
  if (o.mtu !== undefined) {
    if (typeof o.mtu !== 'number' || !Number.isInteger(o.mtu) || o.mtu < 576 || o.mtu > 9216)
      throw invalid('mtu', 'an integer 576-9216');
    req.mtu = o.mtu;
  }
  if (o.portMappings !== undefined) req.portMappings = parsePortMappings(o.portMappings, 'portMappings');
  if (o.args !== undefined) {
    const a = obj(o.args);
    const args: Record<string, string> = {};
    for (const [k, v] of Object.entries(a)) {
      if (typeof v !== 'string') throw invalid(`args.${k}`, 'a string');
      args[k] = v;
    }
    req.args = args;
  }
  return req;
}

export class CniServer {
  readonly socketPath: string;
  private readonly registry: EndpointRegistry;
  private readonly log: Logger | undefined;
  private readonly maxBody: number;
  private server: Server | undefined;
  /** Serialises registry calls: one request's read-modify-write never interleaves another's. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: CniServerOptions) {
    this.socketPath = opts.socketPath;
    this.registry = opts.registry;
    this.log = opts.logger;
    this.maxBody = opts.maxBodyBytes ?? 64 * 1024;
  }

  /** Listens on the socket, replacing a stale socket file; fails if another agent is live. */
  async start(): Promise<void> {
    mkdirSync(dirname(this.socketPath), { recursive: true, mode: 0o755 });
    await removeStaleSocket(this.socketPath);
    const server = createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => this.log?.error({ err: e }, 'cni request failed'));
    });
    server.keepAliveTimeout = 1_000;
    server.requestTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(this.socketPath, 0o600);
    this.server = server;
    this.log?.info({ socket: this.socketPath }, 'cni endpoint listening');
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    try {
      unlinkSync(this.socketPath);
    } catch {
      /* already gone */
    }
  }

  /** Runs `fn` between requests, never interleaved with one (the node's endpoint sweep). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.serial(fn);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const route = `${req.method ?? ''} ${(req.url ?? '').split('?')[0] ?? ''}`;
      if (route === 'GET /v1/status') {
        send(res, 200, { ok: true, endpoints: this.registry.list().length });
        return;
      }
      if (route === 'GET /v1/endpoints') {
        send(res, 200, { endpoints: this.registry.list() });
        return;
      }
      if (req.method !== 'POST') throw new TetherError('TETHER_E_NOT_FOUND', `no such endpoint: ${route}`);
      const body = await readBody(req, this.maxBody);
      switch (route) {
        case 'POST /v1/add': {
          const a = parseAddBody(body);
          const endpoint = await this.serial(() => this.registry.allocate(a));
          this.log?.info({ network: a.network, containerId: a.containerId, ip: endpoint.address }, 'cni add');
          send(res, 200, { endpoint });
          return;
        }
        case 'POST /v1/attached': {
          const k = key(obj(body));
          send(res, 200, { endpoint: await this.serial(() => this.registry.markAttached(k)) });
          return;
        }
        case 'POST /v1/del': {
          const o = obj(body);
          const k: AttachmentKey & { network?: string } = key(o);
          if (o.network !== undefined) k.network = network(o);
          const released = await this.serial(() => this.registry.release(k));
          this.log?.info({ containerId: k.containerId, released: released?.address ?? null }, 'cni del');
          send(res, 200, { released: released ?? null });
          return;
        }
        case 'POST /v1/check': {
          const o = obj(body);
          const k = key(o);
          const net = network(o);
          const ep = await this.serial(() => this.registry.check(k));
          if (!ep || ep.network !== net)
            throw new TetherError('TETHER_E_NOT_FOUND', `no endpoint ${k.containerId}/${k.ifname} on ${net}`);
          send(res, 200, { endpoint: ep });
          return;
        }
        case 'POST /v1/gc': {
          const o = obj(body);
          const net = network(o);
          if (!Array.isArray(o.valid)) throw invalid('valid', 'an array of {containerId, ifname}');
          const valid = o.valid.map((v) => key(obj(v)));
          const released = await this.serial(() => this.registry.gc(net, valid));
          if (released.length > 0) this.log?.info({ network: net, released: released.length }, 'cni gc');
          send(res, 200, { released });
          return;
        }
        default:
          throw new TetherError('TETHER_E_NOT_FOUND', `no such endpoint: ${route}`);
      }
    } catch (e) {
      const err = asTetherError(e);
      send(res, HTTP_STATUS[err.code] ?? 500, { error: err.toJSON() });
    }
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req: IncomingMessage, limit: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new TetherError('TETHER_E_TOO_LARGE', `request body exceeds ${limit} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('error', reject);
    req.on('end', () => {
      try {
        resolve(parseJson(Buffer.concat(chunks), { source: 'CNI request' }));
      } catch (e) {
        reject(new TetherError('TETHER_E_PARSE', 'request body is not valid JSON', {}, { cause: e }));
      }
    });
  });
}

/** Removes a socket file nobody listens on; refuses to steal a live one. */
async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // nothing there
  }
  if (!isSocket)
    throw new TetherError('TETHER_E_PRECONDITION', `${path} exists and is not a socket`, { file: path });
  const live = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (live)
    throw new TetherError('TETHER_E_PRECONDITION', `another process is serving ${path}`, {
      file: path,
      expected: 'one node agent per socket',
    });
  unlinkSync(path);
}
