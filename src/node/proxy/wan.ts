import { randomUUID } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import type { ControllerMessage__Output } from '../../api/gen/tether/v1/ControllerMessage.js';
import type { GatewayReport } from '../../api/gen/tether/v1/GatewayReport.js';
import type { NodeMessage } from '../../api/gen/tether/v1/NodeMessage.js';
import type { NodeSessionClient } from '../../api/gen/tether/v1/NodeSession.js';
import type { Resource__Output } from '../../api/gen/tether/v1/Resource.js';
import type { ShellFrame } from '../../api/gen/tether/v1/ShellFrame.js';
import type { SiteAgents } from '../../api/gen/tether/v1/SiteAgents.js';
import { MAX_MESSAGE_BYTES, tetherProto } from '../../api/grpc.js';
import type { TetherObject } from '../../api/resource.js';
import type { SignedReportWire } from '../../api/signed-report.js';
import { fromGrpcError } from '../../api/status.js';
import { type BackoffPolicy, DEFAULT_BACKOFF, fullJitterDelay } from '../../lib/backoff.js';
import { asTetherError } from '../../lib/errors.js';
import { parseJson } from '../../lib/input.js';
import type { Logger } from '../../lib/log.js';
import { HeartbeatRtt, type RttSnapshot } from '../../lib/rtt.js';
import { controllerCredentials } from '../connect.js';
import type { ControllerSet } from '../controllers.js';
import type { ProxyCore, Uplink } from './core.js';

export interface WanOptions {
  /** The controller replicas (shared with the node's agent): the session dials the current
   *  one and moves on to the next when a session fails (src/node/controllers.ts). */
  controllers: ControllerSet;
  caPem: string;
  credentials: { keyPem: string; certPem: string };
  node: string;
  underlayIp?: string;
  core: ProxyCore;
  log: Logger;
  /** Declared in Hello.heartbeat_ms; the controller only echoes (docs/proxy.md). */
  heartbeatMs?: number;
  backoff?: BackoffPolicy;
  version?: string;
  onStatus?: (s: WanStatus) => void;
}

export interface WanStatus {
  up: boolean;
  since: string;
  revision: number;
  reconnects: number;
  lastError?: string;
  /** The controller replica the session is opened to (or was last). */
  controller?: string;
  /** How the last (re)connect synced: resumed by delta, or a snapshot. */
  lastSync?: 'snapshot' | 'delta';
  /** Round trip and clock offset to the controller, from heartbeat echoes (src/lib/rtt.ts). */
  rtt?: RttSnapshot;
}

export const DEFAULT_WAN_HEARTBEAT_MS = 30_000;

/** No gRPC keepalive pings: on the WAN the session's own heartbeats are the liveness check,
 *  and each keepalive would cost bytes an idle site should not pay. */
const WAN_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  'grpc.initial_reconnect_backoff_ms': 1000,
  'grpc.max_reconnect_backoff_ms': 5000,
  'grpc.ssl_target_name_override': 'tether-controller',
};

function decode(r: Resource__Output): TetherObject {
  return parseJson(r.json, { source: `controller message (${r.kind}/${r.name})` }) as TetherObject;
}

/**
 * The site's one WAN session: opened with the hosting node's certificate and
 * Hello.role "proxy", resumed from the proxy's durable revision; every delta and snapshot is
 * on disk (ProxyCore) before it is acknowledged; reconnects with full-jitter backoff.
 */
export class WanSession implements Uplink {
  private readonly bootId = randomUUID();
  private readonly hbMs: number;
  private client: NodeSessionClient | undefined;
  private call: grpc.ClientDuplexStream<NodeMessage, ControllerMessage__Output> | undefined;
  private attempt = 0;
  private stopped = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private hbTimer: NodeJS.Timeout | undefined;
  private lastHeard = 0;
  private readonly hbRtt = new HeartbeatRtt(() => Date.now());
  private staging: TetherObject[] | undefined;
  private isUp = false;
  /** The replica the current call was opened to. */
  private target = '';
  readonly status: WanStatus;

  constructor(private readonly opts: WanOptions) {
    this.hbMs = opts.heartbeatMs ?? DEFAULT_WAN_HEARTBEAT_MS;
    this.status = { up: false, since: new Date().toISOString(), revision: opts.core.revision, reconnects: 0 };
  }

  get up(): boolean {
    return this.isUp;
  }

  start(): void {
    this.opts.core.uplink = this;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.hbTimer);
    this.setUp(false);
    this.call?.cancel();
    this.client?.close();
    if (this.opts.core.uplink === this) this.opts.core.uplink = undefined;
  }

  siteAgents(m: SiteAgents): void {
    if (this.isUp) this.call?.write({ site_agents: m });
  }

  relay(node: string, wire: SignedReportWire): void {
    if (this.isUp) this.call?.write({ relayed_report: { node, signed: wire } });
  }

  relayGateway(node: string, report: GatewayReport): void {
    if (this.isUp) this.call?.write({ relayed_gateway: { node, report } });
  }

  relayShell(f: ShellFrame): boolean {
    if (!this.isUp || !this.call) return false;
    this.call.write({ shell: f });
    return true;
  }

  private setUp(up: boolean, err?: string): void {
    if (err !== undefined) this.status.lastError = err;
    this.status.revision = this.opts.core.revision;
    if (this.isUp !== up) {
      this.isUp = up;
      this.status.up = up;
      this.status.since = new Date().toISOString();
      if (up) this.opts.core.onUplinkUp();
    }
    this.opts.onStatus?.(this.status);
  }

  private connect(): void {
    if (this.stopped) return;
    this.client?.close();
    const proto = tetherProto();
    const target = this.opts.controllers.current;
    this.target = target;
    this.status.controller = target;
    this.client = new proto.tether.v1.NodeSession(
      target,
      controllerCredentials(this.opts.caPem, this.opts.credentials),
      WAN_CHANNEL_OPTIONS,
    );
    const call = this.client.Sync();
    this.call = call;
    this.hbRtt.reset();
    this.lastHeard = Date.now();
    let ended = false;
    const onEnd = (why: string) => {
      if (ended || this.call !== call) return;
      ended = true;
      clearInterval(this.hbTimer);
      this.staging = undefined;
      // The next attempt goes to the next replica (the agent's session moves with it).
      if (!this.stopped) this.opts.controllers.failed(target);
      this.setUp(false, why);
      // The controller ended the shells this session carried (its hub's onDetach).
      this.opts.core.onUplinkDown();
      this.scheduleReconnect(why);
    };
    call.on('data', (m: ControllerMessage__Output) => {
      this.lastHeard = Date.now();
      try {
        this.handle(m);
      } catch (e) {
        // Not on disk, so not acknowledged: drop the session and resume from what is.
        this.opts.log.error(
          { err: asTetherError(e).message },
          'site proxy cannot apply change from controller',
        );
        onEnd(asTetherError(e).message);
        call.cancel();
      }
    });
    call.on('error', (e) => onEnd(fromGrpcError(e).message));
    call.on('end', () => onEnd('controller closed the session'));
    call.write({
      hello: {
        node_name: this.opts.node,
        held_revision: this.opts.core.revision,
        version: this.opts.version ?? '',
        boot_id: this.bootId,
        underlay_ip: this.opts.underlayIp ?? '',
        role: 'proxy',
        heartbeat_ms: this.hbMs,
      },
    });
    this.hbTimer = setInterval(() => {
      if (Date.now() - this.lastHeard > 3 * this.hbMs) {
        this.opts.log.warn('no message from controller for 3 heartbeats; reconnecting the WAN session');
        onEnd('controller heartbeat lost');
        call.cancel();
        return;
      }
      call.write({ heartbeat: this.hbRtt.next() });
    }, this.hbMs);
    this.hbTimer.unref();
  }

  private scheduleReconnect(why: string): void {
    if (this.stopped) return;
    const delay = fullJitterDelay(this.attempt++, this.opts.backoff ?? DEFAULT_BACKOFF);
    this.status.reconnects++;
    this.opts.log.info(
      { why, retryInMs: delay, revision: this.opts.core.revision },
      'WAN session down; site runs headless',
    );
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  private handle(m: ControllerMessage__Output): void {
    const core = this.opts.core;
    switch (m.msg) {
      case 'snapshot_begin':
        this.staging = [];
        return;
      case 'snapshot_chunk':
        this.staging?.push(...(m.snapshot_chunk?.put ?? []).map(decode));
        return;
      case 'snapshot_end': {
        if (!this.staging) return;
        const rev = m.snapshot_end!.revision;
        const { swept } = core.applySnapshot(rev, this.staging);
        this.staging = undefined;
        this.call?.write({ ack: { revision: rev } });
        this.attempt = 0;
        this.status.lastSync = 'snapshot';
        this.opts.log.info({ revision: rev, swept }, 'site proxy applied snapshot');
        this.setUp(true);
        return;
      }
      case 'delta': {
        const d = m.delta!;
        core.applyDelta(d.revision, d.put.map(decode), d.deleted);
        this.call?.write({ ack: { revision: core.revision } });
        this.attempt = 0;
        if (!this.isUp) this.status.lastSync = 'delta';
        this.setUp(true);
        return;
      }
      case 'endpoint_result':
        core.onResult(m.endpoint_result!);
        return;
      case 'controllers': {
        const r = this.opts.controllers.learn(m.controllers?.addresses ?? [], this.target);
        if (r.error)
          this.opts.log.warn(
            { from: this.target, err: r.error },
            'controller advertised a bad replica list; ignored',
          );
        else if (r.changed)
          this.opts.log.info(
            { from: this.target, controllers: this.opts.controllers.addresses },
            'controller replicas learned',
          );
        return;
      }
      case 'heartbeat':
        // Not reported through onStatus (a write per heartbeat): status readers see it here.
        if (this.hbRtt.echo(m.heartbeat?.seq, m.heartbeat?.unix_ms)) {
          const r = this.hbRtt.snapshot();
          if (r) this.status.rtt = r;
        }
        return;
      case 'shell':
        if (m.shell) core.shellFromController(m.shell);
        return;
      case 'goodbye':
        this.opts.log.warn(
          { code: m.goodbye?.code, reason: m.goodbye?.reason },
          'controller said goodbye to the site proxy',
        );
        return;
      default:
        return;
    }
  }
}
