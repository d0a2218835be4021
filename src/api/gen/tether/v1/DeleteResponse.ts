// Original file: src/api/proto/tether/v1/tether.proto

import type { Long } from '@grpc/proto-loader';

export interface DeleteResponse {
  'revision'?: (number | string | Long);
}

export interface DeleteResponse__Output {
  'revision': (number);
}
