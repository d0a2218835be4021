// Original file: src/api/proto/tether/v1/tether.proto


export interface ProbeRequest {
  'node'?: (string);
}

export interface ProbeRequest__Output {
  'node': (string);
}
