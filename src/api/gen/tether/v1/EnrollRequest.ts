// Original file: src/api/proto/tether/v1/tether.proto

import type { HardwareFacts as _tether_v1_HardwareFacts, HardwareFacts__Output as _tether_v1_HardwareFacts__Output } from '../../tether/v1/HardwareFacts.js';

export interface EnrollRequest {
  /**
   * "<token-id>.<secret>" part of the join token.
   */
  'token'?: (string);
  'node_name'?: (string);
  /**
   * PEM PKCS#10 request; the key never leaves the node.
   */
  'csr_pem'?: (string);
  'facts'?: (_tether_v1_HardwareFacts | null);
  /**
   * The site the node expects to join (from its zero-touch config); empty = any. The
   * controller refuses a token for another site.
   */
  'expected_site'?: (string);
}

export interface EnrollRequest__Output {
  /**
   * "<token-id>.<secret>" part of the join token.
   */
  'token': (string);
  'node_name': (string);
  /**
   * PEM PKCS#10 request; the key never leaves the node.
   */
  'csr_pem': (string);
  'facts': (_tether_v1_HardwareFacts__Output | null);
  /**
   * The site the node expects to join (from its zero-touch config); empty = any. The
   * controller refuses a token for another site.
   */
  'expected_site': (string);
}
