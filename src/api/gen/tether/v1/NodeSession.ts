// Original file: src/api/proto/tether/v1/tether.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { ControllerMessage as _tether_v1_ControllerMessage, ControllerMessage__Output as _tether_v1_ControllerMessage__Output } from '../../tether/v1/ControllerMessage.js';
import type { FirstBootAck as _tether_v1_FirstBootAck, FirstBootAck__Output as _tether_v1_FirstBootAck__Output } from '../../tether/v1/FirstBootAck.js';
import type { FirstBootReport as _tether_v1_FirstBootReport, FirstBootReport__Output as _tether_v1_FirstBootReport__Output } from '../../tether/v1/FirstBootReport.js';
import type { NodeMessage as _tether_v1_NodeMessage, NodeMessage__Output as _tether_v1_NodeMessage__Output } from '../../tether/v1/NodeMessage.js';
import type { RenewRequest as _tether_v1_RenewRequest, RenewRequest__Output as _tether_v1_RenewRequest__Output } from '../../tether/v1/RenewRequest.js';
import type { RenewResponse as _tether_v1_RenewResponse, RenewResponse__Output as _tether_v1_RenewResponse__Output } from '../../tether/v1/RenewResponse.js';

export interface NodeSessionClient extends grpc.Client {
  /**
   * Renews the node's certificate over its live mTLS identity (no token).
   */
  RenewCertificate(argument: _tether_v1_RenewRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_RenewResponse__Output>): grpc.ClientUnaryCall;
  RenewCertificate(argument: _tether_v1_RenewRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_RenewResponse__Output>): grpc.ClientUnaryCall;
  RenewCertificate(argument: _tether_v1_RenewRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_RenewResponse__Output>): grpc.ClientUnaryCall;
  RenewCertificate(argument: _tether_v1_RenewRequest, callback: grpc.requestCallback<_tether_v1_RenewResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Renews the node's certificate over its live mTLS identity (no token).
   */
  renewCertificate(argument: _tether_v1_RenewRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_RenewResponse__Output>): grpc.ClientUnaryCall;
  renewCertificate(argument: _tether_v1_RenewRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_RenewResponse__Output>): grpc.ClientUnaryCall;
  renewCertificate(argument: _tether_v1_RenewRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_RenewResponse__Output>): grpc.ClientUnaryCall;
  renewCertificate(argument: _tether_v1_RenewRequest, callback: grpc.requestCallback<_tether_v1_RenewResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * The node's first-boot progress (docs/node.md "First boot"): the whole picture each time,
   * so a lost or repeated report does no harm; the controller keeps the highest `seq`.
   */
  ReportFirstBoot(argument: _tether_v1_FirstBootReport, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_FirstBootAck__Output>): grpc.ClientUnaryCall;
  ReportFirstBoot(argument: _tether_v1_FirstBootReport, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_FirstBootAck__Output>): grpc.ClientUnaryCall;
  ReportFirstBoot(argument: _tether_v1_FirstBootReport, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_FirstBootAck__Output>): grpc.ClientUnaryCall;
  ReportFirstBoot(argument: _tether_v1_FirstBootReport, callback: grpc.requestCallback<_tether_v1_FirstBootAck__Output>): grpc.ClientUnaryCall;
  /**
   * The node's first-boot progress (docs/node.md "First boot"): the whole picture each time,
   * so a lost or repeated report does no harm; the controller keeps the highest `seq`.
   */
  reportFirstBoot(argument: _tether_v1_FirstBootReport, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_FirstBootAck__Output>): grpc.ClientUnaryCall;
  reportFirstBoot(argument: _tether_v1_FirstBootReport, metadata: grpc.Metadata, callback: grpc.requestCallback<_tether_v1_FirstBootAck__Output>): grpc.ClientUnaryCall;
  reportFirstBoot(argument: _tether_v1_FirstBootReport, options: grpc.CallOptions, callback: grpc.requestCallback<_tether_v1_FirstBootAck__Output>): grpc.ClientUnaryCall;
  reportFirstBoot(argument: _tether_v1_FirstBootReport, callback: grpc.requestCallback<_tether_v1_FirstBootAck__Output>): grpc.ClientUnaryCall;
  
  /**
   * The one long-lived session per node: snapshot or deltas from a revision, then deltas,
   * acknowledgements and heartbeats both ways.
   */
  Sync(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_tether_v1_NodeMessage, _tether_v1_ControllerMessage__Output>;
  Sync(options?: grpc.CallOptions): grpc.ClientDuplexStream<_tether_v1_NodeMessage, _tether_v1_ControllerMessage__Output>;
  /**
   * The one long-lived session per node: snapshot or deltas from a revision, then deltas,
   * acknowledgements and heartbeats both ways.
   */
  sync(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_tether_v1_NodeMessage, _tether_v1_ControllerMessage__Output>;
  sync(options?: grpc.CallOptions): grpc.ClientDuplexStream<_tether_v1_NodeMessage, _tether_v1_ControllerMessage__Output>;
  
}

export interface NodeSessionHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Renews the node's certificate over its live mTLS identity (no token).
   */
  RenewCertificate: grpc.handleUnaryCall<_tether_v1_RenewRequest__Output, _tether_v1_RenewResponse>;
  
  /**
   * The node's first-boot progress (docs/node.md "First boot"): the whole picture each time,
   * so a lost or repeated report does no harm; the controller keeps the highest `seq`.
   */
  ReportFirstBoot: grpc.handleUnaryCall<_tether_v1_FirstBootReport__Output, _tether_v1_FirstBootAck>;
  
  /**
   * The one long-lived session per node: snapshot or deltas from a revision, then deltas,
   * acknowledgements and heartbeats both ways.
   */
  Sync: grpc.handleBidiStreamingCall<_tether_v1_NodeMessage__Output, _tether_v1_ControllerMessage>;
  
}

export interface NodeSessionDefinition extends grpc.ServiceDefinition {
  RenewCertificate: MethodDefinition<_tether_v1_RenewRequest, _tether_v1_RenewResponse, _tether_v1_RenewRequest__Output, _tether_v1_RenewResponse__Output>
  ReportFirstBoot: MethodDefinition<_tether_v1_FirstBootReport, _tether_v1_FirstBootAck, _tether_v1_FirstBootReport__Output, _tether_v1_FirstBootAck__Output>
  Sync: MethodDefinition<_tether_v1_NodeMessage, _tether_v1_ControllerMessage, _tether_v1_NodeMessage__Output, _tether_v1_ControllerMessage__Output>
}
