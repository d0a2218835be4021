// Original file: src/api/proto/tether/v1/tether.proto


/**
 * `payload` is canonical JSON of the open request (src/api/shell.ts: id, node, site,
 * operator, reason, cols, rows, issuedAt, expiresAt, maxSeconds, window), signed ECDSA P-256
 * with SHA-256 by the controller's server key; `cert_pem` is that certificate.
 */
export interface ShellOpen {
  'payload'?: (Buffer | Uint8Array | string);
  'signature'?: (Buffer | Uint8Array | string);
  'cert_pem'?: (string);
}

/**
 * `payload` is canonical JSON of the open request (src/api/shell.ts: id, node, site,
 * operator, reason, cols, rows, issuedAt, expiresAt, maxSeconds, window), signed ECDSA P-256
 * with SHA-256 by the controller's server key; `cert_pem` is that certificate.
 */
export interface ShellOpen__Output {
  'payload': (Buffer);
  'signature': (Buffer);
  'cert_pem': (string);
}
