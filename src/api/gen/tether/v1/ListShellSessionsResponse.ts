// Original file: src/api/proto/tether/v1/tether.proto


export interface ListShellSessionsResponse {
  /**
   * Each an audit record as JSON (docs/shell.md "Audit record").
   */
  'records'?: (Buffer | Uint8Array | string)[];
}

export interface ListShellSessionsResponse__Output {
  /**
   * Each an audit record as JSON (docs/shell.md "Audit record").
   */
  'records': (Buffer)[];
}
