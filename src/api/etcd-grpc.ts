import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from './gen/rpc.js';
import { PROTO_LOADER_OPTIONS } from './grpc.js';

// etcd's own KV and Watch services (trimmed copy of its protos, src/api/proto/etcd), for the
// controller's etcd datastore. Same loader options as tether.proto, so gen/ types hold.
const PROTO_ROOT = fileURLToPath(new URL('./proto', import.meta.url));

let cached: ProtoGrpcType | undefined;

export function etcdProto(): ProtoGrpcType {
  if (!cached) {
    const def = protoLoader.loadSync('etcd/etcdserverpb/rpc.proto', {
      ...PROTO_LOADER_OPTIONS,
      includeDirs: [PROTO_ROOT],
    });
    cached = grpc.loadPackageDefinition(def) as unknown as ProtoGrpcType;
  }
  return cached;
}

export type { Compare as EtcdCompare } from './gen/etcdserverpb/Compare.js';
export type { KeyValue__Output as EtcdKeyValue } from './gen/etcdserverpb/KeyValue.js';
export type { KVClient } from './gen/etcdserverpb/KV.js';
export type { RequestOp as EtcdRequestOp } from './gen/etcdserverpb/RequestOp.js';
export type { TxnResponse__Output as EtcdTxnResponse } from './gen/etcdserverpb/TxnResponse.js';
export type { WatchClient } from './gen/etcdserverpb/Watch.js';
export type { WatchRequest as EtcdWatchRequest } from './gen/etcdserverpb/WatchRequest.js';
export type { WatchResponse__Output as EtcdWatchResponse } from './gen/etcdserverpb/WatchResponse.js';
