// Original file: src/api/proto/tether/v1/tether.proto

import type { Long } from '@grpc/proto-loader';

export interface SnapshotBegin {
  'revision'?: (number | string | Long);
  'reason'?: (string);
}

export interface SnapshotBegin__Output {
  'revision': (number);
  'reason': (string);
}
