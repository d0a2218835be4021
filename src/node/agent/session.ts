import { randomUUID, X509Certificate } from 'node:crypto';
import type { ControllerMessage__Output } from '../../api/gen/tether/v1/ControllerMessage.js';
import type { GatewayReport } from '../../api/gen/tether/v1/GatewayReport.js';
import type { Resource__Output } from '../../api/gen/tether/v1/Resource.js';
import type { ShellFrame, ShellFrame__Output } from '../../api/gen/tether/v1/ShellFrame.js';
import type { TetherObject } from '../../api/resource.js';
import { signReport } from '../../api/signed-report.js';
import { type BackoffPolicy, DEFAULT_BACKOFF, fullJitterDelay } from '../../lib/backoff.js';
import { type Clock, systemClock, type TimerHandle } from '../../lib/clock.js';
import { asTetherError, TetherError } from '../../lib/errors.js';
import { parseJson } from '../../lib/input.js';
import type { Logger } from '../../lib/log.js';
import { createKeyAndCsr } from '../../lib/pki.js';
import { HeartbeatRtt, type RttSnapshot } from '../../lib/rtt.js';
import type { LoadedIdentity, NodeCredentials } from '../identity.js';
import type { SiteLocalSet } from './site-local.js';
import type { Upstream, UpstreamCall, UpstreamChooser } from './upstream.js';

export type SessionPhase = 'connecting' | 'syncing' | 'connected' | 'disconnected' | 'revoked' | 'stopped';

export interface SessionStatus {
  phase: SessionPhase;
  since: string;
  revision: number;
  /** What the session syncs (or last tried to sync) from: `controller HOST:PORT`, `proxy HOST:PORT`. */
  upstream?: string;
  lastError?: string;
  reconnects: number;
  certNotAfter: string;
  lastSync?: { kind: 'snapshot' | 'delta'; revision: number; at: string; swept?: number };
  /** The upstream's answer to the last endpoint report: what it refused, and why. */
  endpoints?: {
    revision: number;
    accepted: number;
    refused: Array<{ name: string; code: string; message: string; field: string }>;
    at: string;
  };
  /** Endpoints of the site's other nodes the site proxy sent, not yet confirmed centrally. */
  siteLocal?: { seq: number; endpoints: number };
  /** Round trip and clock offset to the upstream, from heartbeat echoes (src/lib/rtt.ts). */
  rtt?: RttSnapshot;
}

/**
 * The durable store the session writes before it acknowledges (StateCache; its journal-backed
 * successor keeps this surface). A write that throws is not acknowledged.
 */
export interface DurableState {
  readonly revision: number;
  readonly snapshotRevision: number;
  list(kind?: string): TetherObject[];
  get(kind: string, name: string): TetherObject | undefined;
  applyDelta(
    revision: number,
    put: readonly TetherObject[],
    deleted: ReadonlyArray<{ kind: string; name: string }>,
  ): void;
  replace(revision: number, objects: readonly TetherObject[]): { swept: number };
}

export interface SessionOptions {
  identity: LoadedIdentity;
  cache: DurableState;
  log: Logger;
  /** Picks the upstream before every connection attempt. */
  chooseUpstream: UpstreamChooser;
  /**
   * The controller itself: only it may revoke this node. A site proxy that says "revoked" is
   * another node of the site, so the session asks the controller before it believes it.
   */
  controllerUpstream?: Upstream;
  clock?: Clock;
  /** Interval of our heartbeats, declared in Hello.heartbeat_ms; 3 silent ones end the session. */
  heartbeatMs?: number;
  backoff?: BackoffPolicy;
  /** Source of the backoff jitter (default Math.random). */
  random?: () => number;
  /** Renews the certificate with the controller (CSR PEM → certificate PEM); absent: no renewal. */
  renew?: (csrPem: string) => Promise<string>;
  /** Persists renewed credentials (the state directory's credentials file). */
  saveCredentials?: (creds: NodeCredentials) => void;
  /** The SiteLocal set (docs/proxy.md), written to disk before it is used. */
  siteLocal?: SiteLocalSet;
  /** Called after each change is on disk (and acknowledged). */
  onChange?: () => void;
  onStatus?: (s: SessionStatus) => void;
  /** Called once when the upstream says this node is revoked; the session does not reconnect. */
  onRevoked?: (err: TetherError) => void;
  version?: string;
  /**
   * The sequence numbers of signed endpoint reports: must grow across restarts and reboots,
   * whatever the clock does (the daemon passes a DurableSequence in its state directory).
   * Default, for tests and tools: a counter in memory starting at the clock's time.
   */
  reportSeq?: () => number;
  /** This node's underlay (VTEP) address, declared in every hello; the controller records
   *  the first and holds the node to it. Absent when the node runs no vRouter. */
  underlayIp?: string;
  /** Runs remote shells (src/node/shell.ts); absent: shell frames are ignored. */
  shell?: ShellEndpoint;
  /** The controller at `from` advertised its replicas (ControllerList); only ever called
   *  for a controller upstream, never for what a site proxy says. */
  learnControllers?: (addresses: readonly string[], from: string) => void;
}

/** What the session hands shell frames to (docs/shell.md). */
export interface ShellEndpoint {
  frame(f: ShellFrame__Output, send: (f: ShellFrame) => void): void;
  /** The session to the upstream ended: shells it carried end too. */
  disconnected(): void;
}

function decode(r: Resource__Output): TetherObject {
  return parseJson(r.json, { source: `upstream message (${r.kind}/${r.name})` }) as TetherObject;
}

/** Finds an object another part of this process already holds (the site proxy's slice). */
export type SharedObjects = (kind: string, name: string) => TetherObject | undefined;

function encode(o: TetherObject): { kind: string; name: string; json: Buffer; revision: number } {
  return { kind: o.kind, name: o.metadata.name, json: Buffer.from(JSON.stringify(o)), revision: 0 };
}

/**
 * The agent's one session to its upstream (controller or site proxy). Holds a revision on
 * disk, resumes from it, writes before it acknowledges, detects a dead link by missing
 * heartbeats rather than TCP, reconnects with full-jitter backoff, renews its certificate at
 * 75% of its lifetime and signs every endpoint report with the node's key.
 */
export class AgentSession {
  readonly bootId = randomUUID();
  private shared: SharedObjects | undefined;
  private readonly hbMs: number;
  private readonly clock: Clock;
  private upstream: Upstream | undefined;
  private call: UpstreamCall | undefined;
  private attempt = 0;
  private stopped = false;
  private reconnectTimer: TimerHandle | undefined;
  private hbTimer: TimerHandle | undefined;
  private renewTimer: TimerHandle | undefined;
  private lastHeard = 0;
  /**
   * The revision known to be on disk: what the hello declares. A write that failed may have
   * left the store's memory ahead of its file; declaring that would make the upstream skip
   * what never reached the disk.
   */
  private held: number;
  private readonly hbRtt: HeartbeatRtt;
  private readonly reportSeq: () => number;
  private staging: TetherObject[] | undefined;
  private renewing = false;
  /** The key of a renewal not yet answered: a retry asks with the same key, so an answer
   *  lost on the way is handed out again instead of refused. */
  private renewKey: { keyPem: string; csrPem: string } | undefined;
  /** The node's local endpoints as last reported by the CNI side; re-sent on every connect. */
  private endpoints: TetherObject[] | undefined;
  private gateway: GatewayReport | undefined;
  readonly status: SessionStatus;

  /**
   * Objects that this process already holds (the site proxy's slice on the same node) are
   * kept once: a received object whose JSON is byte-for-byte the JSON of the held one is
   * replaced by that reference, so the agent's cache and the proxy's share the table instead
   * of holding two parsed copies. Neither side mutates cached objects.
   */
  shareObjects(lookup: SharedObjects | undefined): void {
    this.shared = lookup;
  }

  private decodeShared(r: Resource__Output): TetherObject {
    const held = this.shared?.(r.kind, r.name);
    if (held && r.json.equals(Buffer.from(JSON.stringify(held)))) return held;
    return decode(r);
  }

  constructor(private readonly opts: SessionOptions) {
    this.hbMs = opts.heartbeatMs ?? 5000;
    this.clock = opts.clock ?? systemClock;
    this.held = opts.cache.revision;
    this.hbRtt = new HeartbeatRtt(() => this.clock.now());
    let seq = Math.max(0, Math.floor(this.clock.now()));
    this.reportSeq = opts.reportSeq ?? (() => seq++);
    this.status = {
      phase: 'connecting',
      since: new Date(this.clock.now()).toISOString(),
      revision: opts.cache.revision,
      reconnects: 0,
      certNotAfter: new X509Certificate(opts.identity.credentials.certPem).validTo,
      ...(opts.siteLocal
        ? { siteLocal: { seq: opts.siteLocal.seq, endpoints: opts.siteLocal.list().length } }
        : {}),
    };
  }

  start(): void {
    this.connect();
    if (this.opts.renew) this.scheduleRenew(0);
  }

  stop(): void {
    this.stopped = true;
    this.clock.clear(this.reconnectTimer);
    this.clock.clear(this.hbTimer);
    this.clock.clear(this.renewTimer);
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    this.upstream?.close();
    this.opts.shell?.disconnected();
    // A revoked node stays "revoked" in its status file after it exits: `tether status` says why.
    if (this.status.phase !== 'revoked') this.setPhase('stopped');
  }

  /** Drops the current connection and connects again now (e.g. the site's proxy moved). */
  reconnect(why: string): void {
    if (this.stopped || this.status.phase === 'revoked') return;
    this.opts.log.info({ why }, 'reconnecting to upstream');
    this.attempt = 0;
    this.endCall(why, 0, false);
  }

  /** Reports the complete set of local endpoints; queued while disconnected. */
  reportEndpoints(endpoints: TetherObject[]): void {
    this.endpoints = endpoints;
    if (this.status.phase === 'connected' || this.status.phase === 'syncing') this.sendReport();
  }

  /** The local gateway's state (docs/gateway.md), for `tether get gateways`; the latest one
   *  is sent again on every (re)connect. */
  reportGateway(report: GatewayReport): void {
    this.gateway = report;
    if (this.call && (this.status.phase === 'connected' || this.status.phase === 'syncing'))
      this.call.write({ gateway: report });
  }

  /**
   * Every report is signed by the node's own key with a new sequence number (higher than
   * any this node signed before, also before a reboot), so a proxy can relay it and the
   * controller can tell it from a replay (src/api/signed-report.ts). `at` is the clock's
   * time, shown only: a clock stepped back does not make a report look old.
   */
  private sendReport(): void {
    const eps = this.endpoints;
    const call = this.call;
    if (!eps || !call) return;
    const id = this.opts.identity;
    const signed = signReport(
      {
        node: id.name,
        site: id.site,
        bootId: this.bootId,
        seq: this.reportSeq(),
        at: this.clock.now(),
        endpoints: eps,
      },
      id.credentials.keyPem,
      id.credentials.certPem,
    );
    call.write({ endpoints: { endpoints: eps.map(encode), signed } });
  }

  /**
   * Sends the endpoint report again after the slice changed while some endpoints stand
   * refused: what was refused may be claimable now (the node's share of a network arrived,
   * a network was extended to this site). An unchanged report changes nothing upstream, so
   * this cannot loop.
   */
  private retryRefused(): void {
    if (this.endpoints && this.status.endpoints?.refused.length) this.sendReport();
  }

  private revoked(err: TetherError): void {
    if (this.status.phase === 'revoked') return;
    this.clock.clear(this.reconnectTimer);
    this.clock.clear(this.renewTimer);
    this.clock.clear(this.hbTimer);
    this.setPhase('revoked', err.message);
    this.opts.onRevoked?.(err);
  }

  private setPhase(phase: SessionPhase, err?: string): void {
    if (this.status.phase !== phase) {
      this.status.phase = phase;
      this.status.since = new Date(this.clock.now()).toISOString();
    }
    if (err !== undefined) this.status.lastError = err;
    this.status.revision = this.opts.cache.revision;
    this.opts.onStatus?.(this.status);
  }

  /** Set when a site proxy said "revoked": the next attempt goes to the controller. */
  private confirmRevocation = false;

  /**
   * Whether the current upstream may end this node for good (exit 6, never restarted). Only
   * the controller may; from a proxy the claim is checked with the controller first, so one
   * node of the site cannot stop its neighbours by answering "revoked".
   */
  private mayRevoke(): boolean {
    if (!this.opts.controllerUpstream || this.upstream?.kind === 'controller') return true;
    this.confirmRevocation = true;
    this.opts.log.warn(
      { upstream: this.status.upstream },
      'site proxy says this node is revoked; asking the controller',
    );
    return false;
  }

  private connect(): void {
    if (this.stopped || this.status.phase === 'revoked') return;
    let next: Upstream;
    let call: UpstreamCall;
    try {
      next =
        this.confirmRevocation && this.opts.controllerUpstream
          ? this.opts.controllerUpstream
          : this.opts.chooseUpstream({
              attempt: this.attempt,
              ...(this.status.lastError ? { lastError: this.status.lastError } : {}),
            });
      if (this.upstream && this.upstream !== next) this.upstream.close();
      this.upstream = next;
      this.status.upstream = `${next.kind} ${next.address}`;
      this.setPhase('connecting');
      call = next.open();
    } catch (e) {
      // A chooser or channel that cannot even start (bad address) is retried like a failed
      // connection, not thrown out of a timer.
      this.scheduleReconnect(`cannot open upstream: ${asTetherError(e).message}`);
      return;
    }
    const id = this.opts.identity;
    this.call = call;
    this.lastHeard = this.clock.now();
    call.on('data', (m: ControllerMessage__Output) => {
      if (this.call !== call) return;
      this.lastHeard = this.clock.now();
      try {
        this.handle(m);
      } catch (e) {
        // A change we cannot persist must not be acknowledged: drop the session and resume.
        const err = asTetherError(e);
        this.opts.log.error({ err: err.message }, 'cannot apply change from upstream; not acknowledged');
        this.endCall(`cannot persist change: ${err.message}`);
      }
    });
    call.on('error', (err: TetherError) => {
      if (this.call !== call) return;
      if (err.code === 'TETHER_E_REVOKED') {
        this.call = undefined;
        if (this.mayRevoke()) {
          this.opts.log.error({ err: err.message }, 'this node has been revoked; not reconnecting');
          this.revoked(err);
        } else this.scheduleReconnect(`site proxy says revoked; asking the controller: ${err.message}`);
        return;
      }
      this.call = undefined;
      this.scheduleReconnect(err.message);
    });
    call.on('end', () => {
      if (this.call !== call) return;
      this.call = undefined;
      this.scheduleReconnect('upstream closed the session');
    });
    call.write({
      hello: {
        node_name: id.name,
        held_revision: this.held,
        version: this.opts.version ?? '',
        boot_id: this.bootId,
        underlay_ip: this.opts.underlayIp ?? '',
        role: '',
        heartbeat_ms: this.hbMs,
      },
    });
    if (this.endpoints) this.sendReport();
    if (this.gateway) call.write({ gateway: this.gateway });
    this.clock.clear(this.hbTimer);
    this.hbRtt.reset();
    this.hbTimer = this.clock.setInterval(() => this.heartbeat(call), this.hbMs);
  }

  private heartbeat(call: UpstreamCall): void {
    if (this.call !== call) return;
    if (this.clock.now() - this.lastHeard >= 3 * this.hbMs) {
      this.opts.log.warn('no heartbeat from upstream for 3 intervals; reconnecting');
      this.endCall('upstream heartbeat lost');
      return;
    }
    call.write({ heartbeat: this.hbRtt.next() });
  }

  /** Ends the current call on our side and schedules the next attempt. */
  private endCall(why: string, delayMs?: number, failure = true): void {
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    this.scheduleReconnect(why, delayMs, failure);
  }

  /** `failure`: the upstream did not work (the next attempt may go to another controller
   *  replica); false for a deliberate reconnect (the site's proxy moved). */
  private scheduleReconnect(why: string, delayMs?: number, failure = true): void {
    this.clock.clear(this.hbTimer);
    this.opts.shell?.disconnected();
    this.staging = undefined;
    if (this.stopped || this.status.phase === 'revoked') return;
    if (failure) this.upstream?.failed?.();
    const delay =
      delayMs ?? fullJitterDelay(this.attempt++, this.opts.backoff ?? DEFAULT_BACKOFF, this.opts.random);
    this.status.reconnects++;
    this.setPhase('disconnected', why);
    this.opts.log.info(
      { why, retryInMs: delay, revision: this.opts.cache.revision },
      'session down; running headless from disk state',
    );
    this.clock.clear(this.reconnectTimer);
    this.reconnectTimer = this.clock.setTimeout(() => this.connect(), delay);
  }

  private ack(revision: number): void {
    this.call?.write({ ack: { revision } });
  }

  private handle(m: ControllerMessage__Output): void {
    const cache = this.opts.cache;
    const now = () => new Date(this.clock.now()).toISOString();
    switch (m.msg) {
      case 'snapshot_begin':
        this.staging = [];
        this.setPhase('syncing');
        return;
      case 'snapshot_chunk':
        this.staging?.push(...(m.snapshot_chunk?.put ?? []).map((r) => this.decodeShared(r)));
        return;
      case 'snapshot_end': {
        if (!this.staging)
          throw new TetherError('TETHER_E_STATE', 'snapshot end without a snapshot begin', {
            field: 'snapshot_end',
          });
        const rev = m.snapshot_end!.revision;
        const { swept } = cache.replace(rev, this.staging);
        this.held = cache.revision;
        this.staging = undefined;
        this.ack(rev);
        this.attempt = 0;
        this.confirmRevocation = false;
        this.status.lastSync = { kind: 'snapshot', revision: rev, at: now(), swept };
        this.setPhase('connected');
        this.opts.log.info({ revision: rev, swept }, 'snapshot applied');
        this.opts.onChange?.();
        this.retryRefused();
        return;
      }
      case 'delta': {
        const d = m.delta!;
        cache.applyDelta(
          d.revision,
          d.put.map((r) => this.decodeShared(r)),
          d.deleted,
        );
        this.held = cache.revision;
        this.ack(cache.revision);
        this.attempt = 0;
        this.confirmRevocation = false;
        if (this.status.phase !== 'connected') {
          this.status.lastSync = { kind: 'delta', revision: d.revision, at: now() };
        }
        this.setPhase('connected');
        if (d.put.length || d.deleted.length) {
          this.opts.onChange?.();
          this.retryRefused();
        }
        return;
      }
      case 'site_local': {
        const sl = m.site_local!;
        const set = this.opts.siteLocal;
        if (!set) return;
        if (set.replace(sl.seq, sl.endpoints.map(decode), sl.nodes)) this.opts.onChange?.();
        this.status.siteLocal = { seq: set.seq, endpoints: set.list().length };
        this.opts.onStatus?.(this.status);
        return;
      }
      case 'endpoint_result': {
        const r = m.endpoint_result!;
        // A proxy's results name the node; one for another node is not ours to show.
        if (r.node && r.node !== this.opts.identity.name) return;
        const refused = r.refused.map((x) => ({
          name: x.name,
          code: x.code,
          message: x.message,
          field: x.field,
        }));
        for (const x of refused) {
          this.opts.log.error(
            { endpoint: x.name, code: x.code, field: x.field, err: x.message },
            'upstream refused endpoint',
          );
        }
        this.status.endpoints = { revision: r.revision, accepted: r.accepted, refused, at: now() };
        this.opts.onStatus?.(this.status);
        return;
      }
      case 'shell': {
        const call = this.call;
        if (!call || !m.shell) return;
        if (this.opts.shell) {
          this.opts.shell.frame(m.shell, (f) => this.call === call && call.write({ shell: f }));
          return;
        }
        // --no-shell: say so at once, else the operator waits for the idle timeout.
        if (m.shell.op === 'open')
          call.write({
            shell: {
              session_id: m.shell.session_id,
              node: this.opts.identity.name,
              end: {
                ending: 'refused',
                exit_code: -1,
                signal: 0,
                code: 'TETHER_E_PERMISSION',
                message: 'this node runs with --no-shell',
              },
            },
          });
        return;
      }
      case 'controllers': {
        const up = this.upstream;
        // A site proxy is another node of the site: it may not tell us where the controller is.
        if (up?.kind !== 'controller' || !m.controllers) return;
        this.opts.learnControllers?.(m.controllers.addresses, up.address);
        return;
      }
      case 'heartbeat': {
        // Not written to the status file (that would be a write per heartbeat): the live
        // status reads it from here.
        if (this.hbRtt.echo(m.heartbeat?.seq, m.heartbeat?.unix_ms)) {
          const r = this.hbRtt.snapshot();
          if (r) this.status.rtt = r;
        }
        return;
      }
      case 'goodbye': {
        const g = m.goodbye!;
        this.opts.log.warn({ code: g.code, reason: g.reason }, 'upstream said goodbye');
        if (g.code === 'TETHER_E_REVOKED') {
          const call = this.call;
          this.call = undefined;
          if (this.mayRevoke())
            this.revoked(new TetherError('TETHER_E_REVOKED', g.reason || 'this node has been revoked'));
          else this.scheduleReconnect(`site proxy says revoked; asking the controller: ${g.reason}`);
          call?.cancel();
        }
        return;
      }
      default:
        return;
    }
  }

  /** Arms a timer for the 75% point of the current certificate (re-armed after each try). */
  private scheduleRenew(retryMs: number): void {
    this.clock.clear(this.renewTimer);
    if (this.stopped) return;
    const cert = new X509Certificate(this.opts.identity.credentials.certPem);
    const from = new Date(cert.validFrom).getTime();
    const to = new Date(cert.validTo).getTime();
    const due = from + 0.75 * (to - from);
    // Timers cannot wait longer than ~24.8 days; re-check hourly instead.
    const delay = Math.min(Math.max(retryMs, due - this.clock.now(), 0), 3_600_000);
    this.renewTimer = this.clock.setTimeout(() => void this.maybeRenew(), delay);
  }

  /** Renews the certificate once 75% of its lifetime has passed, with the controller. */
  private async maybeRenew(): Promise<void> {
    const renew = this.opts.renew;
    if (!renew || this.renewing || this.stopped || this.status.phase === 'revoked') return;
    const cert = new X509Certificate(this.opts.identity.credentials.certPem);
    const from = new Date(cert.validFrom).getTime();
    const to = new Date(cert.validTo).getTime();
    if (this.clock.now() < from + 0.75 * (to - from)) {
      this.scheduleRenew(0);
      return;
    }
    this.renewing = true;
    let retryMs = 0;
    try {
      const id = this.opts.identity;
      this.renewKey ??= await createKeyAndCsr(id.name);
      const { keyPem, csrPem } = this.renewKey;
      const certPem = await renew(csrPem);
      const creds = { keyPem, certPem };
      this.opts.saveCredentials?.(creds);
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
