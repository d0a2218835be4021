// Original file: src/api/proto/tether/v1/tether.proto


export interface ShellEnd {
  /**
   * exit | signal | idle-timeout | max-duration | closed | node-lost | refused | error
   */
  'ending'?: (string);
  'exit_code'?: (number);
  'signal'?: (number);
  'code'?: (string);
  'message'?: (string);
}

export interface ShellEnd__Output {
  /**
   * exit | signal | idle-timeout | max-duration | closed | node-lost | refused | error
   */
  'ending': (string);
  'exit_code': (number);
  'signal': (number);
  'code': (string);
  'message': (string);
}
