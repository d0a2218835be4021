// Original file: src/api/proto/tether/v1/tether.proto

import type { Long } from '@grpc/proto-loader';

export interface ApplyRequest {
  /**
   * Each item is one resource as JSON; all are validated first and written in one
   * transaction, or none is.
   */
  'json'?: (Buffer | Uint8Array | string)[];
  /**
   * Compare-and-swap: apply only if the object's current revision equals this (0 = any).
   */
  'expect_revision'?: (number | string | Long);
  /**
   * Where the input came from, for error messages.
   */
  'sources'?: (string)[];
}

export interface ApplyRequest__Output {
  /**
   * Each item is one resource as JSON; all are validated first and written in one
   * transaction, or none is.
   */
  'json': (Buffer)[];
  /**
   * Compare-and-swap: apply only if the object's current revision equals this (0 = any).
   */
  'expect_revision': (number);
  /**
   * Where the input came from, for error messages.
   */
  'sources': (string)[];
}
