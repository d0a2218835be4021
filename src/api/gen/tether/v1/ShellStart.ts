// Original file: src/api/proto/tether/v1/tether.proto


export interface ShellStart {
  'node'?: (string);
  /**
   * Why: required, 3 to 500 characters, kept in the audit record.
   */
  'reason'?: (string);
  'cols'?: (number);
  'rows'?: (number);
}

export interface ShellStart__Output {
  'node': (string);
  /**
   * Why: required, 3 to 500 characters, kept in the audit record.
   */
  'reason': (string);
  'cols': (number);
  'rows': (number);
}
