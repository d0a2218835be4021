// Original file: src/api/proto/tether/v1/tether.proto


export interface RenewRequest {
  'csr_pem'?: (string);
}

export interface RenewRequest__Output {
  'csr_pem': (string);
}
