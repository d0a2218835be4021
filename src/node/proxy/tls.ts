import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { MAX_MESSAGE_BYTES } from '../../api/grpc.js';
import { identityOf } from '../../lib/pki.js';

export const DEFAULT_PROXY_PORT = 7444;

/**
 * Channel credentials for talking to a node of `site` (an agent to its site proxy, a
 * probe to a candidate): our CA only, and the server's certificate must carry the identity
 * of a node of the same site. A node of another site, or the controller, is refused.
 */
export function siteNodeCredentials(
  caPem: string,
  client: { keyPem: string; certPem: string },
  site: string,
): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(
    Buffer.from(caPem),
    Buffer.from(client.keyPem),
    Buffer.from(client.certPem),
    {
      checkServerIdentity: (_host, cert) => {
        const id = cert.raw ? identityOf(new X509Certificate(cert.raw)) : undefined;
        return id?.role === 'node' && id.site === site
          ? undefined
          : new Error(`peer is not a node of site "${site}"`);
      },
    },
  );
}

export const SITE_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  // A LAN: keepalives are cheap and find a dead proxy host faster than heartbeats alone.
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.initial_reconnect_backoff_ms': 200,
  'grpc.max_reconnect_backoff_ms': 2000,
  'grpc.ssl_target_name_override': 'tether-node',
};
