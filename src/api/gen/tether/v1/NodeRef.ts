// Original file: src/api/proto/tether/v1/tether.proto


export interface NodeRef {
  'name'?: (string);
}

export interface NodeRef__Output {
  'name': (string);
}
