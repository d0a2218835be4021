// Original file: src/api/proto/tether/v1/tether.proto

import type { Resource as _tether_v1_Resource, Resource__Output as _tether_v1_Resource__Output } from '../../tether/v1/Resource.js';
import type { Long } from '@grpc/proto-loader';

export interface ListResponse {
  'revision'?: (number | string | Long);
  'items'?: (_tether_v1_Resource)[];
}

export interface ListResponse__Output {
  'revision': (number);
  'items': (_tether_v1_Resource__Output)[];
}
