// Original file: src/api/proto/tether/v1/tether.proto


export interface GetRequest {
  'kind'?: (string);
  'name'?: (string);
}

export interface GetRequest__Output {
  'kind': (string);
  'name': (string);
}
