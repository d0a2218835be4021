// Original file: src/api/proto/tether/v1/tether.proto

import type { Long } from '@grpc/proto-loader';

/**
 * The local gateway of a node (docs/gateway.md): what its BIRD reports per peer, for
 * `tether get gateways`. The controller keeps it only for the Gateway of the node's own site
 * (from its certificate), bounded; it is live status, not stored.
 */
export interface GatewayPeerReport {
  'name'?: (string);
  'state'?: (string);
  'bgp_state'?: (string);
  'imported'?: (number | string | Long);
  'exported'?: (number | string | Long);
  'since'?: (string);
  'last_error'?: (string);
}

/**
 * The local gateway of a node (docs/gateway.md): what its BIRD reports per peer, for
 * `tether get gateways`. The controller keeps it only for the Gateway of the node's own site
 * (from its certificate), bounded; it is live status, not stored.
 */
export interface GatewayPeerReport__Output {
  'name': (string);
  'state': (string);
  'bgp_state': (string);
  'imported': (number);
  'exported': (number);
  'since': (string);
  'last_error': (string);
}
