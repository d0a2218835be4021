// Original file: src/api/proto/tether/v1/tether.proto


export interface Goodbye {
  'code'?: (string);
  'reason'?: (string);
}

export interface Goodbye__Output {
  'code': (string);
  'reason': (string);
}
