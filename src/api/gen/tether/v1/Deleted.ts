// Original file: src/api/proto/tether/v1/tether.proto


export interface Deleted {
  'kind'?: (string);
  'name'?: (string);
}

export interface Deleted__Output {
  'kind': (string);
  'name': (string);
}
