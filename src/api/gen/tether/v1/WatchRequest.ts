// Original file: src/api/proto/tether/v1/tether.proto

import type { Long } from '@grpc/proto-loader';

export interface WatchRequest {
  'kind'?: (string);
  /**
   * Send events after this revision; 0 = only new events.
   */
  'from_revision'?: (number | string | Long);
}

export interface WatchRequest__Output {
  'kind': (string);
  /**
   * Send events after this revision; 0 = only new events.
   */
  'from_revision': (number);
}
