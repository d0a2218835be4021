import type { Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket, type Server as TlsServer } from 'node:tls';
import { TetherError } from './errors.js';
import type { Logger } from './log.js';

/**
 * Bounds on connections that have not (yet) shown a client certificate from our CA. The
 * controller's port must accept certificate-less TLS (enrollment comes before a node has a
 * certificate), so without these a peer could hold sockets open for ever. A port that
 * requires a client certificate (the site proxy's) still needs the handshake bound and the
 * per-address caps: a peer that connects and never finishes the handshake holds a socket
 * and a TLS context until then.
 */
export interface ConnectionLimits {
  /** A connection must finish its TLS handshake within this long (absolute, not idle). */
  handshakeTimeoutMs: number;
  /** A connection without a valid client certificate is closed after this long without a call in progress. */
  unauthenticatedIdleMs: number;
  /** …and after this long in total, busy or not: enrollment is one short call. */
  unauthenticatedMaxAgeMs: number;
  /** Connections from one address, in any state (sites behind NAT share one address). */
  maxConnectionsPerPeer: number;
  /** Connections from one address that are handshaking or have no valid client certificate. */
  maxUnauthenticatedPerPeer: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  handshakeTimeoutMs: 10_000,
  unauthenticatedIdleMs: 15_000,
  unauthenticatedMaxAgeMs: 120_000,
  maxConnectionsPerPeer: 4096,
  maxUnauthenticatedPerPeer: 64,
};

export interface ListenerStats {
  open: number;
  authenticated: number;
  refusedOverCap: number;
  handshakeTimeouts: number;
  tlsErrors: number;
  idleClosed: number;
  ageClosed: number;
  /** TCP connections accepted (before any cap), since start. */
  accepted: number;
  /** The most connections accepted within one wall-clock second since start: the height of
   *  a reconnect storm (e.g. every site coming back after a controller restart). */
  peakAcceptsPerSecond: number;
}

interface Conn {
  readonly peer: string;
  readonly key: string;
  readonly raw: Socket;
  tls?: TLSSocket;
  authenticated: boolean;
  calls: number;
  timers: NodeJS.Timeout[];
  idle?: NodeJS.Timeout;
  closed: boolean;
}

interface PeerCount {
  total: number;
  unauthenticated: number;
}

export interface GuardedListenerOptions {
  keyPem: string;
  /**
   * Refuse, in the handshake, a client without a certificate of our CA (the site proxy: only
   * nodes connect to it). Off for the controller, where a node enrolls before it has one.
   */
  requireClientCert?: boolean;
  /** Server certificate chain (leaf first, CA included, so nodes can pin the CA). */
  certPem: string;
  caPem: string;
  limits: ConnectionLimits;
  /** Receives every connection whose handshake finished (grpc-js' connection injector). */
  inject: (socket: TLSSocket) => void;
  /**
   * Whether a client certificate that chains to our CA is one the controller currently
   * accepts (a revoked, reset or superseded node certificate is not): a connection counts as
   * authenticated, and escapes the idle and age bounds, only while this says yes.
   */
  accepts?: (certDer: Buffer) => boolean;
  log: Logger;
}

/** The tuple that names one live TCP connection to our one listening port. */
function connKey(address: string | undefined, port: number | undefined): string {
  return `${address ?? '?'}|${port ?? 0}`;
}

/** Parses `host:port`, `[v6]:port` or `:port` (all addresses). */
export function parseListenAddress(address: string): { host: string | undefined; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new TetherError('TETHER_E_INVALID', `bad listen address "${address}"`, {
      field: 'listen',
      expected: 'HOST:PORT or [IPv6]:PORT',
    });
  }
  const host = m[1] ?? m[2];
  return { host: host ? host : undefined, port };
}

/**
 * A gRPC server's TCP+TLS front (the controller's port and the site proxy's): accepts
 * sockets itself and hands each finished TLS connection to grpc-js, so that it can refuse
 * connections over the per-address caps before spending a handshake on them, bound the handshake, close certificate-less
 * connections that sit idle, and destroy every connection at shutdown (grpc-js'
 * forceShutdown does not reach injected or channelz-less sessions).
 */
export class GuardedListener {
  private readonly server: TlsServer;
  private readonly conns = new Map<string, Conn>();
  private readonly peers = new Map<string, PeerCount>();
  private readonly counters = {
    refusedOverCap: 0,
    handshakeTimeouts: 0,
    tlsErrors: 0,
    idleClosed: 0,
    ageClosed: 0,
    accepted: 0,
    peakAcceptsPerSecond: 0,
  };
  private acceptSecond = 0;
  private acceptsThisSecond = 0;

  constructor(private readonly opts: GuardedListenerOptions) {
    const limits = opts.limits;
    this.server = createTlsServer({
      key: opts.keyPem,
      cert: opts.certPem,
      ca: opts.caPem,
      // Unless required, asked for only: a node enrolls before it has a certificate.
      // `authorized` then says whether the one presented chains to our CA; grpc-js exposes
      // only those.
      requestCert: true,
      rejectUnauthorized: opts.requireClientCert === true,
      ALPNProtocols: ['h2'],
      minVersion: 'TLSv1.2',
      handshakeTimeout: limits.handshakeTimeoutMs,
    });
    // Before the TLS layer sees the socket: refusing costs no handshake.
    this.server.prependListener('connection', (raw: Socket) => this.onConnection(raw));
    this.server.on('secureConnection', (tls: TLSSocket) => this.onSecure(tls));
    this.server.on('tlsClientError', (err: Error & { code?: string }, tls: TLSSocket) => {
      if (err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') this.counters.handshakeTimeouts++;
      else this.counters.tlsErrors++;
      tls.destroy();
    });
  }

  listen(address: string): Promise<number> {
    const { host, port } = parseListenAddress(address);
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => {
        reject(
          new TetherError(
            'TETHER_E_UNAVAILABLE',
            `cannot listen on ${address}: ${e.message}`,
            {},
            { cause: e },
          ),
        );
      };
      this.server.once('error', onError);
      this.server.listen({ host, port, backlog: 4096 }, () => {
        this.server.off('error', onError);
        this.server.on('error', (e) => this.opts.log.error({ err: e.message }, 'listener error'));
        const a = this.server.address();
        resolve(typeof a === 'object' && a ? a.port : port);
      });
    });
  }

  /**
   * Marks a call in progress on the connection `remoteAddress:remotePort` (from the gRPC
   * call's connection info); the returned function marks it finished. Certificate-less
   * connections count as idle only while no call runs.
   */
  callStarted(remoteAddress: string | undefined, remotePort: number | undefined): () => void {
    const c = this.conns.get(connKey(remoteAddress, remotePort));
    if (!c || c.closed) return () => {};
    c.calls++;
    if (c.idle) clearTimeout(c.idle);
    c.idle = undefined;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      c.calls--;
      if (c.calls === 0) this.armIdle(c);
    };
  }

  stats(): ListenerStats {
    let authenticated = 0;
    for (const c of this.conns.values()) if (c.authenticated) authenticated++;
    return { open: this.conns.size, authenticated, ...this.counters };
  }

  /** Stops accepting; existing connections stay until they end or destroyAll(). */
  stopAccepting(): void {
    if (this.server.listening) this.server.close();
  }

  /** Destroys every connection at once; resolves when all are closed. */
  async destroyAll(): Promise<void> {
    const closing = [...this.conns.values()].map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.raw.destroyed && c.closed) return resolve();
          c.raw.once('close', () => resolve());
          c.tls?.destroy();
          c.raw.destroy();
        }),
    );
    await Promise.all(closing);
  }

  private peerCount(peer: string): PeerCount {
    let p = this.peers.get(peer);
    if (!p) {
      p = { total: 0, unauthenticated: 0 };
      this.peers.set(peer, p);
    }
    return p;
  }

  private countAccept(): void {
    this.counters.accepted++;
    const sec = Math.floor(Date.now() / 1000);
    if (sec !== this.acceptSecond) {
      this.acceptSecond = sec;
      this.acceptsThisSecond = 0;
    }
    this.acceptsThisSecond++;
    if (this.acceptsThisSecond > this.counters.peakAcceptsPerSecond)
      this.counters.peakAcceptsPerSecond = this.acceptsThisSecond;
  }

  private onConnection(raw: Socket): void {
    this.countAccept();
    const limits = this.opts.limits;
    const peer = raw.remoteAddress ?? '?';
    const p = this.peerCount(peer);
    if (p.total >= limits.maxConnectionsPerPeer || p.unauthenticated >= limits.maxUnauthenticatedPerPeer) {
      this.counters.refusedOverCap++;
      if (p.total === 0) this.peers.delete(peer);
      // Errors from the TLS layer wrapping the dead socket are expected; nobody listens.
      raw.on('error', () => {});
      raw.destroy();
      return;
    }
    const c: Conn = {
      peer,
      key: connKey(raw.remoteAddress, raw.remotePort),
      raw,
      authenticated: false,
      calls: 0,
      timers: [],
      closed: false,
    };
    p.total++;
    p.unauthenticated++;
    this.conns.set(c.key, c);
    raw.on('error', () => {});
    raw.once('close', () => this.onClose(c));
    // Absolute, unlike the TLS layer's own (an inactivity timer a trickle of bytes resets).
    c.timers.push(
      setTimeout(() => {
        if (c.tls || c.closed) return;
        this.counters.handshakeTimeouts++;
        raw.destroy();
      }, limits.handshakeTimeoutMs),
    );
  }

  private onSecure(tls: TLSSocket): void {
    const c = this.conns.get(connKey(tls.remoteAddress, tls.remotePort));
    if (!c || c.closed) {
      tls.destroy();
      return;
    }
    c.tls = tls;
    tls.on('error', () => {});
    // `authorized` is true only for a certificate that verified against our CA.
    if (tls.authorized && this.currentlyAccepted(tls)) {
      c.authenticated = true;
      this.peerCount(c.peer).unauthenticated--;
    } else {
      this.bound(c, tls);
    }
    this.opts.inject(tls);
  }

  private currentlyAccepted(tls: TLSSocket): boolean {
    if (!this.opts.accepts) return true;
    const raw = tls.getPeerCertificate()?.raw;
    return raw !== undefined && this.opts.accepts(raw);
  }

  /** An unauthenticated connection lives under the idle and age bounds. */
  private bound(c: Conn, tls: TLSSocket): void {
    c.timers.push(
      setTimeout(() => {
        if (c.closed) return;
        this.counters.ageClosed++;
        tls.destroy();
      }, this.opts.limits.unauthenticatedMaxAgeMs),
    );
    this.armIdle(c);
  }

  /**
   * Looks at every authenticated connection again (a node was revoked, reset or deleted):
   * one whose certificate is no longer accepted is counted as unauthenticated from now on
   * and falls under the idle and age bounds, so it cannot be held open for ever.
   */
  recheck(): void {
    for (const c of this.conns.values()) {
      if (!c.authenticated || c.closed || !c.tls || this.currentlyAccepted(c.tls)) continue;
      c.authenticated = false;
      this.peerCount(c.peer).unauthenticated++;
      this.bound(c, c.tls);
    }
  }

  /**
   * Destroys at once every connection whose peer certificate `match` names (the site proxy:
   * a node its roster no longer lists as current); returns how many. Unlike recheck(), which
   * leaves such a connection its idle and age bounds, for when holding it is already wrong.
   */
  closeWhere(match: (certDer: Buffer) => boolean): number {
    let n = 0;
    for (const c of this.conns.values()) {
      if (c.closed || !c.tls) continue;
      const raw = c.tls.getPeerCertificate()?.raw;
      if (raw === undefined || !match(raw)) continue;
      n++;
      c.tls.destroy();
      c.raw.destroy();
    }
    return n;
  }

  private armIdle(c: Conn): void {
    if (c.authenticated || c.closed || c.calls > 0) return;
    if (c.idle) clearTimeout(c.idle);
    c.idle = setTimeout(() => {
      if (c.closed || c.calls > 0) return;
      this.counters.idleClosed++;
      c.tls?.destroy();
      c.raw.destroy();
    }, this.opts.limits.unauthenticatedIdleMs);
  }

  private onClose(c: Conn): void {
    if (c.closed) return;
    c.closed = true;
    for (const t of c.timers) clearTimeout(t);
    if (c.idle) clearTimeout(c.idle);
    if (this.conns.get(c.key) === c) this.conns.delete(c.key);
    const p = this.peerCount(c.peer);
    p.total--;
    if (!c.authenticated) p.unauthenticated--;
    if (p.total <= 0) this.peers.delete(c.peer);
  }
}
