import type { ErrorCode } from '../lib/errors.js';

/** Documented exit codes (README "Exit codes"); scripts may rely on them. */
export const EXIT = {
  OK: 0,
  ERROR: 1,
  USAGE: 2,
  NOT_FOUND: 3,
  INVALID: 4,
  UNAVAILABLE: 5,
  DENIED: 6,
  CHECK_FAILED: 7,
  CONFLICT: 8,
} as const;

export function exitCodeFor(code: ErrorCode): number {
  switch (code) {
    case 'TETHER_E_NOT_FOUND':
      return EXIT.NOT_FOUND;
    case 'TETHER_E_INVALID':
    case 'TETHER_E_PARSE':
    case 'TETHER_E_TOO_LARGE':
    case 'TETHER_E_KEY_TYPE':
    case 'TETHER_E_CONFIG':
      return EXIT.INVALID;
    case 'TETHER_E_UNAVAILABLE':
    case 'TETHER_E_TIMEOUT':
      return EXIT.UNAVAILABLE;
    case 'TETHER_E_UNAUTHENTICATED':
    case 'TETHER_E_PERMISSION':
    case 'TETHER_E_TOKEN':
    case 'TETHER_E_CA_MISMATCH':
    case 'TETHER_E_REVOKED':
    case 'TETHER_E_PENDING_APPROVAL':
    case 'TETHER_E_CLAIM':
    case 'TETHER_E_NODE_EXISTS':
    case 'TETHER_E_SITE_GONE':
      return EXIT.DENIED;
    case 'TETHER_E_CONFLICT':
    case 'TETHER_E_COMPACTED':
      return EXIT.CONFLICT;
    case 'TETHER_E_PRECONDITION':
    case 'TETHER_E_HARDWARE':
      return EXIT.CHECK_FAILED;
    default:
      return EXIT.ERROR;
  }
}
