// Original file: src/api/proto/tether/v1/tether.proto

import type { Long } from '@grpc/proto-loader';

/**
 * What a site proxy's agents hold, batched on its WAN session.
 */
export interface AgentState {
  'node'?: (string);
  /**
   * Highest controller revision the node acknowledged as on its disk.
   */
  'acked'?: (number | string | Long);
  'connected'?: (boolean);
  'boot_id'?: (string);
  'underlay_ip'?: (string);
}

/**
 * What a site proxy's agents hold, batched on its WAN session.
 */
export interface AgentState__Output {
  'node': (string);
  /**
   * Highest controller revision the node acknowledged as on its disk.
   */
  'acked': (number);
  'connected': (boolean);
  'boot_id': (string);
  'underlay_ip': (string);
}
