import { X509Certificate } from 'node:crypto';
import { type DetailedPeerCertificate, connect as tlsConnect } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { MAX_MESSAGE_BYTES } from '../api/grpc.js';
import { TetherError } from '../lib/errors.js';
import { certFingerprint, type Identity, identityOf, verifyIssuedBy } from '../lib/pki.js';

export function splitHostPort(addr: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(addr);
  if (!m)
    throw new TetherError('TETHER_E_INVALID', `bad controller address "${addr}"`, {
      field: 'controller',
      expected: 'HOST:PORT',
    });
  return { host: m[1]!, port: Number(m[2]) };
}

/**
 * Fetches the controller's CA from its TLS handshake and checks it against the fingerprint
 * pinned in the join token, before any secret is sent. The server presents its chain with
 * the CA, so no unauthenticated RPC is needed.
 */
export async function fetchPinnedCa(
  address: string,
  expectedFingerprint: string,
  timeoutMs = 10_000,
): Promise<string> {
  const { host, port } = splitHostPort(address);
  const peer = await new Promise<DetailedPeerCertificate>((resolve, reject) => {
    const sock = tlsConnect({
      host,
      port,
      rejectUnauthorized: false,
      ALPNProtocols: ['h2'],
      servername: /^[\d.:]+$/.test(host) ? undefined : host,
    });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(
        new TetherError('TETHER_E_UNAVAILABLE', `no TLS handshake from ${address} within ${timeoutMs} ms`),
      );
    }, timeoutMs);
    sock.once('secureConnect', () => {
      clearTimeout(timer);
      const cert = sock.getPeerCertificate(true);
      sock.end();
      resolve(cert);
    });
    sock.once('error', (e) => {
      clearTimeout(timer);
      reject(
        new TetherError(
          'TETHER_E_UNAVAILABLE',
          `cannot reach controller ${address}: ${e.message}`,
          {},
          { cause: e },
        ),
      );
    });
  });
  // Walk to the self-signed root the server presented.
  let root: DetailedPeerCertificate = peer;
  for (
    let i = 0;
    i < 8 && root.issuerCertificate && root.issuerCertificate !== root && root.issuerCertificate.raw;
    i++
  ) {
    if (root.issuerCertificate.fingerprint256 === root.fingerprint256) break;
    root = root.issuerCertificate;
  }
  const fp = certFingerprint(root.raw);
  if (fp !== expectedFingerprint) {
    throw new TetherError(
      'TETHER_E_CA_MISMATCH',
      `controller ${address} presented CA ${fp.slice(0, 16)}…, the token pins ${expectedFingerprint.slice(0, 16)}…`,
      {
        expected: 'the controller the token was created on',
      },
    );
  }
  const caX = new X509Certificate(root.raw);
  if (!verifyIssuedBy(new X509Certificate(peer.raw), caX)) {
    throw new TetherError('TETHER_E_CA_MISMATCH', 'controller certificate is not signed by the pinned CA');
  }
  return caX.toString();
}

/** Channel credentials that trust only our CA and accept only a server whose certificate
 *  identity `accept` admits; host names are not checked (see below). */
function pinnedCredentials(
  caPem: string,
  client: { keyPem: string; certPem: string } | undefined,
  accept: (id: Identity | undefined) => boolean,
  what: string,
): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(
    Buffer.from(caPem),
    client ? Buffer.from(client.keyPem) : null,
    client ? Buffer.from(client.certPem) : null,
    {
      checkServerIdentity: (_host, cert) => {
        const id = cert.raw ? identityOf(new X509Certificate(cert.raw)) : undefined;
        return accept(id) ? undefined : new Error(`peer is not ${what}`);
      },
    },
  );
}

/** Channel credentials that trust only our CA and accept only a peer whose certificate
 *  carries the controller identity; host names are not checked, since remote sites often
 *  reach the controller through NAT or by an address that changes. */
export function controllerCredentials(
  caPem: string,
  client?: { keyPem: string; certPem: string },
): grpc.ChannelCredentials {
  return pinnedCredentials(caPem, client, (id) => id?.role === 'controller', 'a Tether controller');
}

/** Channel credentials for a node of the agent's own site serving as its site proxy
 *  (docs/proxy.md): the peer must carry spiffe://tether/site/<site>/node/<any>. */
export function siteNodeCredentials(
  caPem: string,
  client: { keyPem: string; certPem: string },
  site: string,
): grpc.ChannelCredentials {
  return pinnedCredentials(
    caPem,
    client,
    (id) => id?.role === 'node' && id.site === site,
    `a node of site ${site}`,
  );
}

export const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  'grpc.keepalive_time_ms': 20_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  // We do our own reconnect with jittered backoff; keep grpc's short so it doesn't stack.
  'grpc.initial_reconnect_backoff_ms': 1000,
  'grpc.max_reconnect_backoff_ms': 5000,
  'grpc.ssl_target_name_override': 'tether-controller',
};
