// Original file: src/api/proto/tether/v1/tether.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { ProbeRequest as _tether_v1_ProbeRequest, ProbeRequest__Output as _tether_v1_ProbeRequest__Output } from '../../tether/v1/ProbeRequest.js';
import type { ProbeResponse as _tether_v1_ProbeResponse, ProbeResponse__Output as _tether_v1_ProbeResponse__Output } from '../../tether/v1/ProbeResponse.js';

/**
 * Served on every node's proxy port (mTLS, node certificates of the same site only), so that
 * the site's nodes can decide among themselves which of them runs the site's proxy (no
 * central lease; docs/proxy.md "Election").
 */
export interface SiteProxyClient extends grpc.Client {
  Probe(argument: _tether_v1_ProbeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_ProbeResponse__Output>): grpc.ClientUnaryCall;
  Probe(argument: _tether_v1_ProbeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_ProbeResponse__Output>): grpc.ClientUnaryCall;
  Probe(argument: _tether_v1_ProbeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_ProbeResponse__Output>): grpc.ClientUnaryCall;
  Probe(argument: _tether_v1_ProbeRequest, callback: grpc.requestCallback<_tether_v1_ProbeResponse__Output>): grpc.ClientUnaryCall;
  probe(argument: _tether_v1_ProbeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_ProbeResponse__Output>): grpc.ClientUnaryCall;
  probe(argument: _tether_v1_ProbeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_ProbeResponse__Output>): grpc.ClientUnaryCall;
  probe(argument: _tether_v1_ProbeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_ProbeResponse__Output>): grpc.ClientUnaryCall;
  probe(argument: _tether_v1_ProbeRequest, callback: grpc.requestCallback<_tether_v1_ProbeResponse__Output>): grpc.ClientUnaryCall;
  
}

/**
 * Served on every node's proxy port (mTLS, node certificates of the same site only), so that
 * the site's nodes can decide among themselves which of them runs the site's proxy (no
 * central lease; docs/proxy.md "Election").
 */
export interface SiteProxyHandlers extends grpc.UntypedServiceImplementation {
  Probe: grpc.handleUnaryCall<_tether_v1_ProbeRequest__Output, _tether_v1_ProbeResponse>;
  
}

export interface SiteProxyDefinition extends grpc.ServiceDefinition {
  Probe: MethodDefinition<_tether_v1_ProbeRequest, _tether_v1_ProbeResponse, _tether_v1_ProbeRequest__Output, _tether_v1_ProbeResponse__Output>
}
