/**
 * Every error Tether raises on purpose carries a stable code from this closed set, so
 * scripts and the CLI's exit codes can depend on it. docs/errors.md documents each code; a
 * unit test fails when one is missing there.
 */
export const ERROR_CODES = {
  TETHER_E_INVALID: 'input failed validation (file, field and expectation in the message)',
  TETHER_E_PARSE: 'input could not be parsed (YAML/JSON syntax)',
  TETHER_E_NOT_FOUND: 'the named object does not exist',
  TETHER_E_CONFLICT: 'compare-and-swap failed: the object changed since the revision given',
  TETHER_E_COMPACTED: 'the requested revision is older than the store keeps history for',
  TETHER_E_UNAUTHENTICATED: 'the peer presented no valid identity',
  TETHER_E_PERMISSION: 'the peer is known but not allowed to do this',
  TETHER_E_TOKEN: 'the enrollment token is unknown, used up, expired or for another site',
  TETHER_E_CA_MISMATCH: "the controller's CA does not match the fingerprint pinned in the token",
  TETHER_E_REVOKED: 'the node has been revoked',
  TETHER_E_PENDING_APPROVAL: 'the node waits for manual approval',
  TETHER_E_TOO_LARGE: 'a message exceeds the size limit',
  TETHER_E_UNAVAILABLE: 'the peer could not be reached (retryable)',
  TETHER_E_TIMEOUT: 'an operation did not finish in time (retryable)',
  TETHER_E_STATE: 'local state is missing or inconsistent (not initialised, corrupt file)',
  TETHER_E_KERNEL: 'the kernel refused an operation',
  TETHER_E_COMMAND: 'an external command failed',
  TETHER_E_HARDWARE: 'the hardware does not support what was asked',
  TETHER_E_PRECONDITION: 'a precondition for the operation does not hold',
  TETHER_E_INTERNAL: 'a bug: an invariant did not hold',
  TETHER_E_EXHAUSTED: 'an address pool (a site IPAM block) has no free address left',
  TETHER_E_CLAIM: 'a node claimed what is not its own (address, network, VTEP, MAC, status)',
  TETHER_E_KEY_TYPE: 'a certificate request carries a key type other than ECDSA P-256',
  TETHER_E_NODE_EXISTS: 'a node of that name is already enrolled; an admin must reset it first',
  TETHER_E_SITE_GONE: "the token's site no longer exists",
  TETHER_E_CONFIG: 'a configuration value (command-line flag, config field) is malformed',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ErrorDetails {
  /** File the bad input came from, when there is one. */
  file?: string;
  /** 1-based line in that file. */
  line?: number;
  /** Dotted/bracketed path of the offending field, e.g. `spec.subnets[0]`. */
  field?: string;
  /** What was expected there. */
  expected?: string;
  [key: string]: unknown;
}

const RETRYABLE: ReadonlySet<ErrorCode> = new Set([
  'TETHER_E_UNAVAILABLE',
  'TETHER_E_TIMEOUT',
  'TETHER_E_PENDING_APPROVAL',
]);

export class TetherError extends Error {
  override readonly name = 'TetherError';
  readonly code: ErrorCode;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.details = details;
  }

  get retryable(): boolean {
    return RETRYABLE.has(this.code);
  }

  toJSON(): { code: ErrorCode; message: string; details: ErrorDetails } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

export function isTetherError(e: unknown, code?: ErrorCode): e is TetherError {
  return e instanceof TetherError && (code === undefined || e.code === code);
}

/** Wraps anything thrown into a TetherError, keeping the original as cause. */
export function asTetherError(e: unknown, fallback: ErrorCode = 'TETHER_E_INTERNAL'): TetherError {
  if (e instanceof TetherError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new TetherError(fallback, message, {}, { cause: e });
}

/** Formats an error for a human: `file:line: field: message (expected …)`. */
export function describeError(e: TetherError): string {
  const d = e.details;
  const where = [d.file && (d.line ? `${d.file}:${d.line}` : d.file), d.field].filter(Boolean).join(': ');
  const expected = d.expected ? ` (expected ${d.expected})` : '';
  return `${where ? `${where}: ` : ''}${e.message}${expected} [${e.code}]`;
}
