// Original file: src/api/proto/tether/v1/tether.proto

import type { Long } from '@grpc/proto-loader';

export interface ApplyResult {
  'kind'?: (string);
  'name'?: (string);
  'revision'?: (number | string | Long);
  /**
   * created | configured | unchanged
   */
  'action'?: (string);
}

export interface ApplyResult__Output {
  'kind': (string);
  'name': (string);
  'revision': (number);
  /**
   * created | configured | unchanged
   */
  'action': (string);
}
