/**
 * Client of the node agent's CNI endpoint: HTTP/1.1 + JSON over a unix socket. The wire
 * shapes are documented in docs/cni.md; the server is src/node/cni/server.ts (the two sides
 * do not import each other: the conformance test proves they agree).
 */
import { request } from 'node:http';
import { parseJson } from '../lib/input.js';
import { CNI_CODES, CniError } from './spec.js';

/** What the agent hands out for one attachment. */
export interface AgentEndpoint {
  network: string;
  containerId: string;
  ifname: string;
  hostIfname: string;
  /** `ip/prefixLength` of the whole subnet, e.g. `10.1.0.5/24`. */
  address: string;
  ip: string;
  prefixLength: number;
  gateway: string;
  mac: string;
  mtu: number;
  netns?: string;
  /** Where the host end lives once wired (a VN namespace path); absent: the node's namespace. */
  hostNetns?: string;
  state: 'allocated' | 'attached';
}

export interface AddRequest {
  network: string;
  containerId: string;
  ifname: string;
  netns: string;
  hostIfname: string;
  mtu?: number;
  args?: Record<string, string>;
  /** A static address (CNI `ips` capability, `args.cni.ips`, CNI_ARGS `IP=`). */
  ip?: string;
  prefixLength?: number;
  portMappings?: { hostPort: number; containerPort: number; protocol: 'tcp' | 'udp'; hostIP?: string }[];
}

export interface AttachmentKey {
  containerId: string;
  ifname: string;
}

/** The port the plugin uses; tests substitute a fake. */
export interface AgentClient {
  add(req: AddRequest): Promise<AgentEndpoint>;
  attached(key: AttachmentKey): Promise<AgentEndpoint>;
  /** Releases the attachment; `undefined` when the agent had nothing for it. */
  del(key: AttachmentKey & { network?: string }): Promise<AgentEndpoint | undefined>;
  /** The agent's record, or `undefined` when it has none. */
  check(key: AttachmentKey & { network: string }): Promise<AgentEndpoint | undefined>;
  /** Releases every attachment of `network` not in `valid`; returns what it released. */
  gc(network: string, valid: AttachmentKey[]): Promise<AgentEndpoint[]>;
  status(): Promise<void>;
}

interface WireError {
  error?: { code?: string; message?: string; details?: unknown };
}

/** Agent error code (TetherError code) → CNI error code. */
export function cniCodeForAgentError(code: string | undefined): number {
  switch (code) {
    case 'TETHER_E_UNAVAILABLE':
    case 'TETHER_E_TIMEOUT':
      return CNI_CODES.TRY_AGAIN_LATER;
    case 'TETHER_E_EXHAUSTED':
      return CNI_CODES.POOL_EXHAUSTED;
    case 'TETHER_E_INVALID':
    case 'TETHER_E_NOT_FOUND':
      return CNI_CODES.INVALID_CONFIG;
    case 'TETHER_E_KERNEL':
      return CNI_CODES.KERNEL_FAILED;
    default:
      return CNI_CODES.AGENT_ERROR;
  }
}

const IP_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const HOST_IFNAME_RE = /^[a-zA-Z0-9_.-]{1,15}$/;

/**
 * Checks an endpoint the agent sent before any of it reaches an `ip -batch` line: a bad
 * answer is refused here (code 102), never half-applied to the kernel.
 */
export function validateEndpoint(v: unknown): AgentEndpoint {
  const bad = (field: string): CniError =>
    new CniError(CNI_CODES.AGENT_ERROR, `node agent sent an invalid endpoint: ${field}`);
  if (typeof v !== 'object' || v === null) throw bad('(not an object)');
  const e = v as Record<string, unknown>;
  if (typeof e.ip !== 'string' || !IP_RE.test(e.ip)) throw bad('ip');
  if (
    typeof e.prefixLength !== 'number' ||
    !Number.isInteger(e.prefixLength) ||
    e.prefixLength < 1 ||
    e.prefixLength > 32
  )
    throw bad('prefixLength');
  if (e.address !== `${e.ip}/${e.prefixLength}`) throw bad('address');
  if (typeof e.gateway !== 'string' || !IP_RE.test(e.gateway)) throw bad('gateway');
  if (typeof e.mac !== 'string' || !MAC_RE.test(e.mac)) throw bad('mac');
  if (typeof e.mtu !== 'number' || !Number.isInteger(e.mtu) || e.mtu < 68 || e.mtu > 65535) throw bad('mtu');
  if (typeof e.hostIfname !== 'string' || !HOST_IFNAME_RE.test(e.hostIfname)) throw bad('hostIfname');
  if (e.hostNetns !== undefined && (typeof e.hostNetns !== 'string' || !/^\/[^\s"'\\]*$/.test(e.hostNetns)))
    throw bad('hostNetns');
  if (e.state !== 'allocated' && e.state !== 'attached') throw bad('state');
  return v as AgentEndpoint;
}

export class HttpAgentClient implements AgentClient {
  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 10_000,
  ) {}

  async add(req: AddRequest): Promise<AgentEndpoint> {
    return validateEndpoint((await this.call<{ endpoint: unknown }>('POST', '/v1/add', req)).body.endpoint);
  }

  async attached(key: AttachmentKey): Promise<AgentEndpoint> {
    return validateEndpoint(
      (await this.call<{ endpoint: unknown }>('POST', '/v1/attached', key)).body.endpoint,
    );
  }

  async del(key: AttachmentKey & { network?: string }): Promise<AgentEndpoint | undefined> {
    return (
      (await this.call<{ released: AgentEndpoint | null }>('POST', '/v1/del', key)).body.released ?? undefined
    );
  }

  async check(key: AttachmentKey & { network: string }): Promise<AgentEndpoint | undefined> {
    const res = await this.call<{ endpoint: unknown }>('POST', '/v1/check', key, [404]);
    return res.status === 404 ? undefined : validateEndpoint(res.body.endpoint);
  }

  async gc(network: string, valid: AttachmentKey[]): Promise<AgentEndpoint[]> {
    return (await this.call<{ released: AgentEndpoint[] }>('POST', '/v1/gc', { network, valid })).body
      .released;
  }

  async status(): Promise<void> {
    await this.call('GET', '/v1/status', undefined);
  }

  private call<T>(
    method: string,
    path: string,
    body: unknown,
    okStatuses: number[] = [],
  ): Promise<{ status: number; body: T }> {
    const payload = body === undefined ? '' : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        {
          socketPath: this.socketPath,
          method,
          path,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
          timeout: this.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (e) => reject(unreachable(this.socketPath, e)));
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            let parsed: unknown;
            try {
              parsed = parseJson(Buffer.concat(chunks), { source: 'node agent answer' });
            } catch {
              reject(
                new CniError(CNI_CODES.AGENT_ERROR, `node agent sent a non-JSON answer (HTTP ${status})`),
              );
              return;
            }
            if ((status >= 200 && status < 300) || okStatuses.includes(status)) {
              resolve({ status, body: parsed as T });
              return;
            }
            const err = (parsed as WireError).error;
            reject(
              new CniError(
                cniCodeForAgentError(err?.code),
                err?.message ?? `node agent answered HTTP ${status}`,
                err?.code ? `${err.code}${err.details ? ` ${JSON.stringify(err.details)}` : ''}` : undefined,
              ),
            );
          });
        },
      );
      req.on('timeout', () => {
        req.destroy(new Error(`no answer within ${this.timeoutMs} ms`));
      });
      req.on('error', (e) => reject(unreachable(this.socketPath, e)));
      req.end(payload);
    });
  }
}

function unreachable(socketPath: string, e: Error): CniError {
  return new CniError(
    CNI_CODES.TRY_AGAIN_LATER,
    `node agent unreachable at ${socketPath}`,
    `${(e as NodeJS.ErrnoException).code ?? ''} ${e.message}`.trim(),
  );
}
