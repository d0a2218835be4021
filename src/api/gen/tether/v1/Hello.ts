// Original file: src/api/proto/tether/v1/tether.proto

import type { Long } from '@grpc/proto-loader';

export interface Hello {
  'node_name'?: (string);
  /**
   * Highest revision the node holds on disk; 0 when it holds nothing.
   */
  'held_revision'?: (number | string | Long);
  'version'?: (string);
  /**
   * Random per process start, so the controller can tell a restart from a reconnect.
   */
  'boot_id'?: (string);
}

export interface Hello__Output {
  'node_name': (string);
  /**
   * Highest revision the node holds on disk; 0 when it holds nothing.
   */
  'held_revision': (number);
  'version': (string);
  /**
   * Random per process start, so the controller can tell a restart from a reconnect.
   */
  'boot_id': (string);
}
