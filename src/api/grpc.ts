import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from './gen/tether.js';

/** Options must match scripts/gen-proto.mjs so the generated types describe what we get. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

// Resolved relative to this module: src/api/proto in a checkout, dist/proto in the bundle.
const PROTO_ROOT = fileURLToPath(new URL('./proto', import.meta.url));

let cached: ProtoGrpcType | undefined;

export function tetherProto(): ProtoGrpcType {
  if (!cached) {
    const def = protoLoader.loadSync('tether/v1/tether.proto', {
      ...PROTO_LOADER_OPTIONS,
      includeDirs: [PROTO_ROOT],
    });
    cached = grpc.loadPackageDefinition(def) as unknown as ProtoGrpcType;
  }
  return cached;
}

/** 4 MiB: enough for a large site snapshot chunk, small enough to bound memory per call. */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

export type * from './gen/tether/v1/ControllerMessage.js';
export type * from './gen/tether/v1/NodeMessage.js';
