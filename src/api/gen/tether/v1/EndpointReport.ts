// Original file: src/api/proto/tether/v1/tether.proto

import type { Resource as _tether_v1_Resource, Resource__Output as _tether_v1_Resource__Output } from '../../tether/v1/Resource.js';
import type { SignedReport as _tether_v1_SignedReport, SignedReport__Output as _tether_v1_SignedReport__Output } from '../../tether/v1/SignedReport.js';

/**
 * The complete set of workload endpoints on the node (CNI attachments), sent after hello
 * and on every change. The controller stores only what the node may claim (docs/resources.md
 * "Endpoint"): node and site from the certificate, a network covering the site, an address in
 * the node's share, the node's recorded VTEP, no address or MAC held by another node; it
 * answers every report with an EndpointReportResult.
 */
export interface EndpointReport {
  'endpoints'?: (_tether_v1_Resource)[];
  /**
   * The same report signed by the node's own key (src/api/signed-report.ts), so that a site
   * proxy can relay it and the controller can check that the node itself said it. Optional
   * on a node's direct session (mTLS already names the node).
   */
  'signed'?: (_tether_v1_SignedReport | null);
}

/**
 * The complete set of workload endpoints on the node (CNI attachments), sent after hello
 * and on every change. The controller stores only what the node may claim (docs/resources.md
 * "Endpoint"): node and site from the certificate, a network covering the site, an address in
 * the node's share, the node's recorded VTEP, no address or MAC held by another node; it
 * answers every report with an EndpointReportResult.
 */
export interface EndpointReport__Output {
  'endpoints': (_tether_v1_Resource__Output)[];
  /**
   * The same report signed by the node's own key (src/api/signed-report.ts), so that a site
   * proxy can relay it and the controller can check that the node itself said it. Optional
   * on a node's direct session (mTLS already names the node).
   */
  'signed': (_tether_v1_SignedReport__Output | null);
}
