import type { ProtoGrpcType } from './gen/rpc.js';
import { loadProto } from './proto-loader.js';

// etcd's own KV, Watch and Lease services (trimmed copy of its protos, src/api/proto/etcd), for the
// controller's etcd datastore, loaded like tether.proto (proto-loader.ts).
export function etcdProto(): ProtoGrpcType {
  return loadProto<ProtoGrpcType>('etcd/etcdserverpb/rpc.proto');
}

export type { Compare as EtcdCompare } from './gen/etcdserverpb/Compare.js';
export type { KeyValue__Output as EtcdKeyValue } from './gen/etcdserverpb/KeyValue.js';
export type { KVClient } from './gen/etcdserverpb/KV.js';
export type { LeaseClient } from './gen/etcdserverpb/Lease.js';
export type { LeaseKeepAliveRequest as EtcdLeaseKeepAliveRequest } from './gen/etcdserverpb/LeaseKeepAliveRequest.js';
export type { LeaseKeepAliveResponse__Output as EtcdLeaseKeepAliveResponse } from './gen/etcdserverpb/LeaseKeepAliveResponse.js';
export type { RequestOp as EtcdRequestOp } from './gen/etcdserverpb/RequestOp.js';
export type { TxnResponse__Output as EtcdTxnResponse } from './gen/etcdserverpb/TxnResponse.js';
export type { WatchClient } from './gen/etcdserverpb/Watch.js';
export type { WatchRequest as EtcdWatchRequest } from './gen/etcdserverpb/WatchRequest.js';
export type { WatchResponse__Output as EtcdWatchResponse } from './gen/etcdserverpb/WatchResponse.js';
