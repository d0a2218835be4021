// Original file: src/api/proto/tether/v1/tether.proto

import type { Long } from '@grpc/proto-loader';

export interface CreateTokenRequest {
  'site'?: (string);
  'ttl_seconds'?: (number | string | Long);
  'uses'?: (number);
  'description'?: (string);
}

export interface CreateTokenRequest__Output {
  'site': (string);
  'ttl_seconds': (number);
  'uses': (number);
  'description': (string);
}
