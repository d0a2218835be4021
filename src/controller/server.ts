import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { fromReport } from '../api/firstboot.js';
import { gatewayClaimIssues } from '../api/gateway-kinds.js';
import type { AdminHandlers } from '../api/gen/tether/v1/Admin.js';
import type { ControllerMessage } from '../api/gen/tether/v1/ControllerMessage.js';
import type { EnrollmentHandlers } from '../api/gen/tether/v1/Enrollment.js';
import type { GatewayReport__Output } from '../api/gen/tether/v1/GatewayReport.js';
import type { NodeMessage__Output } from '../api/gen/tether/v1/NodeMessage.js';
import type { NodeSessionHandlers } from '../api/gen/tether/v1/NodeSession.js';
import type { Resource, Resource__Output } from '../api/gen/tether/v1/Resource.js';
import type { ShellHandlers } from '../api/gen/tether/v1/Shell.js';
import { tetherProto } from '../api/grpc.js';
import { kindDefinition, knownKinds } from '../api/kinds.js';
import { API_VERSION, type TetherObject } from '../api/resource.js';
import {
  type EndpointReportBody,
  isNewerReport,
  markOf,
  type ReportMark,
  verifyReport,
} from '../api/signed-report.js';
import { toGrpcError } from '../api/status.js';
import { validateObject } from '../api/validate.js';
import { asTetherError, isTetherError, TetherError } from '../lib/errors.js';
import { parseJson } from '../lib/input.js';
import { GuardedListener, type ListenerStats } from '../lib/listener.js';
import type { Logger } from '../lib/log.js';
import { Pacer } from '../lib/pacer.js';
import { type CaMaterial, type Identity, identityOf, normalizeSerial, verifyIssuedBy } from '../lib/pki.js';
import { serializeOn, txnWithClaims } from './claimkeys.js';
import type { ControllerConfig } from './config.js';
import { EndpointClaims, type ReportOutcome } from './endpoints.js';
import { GatewayReports } from './gateways.js';
import { type Session, SessionHub, toResource } from './hub.js';
import type { Leadership } from './leader.js';
import type { ControllerStore } from './mirror.js';
import { NetworkReconciler, vniClaimOps } from './networks.js';
import { type NodeStatus, Registry } from './registry.js';
import { ShellBroker } from './shell.js';
import { ShellAudit } from './shell-audit.js';
import type { PutOp, TxnOp } from './store/store.js';

/** A ControllerMessage already serialized: fan-out encodes a change once per site and
 *  writes the same bytes to every session, instead of once per node. */
class PreEncoded {
  constructor(readonly bytes: Buffer) {}
}

/** The NodeSession service with a response serializer that passes PreEncoded through. */
function sessionServiceDefinition(): {
  service: grpc.ServiceDefinition;
  encode: (m: ControllerMessage) => ControllerMessage;
  sizeOf: (m: ControllerMessage) => number;
} {
  const base = tetherProto().tether.v1.NodeSession.service;
  const serialize = base.Sync.responseSerialize as (v: ControllerMessage) => Buffer;
  const service = {
    ...base,
    Sync: {
      ...base.Sync,
      responseSerialize: (v: unknown) =>
        v instanceof PreEncoded ? v.bytes : serialize(v as ControllerMessage),
    },
  };
  // The hub's writes are typed as ControllerMessage; a PreEncoded stands in for one and only
  // ever reaches the serializer above.
  return {
    service,
    encode: (m) =>
      (m instanceof PreEncoded ? m : new PreEncoded(serialize(m))) as unknown as ControllerMessage,
    sizeOf: (m) => {
      const v: unknown = m;
      return v instanceof PreEncoded ? v.bytes.length + 5 : serialize(m).length + 5;
    },
  };
}

type AnyCall = { getAuthContext(): { sslPeerCertificate?: { raw?: Buffer } } };

/** `tether.v1.Admin` from a service definition's method paths (`/tether.v1.Admin/Apply`). */
function serviceName(def: grpc.ServiceDefinition): string {
  const first = Object.values(def)[0];
  const m = first ? /^\/([^/]+)\//.exec(first.path) : null;
  if (!m) throw new TetherError('TETHER_E_INTERNAL', 'service definition without methods');
  return m[1]!;
}

/** How long a hello waits for this replica's copy to reach the revision the node holds. */
const HELLO_CATCH_UP_MS = 3000;
export interface ControllerServerDeps {
  store: ControllerStore;
  ca: CaMaterial;
  serverCertPem: string;
  serverKeyPem: string;
  config: ControllerConfig;
  log: Logger;
  /** Where the remote-shell audit and recordings live (docs/shell.md); absent: no shells. */
  shellDir?: string;
  /** Told of every Admin.Apply's outcome: a TetherError code, or 'ok' (docs/observability.md). */
  onApply?: (result: string) => void;
  /** Who runs the single writers (leader.ts); absent: this process alone (SQLite, memory). */
  leadership?: Leadership;
}

const LOST_DATASTORE = 'this controller replica cannot reach its datastore; use another replica';

/** Kinds an admin may write with apply; the rest are owned by the controller itself. */
const READ_ONLY_KINDS = new Set(['EnrollmentToken', 'Node']);
/** Fields of status the controller owns; apply keeps the stored status, not the input's. */
const MAX_RESOURCE_BYTES = 512 * 1024;

/** A kind the admin API knows, or undefined for "every kind" (the empty string). An unknown
 *  kind is a caller's mistake, not an empty list. */
function knownKindOrAll(kind: string): string | undefined {
  if (kind === '') return undefined;
  requireKnownKind(kind);
  return kind;
}

function requireKnownKind(kind: string): void {
  if (!kindDefinition(kind)) {
    throw new TetherError('TETHER_E_INVALID', `unknown kind "${kind}"`, {
      field: 'kind',
      expected: `one of ${knownKinds().join(', ')}`,
    });
  }
}

function fail(cb: (err: Partial<grpc.StatusObject> | null) => void, e: unknown): void {
  cb(toGrpcError(asTetherError(e)));
}

function redact(obj: TetherObject): TetherObject {
  if (obj.kind === 'EnrollmentToken' && obj.status) {
    const { secretHash: _h, ...rest } = obj.status as Record<string, unknown>;
    return { ...obj, status: rest };
  }
  if (obj.kind === 'Node' && obj.status) {
    const { csrPem: _c, issuedCertPem: _i, ...rest } = obj.status as Record<string, unknown>;
    return { ...obj, status: rest };
  }
  return obj;
}

/** A proxy session's report pacers, one per relayed node. */
export type RelayPacers = Map<string, Pacer<{ body: EndpointReportBody; mark: ReportMark }>>;

export class ControllerServer {
  readonly server: grpc.Server;
  readonly hub: SessionHub;
  readonly registry: Registry;
  readonly networks: NetworkReconciler;
  private readonly gateways: GatewayReports;
  readonly endpoints: EndpointClaims;
  /** Every service we serve, plus '' for the server as a whole (grpc.health.v1). */
  readonly serviceNames: readonly string[];
  readonly health: HealthImplementation;
  private readonly caX509: X509Certificate;
  private readonly listener: GuardedListener;
  private readonly adminWatches = new Set<grpc.ServerWritableStream<unknown, unknown>>();
  /**
   * Per node, the mark of the last signed report that passed the checks, which may still wait
   * in a pacer; the store holds the mark of the last one stored (with its endpoints), which
   * is what is left after a restart. Only real nodes of a site get an entry.
   */
  private readonly lastReports = new Map<string, ReportMark>();
  private boundPort = 0;
  private closing: Promise<void> | undefined;
  /** Remote shells (docs/shell.md); undefined when the server runs without a shell directory. */
  readonly shell: ShellBroker | undefined;
  readonly shellAudit: ShellAudit | undefined;

  constructor(private readonly deps: ControllerServerDeps) {
    this.caX509 = new X509Certificate(deps.ca.certPem);
    this.endpoints = new EndpointClaims(deps.store, deps.log.child({ component: 'endpoints' }));
    this.gateways = new GatewayReports((kind, name) => deps.store.get(kind, name)?.object);
    this.registry = new Registry(deps.store, deps.ca, {
      nodeCertSeconds: deps.config.nodeCertSeconds,
      endpointsOf: (node) => this.endpoints.index.ofNode(node),
    });
    this.networks = new NetworkReconciler(
      deps.store,
      deps.log.child({ component: 'networks' }),
      deps.leadership,
    );
    const session = sessionServiceDefinition();
    this.hub = new SessionHub(deps.store, deps.log.child({ component: 'hub' }), {
      heartbeatMs: deps.config.heartbeatSeconds * 1000,
      encode: session.encode,
      sizeOf: session.sizeOf,
      sendQueueBytes: deps.config.sendQueueBytes,
    });
    if (deps.shellDir) {
      this.shellAudit = new ShellAudit(deps.shellDir);
      this.shell = new ShellBroker({
        hub: this.hub,
        audit: this.shellAudit,
        keyPem: deps.serverKeyPem,
        certPem: deps.serverCertPem,
        log: deps.log.child({ component: 'shell' }),
        approvedSite: (node) => {
          const n = deps.store.get('Node', node)?.object;
          const site = (n?.spec as { site?: unknown } | undefined)?.site;
          return (n?.status as NodeStatus | undefined)?.phase === 'Approved' && typeof site === 'string'
            ? site
            : undefined;
        },
        idleMs: deps.config.shellIdleSeconds * 1000,
        maxMs: deps.config.shellMaxSeconds * 1000,
      });
    }
    this.server = new grpc.Server({
      'grpc.max_receive_message_length': deps.config.maxMessageBytes,
      'grpc.max_send_message_length': deps.config.maxMessageBytes,
      // Sessions carry their own heartbeats (every peer's interval, echoed; three missed end
      // the session), so the server sends no keepalive pings of its own more often than
      // every 2 h: an idle WAN session costs only its heartbeats (docs/controller.md).
      'grpc.keepalive_time_ms': 2 * 3600_000,
      'grpc.keepalive_timeout_ms': 20_000,
      // No ping-policing options: grpc-js 1.14's server reads neither
      // `keepalive_permit_without_calls` nor `http2.min_ping_interval_without_data_ms` (only
      // its client transport does). A client's pings are answered by Node's HTTP/2 layer;
      // what bounds an abusive peer is the listener's per-connection caps (listener.ts).
      // Channelz keeps per-connection trace objects: memory we would pay 10,000 times.
      'grpc.enable_channelz': 0,
      // Tells the listener which connections have a call in progress: certificate-less
      // connections are closed only when idle.
      interceptors: [
        (_method, call) => {
          const info = call.getConnectionInfo();
          const done = this.listener.callStarted(info.remoteAddress, info.remotePort);
          return new grpc.ServerInterceptingCall(call, {
            start: (next) => next({ onCancel: done }),
            sendStatus: (status, next) => {
              done();
              next(status);
            },
          });
        },
      ],
    });
    const proto = tetherProto();
    const services: Array<[grpc.ServiceDefinition, grpc.UntypedServiceImplementation]> = [
      [proto.tether.v1.Enrollment.service, this.enrollmentHandlers() as grpc.UntypedServiceImplementation],
      [session.service, this.sessionHandlers() as grpc.UntypedServiceImplementation],
      [proto.tether.v1.Admin.service, this.adminHandlers() as grpc.UntypedServiceImplementation],
      [proto.tether.v1.Shell.service, this.shellHandlers() as grpc.UntypedServiceImplementation],
    ];
    for (const [def, impl] of services) this.server.addService(def, impl);
    this.serviceNames = ['', ...services.map(([def]) => serviceName(def))];
    this.health = new HealthImplementation(
      Object.fromEntries(this.serviceNames.map((n) => [n, 'NOT_SERVING' as const])),
    );
    this.health.addToServer(this.server);
    const injector = this.server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    this.listener = new GuardedListener({
      keyPem: deps.serverKeyPem,
      certPem: deps.serverCertPem,
      caPem: deps.ca.certPem,
      limits: {
        handshakeTimeoutMs: deps.config.handshakeTimeoutMs,
        unauthenticatedIdleMs: deps.config.unauthenticatedIdleMs,
        unauthenticatedMaxAgeMs: deps.config.unauthenticatedMaxAgeMs,
        maxConnectionsPerPeer: deps.config.maxConnectionsPerPeer,
        maxUnauthenticatedPerPeer: deps.config.maxUnauthenticatedPerPeer,
      },
      // grpc-js sees an already-decrypted TLSSocket; getAuthContext() reads its peer
      // certificate exactly as it would for a port grpc-js bound itself.
      inject: (socket) => injector.injectConnection(socket),
      accepts: (der) => this.acceptsCert(der),
      log: deps.log.child({ component: 'listener' }),
    });
    // A replica that lost its datastore serves a copy that no longer moves: its sessions go
    // (each peer fails over to the next replica) and new ones are refused until it is back.
    deps.leadership?.onReachable((ok) => {
      if (ok) return;
      const n = this.hub.closeAll('TETHER_E_UNAVAILABLE', LOST_DATASTORE);
      deps.log.warn(
        { sessions: n },
        'datastore unreachable: sessions closed so the peers move to another replica',
      );
    });
    // Revocation takes effect on the live session at once, not at the next reconnect.
    deps.store.subscribe((events) => {
      for (const ev of events) {
        if (ev.kind !== 'Node') continue;
        const phase =
          ev.type === 'put' ? (ev.object.status as { phase?: string } | undefined)?.phase : 'Deleted';
        if (phase === 'Revoked' || phase === 'Deleted' || phase === 'Reset') {
          this.lastReports.delete(ev.name);
          this.hub.closeNode(ev.name, 'TETHER_E_REVOKED', `node ${phase === 'Reset' ? 'reset' : 'revoked'}`);
          this.listener.recheck();
        }
      }
    });
  }

  async listen(address = this.deps.config.listen): Promise<number> {
    this.boundPort = await this.listener.listen(address);
    this.hub.start();
    this.networks.start();
    for (const n of this.serviceNames) this.health.setStatus(n, 'SERVING');
    return this.boundPort;
  }

  get port(): number {
    return this.boundPort;
  }

  connectionStats(): ListenerStats {
    return this.listener.stats();
  }

  /**
   * Every service goes NOT_SERVING, node sessions get a goodbye, admin watches end; calls
   * then have `shutdownGraceMs` to finish before every connection is destroyed, so open
   * streams (a health Watch, a node that does not hang up) cannot hold the process.
   */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    for (const n of this.serviceNames) this.health.setStatus(n, 'NOT_SERVING');
    this.listener.stopAccepting();
    this.networks.stop();
    this.shell?.stop();
    this.shellAudit?.close();
    this.hub.stop();
    this.endpoints.close();
    for (const w of this.adminWatches) w.end();
    this.adminWatches.clear();
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, this.deps.config.shutdownGraceMs);
      this.server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
    this.server.forceShutdown();
    await this.listener.destroyAll();
  }

  /** Who is calling: a certificate from our CA carrying a Tether identity; for nodes, also
   *  one of the serials the registry currently accepts. */
  authenticate(call: AnyCall, role?: Identity['role']): { id: Identity; serial: string } {
    const raw = call.getAuthContext().sslPeerCertificate?.raw;
    if (!raw) throw new TetherError('TETHER_E_UNAUTHENTICATED', 'a client certificate is required');
    return this.checkCert(raw, role);
  }

  /** For the listener: is this client certificate one we accept right now (any role)? */
  private acceptsCert(der: Buffer): boolean {
    try {
      this.checkCert(der);
      return true;
    } catch {
      return false;
    }
  }

  private checkCert(raw: Buffer, role?: Identity['role']): { id: Identity; serial: string } {
    const cert = new X509Certificate(raw);
    if (!verifyIssuedBy(cert, this.caX509)) {
      throw new TetherError(
        'TETHER_E_UNAUTHENTICATED',
        "client certificate is not issued by this controller's CA or has expired",
      );
    }
    const id = identityOf(cert);
    if (!id)
      throw new TetherError('TETHER_E_UNAUTHENTICATED', 'client certificate carries no Tether identity');
    if (role && id.role !== role)
      throw new TetherError('TETHER_E_PERMISSION', `${id.role} identity may not call this`);
    const serial = normalizeSerial(cert.serialNumber);
    if (id.role === 'node') {
      const n = this.deps.store.get('Node', id.name);
      const st = n?.object.status as NodeStatus | undefined;
      if (!n || st?.phase === 'Revoked' || st?.phase === 'Reset')
        throw new TetherError(
          'TETHER_E_REVOKED',
          `node "${id.name}" has been ${st?.phase === 'Reset' ? 'reset: enroll it again' : 'revoked'}`,
        );
      if (st?.phase !== 'Approved' || !st.certSerials?.includes(serial)) {
        throw new TetherError(
          'TETHER_E_UNAUTHENTICATED',
          `certificate ${serial} is not current for node "${id.name}"`,
        );
      }
    }
    return { id, serial };
  }

  private enrollmentHandlers(): EnrollmentHandlers {
    return {
      Enroll: (call, cb) => {
        const r = call.request;
        this.registry
          .enroll({
            credential: r.token,
            nodeName: r.node_name,
            csrPem: r.csr_pem,
            facts: (r.facts ?? {}) as unknown as Record<string, unknown>,
            expectedSite: r.expected_site,
          })
          .then((o) => {
            this.deps.log.info({ node: r.node_name, site: o.site, status: o.status }, 'enrollment');
            cb(null, {
              status: o.status === 'approved' ? 'STATUS_APPROVED' : 'STATUS_PENDING',
              certificate_pem: o.status === 'approved' ? o.certPem : '',
              ca_pem: this.deps.ca.certPem,
              site: o.site,
              node_name: o.node,
              retry_after_seconds: o.status === 'pending' ? o.retryAfterSeconds : 0,
              message: o.status === 'pending' ? o.message : '',
            });
          })
          .catch((e: unknown) => {
            this.deps.log.warn({ node: r.node_name, err: asTetherError(e).message }, 'enrollment refused');
            fail(cb, e);
          });
      },
    };
  }

  private sessionHandlers(): NodeSessionHandlers {
    return {
      Sync: (call) => {
        let who: { id: Identity; serial: string };
        try {
          who = this.authenticate(call, 'node');
        } catch (e) {
          call.emit('error', toGrpcError(asTetherError(e)));
          return;
        }
        if (this.deps.leadership && !this.deps.leadership.reachable()) {
          call.emit('error', toGrpcError(new TetherError('TETHER_E_UNAVAILABLE', LOST_DATASTORE)));
          return;
        }
        const id = who.id as Extract<Identity, { role: 'node' }>;
        let session: Session | undefined;
        let pacer: Pacer<{ eps: Resource__Output[]; mark: ReportMark | undefined }> | undefined;
        /** A proxy session's pacers, one per relayed node (only nodes of its site get one). */
        const relayPacers: RelayPacers = new Map();
        const refuse = (e: TetherError) => call.emit('error', toGrpcError(e));
        // The hello's store writes (the VTEP) and reads (report marks) are asynchronous:
        // messages that come meanwhile wait here and are handled in order after the open.
        let waiting: NodeMessage__Output[] | undefined;
        let ended = false;
        const onData = (msg: NodeMessage__Output): void => {
          if (waiting) {
            if (waiting.length < 1024) waiting.push(msg);
            return;
          }
          if (!session) {
            if (!msg.hello || msg.hello.node_name !== id.name) {
              refuse(
                new TetherError(
                  'TETHER_E_PERMISSION',
                  "first message must be hello with the certificate's node name",
                ),
              );
              return;
            }
            const role = msg.hello.role;
            if (role !== '' && role !== 'proxy') {
              refuse(
                new TetherError('TETHER_E_PERMISSION', `unknown session role "${role.slice(0, 64)}"`, {
                  field: 'hello.role',
                  expected: '"" (a node\'s own session) or "proxy"',
                }),
              );
              return;
            }
            if (role === 'proxy') {
              try {
                this.requireSiteNode(id.name, id.site);
              } catch (e) {
                refuse(asTetherError(e));
                return;
              }
            }
            const hello = msg.hello;
            waiting = [];
            const prepared = Promise.all([
              role === '' ? this.recordVtep(id.name, hello.underlay_ip) : undefined,
              this.loadMarks(role === 'proxy' ? this.siteNodes(id.site) : [id.name]),
              this.catchUpTo(Number(hello.held_revision)),
            ]);
            prepared
              .then(([vtepRefusal]) => {
                if (ended) return;
                openSession(hello, role, vtepRefusal);
                const queued = waiting ?? [];
                waiting = undefined;
                for (const m of queued) onData(m);
              })
              .catch((e: unknown) => refuse(asTetherError(e)));
            return;
          }
          handleOpen(msg, session);
        };
        const openSession = (
          hello: NonNullable<NodeMessage__Output['hello']>,
          role: string,
          vtepRefusal: ReportOutcome | undefined,
        ): void => {
          const msg = { hello };
          try {
            session = this.hub.open(
              call,
              id.name,
              id.site,
              Number(msg.hello.held_revision),
              msg.hello.boot_id,
              {
                role: role === 'proxy' ? 'proxy' : 'node',
                heartbeatMs: msg.hello.heartbeat_ms,
              },
            );
          } catch (e) {
            refuse(asTetherError(e));
            return;
          }
          if (vtepRefusal) this.hub.notify(session, { endpoint_result: vtepRefusal });
          // After the initial sync: the peer learns every replica it may fail over to.
          if (this.deps.config.replicas.length)
            this.hub.notify(
              session,
              { controllers: { addresses: this.deps.config.replicas } },
              '\0controllers',
            );
          this.deps.log.info(
            { node: id.name, site: id.site, held: msg.hello.held_revision, role: role || 'node' },
            role === 'proxy' ? 'site proxy session open' : 'node session open',
          );
        };
        const handleOpen = (msg: NodeMessage__Output, open: Session): void => {
          if (open.role === 'node' && msg.endpoints) {
            pacer ??= new Pacer(this.deps.config.endpointReportIntervalMs, (r) => {
              void this.endpointReport(id.name, id.site, r.eps, r.mark).then((result) =>
                this.hub.notify(open, { endpoint_result: result }),
              );
            });
            const mark = msg.endpoints.signed
              ? this.noteDirectSigned(id.name, id.site, msg.endpoints.signed)
              : undefined;
            pacer.offer({ eps: msg.endpoints.endpoints, mark });
          }
          if (open.role === 'node' && msg.gateway) {
            const dropped = this.gateways.accept(id.name, id.site, msg.gateway);
            if (dropped) this.deps.log.warn({ node: id.name, why: dropped }, 'gateway report dropped');
          }
          if (msg.shell) this.shell?.fromNode(open, msg.shell);
          if (open.role === 'proxy') {
            if (msg.site_agents) this.hub.siteAgents(open, msg.site_agents);
            if (msg.relayed_report) this.relayedReport(open, msg.relayed_report, relayPacers);
            if (msg.relayed_gateway) {
              const dropped = this.relayedGateway(open, msg.relayed_gateway);
              if (dropped)
                this.deps.log.warn(
                  { proxy: id.name, node: msg.relayed_gateway.node.slice(0, 64), why: dropped },
                  'relayed gateway report dropped',
                );
            }
          }
          this.hub.onMessage(open, msg);
        };
        call.on('data', onData);
        const end = () => {
          ended = true;
          pacer?.stop();
          for (const p of relayPacers.values()) p.stop();
          relayPacers.clear();
          if (session) {
            this.hub.detach(session);
            session = undefined;
          }
        };
        call.on('end', () => {
          end();
          call.end();
        });
        call.on('error', end);
        call.on('cancelled', end);
        call.on('close', end);
      },
      RenewCertificate: (call, cb) => {
        try {
          const who = this.authenticate(call, 'node');
          this.registry
            .renew(who.id.name, who.serial, call.request.csr_pem)
            .then((r) => cb(null, { certificate_pem: r.certPem, ca_pem: this.deps.ca.certPem }))
            .catch((e: unknown) => fail(cb, e));
        } catch (e) {
          fail(cb, e);
        }
      },
      ReportFirstBoot: (call, cb) => {
        try {
          const who = this.authenticate(call, 'node');
          const body = fromReport(call.request);
          this.registry
            .recordFirstBoot(who.id.name, { ...body, receivedAt: new Date().toISOString() })
            .then((r) => {
              this.deps.log.info(
                { node: who.id.name, phase: body.phase, seq: body.seq },
                'first-boot report',
              );
              cb(null, { seq: r.seq });
            })
            .catch((e: unknown) => fail(cb, e));
        } catch (e) {
          fail(cb, e);
        }
      },
    };
  }

  /** Remote shells: an operator opens one (the broker checks the role and the reason); an
   *  admin or operator reads the audit. */
  private shellHandlers(): ShellHandlers {
    const unavailable = () =>
      new TetherError(
        'TETHER_E_UNAVAILABLE',
        'this controller runs without remote shells (no shell directory)',
      );
    return {
      Open: (call) => {
        try {
          const who = this.authenticate(call);
          if (!this.shell) throw unavailable();
          this.shell.open(call, who.id);
        } catch (e) {
          call.emit('error', toGrpcError(asTetherError(e)));
        }
      },
      ListSessions: (call, cb) => {
        try {
          const who = this.authenticate(call);
          if (who.id.role !== 'admin' && who.id.role !== 'operator')
            throw new TetherError(
              'TETHER_E_PERMISSION',
              `${who.id.role} identity may not read the shell audit`,
            );
          if (!this.shellAudit) throw unavailable();
          const limit = Math.min(Math.max(call.request.limit || 100, 1), 10_000);
          const records = this.shellAudit
            .list({ ...(call.request.node ? { node: call.request.node } : {}), limit })
            .map((r) => Buffer.from(JSON.stringify(r)));
          cb(null, { records });
        } catch (e) {
          fail(cb, e);
        }
      },
    };
  }

  private adminHandlers(): AdminHandlers {
    const store = this.deps.store;
    const admin = (call: AnyCall) => this.authenticate(call, 'admin');
    return {
      Apply: async (call, cb) => {
        try {
          admin(call);
          const r = call.request;
          const objects = r.json.map((buf, i) => {
            const source = r.sources[i] ?? `item ${i}`;
            if (buf.length > MAX_RESOURCE_BYTES) {
              throw new TetherError('TETHER_E_TOO_LARGE', `resource is ${buf.length} bytes`, {
                file: source,
                expected: `at most ${MAX_RESOURCE_BYTES} bytes`,
              });
            }
            const obj = validateObject(parseJson(buf, { source }), { file: source });
            if (READ_ONLY_KINDS.has(obj.kind)) {
              throw new TetherError(
                'TETHER_E_PERMISSION',
                `${obj.kind} objects are managed by the controller`,
                { file: source, field: 'kind', expected: 'use `tether token create` / `tether node …`' },
              );
            }
            return obj;
          });
          const plan = (): TxnOp[] => {
            const ops: TxnOp[] = objects.map((object) => {
              const current = store.get(object.kind, object.metadata.name);
              // Status belongs to the controller: keep what it computed.
              const withStatus = current?.object.status
                ? { ...object, status: current.object.status }
                : { ...object, status: undefined };
              if (withStatus.status === undefined) delete (withStatus as Partial<TetherObject>).status;
              return r.expect_revision > 0
                ? { op: 'put', object: withStatus, expectRevision: r.expect_revision }
                : { op: 'put', object: withStatus };
            });
            this.checkGatewayClaims(objects, r.sources);
            // The gateway checks read this replica's copy: another apply in flight (here or
            // on another replica) that passed them on the same state loses the race instead.
            if (objects.some((o) => o.kind === 'Gateway' || o.kind === 'FloatingIP'))
              ops.push(serializeOn(store, 'gateways'));
            return this.withNetworkStatus(ops);
          };
          // Without the caller's expect_revision a network's status is written with a CAS
          // of our own (withNetworkStatus), whose failure means re-plan, not refuse.
          const res = await txnWithClaims(
            store,
            plan,
            (e) =>
              r.expect_revision === 0 &&
              isTetherError(e, 'TETHER_E_CONFLICT') &&
              e.details.kind === 'VirtualNetwork',
          );
          this.deps.onApply?.('ok');
          cb(null, {
            revision: res.revision,
            results: res.results.map((x) => ({
              kind: x.kind,
              name: x.name,
              revision: x.revision,
              action: x.action,
            })),
          });
        } catch (e) {
          this.deps.onApply?.(asTetherError(e).code);
          fail(cb, e);
        }
      },
      Get: (call, cb) => {
        try {
          admin(call);
          requireKnownKind(call.request.kind);
          const o = store.get(call.request.kind, call.request.name);
          if (!o)
            throw new TetherError(
              'TETHER_E_NOT_FOUND',
              `${call.request.kind} "${call.request.name}" not found`,
            );
          cb(null, toResource(this.decorate(redact(o.object))));
        } catch (e) {
          fail(cb, e);
        }
      },
      List: (call, cb) => {
        try {
          admin(call);
          const kind = knownKindOrAll(call.request.kind);
          const { revision, items } = store.list(kind);
          cb(null, { revision, items: items.map((i) => toResource(this.decorate(redact(i.object)))) });
        } catch (e) {
          fail(cb, e);
        }
      },
      Delete: async (call, cb) => {
        try {
          admin(call);
          const { kind, name, expect_revision } = call.request;
          requireKnownKind(kind);
          if (!store.get(kind, name))
            throw new TetherError('TETHER_E_NOT_FOUND', `${kind} "${name}" not found`);
          const res = await store.txn(
            this.registry.deleteOps(kind, name, expect_revision > 0 ? expect_revision : undefined),
          );
          cb(null, { revision: res.revision });
        } catch (e) {
          fail(cb, e);
        }
      },
      Watch: (call) => {
        try {
          admin(call);
        } catch (e) {
          call.emit('error', toGrpcError(asTetherError(e)));
          return;
        }
        let kind: string | undefined;
        try {
          kind = knownKindOrAll(call.request.kind);
        } catch (e) {
          call.emit('error', toGrpcError(asTetherError(e)));
          return;
        }
        const emit = (type: string, obj: TetherObject, revision: number) => {
          if (kind && obj.kind !== kind) return;
          const r: Resource = toResource(redact(obj));
          call.write({ type, resource: r, revision });
        };
        const unsubscribe = store.subscribe((events) => {
          for (const ev of events) emit(ev.type, ev.type === 'put' ? ev.object : ev.prev, ev.revision);
        });
        try {
          if (call.request.from_revision > 0) {
            for (const ev of store.history(call.request.from_revision, kind))
              emit(ev.type, ev.type === 'put' ? ev.object : ev.prev, ev.revision);
          }
        } catch (e) {
          unsubscribe();
          call.emit('error', toGrpcError(asTetherError(e)));
          return;
        }
        const watch = call as grpc.ServerWritableStream<unknown, unknown>;
        this.adminWatches.add(watch);
        const done = () => {
          unsubscribe();
          this.adminWatches.delete(watch);
        };
        call.on('cancelled', done);
        call.on('close', done);
        call.on('finish', done);
      },
      CreateToken: async (call, cb) => {
        try {
          admin(call);
          const r = call.request;
          const t = await this.registry.createToken(
            r.site,
            r.ttl_seconds || 3600,
            r.uses || 1,
            r.description,
          );
          cb(null, { token: t.token, id: t.id, expires_at: t.expiresAt, site: r.site });
        } catch (e) {
          fail(cb, e);
        }
      },
      ApproveNode: (call, cb) => {
        try {
          admin(call);
          this.registry
            .approve(call.request.name)
            .then((o) => cb(null, toResource(redact(o))))
            .catch((e: unknown) => fail(cb, e));
        } catch (e) {
          fail(cb, e);
        }
      },
      ResetNode: async (call, cb) => {
        try {
          const who = admin(call);
          const o = await this.registry.reset(call.request.name, who.id.name);
          this.hub.closeNode(call.request.name, 'TETHER_E_REVOKED', 'node reset by an administrator');
          this.endpoints.forget(call.request.name);
          this.deps.log.warn(
            { event: 'node_reset', node: call.request.name, by: who.id.name, revision: o.metadata.revision },
            'node reset: its name may enroll again',
          );
          cb(null, toResource(redact(o)));
        } catch (e) {
          fail(cb, e);
        }
      },
      RevokeNode: async (call, cb) => {
        try {
          admin(call);
          const o = await this.registry.revoke(call.request.name);
          this.hub.closeNode(call.request.name, 'TETHER_E_REVOKED', 'node revoked');
          cb(null, toResource(redact(o)));
        } catch (e) {
          fail(cb, e);
        }
      },
    };
  }

  /**
   * Stores what the node may claim of its endpoint report (src/controller/endpoints.ts) and
   * says what it refused; never throws, the answer goes back to the node.
   */
  endpointReport(
    node: string,
    site: string,
    reported: readonly Resource__Output[],
    mark?: ReportMark,
  ): Promise<ReportOutcome> {
    return this.endpoints
      .report(
        node,
        site,
        reported.map((r) => r.json),
        mark,
      )
      .catch((e: unknown) => {
        const err = asTetherError(e);
        const refusal = { name: '*', code: err.code, message: err.message, field: err.details.field ?? '' };
        this.endpoints.count(node, refusal);
        return { revision: this.deps.store.revision(), accepted: 0, refused: [refusal] };
      });
  }

  /** The Node record of an Approved node of `site`, or a PERMISSION/REVOKED refusal. */
  private requireSiteNode(node: string, site: string): NodeStatus {
    const n = this.deps.store.get('Node', node)?.object;
    const st = n?.status as NodeStatus | undefined;
    if (!n || (n.spec as { site?: unknown }).site !== site)
      throw new TetherError(
        'TETHER_E_PERMISSION',
        `node "${node.slice(0, 64)}" is not a node of site "${site}"`,
        {
          field: 'node',
          expected: `an approved node of site "${site}"`,
        },
      );
    if (st?.phase !== 'Approved')
      throw new TetherError(
        st?.phase === 'Revoked' || st?.phase === 'Reset' ? 'TETHER_E_REVOKED' : 'TETHER_E_PERMISSION',
        `node "${node.slice(0, 64)}" is ${st?.phase ? st.phase.toLowerCase() : 'not registered'}`,
        { field: 'node', expected: `an approved node of site "${site}"` },
      );
    return st;
  }

  /**
   * One relayed report of a proxy session: checked at once (a refusal is answered at once),
   * stored through the node's pacer with its mark. `pacers` belong to the session.
   */
  /**
   * A gateway report a site proxy relays for one of its site's nodes: taken only for an
   * Approved node of the proxy's own site, then checked as the node's own report would be
   * (GatewayReports.accept: that site's Gateway, a node it lists, its peers, bounded). The
   * reason it was dropped, or undefined.
   */
  relayedGateway(
    open: Session,
    r: { node: string; report?: GatewayReport__Output | null },
  ): string | undefined {
    const n = this.deps.store.get('Node', r.node)?.object;
    const site = (n?.spec as { site?: unknown } | undefined)?.site;
    const phase = (n?.status as NodeStatus | undefined)?.phase;
    if (!n || site !== open.site || phase !== 'Approved')
      return `node "${r.node.slice(0, 64)}" is not an approved node of site ${open.site}`;
    if (!r.report) return 'no report';
    return this.gateways.accept(r.node, open.site, r.report);
  }

  relayedReport(
    open: Session,
    r: { node: string; signed?: { payload: Buffer; signature: Buffer; cert_serial: string } | null },
    pacers: RelayPacers,
  ): void {
    const node = r.node;
    const checked = this.checkRelayed(open, r);
    if ('refusal' in checked) {
      // Answers waiting for an overflowed session are kept per node: a name that is not a
      // node of the site must not become a key (one per made-up name would grow without
      // bound), so those are kept under the proxy's own node.
      const n = this.deps.store.get('Node', node)?.object;
      const known = n !== undefined && (n.spec as { site?: unknown }).site === open.site;
      this.hub.notify(
        open,
        { endpoint_result: { ...checked.refusal, node: node.slice(0, 64) } },
        known ? node : open.node,
      );
      return;
    }
    let p = pacers.get(node);
    if (!p) {
      p = new Pacer(this.deps.config.endpointReportIntervalMs, ({ body, mark }) => {
        void this.endpointReport(
          node,
          open.site,
          body.endpoints.map((o) => ({ json: Buffer.from(JSON.stringify(o)) }) as Resource__Output),
          mark,
        ).then((result) => this.hub.notify(open, { endpoint_result: { ...result, node } }, node));
      });
      pacers.set(node, p);
    }
    p.offer(checked);
  }

  /**
   * Checks a report a site proxy relays for one of its site's nodes: an Approved node of the
   * proxy's site, signed with the certificate the controller issued to that node (whose
   * serial it still accepts), and newer than the last report accepted from that node. A
   * refusal is counted like any endpoint refusal: under the named node when it exists,
   * else under the node hosting the proxy (never a name the proxy made up).
   */
  checkRelayed(
    s: Session,
    r: { node: string; signed?: { payload: Buffer; signature: Buffer; cert_serial: string } | null },
  ): { body: EndpointReportBody; mark: ReportMark } | { refusal: ReportOutcome } {
    try {
      const st = this.requireSiteNode(r.node, s.site);
      if (!r.signed)
        throw new TetherError('TETHER_E_INVALID', 'relayed report carries no signed report', {
          field: 'relayed_report.signed',
          expected: "the node's SignedReport",
        });
      const serial = normalizeSerial(r.signed.cert_serial);
      if (!st.certSerials?.includes(serial))
        throw new TetherError(
          'TETHER_E_PERMISSION',
          `certificate ${serial.slice(0, 64)} is not current for node "${r.node}"`,
          {
            field: 'relayed_report.signed.cert_serial',
            expected: 'a serial the controller accepts for the node',
          },
        );
      const certPem = st.issuedCertPem;
      const cert = certPem ? new X509Certificate(certPem) : undefined;
      if (!cert || normalizeSerial(cert.serialNumber) !== serial || !verifyIssuedBy(cert, this.caX509))
        throw new TetherError(
          'TETHER_E_PERMISSION',
          `report of node "${r.node}" is signed by certificate ${serial.slice(0, 64)}, not by its current one`,
          { field: 'relayed_report.signed.cert_serial', expected: "the node's current certificate" },
        );
      const body = verifyReport(r.signed, certPem!, { node: r.node, site: s.site });
      const mark = markOf(body, serial);
      const last = this.lastMark(r.node);
      if (!isNewerReport(last, mark))
        throw new TetherError(
          'TETHER_E_CONFLICT',
          `report of node "${r.node}" (boot ${body.bootId.slice(0, 64)}, seq ${body.seq}) is not newer than the last one accepted (seq ${last?.seq})`,
          {
            field: 'relayed_report.signed.payload.seq',
            expected: `a sequence number above ${last?.seq}`,
          },
        );
      this.lastReports.set(r.node, mark);
      return { body, mark };
    } catch (e) {
      const err = asTetherError(e);
      const refusal = { name: '*', code: err.code, message: err.message, field: err.details.field ?? '' };
      const known = this.deps.store.get('Node', r.node) !== undefined;
      this.endpoints.count(known ? r.node : s.node, refusal);
      return { refusal: { revision: this.deps.store.revision(), accepted: 0, refused: [refusal] } };
    }
  }

  /** The newest mark known for a node: the one checked last, else (after a restart) the
   *  stored one. */
  private lastMark(node: string): ReportMark | undefined {
    return this.lastReports.get(node);
  }

  /**
   * A node that fails over from another replica may hold a revision this replica's copy has
   * not seen yet (its watch is a few milliseconds behind the store). Its hello waits for the
   * copy, bounded, so it resumes by delta instead of getting a snapshot as "ahead of the
   * controller"; a revision the store never reaches (a node from a wiped store) costs at
   * most the bound and then gets its snapshot as before.
   */
  private async catchUpTo(held: number): Promise<void> {
    const store = this.deps.store;
    if (!(held > store.revision()) || !store.caughtUp) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      store.caughtUp(held).catch(() => undefined),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, HELLO_CATCH_UP_MS);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
  }

  /** Brings the stored marks of these nodes into `lastReports` (a session's hello: the node
   *  itself, or for a proxy every node of its site), so the replay checks that follow stay
   *  synchronous and still refuse a report older than one stored before a restart or by
   *  another replica. */
  async loadMarks(nodes: readonly string[]): Promise<void> {
    const missing = nodes.filter((n) => !this.lastReports.has(n));
    const marks = await Promise.all(missing.map((n) => this.deps.store.reportMark(n)));
    missing.forEach((n, i) => {
      const m = marks[i];
      const cur = this.lastReports.get(n);
      if (m && (!cur || isNewerReport(cur, m))) this.lastReports.set(n, m);
    });
  }

  private siteNodes(site: string): string[] {
    return this.deps.store
      .list('Node')
      .items.filter((n) => (n.object.spec as { site?: unknown }).site === site)
      .map((n) => n.name);
  }

  /** A direct report that carries its signed form moves the node's replay mark too (returned,
   *  to be stored with the report), so a proxy cannot later relay an older report of the
   *  same node. */
  private noteDirectSigned(
    node: string,
    site: string,
    signed: { payload: Buffer; signature: Buffer; cert_serial: string },
  ): ReportMark | undefined {
    try {
      const certPem = (this.deps.store.get('Node', node)?.object.status as NodeStatus | undefined)
        ?.issuedCertPem;
      if (!certPem) return undefined;
      const body = verifyReport(signed, certPem, { node, site });
      const mark = markOf(body, new X509Certificate(certPem).serialNumber);
      if (!isNewerReport(this.lastMark(node), mark)) return undefined;
      this.lastReports.set(node, mark);
      return mark;
    } catch {
      /* the direct report itself is judged by mTLS; a bad signature on it only moves nothing */
      return undefined;
    }
  }

  /** Records the VTEP a hello declares; a refusal is counted and returned for the node. */
  private async recordVtep(node: string, vtep: string): Promise<ReportOutcome | undefined> {
    if (!vtep) return undefined;
    try {
      await this.registry.recordVtep(node, vtep);
      return undefined;
    } catch (e) {
      const err = asTetherError(e);
      const refusal = {
        name: 'hello',
        code: err.code,
        message: err.message,
        field: 'underlay_ip',
      };
      this.endpoints.count(node, refusal);
      return { revision: this.deps.store.revision(), accepted: 0, refused: [refusal] };
    }
  }

  /**
   * Floating IPs and gateway pools are claims across objects (an address inside its gateway's
   * pool, held once): judged on the store as it would be after this apply, before anything
   * is written, so a refused file changes nothing.
   */
  private checkGatewayClaims(objects: readonly TetherObject[], sources: readonly string[]): void {
    const touched = objects.filter((o) => o.kind === 'Gateway' || o.kind === 'FloatingIP');
    if (!touched.length) return;
    const after = new Map<string, TetherObject>();
    for (const kind of ['Gateway', 'FloatingIP'])
      for (const i of this.deps.store.list(kind).items)
        after.set(`${kind}/${i.object.metadata.name}`, i.object);
    const changed = new Set<string>();
    for (const o of touched) {
      after.set(`${o.kind}/${o.metadata.name}`, o);
      changed.add(`${o.kind}/${o.metadata.name}`);
    }
    const issues = gatewayClaimIssues([...after.values()], changed);
    const first = issues[0];
    if (!first) return;
    const idx = objects.findIndex((o) => o.kind === first.kind && o.metadata.name === first.name);
    throw new TetherError('TETHER_E_CLAIM', `${first.kind} ${first.name}: ${first.message}`, {
      file: sources[idx] ?? `item ${idx}`,
      field: first.field,
      expected: first.expected,
      errors: issues,
    });
  }

  /**
   * Gives applied VirtualNetworks their VNI and site blocks in the same transaction, so
   * nodes see one revision per apply instead of the apply and then the status.
   */
  private withNetworkStatus(ops: TxnOp[]): TxnOp[] {
    const puts = ops.filter((op): op is PutOp => op.op === 'put' && op.object.kind === 'VirtualNetwork');
    const statused = this.networks.withStatus(puts.map((op) => op.object));
    puts.forEach((op, i) => {
      op.object = statused[i]!;
      // The status was computed from this copy: a block the leader's reconciler gave a site
      // meanwhile (on this replica or another) must not be overwritten by an older picture.
      op.expectRevision ??= this.deps.store.get('VirtualNetwork', op.object.metadata.name)?.revision ?? 0;
    });
    return [...ops, ...vniClaimOps(this.deps.store, statused)];
  }

  /** Adds live session facts to Node objects on read (never stored: they change every second). */
  private decorate(obj: TetherObject): TetherObject {
    if (obj.kind === 'Gateway' || obj.kind === 'FloatingIP') return this.gateways.decorate(obj);
    if (obj.kind !== 'Node') return obj;
    const s = this.hub.info(obj.metadata.name);
    const site = (obj.spec as { site?: unknown } | undefined)?.site;
    const proxy = typeof site === 'string' ? this.hub.proxyInfo(obj.metadata.name, site) : undefined;
    return {
      ...obj,
      status: {
        ...(obj.status ?? {}),
        ...(proxy ? { proxySession: proxy } : {}),
        ...(this.endpoints.stats(obj.metadata.name)
          ? { endpointReports: this.endpoints.stats(obj.metadata.name) }
          : {}),
        session: s
          ? s.via
            ? { connected: s.connected, via: s.via, ackedRevision: s.acked, bootId: s.bootId }
            : {
                connected: true,
                ackedRevision: s.acked,
                sentRevision: s.sent,
                connectedAt: s.connectedAt,
                lastHeard: s.lastHeard,
              }
          : { connected: false },
      },
    };
  }
}

export { API_VERSION };
