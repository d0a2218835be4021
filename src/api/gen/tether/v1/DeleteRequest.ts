// Original file: src/api/proto/tether/v1/tether.proto

import type { Long } from '@grpc/proto-loader';

export interface DeleteRequest {
  'kind'?: (string);
  'name'?: (string);
  'expect_revision'?: (number | string | Long);
}

export interface DeleteRequest__Output {
  'kind': (string);
  'name': (string);
  'expect_revision': (number);
}
