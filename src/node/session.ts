import { randomUUID, X509Certificate } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import type { ControllerMessage__Output } from '../api/gen/tether/v1/ControllerMessage.js';
import type { NodeMessage } from '../api/gen/tether/v1/NodeMessage.js';
import type { NodeSessionClient } from '../api/gen/tether/v1/NodeSession.js';
import type { Resource__Output } from '../api/gen/tether/v1/Resource.js';
import { tetherProto } from '../api/grpc.js';
import type { TetherObject } from '../api/resource.js';
import { fromGrpcError } from '../api/status.js';
import { type BackoffPolicy, DEFAULT_BACKOFF, fullJitterDelay } from '../lib/backoff.js';
import { asTetherError, TetherError } from '../lib/errors.js';
import { parseJson } from '../lib/input.js';
import type { Logger } from '../lib/log.js';
import { createKeyAndCsr } from '../lib/pki.js';
import type { StateCache } from './cache.js';
import { CHANNEL_OPTIONS, controllerCredentials } from './connect.js';
import { type LoadedIdentity, saveCredentials } from './identity.js';

export type SessionPhase = 'connecting' | 'syncing' | 'connected' | 'disconnected' | 'revoked' | 'stopped';

export interface SessionStatus {
  phase: SessionPhase;
  since: string;
  revision: number;
  lastError?: string;
  reconnects: number;
  certNotAfter: string;
  lastSync?: { kind: 'snapshot' | 'delta'; revision: number; at: string; swept?: number };
  /** The controller's answer to the last endpoint report: what it refused, and why. */
  endpoints?: {
    revision: number;
    accepted: number;
    refused: Array<{ name: string; code: string; message: string; field: string }>;
    at: string;
  };
}

export interface SessionOptions {
  identity: LoadedIdentity;
  stateDir: string;
  cache: StateCache;
  log: Logger;
  heartbeatMs?: number;
  backoff?: BackoffPolicy;
  /** Called after each change is on disk (and acknowledged). */
  onChange?: (cache: StateCache) => void;
  onStatus?: (s: SessionStatus) => void;
  /** Called once when the controller says this node is revoked; the session does not reconnect. */
  onRevoked?: (err: TetherError) => void;
  version?: string;
  /** This node's underlay (VTEP) address, declared in every hello; the controller records
   *  the first and holds the node to it. Absent when the node runs no vRouter. */
  underlayIp?: string;
}

function encode(o: TetherObject): { kind: string; name: string; json: Buffer; revision: number } {
  return { kind: o.kind, name: o.metadata.name, json: Buffer.from(JSON.stringify(o)), revision: 0 };
}

function decode(r: Resource__Output): TetherObject {
  return parseJson(r.json, { source: `controller message (${r.kind}/${r.name})` }) as TetherObject;
}

/**
 * The node's one session to the controller. Holds a revision on disk, resumes from it,
 * writes before it acknowledges, detects a dead WAN by missing heartbeats rather than TCP,
 * reconnects with full-jitter backoff, and renews its certificate at 75% of its lifetime.
 */
export class ControllerSession {
  private readonly bootId = randomUUID();
  private readonly hbMs: number;
  private client: NodeSessionClient | undefined;
  private call: grpc.ClientDuplexStream<NodeMessage, ControllerMessage__Output> | undefined;
  private attempt = 0;
  private stopped = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private hbTimer: NodeJS.Timeout | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private lastHeard = 0;
  private seq = 0;
  private staging: TetherObject[] | undefined;
  private renewing = false;
  /** The key of a renewal not yet answered: a retry asks with the same key, so an answer
   *  lost on the way is handed out again instead of refused. */
  private renewKey: { keyPem: string; csrPem: string } | undefined;
  /** The node's local endpoints as last reported by the CNI side; re-sent on every connect. */
  private endpoints: TetherObject[] | undefined;
  readonly status: SessionStatus;

  constructor(private readonly opts: SessionOptions) {
    this.hbMs = opts.heartbeatMs ?? 5000;
    this.status = {
      phase: 'connecting',
      since: new Date().toISOString(),
      revision: opts.cache.revision,
      reconnects: 0,
      certNotAfter: new X509Certificate(opts.identity.credentials.certPem).validTo,
    };
  }

  start(): void {
    this.connect();
    this.scheduleRenew(0);
  }

  /** Arms a timer for the 75% point of the current certificate (re-armed after each try). */
  private scheduleRenew(retryMs: number): void {
    clearTimeout(this.renewTimer);
    if (this.stopped) return;
    const cert = new X509Certificate(this.opts.identity.credentials.certPem);
    const from = new Date(cert.validFrom).getTime();
    const to = new Date(cert.validTo).getTime();
    const due = from + 0.75 * (to - from);
    // Timers cannot wait longer than ~24.8 days; re-check hourly instead.
    const delay = Math.min(Math.max(retryMs, due - Date.now(), 0), 3_600_000);
    this.renewTimer = setTimeout(() => void this.maybeRenew(), delay);
    this.renewTimer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.hbTimer);
    clearTimeout(this.renewTimer);
    this.call?.cancel();
    this.client?.close();
    // A revoked node stays "revoked" in its status file after it exits: `tether status` says why.
    if (this.status.phase !== 'revoked') this.setPhase('stopped');
  }

  private revoked(err: TetherError): void {
    if (this.status.phase === 'revoked') return;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.renewTimer);
    this.setPhase('revoked', err.message);
    this.opts.onRevoked?.(err);
  }

  private setPhase(phase: SessionPhase, err?: string): void {
    if (this.status.phase !== phase) {
      this.status.phase = phase;
      this.status.since = new Date().toISOString();
    }
    if (err !== undefined) this.status.lastError = err;
    this.status.revision = this.opts.cache.revision;
    this.opts.onStatus?.(this.status);
  }

  private connect(): void {
    if (this.stopped) return;
    this.setPhase('connecting');
    const id = this.opts.identity;
    this.client?.close();
    const proto = tetherProto();
    this.client = new proto.tether.v1.NodeSession(
      id.controller,
      controllerCredentials(id.caPem, id.credentials),
      CHANNEL_OPTIONS,
    );
    const call = this.client.Sync();
    this.call = call;
    this.lastHeard = Date.now();
    let ended = false;
    const onEnd = (why: string) => {
      if (ended || this.call !== call) return;
      ended = true;
      clearInterval(this.hbTimer);
      this.staging = undefined;
      this.scheduleReconnect(why);
    };
    call.on('data', (m: ControllerMessage__Output) => {
      this.lastHeard = Date.now();
      try {
        this.handle(m);
      } catch (e) {
        // A change we cannot persist must not be acknowledged: drop the session and resume.
        this.opts.log.error({ err: asTetherError(e).message }, 'cannot apply change from controller');
        call.cancel();
      }
    });
    call.on('error', (e) => {
      const err = fromGrpcError(e);
      if (err.code === 'TETHER_E_REVOKED') {
        ended = true;
        clearInterval(this.hbTimer);
        this.opts.log.error({ err: err.message }, 'this node has been revoked; not reconnecting');
        this.revoked(err);
        return;
      }
      onEnd(err.message);
    });
    call.on('end', () => onEnd('controller closed the session'));
    call.write({
      hello: {
        node_name: id.name,
        held_revision: this.opts.cache.revision,
        version: this.opts.version ?? '',
        boot_id: this.bootId,
        underlay_ip: this.opts.underlayIp ?? '',
      },
    });
    if (this.endpoints) call.write({ endpoints: { endpoints: this.endpoints.map(encode) } });
    this.hbTimer = setInterval(() => {
      if (Date.now() - this.lastHeard > 3 * this.hbMs) {
        this.opts.log.warn('no heartbeat from controller for 3 intervals; reconnecting');
        onEnd('controller heartbeat lost');
        call.cancel();
        return;
      }
      call.write({ heartbeat: { seq: ++this.seq, unix_ms: Date.now() } });
    }, this.hbMs);
    this.hbTimer.unref();
  }

  /** Reports the complete set of local endpoints; queued while disconnected. */
  reportEndpoints(endpoints: TetherObject[]): void {
    this.endpoints = endpoints;
    if (this.status.phase === 'connected' || this.status.phase === 'syncing') {
      this.call?.write({ endpoints: { endpoints: endpoints.map(encode) } });
    }
  }

  /**
   * Sends the endpoint report again after the slice changed while some endpoints stand
   * refused: what was refused may be claimable now (the node's share of a network arrived,
   * a network was extended to this site). An unchanged report changes nothing at the
   * controller, so this cannot loop.
   */
  private retryRefused(): void {
    if (this.endpoints && this.status.endpoints?.refused.length)
      this.call?.write({ endpoints: { endpoints: this.endpoints.map(encode) } });
  }

  private scheduleReconnect(why: string): void {
    if (this.stopped || this.status.phase === 'revoked') return;
    const delay = fullJitterDelay(this.attempt++, this.opts.backoff ?? DEFAULT_BACKOFF);
    this.status.reconnects++;
    this.setPhase('disconnected', why);
    this.opts.log.info(
      { why, retryInMs: delay, revision: this.opts.cache.revision },
      'session down; running headless from disk state',
    );
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  private ack(revision: number): void {
    this.call?.write({ ack: { revision } });
  }

  private handle(m: ControllerMessage__Output): void {
    const cache = this.opts.cache;
    switch (m.msg) {
      case 'snapshot_begin':
        this.staging = [];
        this.setPhase('syncing');
        return;
      case 'snapshot_chunk':
        this.staging?.push(...(m.snapshot_chunk?.put ?? []).map(decode));
        return;
      case 'snapshot_end': {
        const rev = m.snapshot_end!.revision;
        const { swept } = cache.replace(rev, this.staging ?? []);
        this.staging = undefined;
        this.ack(rev);
        this.attempt = 0;
        this.status.lastSync = { kind: 'snapshot', revision: rev, at: new Date().toISOString(), swept };
        this.setPhase('connected');
        this.opts.log.info({ revision: rev, swept }, 'snapshot applied');
        this.opts.onChange?.(cache);
        this.retryRefused();
        return;
      }
      case 'delta': {
        const d = m.delta!;
        cache.applyDelta(d.revision, d.put.map(decode), d.deleted);
        this.ack(cache.revision);
        this.attempt = 0;
        if (this.status.phase !== 'connected') {
          this.status.lastSync = { kind: 'delta', revision: d.revision, at: new Date().toISOString() };
        }
        this.setPhase('connected');
        if (d.put.length || d.deleted.length) {
          this.opts.onChange?.(cache);
          this.retryRefused();
        }
        return;
      }
      case 'endpoint_result': {
        const r = m.endpoint_result!;
        const refused = r.refused.map((x) => ({
          name: x.name,
          code: x.code,
          message: x.message,
          field: x.field,
        }));
        for (const x of refused) {
          this.opts.log.error(
            { endpoint: x.name, code: x.code, field: x.field, err: x.message },
            'controller refused endpoint',
          );
        }
        this.status.endpoints = {
          revision: r.revision,
          accepted: r.accepted,
          refused,
          at: new Date().toISOString(),
        };
        this.opts.onStatus?.(this.status);
        return;
      }
      case 'goodbye': {
        const g = m.goodbye!;
        this.opts.log.warn({ code: g.code, reason: g.reason }, 'controller said goodbye');
        if (g.code === 'TETHER_E_REVOKED') {
          this.revoked(new TetherError('TETHER_E_REVOKED', g.reason || 'this node has been revoked'));
          this.call?.cancel();
        }
        return;
      }
      default:
        return;
    }
  }

  /** Renews the certificate once 75% of its lifetime has passed, over the live identity. */
  private async maybeRenew(): Promise<void> {
    if (this.renewing || this.stopped || this.status.phase === 'revoked') return;
    const cert = new X509Certificate(this.opts.identity.credentials.certPem);
    const from = new Date(cert.validFrom).getTime();
    const to = new Date(cert.validTo).getTime();
    if (Date.now() < from + 0.75 * (to - from)) {
      this.scheduleRenew(0);
      return;
    }
    this.renewing = true;
    let retryMs = 0;
    try {
      const id = this.opts.identity;
      this.renewKey ??= await createKeyAndCsr(id.name);
      const { keyPem, csrPem } = this.renewKey;
      const client = this.client;
      if (!client) return;
      const res = await new Promise<{ certificate_pem: string }>((resolve, reject) =>
        client.RenewCertificate({ csr_pem: csrPem }, { deadline: Date.now() + 30_000 }, (err, r) =>
          err || !r ? reject(fromGrpcError(err)) : resolve(r),
        ),
      );
      const creds = { keyPem, certPem: res.certificate_pem };
      saveCredentials(this.opts.stateDir, creds);
      id.credentials = creds;
      this.renewKey = undefined;
      this.status.certNotAfter = new X509Certificate(creds.certPem).validTo;
      this.opts.log.info({ notAfter: this.status.certNotAfter }, 'certificate renewed');
      this.opts.onStatus?.(this.status);
    } catch (e) {
      this.opts.log.warn({ err: asTetherError(e).message }, 'certificate renewal failed; will retry');
      retryMs = 10_000;
    } finally {
      this.renewing = false;
      this.scheduleRenew(retryMs);
    }
  }
}
