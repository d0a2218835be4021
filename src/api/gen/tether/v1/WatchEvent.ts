// Original file: src/api/proto/tether/v1/tether.proto

import type { Resource as _tether_v1_Resource, Resource__Output as _tether_v1_Resource__Output } from '../../tether/v1/Resource.js';
import type { Long } from '@grpc/proto-loader';

export interface WatchEvent {
  /**
   * put | delete
   */
  'type'?: (string);
  'resource'?: (_tether_v1_Resource | null);
  'revision'?: (number | string | Long);
}

export interface WatchEvent__Output {
  /**
   * put | delete
   */
  'type': (string);
  'resource': (_tether_v1_Resource__Output | null);
  'revision': (number);
}
