// Original file: src/api/proto/tether/v1/tether.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { ListShellSessionsRequest as _tether_v1_ListShellSessionsRequest, ListShellSessionsRequest__Output as _tether_v1_ListShellSessionsRequest__Output } from '../../tether/v1/ListShellSessionsRequest.js';
import type { ListShellSessionsResponse as _tether_v1_ListShellSessionsResponse, ListShellSessionsResponse__Output as _tether_v1_ListShellSessionsResponse__Output } from '../../tether/v1/ListShellSessionsResponse.js';
import type { ShellClientMessage as _tether_v1_ShellClientMessage, ShellClientMessage__Output as _tether_v1_ShellClientMessage__Output } from '../../tether/v1/ShellClientMessage.js';
import type { ShellServerMessage as _tether_v1_ShellServerMessage, ShellServerMessage__Output as _tether_v1_ShellServerMessage__Output } from '../../tether/v1/ShellServerMessage.js';

/**
 * Operator (tether shell) ↔ controller.
 */
export interface ShellClient extends grpc.Client {
  /**
   * The audit log: every session, newest last (admin or operator).
   */
  ListSessions(argument: _tether_v1_ListShellSessionsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_ListShellSessionsResponse__Output>): grpc.ClientUnaryCall;
  ListSessions(argument: _tether_v1_ListShellSessionsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_ListShellSessionsResponse__Output>): grpc.ClientUnaryCall;
  ListSessions(argument: _tether_v1_ListShellSessionsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_ListShellSessionsResponse__Output>): grpc.ClientUnaryCall;
  ListSessions(argument: _tether_v1_ListShellSessionsRequest, callback: grpc.requestCallback<_tether_v1_ListShellSessionsResponse__Output>): grpc.ClientUnaryCall;
  /**
   * The audit log: every session, newest last (admin or operator).
   */
  listSessions(argument: _tether_v1_ListShellSessionsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_ListShellSessionsResponse__Output>): grpc.ClientUnaryCall;
  listSessions(argument: _tether_v1_ListShellSessionsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_ListShellSessionsResponse__Output>): grpc.ClientUnaryCall;
  listSessions(argument: _tether_v1_ListShellSessionsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_ListShellSessionsResponse__Output>): grpc.ClientUnaryCall;
  listSessions(argument: _tether_v1_ListShellSessionsRequest, callback: grpc.requestCallback<_tether_v1_ListShellSessionsResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * First message `start`; then input/resize; the controller answers `started`, output, `end`.
   */
  Open(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_tether_v1_ShellClientMessage, _tether_v1_ShellServerMessage__Output>;
  Open(options?: grpc.CallOptions): grpc.ClientDuplexStream<_tether_v1_ShellClientMessage, _tether_v1_ShellServerMessage__Output>;
  /**
   * First message `start`; then input/resize; the controller answers `started`, output, `end`.
   */
  open(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_tether_v1_ShellClientMessage, _tether_v1_ShellServerMessage__Output>;
  open(options?: grpc.CallOptions): grpc.ClientDuplexStream<_tether_v1_ShellClientMessage, _tether_v1_ShellServerMessage__Output>;
  
}

/**
 * Operator (tether shell) ↔ controller.
 */
export interface ShellHandlers extends grpc.UntypedServiceImplementation {
  /**
   * The audit log: every session, newest last (admin or operator).
   */
  ListSessions: grpc.handleUnaryCall<_tether_v1_ListShellSessionsRequest__Output, _tether_v1_ListShellSessionsResponse>;
  
  /**
   * First message `start`; then input/resize; the controller answers `started`, output, `end`.
   */
  Open: grpc.handleBidiStreamingCall<_tether_v1_ShellClientMessage__Output, _tether_v1_ShellServerMessage>;
  
}

export interface ShellDefinition extends grpc.ServiceDefinition {
  ListSessions: MethodDefinition<_tether_v1_ListShellSessionsRequest, _tether_v1_ListShellSessionsResponse, _tether_v1_ListShellSessionsRequest__Output, _tether_v1_ListShellSessionsResponse__Output>
  Open: MethodDefinition<_tether_v1_ShellClientMessage, _tether_v1_ShellServerMessage, _tether_v1_ShellClientMessage__Output, _tether_v1_ShellServerMessage__Output>
}
