// Original file: src/api/proto/tether/v1/tether.proto

import type { SignedReport as _tether_v1_SignedReport, SignedReport__Output as _tether_v1_SignedReport__Output } from '../../tether/v1/SignedReport.js';

/**
 * A signed endpoint report of one of the site's nodes, relayed by the site's proxy.
 */
export interface RelayedReport {
  'node'?: (string);
  'signed'?: (_tether_v1_SignedReport | null);
}

/**
 * A signed endpoint report of one of the site's nodes, relayed by the site's proxy.
 */
export interface RelayedReport__Output {
  'node': (string);
  'signed': (_tether_v1_SignedReport__Output | null);
}
