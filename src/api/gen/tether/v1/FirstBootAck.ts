// Original file: src/api/proto/tether/v1/tether.proto

import type { Long } from '@grpc/proto-loader';

export interface FirstBootAck {
  'seq'?: (number | string | Long);
}

export interface FirstBootAck__Output {
  'seq': (number);
}
