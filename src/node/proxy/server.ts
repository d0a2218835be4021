import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { ControllerMessage } from '../../api/gen/tether/v1/ControllerMessage.js';
import type { NodeMessage__Output } from '../../api/gen/tether/v1/NodeMessage.js';
import type { ProbeRequest__Output } from '../../api/gen/tether/v1/ProbeRequest.js';
import type { ProbeResponse } from '../../api/gen/tether/v1/ProbeResponse.js';
import { MAX_MESSAGE_BYTES, tetherProto } from '../../api/grpc.js';
import { toGrpcError } from '../../api/status.js';
import { asTetherError, TetherError } from '../../lib/errors.js';
import { type ConnectionLimits, GuardedListener, type ListenerStats } from '../../lib/listener.js';
import type { Logger } from '../../lib/log.js';
import { identityOf, serialOf } from '../../lib/pki.js';
import type { AgentPeer, AgentSession, ProxyCore } from './core.js';
import { encodedSessionService } from './encoded.js';
import { type RosterEntry, rosterDisowns, rosterDropped } from './roster.js';

type AuthCall = { getAuthContext(): { sslPeerCertificate?: { raw?: Buffer } } };

export interface ProxyServerOptions {
  site: string;
  caPem: string;
  credentials: { keyPem: string; certPem: string };
  log: Logger;
  /** The core while this node is the site's active proxy; undefined on a standby. */
  core: () => ProxyCore | undefined;
  probe: () => ProbeResponse;
  /** The site roster this node goes by now (the active core's, else its agent's). */
  roster?: () => ReadonlyMap<string, RosterEntry>;
  /** Time an agent has between opening Sync and its hello (default 10 s). */
  helloTimeoutMs?: number;
  /** Bounds of the port's connections (default PROXY_CONNECTION_LIMITS). */
  limits?: Partial<ConnectionLimits>;
}

/**
 * The proxy port's connection bounds (docs/proxy.md "The proxy port"). Every connection
 * must show a node certificate in the handshake, so the idle and age bounds of certificate-
 * less connections never apply here; what a peer can hold is a handshake, and only until the
 * deadline. A node holds one connection for its agent and one for its election probes; the
 * caps leave room for nodes behind one address (NAT, or tests and benchmarks that connect
 * 20 agents from 127.0.0.1 at once).
 */
export const PROXY_CONNECTION_LIMITS: ConnectionLimits = {
  handshakeTimeoutMs: 10_000,
  unauthenticatedIdleMs: 15_000,
  unauthenticatedMaxAgeMs: 120_000,
  maxConnectionsPerPeer: 64,
  maxUnauthenticatedPerPeer: 32,
};

/** HTTP/2 streams one connection may hold open: an agent needs one Sync (plus a Probe). */
export const PROXY_MAX_CONCURRENT_STREAMS = 4;

/** The agent's certificate, checked by TLS against our CA; here: a node of our site. */
export function peerOf(call: AuthCall, site: string): AgentPeer {
  const raw = call.getAuthContext().sslPeerCertificate?.raw;
  if (!raw) throw new TetherError('TETHER_E_UNAUTHENTICATED', 'a node certificate is required');
  const cert = new X509Certificate(raw);
  const id = identityOf(cert);
  if (id?.role !== 'node') throw new TetherError('TETHER_E_PERMISSION', 'only nodes may use a site proxy');
  if (id.site !== site)
    throw new TetherError('TETHER_E_PERMISSION', `node "${id.name}" is in site "${id.site}", not "${site}"`);
  return { node: id.name, site: id.site, serial: serialOf(cert), certPem: cert.toString() };
}

/** How long a dropped certificate's connection stays after its session's goodbye. */
const GOODBYE_GRACE_MS = 250;

/** The node and serial a certificate of our site names, or undefined (any other). */
function certPeer(der: Buffer, site: string): { node: string; serial: string } | undefined {
  try {
    const cert = new X509Certificate(der);
    const id = identityOf(cert);
    if (id?.role !== 'node' || id.site !== site) return undefined;
    return { node: id.name, serial: serialOf(cert) };
  } catch {
    return undefined;
  }
}

/**
 * The proxy port of every node: SiteProxy.Probe always (the election needs it from
 * standbys too), NodeSession.Sync while this node is active. mTLS with the node's own
 * certificate; clients must present a certificate of our CA (checked by TLS) naming a node
 * of our site, and Sync also needs the roster to list it as Approved with that serial.
 */
export class ProxyServer {
  private readonly server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    // No ping-policing options: grpc-js's server ignores them (see the controller's server).
    'grpc.max_concurrent_streams': PROXY_MAX_CONCURRENT_STREAMS,
    // Like the controller's: grpc-js otherwise keeps channelz counters, traces and child
    // trackers for every agent connection and call, which nothing here reads (proxy-rss).
    'grpc.enable_channelz': 0,
  });
  private readonly calls = new Set<grpc.ServerDuplexStream<NodeMessage__Output, ControllerMessage>>();
  private readonly listener: GuardedListener;
  /** Serializes a message once for every agent it is written to (ProxyCoreOptions.encode). */
  readonly encode: (m: ControllerMessage) => ControllerMessage;

  constructor(private readonly opts: ProxyServerOptions) {
    const proto = tetherProto();
    const session = encodedSessionService();
    this.encode = session.encode;
    this.server.addService(proto.tether.v1.SiteProxy.service, {
      Probe: (
        call: grpc.ServerUnaryCall<ProbeRequest__Output, ProbeResponse>,
        cb: grpc.sendUnaryData<ProbeResponse>,
      ) => {
        try {
          peerOf(call as unknown as AuthCall, opts.site);
          cb(null, opts.probe());
        } catch (e) {
          cb(toGrpcError(asTetherError(e)));
        }
      },
    });
    this.server.addService(session.service, {
      Sync: (call: grpc.ServerDuplexStream<NodeMessage__Output, ControllerMessage>) => this.handleSync(call),
      RenewCertificate: (_call: unknown, cb: grpc.sendUnaryData<unknown>) =>
        cb(
          toGrpcError(
            new TetherError(
              'TETHER_E_PRECONDITION',
              'certificates are renewed at the controller, not the site proxy',
            ),
          ),
        ),
    });
    // TLS is ours (the listener's), so that a connection over the per-address caps is refused
    // before its handshake and a handshake that never finishes is cut at its deadline;
    // grpc-js gets the finished TLSSocket and reads the peer certificate from it as usual.
    const injector = this.server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    this.listener = new GuardedListener({
      keyPem: opts.credentials.keyPem,
      certPem: opts.credentials.certPem,
      caPem: opts.caPem,
      requireClientCert: true,
      limits: { ...PROXY_CONNECTION_LIMITS, ...opts.limits },
      inject: (socket) => injector.injectConnection(socket),
      // A certificate the roster disowns (revoked, reset, superseded) counts as
      // unauthenticated: the idle and age bounds apply, it cannot hold a connection open.
      accepts: (der) => !this.disowned(der),
      log: opts.log.child({ component: 'proxy-listener' }),
    });
  }

  /** Whether the roster says this certificate is not a current one of its node. */
  private disowned(der: Buffer): boolean {
    const roster = this.opts.roster?.();
    if (!roster) return false;
    const p = certPeer(der, this.opts.site);
    return p !== undefined && rosterDisowns(roster, p.node, p.serial);
  }

  /**
   * The roster may have changed: every connection of a certificate it no longer lists as
   * current (revoked, reset, deleted, superseded) is closed, with the calls on it, also an
   * idle one or one that only probes. The controller's revocation thus reaches connections
   * held at the proxy as it reaches its own.
   */
  dropRevoked(prev: ReadonlyMap<string, RosterEntry>, next: ReadonlyMap<string, RosterEntry>): void {
    // Called after every delta that touches Nodes, Endpoints or networks: nothing to look at
    // unless a node's phase or serials changed.
    const same = (a: RosterEntry | undefined, b: RosterEntry | undefined) =>
      a !== undefined &&
      b !== undefined &&
      a.phase === b.phase &&
      a.certSerials.join() === b.certSerials.join();
    const names = new Set([...prev.keys(), ...next.keys()]);
    if ([...names].every((n) => same(prev.get(n), next.get(n)))) return;
    const drop = () => {
      const n = this.listener.closeWhere((der) => {
        const p = certPeer(der, this.opts.site);
        return p !== undefined && rosterDropped(prev, next, p.node, p.serial);
      });
      if (n > 0)
        this.opts.log.warn({ connections: n }, 'closed proxy connections of certificates no longer current');
    };
    // The core has just written the session's goodbye (TETHER_E_REVOKED): a moment for it to
    // reach the agent, which then stops instead of reconnecting to find out.
    setTimeout(drop, GOODBYE_GRACE_MS).unref();
  }

  /** Binds host:port (port 0: any); returns the bound port. */
  listen(host: string, port: number): Promise<number> {
    return this.listener.listen(host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);
  }

  /** Connections of the proxy port: open, refused over a cap, handshakes cut (status, tests). */
  connectionStats(): ListenerStats {
    return this.listener.stats();
  }

  /** Sync calls registered now (status, tests). */
  get openCalls(): number {
    return this.calls.size;
  }

  /** Ends every NodeSession call (this node stepped down); Probe keeps being served. */
  endSessions(): void {
    for (const c of [...this.calls]) c.end();
    this.calls.clear();
  }

  async close(): Promise<void> {
    this.listener.stopAccepting();
    this.endSessions();
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 1000);
      this.server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
    this.server.forceShutdown();
    // forceShutdown does not reach injected connections.
    await this.listener.destroyAll();
  }

  /**
   * One agent's Sync call. Public so that an in-process transport shaped like grpc-js'
   * ServerDuplexStream (MemoryServerCall in src/node/agent/upstream.ts) can be served too.
   */
  handleSync(call: grpc.ServerDuplexStream<NodeMessage__Output, ControllerMessage>): void {
    let peer: AgentPeer;
    try {
      peer = peerOf(call as unknown as AuthCall, this.opts.site);
    } catch (e) {
      call.emit('error', toGrpcError(asTetherError(e)));
      return;
    }
    const core = this.opts.core();
    if (!core) {
      const err = new TetherError('TETHER_E_UNAVAILABLE', 'this node is not the site proxy (standby)');
      call.emit('error', toGrpcError(err));
      return;
    }
    try {
      // Before the call counts for anything: a revoked or unknown certificate gets no session
      // slot and no hello deadline to hold.
      core.admit(peer);
    } catch (e) {
      const err = asTetherError(e);
      this.opts.log.warn({ node: peer.node, code: err.code, err: err.message }, 'agent session refused');
      call.emit('error', toGrpcError(err));
      return;
    }
    this.calls.add(call);
    let session: AgentSession | undefined;
    let failed = false;
    const fail = (err: TetherError) => {
      clearTimeout(helloTimer);
      if (failed) return;
      failed = true;
      this.opts.log.warn({ node: peer.node, code: err.code, err: err.message }, 'agent session refused');
      this.calls.delete(call);
      call.emit('error', toGrpcError(err));
    };
    const helloMs = this.opts.helloTimeoutMs ?? 10_000;
    const helloTimer = setTimeout(() => {
      if (!session)
        fail(new TetherError('TETHER_E_TIMEOUT', `no hello within ${helloMs} ms of opening the session`));
    }, helloMs);
    helloTimer.unref();
    const link = {
      write: (m: ControllerMessage, written?: () => void) => {
        call.write(m, written);
      },
      end: () => call.end(),
    };
    const done = () => {
      clearTimeout(helloTimer);
      this.calls.delete(call);
      if (session) core.detach(session);
    };
    call.on('data', (m: NodeMessage__Output) => {
      if (failed) return;
      try {
        if (!session) {
          if (!m.hello)
            throw new TetherError('TETHER_E_INVALID', 'the first message must be a hello', {
              field: 'hello',
            });
          session = core.open(link, peer, m.hello);
          clearTimeout(helloTimer);
          return;
        }
        core.message(session, m);
      } catch (e) {
        if (session) core.detach(session);
        fail(asTetherError(e));
      }
    });
    call.on('end', () => {
      done();
      call.end();
    });
    call.on('error', done);
    call.on('cancelled', done);
  }
}
