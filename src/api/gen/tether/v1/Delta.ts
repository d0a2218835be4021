// Original file: src/api/proto/tether/v1/tether.proto

import type { Resource as _tether_v1_Resource, Resource__Output as _tether_v1_Resource__Output } from '../../tether/v1/Resource.js';
import type { Deleted as _tether_v1_Deleted, Deleted__Output as _tether_v1_Deleted__Output } from '../../tether/v1/Deleted.js';
import type { Long } from '@grpc/proto-loader';

/**
 * A batch of changes that together move the node to `revision`.
 */
export interface Delta {
  'revision'?: (number | string | Long);
  'put'?: (_tether_v1_Resource)[];
  'deleted'?: (_tether_v1_Deleted)[];
}

/**
 * A batch of changes that together move the node to `revision`.
 */
export interface Delta__Output {
  'revision': (number);
  'put': (_tether_v1_Resource__Output)[];
  'deleted': (_tether_v1_Deleted__Output)[];
}
