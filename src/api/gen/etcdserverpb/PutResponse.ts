// Original file: src/api/proto/etcd/etcdserverpb/rpc.proto

import type { ResponseHeader as _etcdserverpb_ResponseHeader, ResponseHeader__Output as _etcdserverpb_ResponseHeader__Output } from '../etcdserverpb/ResponseHeader.js';
import type { KeyValue as _etcdserverpb_KeyValue, KeyValue__Output as _etcdserverpb_KeyValue__Output } from '../etcdserverpb/KeyValue.js';

export interface PutResponse {
  'header'?: (_etcdserverpb_ResponseHeader | null);
  'prev_kv'?: (_etcdserverpb_KeyValue | null);
}

export interface PutResponse__Output {
  'header': (_etcdserverpb_ResponseHeader__Output | null);
  'prev_kv': (_etcdserverpb_KeyValue__Output | null);
}
