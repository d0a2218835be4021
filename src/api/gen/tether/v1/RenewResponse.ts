// Original file: src/api/proto/tether/v1/tether.proto


export interface RenewResponse {
  'certificate_pem'?: (string);
  'ca_pem'?: (string);
}

export interface RenewResponse__Output {
  'certificate_pem': (string);
  'ca_pem': (string);
}
