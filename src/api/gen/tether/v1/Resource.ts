// Original file: src/api/proto/tether/v1/tether.proto

import type { Long } from '@grpc/proto-loader';

/**
 * A resource in Kubernetes shape. The whole object travels as JSON so that new kinds and
 * fields need no change here; the controller validates it against its schema.
 */
export interface Resource {
  'kind'?: (string);
  'name'?: (string);
  /**
   * UTF-8 JSON of {apiVersion, kind, metadata, spec, status}.
   */
  'json'?: (Buffer | Uint8Array | string);
  /**
   * Revision of the write that produced this version (metadata.revision).
   */
  'revision'?: (number | string | Long);
}

/**
 * A resource in Kubernetes shape. The whole object travels as JSON so that new kinds and
 * fields need no change here; the controller validates it against its schema.
 */
export interface Resource__Output {
  'kind': (string);
  'name': (string);
  /**
   * UTF-8 JSON of {apiVersion, kind, metadata, spec, status}.
   */
  'json': (Buffer);
  /**
   * Revision of the write that produced this version (metadata.revision).
   */
  'revision': (number);
}
