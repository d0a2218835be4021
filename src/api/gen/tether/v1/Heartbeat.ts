// Original file: src/api/proto/tether/v1/tether.proto

import type { Long } from '@grpc/proto-loader';

export interface Heartbeat {
  'seq'?: (number | string | Long);
  'unix_ms'?: (number | string | Long);
}

export interface Heartbeat__Output {
  'seq': (number);
  'unix_ms': (number);
}
