// Original file: src/api/proto/tether/v1/tether.proto


export interface ShellStarted {
  'session_id'?: (string);
  'node'?: (string);
  'idle_timeout_seconds'?: (number);
  'max_seconds'?: (number);
}

export interface ShellStarted__Output {
  'session_id': (string);
  'node': (string);
  'idle_timeout_seconds': (number);
  'max_seconds': (number);
}
