// Original file: src/api/proto/tether/v1/tether.proto


export interface CreateTokenResponse {
  'token'?: (string);
  'id'?: (string);
  'expires_at'?: (string);
  'site'?: (string);
}

export interface CreateTokenResponse__Output {
  'token': (string);
  'id': (string);
  'expires_at': (string);
  'site': (string);
}
