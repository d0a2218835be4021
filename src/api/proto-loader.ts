import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** Options must match scripts/gen-proto.mjs (--keepCase --longs=Number --enums=String
 *  --defaults --oneofs) so the generated types in gen/ describe what the loader returns.
 *  Every .proto of the project loads through here, so they cannot drift apart. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

// Resolved relative to this module: src/api/proto in a checkout, dist/proto in the bundle.
const PROTO_ROOT = fileURLToPath(new URL('./proto', import.meta.url));

const cache = new Map<string, unknown>();

/**
 * Loads `file` (relative to the proto root) once per process. `T` is the generated
 * ProtoGrpcType of that file: the cast is the one place where the runtime definition meets
 * the generated types, which hold because both use PROTO_LOADER_OPTIONS.
 */
export function loadProto<T>(file: string): T {
  let p = cache.get(file);
  if (p === undefined) {
    const def = protoLoader.loadSync(file, { ...PROTO_LOADER_OPTIONS, includeDirs: [PROTO_ROOT] });
    p = grpc.loadPackageDefinition(def);
    cache.set(file, p);
  }
  return p as T;
}
