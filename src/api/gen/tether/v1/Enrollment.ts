// Original file: src/api/proto/tether/v1/tether.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { EnrollRequest as _tether_v1_EnrollRequest, EnrollRequest__Output as _tether_v1_EnrollRequest__Output } from '../../tether/v1/EnrollRequest.js';
import type { EnrollResponse as _tether_v1_EnrollResponse, EnrollResponse__Output as _tether_v1_EnrollResponse__Output } from '../../tether/v1/EnrollResponse.js';

export interface EnrollmentClient extends grpc.Client {
  /**
   * Trades a one-time join token plus a CSR for a node certificate. The node has already
   * pinned the controller's CA by the fingerprint in the token before it calls this.
   */
  Enroll(argument: _tether_v1_EnrollRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_EnrollResponse__Output>): grpc.ClientUnaryCall;
  Enroll(argument: _tether_v1_EnrollRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_EnrollResponse__Output>): grpc.ClientUnaryCall;
  Enroll(argument: _tether_v1_EnrollRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_EnrollResponse__Output>): grpc.ClientUnaryCall;
  Enroll(argument: _tether_v1_EnrollRequest, callback: grpc.requestCallback<_tether_v1_EnrollResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Trades a one-time join token plus a CSR for a node certificate. The node has already
   * pinned the controller's CA by the fingerprint in the token before it calls this.
   */
  enroll(argument: _tether_v1_EnrollRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_EnrollResponse__Output>): grpc.ClientUnaryCall;
  enroll(argument: _tether_v1_EnrollRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_EnrollResponse__Output>): grpc.ClientUnaryCall;
  enroll(argument: _tether_v1_EnrollRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_EnrollResponse__Output>): grpc.ClientUnaryCall;
  enroll(argument: _tether_v1_EnrollRequest, callback: grpc.requestCallback<_tether_v1_EnrollResponse__Output>): grpc.ClientUnaryCall;
  
}

export interface EnrollmentHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Trades a one-time join token plus a CSR for a node certificate. The node has already
   * pinned the controller's CA by the fingerprint in the token before it calls this.
   */
  Enroll: grpc.handleUnaryCall<_tether_v1_EnrollRequest__Output, _tether_v1_EnrollResponse>;
  
}

export interface EnrollmentDefinition extends grpc.ServiceDefinition {
  Enroll: MethodDefinition<_tether_v1_EnrollRequest, _tether_v1_EnrollResponse, _tether_v1_EnrollRequest__Output, _tether_v1_EnrollResponse__Output>
}
