// Original file: src/api/proto/tether/v1/tether.proto

import type { Long } from '@grpc/proto-loader';

export interface ProbeResponse {
  'node'?: (string);
  /**
   * true while this node runs the site's proxy and serves NodeSession on this port.
   */
  'active'?: (boolean);
  /**
   * Unix ms since when it is active (0 when standby).
   */
  'active_since'?: (number | string | Long);
  /**
   * Highest controller revision this node holds.
   */
  'revision'?: (number | string | Long);
  /**
   * Whether its WAN session to the controller is up.
   */
  'wan_up'?: (boolean);
}

export interface ProbeResponse__Output {
  'node': (string);
  /**
   * true while this node runs the site's proxy and serves NodeSession on this port.
   */
  'active': (boolean);
  /**
   * Unix ms since when it is active (0 when standby).
   */
  'active_since': (number);
  /**
   * Highest controller revision this node holds.
   */
  'revision': (number);
  /**
   * Whether its WAN session to the controller is up.
   */
  'wan_up': (boolean);
}
