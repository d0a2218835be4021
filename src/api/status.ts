import * as grpc from '@grpc/grpc-js';
import { ERROR_CODES, type ErrorCode, type ErrorDetails, TetherError } from '../lib/errors.js';
import { parseJson } from '../lib/input.js';

/** Maps Tether error codes onto gRPC status codes; the exact Tether code and details ride
 *  along in trailing metadata so the client can rebuild the same TetherError. */
const TO_GRPC: Partial<Record<ErrorCode, grpc.status>> = {
  TETHER_E_INVALID: grpc.status.INVALID_ARGUMENT,
  TETHER_E_PARSE: grpc.status.INVALID_ARGUMENT,
  TETHER_E_NOT_FOUND: grpc.status.NOT_FOUND,
  TETHER_E_CONFLICT: grpc.status.ABORTED,
  TETHER_E_COMPACTED: grpc.status.OUT_OF_RANGE,
  TETHER_E_UNAUTHENTICATED: grpc.status.UNAUTHENTICATED,
  TETHER_E_PERMISSION: grpc.status.PERMISSION_DENIED,
  TETHER_E_TOKEN: grpc.status.PERMISSION_DENIED,
  TETHER_E_REVOKED: grpc.status.PERMISSION_DENIED,
  TETHER_E_PENDING_APPROVAL: grpc.status.UNAVAILABLE,
  TETHER_E_TOO_LARGE: grpc.status.RESOURCE_EXHAUSTED,
  TETHER_E_UNAVAILABLE: grpc.status.UNAVAILABLE,
  TETHER_E_TIMEOUT: grpc.status.DEADLINE_EXCEEDED,
  TETHER_E_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  TETHER_E_CLAIM: grpc.status.PERMISSION_DENIED,
  TETHER_E_KEY_TYPE: grpc.status.INVALID_ARGUMENT,
  TETHER_E_NODE_EXISTS: grpc.status.ALREADY_EXISTS,
  TETHER_E_SITE_GONE: grpc.status.FAILED_PRECONDITION,
};

export function toGrpcError(e: TetherError): Partial<grpc.StatusObject> & { code: grpc.status } {
  const metadata = new grpc.Metadata();
  metadata.set('tether-code', e.code);
  metadata.set('tether-details', JSON.stringify(e.details));
  return { code: TO_GRPC[e.code] ?? grpc.status.INTERNAL, details: e.message, metadata };
}

function isServiceError(e: unknown): e is grpc.ServiceError {
  return typeof e === 'object' && e !== null && 'code' in e && 'metadata' in e;
}

/** Rebuilds a TetherError from whatever a gRPC call failed with. */
export function fromGrpcError(e: unknown, what = 'controller'): TetherError {
  if (e instanceof TetherError) return e;
  if (!isServiceError(e)) return new TetherError('TETHER_E_INTERNAL', String(e), {}, { cause: e });
  const code = e.metadata.get('tether-code')[0];
  if (typeof code === 'string' && code in ERROR_CODES) {
    let details: ErrorDetails = {};
    try {
      details = parseJson(String(e.metadata.get('tether-details')[0] ?? '{}'), {
        source: 'error details',
      }) as ErrorDetails;
    } catch {
      /* details are optional decoration */
    }
    return new TetherError(code as ErrorCode, e.details, details, { cause: e });
  }
  switch (e.code) {
    case grpc.status.UNAVAILABLE:
      return new TetherError('TETHER_E_UNAVAILABLE', `${what} unreachable: ${e.details}`, {}, { cause: e });
    case grpc.status.DEADLINE_EXCEEDED:
      return new TetherError('TETHER_E_TIMEOUT', `${what} did not answer in time`, {}, { cause: e });
    case grpc.status.RESOURCE_EXHAUSTED:
      return new TetherError('TETHER_E_TOO_LARGE', `message refused: ${e.details}`, {}, { cause: e });
    case grpc.status.UNAUTHENTICATED:
      return new TetherError('TETHER_E_UNAUTHENTICATED', e.details, {}, { cause: e });
    case grpc.status.PERMISSION_DENIED:
      return new TetherError('TETHER_E_PERMISSION', e.details, {}, { cause: e });
    default:
      return new TetherError(
        'TETHER_E_INTERNAL',
        `${what}: ${e.details || e.message}`,
        { grpcCode: e.code },
        { cause: e },
      );
  }
}
