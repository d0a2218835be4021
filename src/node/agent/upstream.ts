import { EventEmitter } from 'node:events';
import type * as grpc from '@grpc/grpc-js';
import type {
  ControllerMessage,
  ControllerMessage__Output,
} from '../../api/gen/tether/v1/ControllerMessage.js';
import type { NodeMessage, NodeMessage__Output } from '../../api/gen/tether/v1/NodeMessage.js';
import type { NodeSessionClient } from '../../api/gen/tether/v1/NodeSession.js';
import { tetherProto } from '../../api/grpc.js';
import { fromGrpcError } from '../../api/status.js';
import { TetherError } from '../../lib/errors.js';
import { CHANNEL_OPTIONS, controllerCredentials, siteNodeCredentials } from '../connect.js';
import { ControllerSet } from '../controllers.js';
import type { LoadedIdentity } from '../identity.js';

/**
 * One `NodeSession.Sync` call as the agent sees it, whatever carries it. `error` always
 * carries a TetherError (gRPC statuses are mapped with fromGrpcError), so the session logic
 * knows nothing of the transport. After `error` or `end` nothing more is emitted.
 */
export interface UpstreamCall {
  write(m: NodeMessage): void;
  cancel(): void;
  on(ev: 'data', fn: (m: ControllerMessage__Output) => void): this;
  on(ev: 'error', fn: (e: TetherError) => void): this;
  on(ev: 'end', fn: () => void): this;
}

/** The thing the agent syncs from: the controller, the site proxy, or an in-process server. */
export interface Upstream {
  /** `controller`, `proxy` or `memory`, for status and logs. */
  readonly kind: string;
  /** Where it is (HOST:PORT, or a name for in-process upstreams). */
  readonly address: string;
  /** Starts a new Sync call; the previous one, if any, should have been cancelled. */
  open(): UpstreamCall;
  /** Releases the channel; open() may be called again afterwards. */
  close(): void;
  /** The call opened last failed or ended: the next open() may go elsewhere (the
   *  controller's replicas rotate, src/node/controllers.ts). */
  failed?(): void;
}

/**
 * Picks the upstream for the next connection attempt; called before every connect. The
 * composition root supplies it (src/node/run.ts): by default the controller; with the site
 * proxy, the active proxy of the node's site, else the controller (docs/proxy.md).
 */
export type UpstreamChooser = (ctx: { attempt: number; lastError?: string }) => Upstream;

class GrpcCall extends EventEmitter implements UpstreamCall {
  constructor(
    private readonly call: grpc.ClientDuplexStream<NodeMessage, ControllerMessage__Output>,
    what: string,
  ) {
    super();
    call.on('data', (m: ControllerMessage__Output) => this.emit('data', m));
    call.on('error', (e) => this.emit('error', fromGrpcError(e, what)));
    call.on('end', () => this.emit('end'));
  }

  write(m: NodeMessage): void {
    this.call.write(m);
  }

  cancel(): void {
    this.call.cancel();
  }
}

export interface GrpcUpstreamOptions {
  kind: string;
  address: string;
  /** Built at every open(): a renewal replaces the node's certificate while it runs. */
  credentials: () => grpc.ChannelCredentials;
  channelOptions?: grpc.ChannelOptions;
}

/** NodeSession.Sync over mTLS gRPC; a new channel per open() so renewed credentials apply. */
export class GrpcUpstream implements Upstream {
  readonly kind: string;
  readonly address: string;
  private client: NodeSessionClient | undefined;

  constructor(private readonly opts: GrpcUpstreamOptions) {
    this.kind = opts.kind;
    this.address = opts.address;
  }

  open(): UpstreamCall {
    this.client?.close();
    const proto = tetherProto();
    this.client = new proto.tether.v1.NodeSession(
      this.opts.address,
      this.opts.credentials(),
      this.opts.channelOptions ?? CHANNEL_OPTIONS,
    );
    return new GrpcCall(this.client.Sync(), this.kind);
  }

  close(): void {
    this.client?.close();
    this.client = undefined;
  }
}

/**
 * The node's controller replicas (src/node/controllers.ts) as one upstream: open() dials the
 * current one, failed() moves the set on to the next, so the session's backoff and jitter
 * apply across the whole list. Checked by the controller identity in its certificate.
 */
export class ControllerUpstream implements Upstream {
  readonly kind = 'controller';
  private client: NodeSessionClient | undefined;
  private openedTo: string | undefined;

  constructor(
    private readonly identity: LoadedIdentity,
    readonly controllers: ControllerSet,
  ) {}

  get address(): string {
    return this.controllers.current;
  }

  open(): UpstreamCall {
    this.client?.close();
    const proto = tetherProto();
    const to = this.controllers.current;
    this.openedTo = to;
    this.client = new proto.tether.v1.NodeSession(
      to,
      controllerCredentials(this.identity.caPem, this.identity.credentials),
      CHANNEL_OPTIONS,
    );
    return new GrpcCall(this.client.Sync(), this.kind);
  }

  failed(): void {
    if (this.openedTo) this.controllers.failed(this.openedTo);
  }

  close(): void {
    this.client?.close();
    this.client = undefined;
  }
}

/** The controller replicas the node knows, as its upstream (see ControllerUpstream). */
export function controllerUpstream(
  identity: LoadedIdentity,
  controllers?: ControllerSet,
): ControllerUpstream {
  return new ControllerUpstream(identity, controllers ?? new ControllerSet(identity.controllers));
}

/**
 * A node of this node's own site acting as its site proxy (docs/proxy.md): the server must
 * present a certificate of our CA naming spiffe://tether/site/<our site>/node/<any>.
 */
export function siteProxyUpstream(identity: LoadedIdentity, address: string): GrpcUpstream {
  return new GrpcUpstream({
    kind: 'proxy',
    address,
    credentials: () => siteNodeCredentials(identity.caPem, identity.credentials, identity.site),
  });
}

/** Certificate renewal always goes to the controller, whatever the session's upstream is:
 *  each replica in turn from the current one, while they are unreachable. */
export function controllerRenewer(
  identity: LoadedIdentity,
  controllers: ControllerSet = new ControllerSet(identity.controllers),
): (csrPem: string) => Promise<string> {
  return async (csrPem) => {
    const proto = tetherProto();
    const order = controllers.inOrder();
    for (const [i, addr] of order.entries()) {
      const client = new proto.tether.v1.NodeSession(
        addr,
        controllerCredentials(identity.caPem, identity.credentials),
        CHANNEL_OPTIONS,
      );
      try {
        return await new Promise<string>((resolve, reject) =>
          client.RenewCertificate({ csr_pem: csrPem }, { deadline: Date.now() + 30_000 }, (err, r) =>
            err || !r ? reject(fromGrpcError(err)) : resolve(r.certificate_pem),
          ),
        );
      } catch (e) {
        if (!(e instanceof TetherError && e.retryable) || i === order.length - 1) throw e;
      } finally {
        client.close();
      }
    }
    throw new TetherError('TETHER_E_UNAVAILABLE', 'no controller to renew with');
  };
}

// ------------------------------------------------------------------ in-memory upstream

const syncMethod = () => tetherProto().tether.v1.NodeSession.service.Sync;

/**
 * The server side of an in-memory Sync call: shaped like grpc-js' ServerDuplexStream in the
 * parts a Sync handler uses (data/end/cancelled/close events, write, end, emit('error',
 * status), destroy, getAuthContext, getPeer). Messages cross as protobuf bytes through the
 * real service serializers, so handlers see exactly what they would see from gRPC.
 */
export class MemoryServerCall extends EventEmitter {
  /** True once the client cancelled or the link failed. */
  cancelled = false;
  private done = false;

  constructor(
    private readonly link: MemoryLink,
    private readonly toClient: {
      data: (bytes: Buffer) => void;
      end: () => void;
      error: (e: TetherError) => void;
    },
    private readonly peerCertDer: Buffer | undefined,
  ) {
    super();
  }

  write(m: ControllerMessage): boolean {
    if (this.done) return false;
    const ser = syncMethod().responseSerialize as (v: ControllerMessage) => Buffer;
    // A hub may hand over pre-encoded messages (src/controller/server.ts); anything with
    // `bytes` is taken as already serialised.
    const bytes = (m as unknown as { bytes?: unknown }).bytes;
    this.link.carry(() => this.toClient.data(Buffer.isBuffer(bytes) ? bytes : ser(m)));
    return true;
  }

  end(): void {
    if (this.done) return;
    this.done = true;
    this.link.carry(() => this.toClient.end(), true);
  }

  override emit(ev: string | symbol, ...args: unknown[]): boolean {
    // grpc-js servers fail a call by emitting 'error' with a status on it.
    if (ev === 'error' && !this.done) {
      this.done = true;
      const err = fromGrpcError(args[0], 'memory upstream');
      this.link.carry(() => this.toClient.error(err), true);
      return true;
    }
    return super.emit(ev, ...args);
  }

  destroy(): void {
    if (this.done) return;
    this.done = true;
    this.link.carry(
      () => this.toClient.error(new TetherError('TETHER_E_UNAVAILABLE', 'memory upstream: call destroyed')),
      true,
    );
  }

  getAuthContext(): { sslPeerCertificate?: { raw?: Buffer } } {
    return this.peerCertDer ? { sslPeerCertificate: { raw: this.peerCertDer } } : {};
  }

  getPeer(): string {
    return 'memory';
  }

  /** @internal the client cancelled. */
  clientCancelled(): void {
    if (this.done && this.cancelled) return;
    this.cancelled = true;
    this.done = true;
    super.emit('cancelled');
    super.emit('close');
  }
}

/** Delivery between the two ends: in order, asynchronously (like a socket), droppable. */
class MemoryLink {
  /** While set, every message in either direction is silently lost (a dead WAN). */
  blackhole = false;

  carry(fn: () => void, control = false): void {
    // Control events (end, errors) are not lost in a blackhole: a dead link shows as silence
    // only in what the peers send each other; tearing down is local to each end.
    if (this.blackhole && !control) return;
    queueMicrotask(fn);
  }
}

class MemoryClientCall extends EventEmitter implements UpstreamCall {
  server!: MemoryServerCall;
  private finished = false;

  constructor(private readonly link: MemoryLink) {
    super();
  }

  deliver(bytes: Buffer): void {
    if (this.finished) return;
    const de = syncMethod().responseDeserialize as (b: Buffer) => ControllerMessage__Output;
    this.emit('data', de(bytes));
  }

  finish(e?: TetherError): void {
    if (this.finished) return;
    this.finished = true;
    if (e) this.emit('error', e);
    else this.emit('end');
  }

  write(m: NodeMessage): void {
    if (this.finished) return;
    const ser = syncMethod().requestSerialize as (v: NodeMessage) => Buffer;
    const de = syncMethod().requestDeserialize as (b: Buffer) => NodeMessage__Output;
    const bytes = ser(m);
    this.link.carry(() => {
      if (!this.server.cancelled) this.server.emit('data', de(bytes));
    });
  }

  cancel(): void {
    if (this.finished) return;
    queueMicrotask(() => this.server.clientCancelled());
    this.finish(new TetherError('TETHER_E_UNAVAILABLE', 'call cancelled by the node'));
  }
}

/**
 * An upstream served by a handler in this process (the controller's SessionHub, a site
 * proxy): for tests of the session protocol with an injected clock and no sockets.
 */
export class MemoryUpstream implements Upstream {
  readonly kind = 'memory';
  readonly link = new MemoryLink();
  /** Calls opened so far (the last one is the live one). */
  readonly calls: MemoryServerCall[] = [];

  constructor(
    private readonly handler: (call: MemoryServerCall) => void,
    readonly address = 'memory',
    private readonly peerCertDer?: Buffer,
  ) {}

  open(): UpstreamCall {
    const client = new MemoryClientCall(this.link);
    const server = new MemoryServerCall(
      this.link,
      {
        data: (b) => client.deliver(b),
        end: () => client.finish(),
        error: (e) => client.finish(e),
      },
      this.peerCertDer,
    );
    client.server = server;
    this.calls.push(server);
    queueMicrotask(() => this.handler(server));
    return client;
  }

  close(): void {}

  /** Drops every message both ways from now on, without closing anything (a silent WAN). */
  partition(): void {
    this.link.blackhole = true;
  }

  heal(): void {
    this.link.blackhole = false;
  }
}
