// Original file: src/api/proto/tether/v1/tether.proto

import type { EndpointRefusal as _tether_v1_EndpointRefusal, EndpointRefusal__Output as _tether_v1_EndpointRefusal__Output } from '../../tether/v1/EndpointRefusal.js';
import type { Long } from '@grpc/proto-loader';

/**
 * The controller's answer to one EndpointReport: what it stored and what it refused.
 */
export interface EndpointReportResult {
  /**
   * Revision at which the accepted endpoints are stored.
   */
  'revision'?: (number | string | Long);
  'accepted'?: (number);
  'refused'?: (_tether_v1_EndpointRefusal)[];
  /**
   * The node the result is for; set on a proxy's WAN session (one session, many nodes).
   */
  'node'?: (string);
}

/**
 * The controller's answer to one EndpointReport: what it stored and what it refused.
 */
export interface EndpointReportResult__Output {
  /**
   * Revision at which the accepted endpoints are stored.
   */
  'revision': (number);
  'accepted': (number);
  'refused': (_tether_v1_EndpointRefusal__Output)[];
  /**
   * The node the result is for; set on a proxy's WAN session (one session, many nodes).
   */
  'node': (string);
}
