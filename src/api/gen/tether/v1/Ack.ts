// Original file: src/api/proto/tether/v1/tether.proto

import type { Long } from '@grpc/proto-loader';

export interface Ack {
  /**
   * Everything up to and including this revision is on the node's disk.
   */
  'revision'?: (number | string | Long);
}

export interface Ack__Output {
  /**
   * Everything up to and including this revision is on the node's disk.
   */
  'revision': (number);
}
