// Original file: src/api/proto/etcd/etcdserverpb/rpc.proto

import type { Long } from '@grpc/proto-loader';

export interface CompactionRequest {
  'revision'?: (number | string | Long);
  'physical'?: (boolean);
}

export interface CompactionRequest__Output {
  'revision': (number);
  'physical': (boolean);
}
