// Original file: src/api/proto/tether/v1/tether.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { ApplyRequest as _tether_v1_ApplyRequest, ApplyRequest__Output as _tether_v1_ApplyRequest__Output } from '../../tether/v1/ApplyRequest.js';
import type { ApplyResponse as _tether_v1_ApplyResponse, ApplyResponse__Output as _tether_v1_ApplyResponse__Output } from '../../tether/v1/ApplyResponse.js';
import type { CreateTokenRequest as _tether_v1_CreateTokenRequest, CreateTokenRequest__Output as _tether_v1_CreateTokenRequest__Output } from '../../tether/v1/CreateTokenRequest.js';
import type { CreateTokenResponse as _tether_v1_CreateTokenResponse, CreateTokenResponse__Output as _tether_v1_CreateTokenResponse__Output } from '../../tether/v1/CreateTokenResponse.js';
import type { DeleteRequest as _tether_v1_DeleteRequest, DeleteRequest__Output as _tether_v1_DeleteRequest__Output } from '../../tether/v1/DeleteRequest.js';
import type { DeleteResponse as _tether_v1_DeleteResponse, DeleteResponse__Output as _tether_v1_DeleteResponse__Output } from '../../tether/v1/DeleteResponse.js';
import type { GetRequest as _tether_v1_GetRequest, GetRequest__Output as _tether_v1_GetRequest__Output } from '../../tether/v1/GetRequest.js';
import type { ListRequest as _tether_v1_ListRequest, ListRequest__Output as _tether_v1_ListRequest__Output } from '../../tether/v1/ListRequest.js';
import type { ListResponse as _tether_v1_ListResponse, ListResponse__Output as _tether_v1_ListResponse__Output } from '../../tether/v1/ListResponse.js';
import type { NodeRef as _tether_v1_NodeRef, NodeRef__Output as _tether_v1_NodeRef__Output } from '../../tether/v1/NodeRef.js';
import type { Resource as _tether_v1_Resource, Resource__Output as _tether_v1_Resource__Output } from '../../tether/v1/Resource.js';
import type { WatchEvent as _tether_v1_WatchEvent, WatchEvent__Output as _tether_v1_WatchEvent__Output } from '../../tether/v1/WatchEvent.js';
import type { WatchRequest as _tether_v1_WatchRequest, WatchRequest__Output as _tether_v1_WatchRequest__Output } from '../../tether/v1/WatchRequest.js';

export interface AdminClient extends grpc.Client {
  Apply(argument: _tether_v1_ApplyRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_ApplyResponse__Output>): grpc.ClientUnaryCall;
  Apply(argument: _tether_v1_ApplyRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_ApplyResponse__Output>): grpc.ClientUnaryCall;
  Apply(argument: _tether_v1_ApplyRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_ApplyResponse__Output>): grpc.ClientUnaryCall;
  Apply(argument: _tether_v1_ApplyRequest, callback: grpc.requestCallback<_tether_v1_ApplyResponse__Output>): grpc.ClientUnaryCall;
  apply(argument: _tether_v1_ApplyRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_ApplyResponse__Output>): grpc.ClientUnaryCall;
  apply(argument: _tether_v1_ApplyRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_ApplyResponse__Output>): grpc.ClientUnaryCall;
  apply(argument: _tether_v1_ApplyRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_ApplyResponse__Output>): grpc.ClientUnaryCall;
  apply(argument: _tether_v1_ApplyRequest, callback: grpc.requestCallback<_tether_v1_ApplyResponse__Output>): grpc.ClientUnaryCall;
  
  ApproveNode(argument: _tether_v1_NodeRef, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  ApproveNode(argument: _tether_v1_NodeRef, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  ApproveNode(argument: _tether_v1_NodeRef, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  ApproveNode(argument: _tether_v1_NodeRef, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  approveNode(argument: _tether_v1_NodeRef, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  approveNode(argument: _tether_v1_NodeRef, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  approveNode(argument: _tether_v1_NodeRef, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  approveNode(argument: _tether_v1_NodeRef, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  
  CreateToken(argument: _tether_v1_CreateTokenRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_CreateTokenResponse__Output>): grpc.ClientUnaryCall;
  CreateToken(argument: _tether_v1_CreateTokenRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_CreateTokenResponse__Output>): grpc.ClientUnaryCall;
  CreateToken(argument: _tether_v1_CreateTokenRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_CreateTokenResponse__Output>): grpc.ClientUnaryCall;
  CreateToken(argument: _tether_v1_CreateTokenRequest, callback: grpc.requestCallback<_tether_v1_CreateTokenResponse__Output>): grpc.ClientUnaryCall;
  createToken(argument: _tether_v1_CreateTokenRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_CreateTokenResponse__Output>): grpc.ClientUnaryCall;
  createToken(argument: _tether_v1_CreateTokenRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_CreateTokenResponse__Output>): grpc.ClientUnaryCall;
  createToken(argument: _tether_v1_CreateTokenRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_CreateTokenResponse__Output>): grpc.ClientUnaryCall;
  createToken(argument: _tether_v1_CreateTokenRequest, callback: grpc.requestCallback<_tether_v1_CreateTokenResponse__Output>): grpc.ClientUnaryCall;
  
  Delete(argument: _tether_v1_DeleteRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_DeleteResponse__Output>): grpc.ClientUnaryCall;
  Delete(argument: _tether_v1_DeleteRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_DeleteResponse__Output>): grpc.ClientUnaryCall;
  Delete(argument: _tether_v1_DeleteRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_DeleteResponse__Output>): grpc.ClientUnaryCall;
  Delete(argument: _tether_v1_DeleteRequest, callback: grpc.requestCallback<_tether_v1_DeleteResponse__Output>): grpc.ClientUnaryCall;
  delete(argument: _tether_v1_DeleteRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_DeleteResponse__Output>): grpc.ClientUnaryCall;
  delete(argument: _tether_v1_DeleteRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_DeleteResponse__Output>): grpc.ClientUnaryCall;
  delete(argument: _tether_v1_DeleteRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_DeleteResponse__Output>): grpc.ClientUnaryCall;
  delete(argument: _tether_v1_DeleteRequest, callback: grpc.requestCallback<_tether_v1_DeleteResponse__Output>): grpc.ClientUnaryCall;
  
  Get(argument: _tether_v1_GetRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  Get(argument: _tether_v1_GetRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  Get(argument: _tether_v1_GetRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  Get(argument: _tether_v1_GetRequest, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  get(argument: _tether_v1_GetRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  get(argument: _tether_v1_GetRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  get(argument: _tether_v1_GetRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  get(argument: _tether_v1_GetRequest, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  
  List(argument: _tether_v1_ListRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_ListResponse__Output>): grpc.ClientUnaryCall;
  List(argument: _tether_v1_ListRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_ListResponse__Output>): grpc.ClientUnaryCall;
  List(argument: _tether_v1_ListRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_ListResponse__Output>): grpc.ClientUnaryCall;
  List(argument: _tether_v1_ListRequest, callback: grpc.requestCallback<_tether_v1_ListResponse__Output>): grpc.ClientUnaryCall;
  list(argument: _tether_v1_ListRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_ListResponse__Output>): grpc.ClientUnaryCall;
  list(argument: _tether_v1_ListRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_ListResponse__Output>): grpc.ClientUnaryCall;
  list(argument: _tether_v1_ListRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_ListResponse__Output>): grpc.ClientUnaryCall;
  list(argument: _tether_v1_ListRequest, callback: grpc.requestCallback<_tether_v1_ListResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Forgets a node's enrollment (certificates, recorded VTEP, endpoints) so that its name can
   * be enrolled again with a token of its site; audited on the Node record.
   */
  ResetNode(argument: _tether_v1_NodeRef, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  ResetNode(argument: _tether_v1_NodeRef, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  ResetNode(argument: _tether_v1_NodeRef, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  ResetNode(argument: _tether_v1_NodeRef, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  /**
   * Forgets a node's enrollment (certificates, recorded VTEP, endpoints) so that its name can
   * be enrolled again with a token of its site; audited on the Node record.
   */
  resetNode(argument: _tether_v1_NodeRef, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  resetNode(argument: _tether_v1_NodeRef, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  resetNode(argument: _tether_v1_NodeRef, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  resetNode(argument: _tether_v1_NodeRef, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  
  RevokeNode(argument: _tether_v1_NodeRef, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  RevokeNode(argument: _tether_v1_NodeRef, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  RevokeNode(argument: _tether_v1_NodeRef, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  RevokeNode(argument: _tether_v1_NodeRef, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  revokeNode(argument: _tether_v1_NodeRef, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  revokeNode(argument: _tether_v1_NodeRef, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  revokeNode(argument: _tether_v1_NodeRef, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  revokeNode(argument: _tether_v1_NodeRef, callback: grpc.requestCallback<_tether_v1_Resource__Output>): grpc.ClientUnaryCall;
  
  Watch(argument: _tether_v1_WatchRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_tether_v1_WatchEvent__Output>;
  Watch(argument: _tether_v1_WatchRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_tether_v1_WatchEvent__Output>;
  watch(argument: _tether_v1_WatchRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_tether_v1_WatchEvent__Output>;
  watch(argument: _tether_v1_WatchRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_tether_v1_WatchEvent__Output>;
  
}

export interface AdminHandlers extends grpc.UntypedServiceImplementation {
  Apply: grpc.handleUnaryCall<_tether_v1_ApplyRequest__Output, _tether_v1_ApplyResponse>;
  
  ApproveNode: grpc.handleUnaryCall<_tether_v1_NodeRef__Output, _tether_v1_Resource>;
  
  CreateToken: grpc.handleUnaryCall<_tether_v1_CreateTokenRequest__Output, _tether_v1_CreateTokenResponse>;
  
  Delete: grpc.handleUnaryCall<_tether_v1_DeleteRequest__Output, _tether_v1_DeleteResponse>;
  
  Get: grpc.handleUnaryCall<_tether_v1_GetRequest__Output, _tether_v1_Resource>;
  
  List: grpc.handleUnaryCall<_tether_v1_ListRequest__Output, _tether_v1_ListResponse>;
  
  /**
   * Forgets a node's enrollment (certificates, recorded VTEP, endpoints) so that its name can
   * be enrolled again with a token of its site; audited on the Node record.
   */
  ResetNode: grpc.handleUnaryCall<_tether_v1_NodeRef__Output, _tether_v1_Resource>;
  
  RevokeNode: grpc.handleUnaryCall<_tether_v1_NodeRef__Output, _tether_v1_Resource>;
  
  Watch: grpc.handleServerStreamingCall<_tether_v1_WatchRequest__Output, _tether_v1_WatchEvent>;
  
}

export interface AdminDefinition extends grpc.ServiceDefinition {
  Apply: MethodDefinition<_tether_v1_ApplyRequest, _tether_v1_ApplyResponse, _tether_v1_ApplyRequest__Output, _tether_v1_ApplyResponse__Output>
  ApproveNode: MethodDefinition<_tether_v1_NodeRef, _tether_v1_Resource, _tether_v1_NodeRef__Output, _tether_v1_Resource__Output>
  CreateToken: MethodDefinition<_tether_v1_CreateTokenRequest, _tether_v1_CreateTokenResponse, _tether_v1_CreateTokenRequest__Output, _tether_v1_CreateTokenResponse__Output>
  Delete: MethodDefinition<_tether_v1_DeleteRequest, _tether_v1_DeleteResponse, _tether_v1_DeleteRequest__Output, _tether_v1_DeleteResponse__Output>
  Get: MethodDefinition<_tether_v1_GetRequest, _tether_v1_Resource, _tether_v1_GetRequest__Output, _tether_v1_Resource__Output>
  List: MethodDefinition<_tether_v1_ListRequest, _tether_v1_ListResponse, _tether_v1_ListRequest__Output, _tether_v1_ListResponse__Output>
  ResetNode: MethodDefinition<_tether_v1_NodeRef, _tether_v1_Resource, _tether_v1_NodeRef__Output, _tether_v1_Resource__Output>
  RevokeNode: MethodDefinition<_tether_v1_NodeRef, _tether_v1_Resource, _tether_v1_NodeRef__Output, _tether_v1_Resource__Output>
  Watch: MethodDefinition<_tether_v1_WatchRequest, _tether_v1_WatchEvent, _tether_v1_WatchRequest__Output, _tether_v1_WatchEvent__Output>
}
