// Original file: src/api/proto/tether/v1/tether.proto


export interface ListRequest {
  'kind'?: (string);
}

export interface ListRequest__Output {
  'kind': (string);
}
