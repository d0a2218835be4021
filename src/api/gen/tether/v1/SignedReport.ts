// Original file: src/api/proto/tether/v1/tether.proto


/**
 * An endpoint report as its node signed it: `payload` is the canonical JSON
 * {node, site, seq, at, endpoints} (src/api/signed-report.ts), `signature` is ECDSA P-256
 * with SHA-256 over the payload bytes (DER), by the key of the certificate `cert_serial`.
 */
export interface SignedReport {
  'payload'?: (Buffer | Uint8Array | string);
  'signature'?: (Buffer | Uint8Array | string);
  'cert_serial'?: (string);
}

/**
 * An endpoint report as its node signed it: `payload` is the canonical JSON
 * {node, site, seq, at, endpoints} (src/api/signed-report.ts), `signature` is ECDSA P-256
 * with SHA-256 over the payload bytes (DER), by the key of the certificate `cert_serial`.
 */
export interface SignedReport__Output {
  'payload': (Buffer);
  'signature': (Buffer);
  'cert_serial': (string);
}
