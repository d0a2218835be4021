// Original file: src/api/proto/tether/v1/tether.proto

import type { Long } from '@grpc/proto-loader';

export interface SnapshotEnd {
  /**
   * After this marker, whatever the node holds that the snapshot did not re-send is stale.
   */
  'revision'?: (number | string | Long);
  'count'?: (number);
}

export interface SnapshotEnd__Output {
  /**
   * After this marker, whatever the node holds that the snapshot did not re-send is stale.
   */
  'revision': (number);
  'count': (number);
}
