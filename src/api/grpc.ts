import type { ProtoGrpcType } from './gen/tether.js';
import { loadProto } from './proto-loader.js';

export { PROTO_LOADER_OPTIONS } from './proto-loader.js';

export function tetherProto(): ProtoGrpcType {
  return loadProto<ProtoGrpcType>('tether/v1/tether.proto');
}

/** 4 MiB: enough for a large site snapshot chunk, small enough to bound memory per call. */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

export type * from './gen/tether/v1/ControllerMessage.js';
export type * from './gen/tether/v1/NodeMessage.js';
