// Original file: src/api/proto/tether/v1/tether.proto

import type { GatewayPeerReport as _tether_v1_GatewayPeerReport, GatewayPeerReport__Output as _tether_v1_GatewayPeerReport__Output } from '../../tether/v1/GatewayPeerReport.js';
import type { Long } from '@grpc/proto-loader';

export interface GatewayReport {
  'gateway'?: (string);
  'role'?: (string);
  'running'?: (boolean);
  'config_hash'?: (string);
  'error'?: (string);
  'peers'?: (_tether_v1_GatewayPeerReport)[];
  /**
   * Floating IPs bound on this node: "name=address>ip".
   */
  'bound'?: (string)[];
  'announced'?: (number | string | Long);
}

export interface GatewayReport__Output {
  'gateway': (string);
  'role': (string);
  'running': (boolean);
  'config_hash': (string);
  'error': (string);
  'peers': (_tether_v1_GatewayPeerReport__Output)[];
  /**
   * Floating IPs bound on this node: "name=address>ip".
   */
  'bound': (string)[];
  'announced': (number);
}
