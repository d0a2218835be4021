import type * as grpc from '@grpc/grpc-js';
import { MAX_MESSAGE_BYTES } from '../../api/grpc.js';

export const DEFAULT_PROXY_PORT = 7444;

// Credentials for a node of the own site: siteNodeCredentials in src/node/connect.ts.

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
