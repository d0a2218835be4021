// Original file: src/api/proto/tether/v1/tether.proto

import type { GatewayReport as _tether_v1_GatewayReport, GatewayReport__Output as _tether_v1_GatewayReport__Output } from '../../tether/v1/GatewayReport.js';

/**
 * The gateway report (live status, docs/gateway.md) of a node that syncs through its site's
 * proxy, relayed by that proxy. The controller takes it only for an Approved node of the
 * proxy's own site, with the same checks as the node's own report.
 */
export interface RelayedGatewayReport {
  'node'?: (string);
  'report'?: (_tether_v1_GatewayReport | null);
}

/**
 * The gateway report (live status, docs/gateway.md) of a node that syncs through its site's
 * proxy, relayed by that proxy. The controller takes it only for an Approved node of the
 * proxy's own site, with the same checks as the node's own report.
 */
export interface RelayedGatewayReport__Output {
  'node': (string);
  'report': (_tether_v1_GatewayReport__Output | null);
}
