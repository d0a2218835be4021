// Original file: src/api/proto/tether/v1/tether.proto


export interface ListShellSessionsRequest {
  /**
   * Only sessions on this node (empty: all).
   */
  'node'?: (string);
  /**
   * At most this many, newest first (0 = 100).
   */
  'limit'?: (number);
}

export interface ListShellSessionsRequest__Output {
  /**
   * Only sessions on this node (empty: all).
   */
  'node': (string);
  /**
   * At most this many, newest first (0 = 100).
   */
  'limit': (number);
}
