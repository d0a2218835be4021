// Original file: src/api/proto/tether/v1/tether.proto

import type { ApplyResult as _tether_v1_ApplyResult, ApplyResult__Output as _tether_v1_ApplyResult__Output } from '../../tether/v1/ApplyResult.js';
import type { Long } from '@grpc/proto-loader';

export interface ApplyResponse {
  'revision'?: (number | string | Long);
  'results'?: (_tether_v1_ApplyResult)[];
}

export interface ApplyResponse__Output {
  'revision': (number);
  'results': (_tether_v1_ApplyResult__Output)[];
}
