// Original file: src/api/proto/etcd/etcdserverpb/rpc.proto


export interface WatchProgressRequest {
}

export interface WatchProgressRequest__Output {
}
