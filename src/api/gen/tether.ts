import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { Ack as _tether_v1_Ack, Ack__Output as _tether_v1_Ack__Output } from './tether/v1/Ack.js';
import type { AdminClient as _tether_v1_AdminClient, AdminDefinition as _tether_v1_AdminDefinition } from './tether/v1/Admin.js';
import type { AgentState as _tether_v1_AgentState, AgentState__Output as _tether_v1_AgentState__Output } from './tether/v1/AgentState.js';
import type { ApplyRequest as _tether_v1_ApplyRequest, ApplyRequest__Output as _tether_v1_ApplyRequest__Output } from './tether/v1/ApplyRequest.js';
import type { ApplyResponse as _tether_v1_ApplyResponse, ApplyResponse__Output as _tether_v1_ApplyResponse__Output } from './tether/v1/ApplyResponse.js';
import type { ApplyResult as _tether_v1_ApplyResult, ApplyResult__Output as _tether_v1_ApplyResult__Output } from './tether/v1/ApplyResult.js';
import type { ControllerList as _tether_v1_ControllerList, ControllerList__Output as _tether_v1_ControllerList__Output } from './tether/v1/ControllerList.js';
import type { ControllerMessage as _tether_v1_ControllerMessage, ControllerMessage__Output as _tether_v1_ControllerMessage__Output } from './tether/v1/ControllerMessage.js';
import type { CreateTokenRequest as _tether_v1_CreateTokenRequest, CreateTokenRequest__Output as _tether_v1_CreateTokenRequest__Output } from './tether/v1/CreateTokenRequest.js';
import type { CreateTokenResponse as _tether_v1_CreateTokenResponse, CreateTokenResponse__Output as _tether_v1_CreateTokenResponse__Output } from './tether/v1/CreateTokenResponse.js';
import type { DeleteRequest as _tether_v1_DeleteRequest, DeleteRequest__Output as _tether_v1_DeleteRequest__Output } from './tether/v1/DeleteRequest.js';
import type { DeleteResponse as _tether_v1_DeleteResponse, DeleteResponse__Output as _tether_v1_DeleteResponse__Output } from './tether/v1/DeleteResponse.js';
import type { Deleted as _tether_v1_Deleted, Deleted__Output as _tether_v1_Deleted__Output } from './tether/v1/Deleted.js';
import type { Delta as _tether_v1_Delta, Delta__Output as _tether_v1_Delta__Output } from './tether/v1/Delta.js';
import type { EndpointRefusal as _tether_v1_EndpointRefusal, EndpointRefusal__Output as _tether_v1_EndpointRefusal__Output } from './tether/v1/EndpointRefusal.js';
import type { EndpointReport as _tether_v1_EndpointReport, EndpointReport__Output as _tether_v1_EndpointReport__Output } from './tether/v1/EndpointReport.js';
import type { EndpointReportResult as _tether_v1_EndpointReportResult, EndpointReportResult__Output as _tether_v1_EndpointReportResult__Output } from './tether/v1/EndpointReportResult.js';
import type { EnrollRequest as _tether_v1_EnrollRequest, EnrollRequest__Output as _tether_v1_EnrollRequest__Output } from './tether/v1/EnrollRequest.js';
import type { EnrollResponse as _tether_v1_EnrollResponse, EnrollResponse__Output as _tether_v1_EnrollResponse__Output } from './tether/v1/EnrollResponse.js';
import type { EnrollmentClient as _tether_v1_EnrollmentClient, EnrollmentDefinition as _tether_v1_EnrollmentDefinition } from './tether/v1/Enrollment.js';
import type { FirstBootAck as _tether_v1_FirstBootAck, FirstBootAck__Output as _tether_v1_FirstBootAck__Output } from './tether/v1/FirstBootAck.js';
import type { FirstBootPhase as _tether_v1_FirstBootPhase, FirstBootPhase__Output as _tether_v1_FirstBootPhase__Output } from './tether/v1/FirstBootPhase.js';
import type { FirstBootReport as _tether_v1_FirstBootReport, FirstBootReport__Output as _tether_v1_FirstBootReport__Output } from './tether/v1/FirstBootReport.js';
import type { GatewayPeerReport as _tether_v1_GatewayPeerReport, GatewayPeerReport__Output as _tether_v1_GatewayPeerReport__Output } from './tether/v1/GatewayPeerReport.js';
import type { GatewayReport as _tether_v1_GatewayReport, GatewayReport__Output as _tether_v1_GatewayReport__Output } from './tether/v1/GatewayReport.js';
import type { GetRequest as _tether_v1_GetRequest, GetRequest__Output as _tether_v1_GetRequest__Output } from './tether/v1/GetRequest.js';
import type { Goodbye as _tether_v1_Goodbye, Goodbye__Output as _tether_v1_Goodbye__Output } from './tether/v1/Goodbye.js';
import type { HardwareFacts as _tether_v1_HardwareFacts, HardwareFacts__Output as _tether_v1_HardwareFacts__Output } from './tether/v1/HardwareFacts.js';
import type { Heartbeat as _tether_v1_Heartbeat, Heartbeat__Output as _tether_v1_Heartbeat__Output } from './tether/v1/Heartbeat.js';
import type { Hello as _tether_v1_Hello, Hello__Output as _tether_v1_Hello__Output } from './tether/v1/Hello.js';
import type { ListRequest as _tether_v1_ListRequest, ListRequest__Output as _tether_v1_ListRequest__Output } from './tether/v1/ListRequest.js';
import type { ListResponse as _tether_v1_ListResponse, ListResponse__Output as _tether_v1_ListResponse__Output } from './tether/v1/ListResponse.js';
import type { ListShellSessionsRequest as _tether_v1_ListShellSessionsRequest, ListShellSessionsRequest__Output as _tether_v1_ListShellSessionsRequest__Output } from './tether/v1/ListShellSessionsRequest.js';
import type { ListShellSessionsResponse as _tether_v1_ListShellSessionsResponse, ListShellSessionsResponse__Output as _tether_v1_ListShellSessionsResponse__Output } from './tether/v1/ListShellSessionsResponse.js';
import type { NodeMessage as _tether_v1_NodeMessage, NodeMessage__Output as _tether_v1_NodeMessage__Output } from './tether/v1/NodeMessage.js';
import type { NodeRef as _tether_v1_NodeRef, NodeRef__Output as _tether_v1_NodeRef__Output } from './tether/v1/NodeRef.js';
import type { NodeSessionClient as _tether_v1_NodeSessionClient, NodeSessionDefinition as _tether_v1_NodeSessionDefinition } from './tether/v1/NodeSession.js';
import type { ProbeRequest as _tether_v1_ProbeRequest, ProbeRequest__Output as _tether_v1_ProbeRequest__Output } from './tether/v1/ProbeRequest.js';
import type { ProbeResponse as _tether_v1_ProbeResponse, ProbeResponse__Output as _tether_v1_ProbeResponse__Output } from './tether/v1/ProbeResponse.js';
import type { RelayedGatewayReport as _tether_v1_RelayedGatewayReport, RelayedGatewayReport__Output as _tether_v1_RelayedGatewayReport__Output } from './tether/v1/RelayedGatewayReport.js';
import type { RelayedReport as _tether_v1_RelayedReport, RelayedReport__Output as _tether_v1_RelayedReport__Output } from './tether/v1/RelayedReport.js';
import type { RenewRequest as _tether_v1_RenewRequest, RenewRequest__Output as _tether_v1_RenewRequest__Output } from './tether/v1/RenewRequest.js';
import type { RenewResponse as _tether_v1_RenewResponse, RenewResponse__Output as _tether_v1_RenewResponse__Output } from './tether/v1/RenewResponse.js';
import type { Resource as _tether_v1_Resource, Resource__Output as _tether_v1_Resource__Output } from './tether/v1/Resource.js';
import type { ShellClient as _tether_v1_ShellClient, ShellDefinition as _tether_v1_ShellDefinition } from './tether/v1/Shell.js';
import type { ShellClientMessage as _tether_v1_ShellClientMessage, ShellClientMessage__Output as _tether_v1_ShellClientMessage__Output } from './tether/v1/ShellClientMessage.js';
import type { ShellEnd as _tether_v1_ShellEnd, ShellEnd__Output as _tether_v1_ShellEnd__Output } from './tether/v1/ShellEnd.js';
import type { ShellFrame as _tether_v1_ShellFrame, ShellFrame__Output as _tether_v1_ShellFrame__Output } from './tether/v1/ShellFrame.js';
import type { ShellOpen as _tether_v1_ShellOpen, ShellOpen__Output as _tether_v1_ShellOpen__Output } from './tether/v1/ShellOpen.js';
import type { ShellServerMessage as _tether_v1_ShellServerMessage, ShellServerMessage__Output as _tether_v1_ShellServerMessage__Output } from './tether/v1/ShellServerMessage.js';
import type { ShellSize as _tether_v1_ShellSize, ShellSize__Output as _tether_v1_ShellSize__Output } from './tether/v1/ShellSize.js';
import type { ShellStart as _tether_v1_ShellStart, ShellStart__Output as _tether_v1_ShellStart__Output } from './tether/v1/ShellStart.js';
import type { ShellStarted as _tether_v1_ShellStarted, ShellStarted__Output as _tether_v1_ShellStarted__Output } from './tether/v1/ShellStarted.js';
import type { SignedReport as _tether_v1_SignedReport, SignedReport__Output as _tether_v1_SignedReport__Output } from './tether/v1/SignedReport.js';
import type { SiteAgents as _tether_v1_SiteAgents, SiteAgents__Output as _tether_v1_SiteAgents__Output } from './tether/v1/SiteAgents.js';
import type { SiteLocal as _tether_v1_SiteLocal, SiteLocal__Output as _tether_v1_SiteLocal__Output } from './tether/v1/SiteLocal.js';
import type { SiteProxyClient as _tether_v1_SiteProxyClient, SiteProxyDefinition as _tether_v1_SiteProxyDefinition } from './tether/v1/SiteProxy.js';
import type { SnapshotBegin as _tether_v1_SnapshotBegin, SnapshotBegin__Output as _tether_v1_SnapshotBegin__Output } from './tether/v1/SnapshotBegin.js';
import type { SnapshotEnd as _tether_v1_SnapshotEnd, SnapshotEnd__Output as _tether_v1_SnapshotEnd__Output } from './tether/v1/SnapshotEnd.js';
import type { WatchEvent as _tether_v1_WatchEvent, WatchEvent__Output as _tether_v1_WatchEvent__Output } from './tether/v1/WatchEvent.js';
import type { WatchRequest as _tether_v1_WatchRequest, WatchRequest__Output as _tether_v1_WatchRequest__Output } from './tether/v1/WatchRequest.js';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  tether: {
    v1: {
      Ack: MessageTypeDefinition<_tether_v1_Ack, _tether_v1_Ack__Output>
      Admin: SubtypeConstructor<typeof grpc.Client, _tether_v1_AdminClient> & { service: _tether_v1_AdminDefinition }
      AgentState: MessageTypeDefinition<_tether_v1_AgentState, _tether_v1_AgentState__Output>
      ApplyRequest: MessageTypeDefinition<_tether_v1_ApplyRequest, _tether_v1_ApplyRequest__Output>
      ApplyResponse: MessageTypeDefinition<_tether_v1_ApplyResponse, _tether_v1_ApplyResponse__Output>
      ApplyResult: MessageTypeDefinition<_tether_v1_ApplyResult, _tether_v1_ApplyResult__Output>
      ControllerList: MessageTypeDefinition<_tether_v1_ControllerList, _tether_v1_ControllerList__Output>
      ControllerMessage: MessageTypeDefinition<_tether_v1_ControllerMessage, _tether_v1_ControllerMessage__Output>
      CreateTokenRequest: MessageTypeDefinition<_tether_v1_CreateTokenRequest, _tether_v1_CreateTokenRequest__Output>
      CreateTokenResponse: MessageTypeDefinition<_tether_v1_CreateTokenResponse, _tether_v1_CreateTokenResponse__Output>
      DeleteRequest: MessageTypeDefinition<_tether_v1_DeleteRequest, _tether_v1_DeleteRequest__Output>
      DeleteResponse: MessageTypeDefinition<_tether_v1_DeleteResponse, _tether_v1_DeleteResponse__Output>
      Deleted: MessageTypeDefinition<_tether_v1_Deleted, _tether_v1_Deleted__Output>
      Delta: MessageTypeDefinition<_tether_v1_Delta, _tether_v1_Delta__Output>
      EndpointRefusal: MessageTypeDefinition<_tether_v1_EndpointRefusal, _tether_v1_EndpointRefusal__Output>
      EndpointReport: MessageTypeDefinition<_tether_v1_EndpointReport, _tether_v1_EndpointReport__Output>
      EndpointReportResult: MessageTypeDefinition<_tether_v1_EndpointReportResult, _tether_v1_EndpointReportResult__Output>
      EnrollRequest: MessageTypeDefinition<_tether_v1_EnrollRequest, _tether_v1_EnrollRequest__Output>
      EnrollResponse: MessageTypeDefinition<_tether_v1_EnrollResponse, _tether_v1_EnrollResponse__Output>
      Enrollment: SubtypeConstructor<typeof grpc.Client, _tether_v1_EnrollmentClient> & { service: _tether_v1_EnrollmentDefinition }
      FirstBootAck: MessageTypeDefinition<_tether_v1_FirstBootAck, _tether_v1_FirstBootAck__Output>
      FirstBootPhase: MessageTypeDefinition<_tether_v1_FirstBootPhase, _tether_v1_FirstBootPhase__Output>
      FirstBootReport: MessageTypeDefinition<_tether_v1_FirstBootReport, _tether_v1_FirstBootReport__Output>
      GatewayPeerReport: MessageTypeDefinition<_tether_v1_GatewayPeerReport, _tether_v1_GatewayPeerReport__Output>
      GatewayReport: MessageTypeDefinition<_tether_v1_GatewayReport, _tether_v1_GatewayReport__Output>
      GetRequest: MessageTypeDefinition<_tether_v1_GetRequest, _tether_v1_GetRequest__Output>
      Goodbye: MessageTypeDefinition<_tether_v1_Goodbye, _tether_v1_Goodbye__Output>
      HardwareFacts: MessageTypeDefinition<_tether_v1_HardwareFacts, _tether_v1_HardwareFacts__Output>
      Heartbeat: MessageTypeDefinition<_tether_v1_Heartbeat, _tether_v1_Heartbeat__Output>
      Hello: MessageTypeDefinition<_tether_v1_Hello, _tether_v1_Hello__Output>
      ListRequest: MessageTypeDefinition<_tether_v1_ListRequest, _tether_v1_ListRequest__Output>
      ListResponse: MessageTypeDefinition<_tether_v1_ListResponse, _tether_v1_ListResponse__Output>
      ListShellSessionsRequest: MessageTypeDefinition<_tether_v1_ListShellSessionsRequest, _tether_v1_ListShellSessionsRequest__Output>
      ListShellSessionsResponse: MessageTypeDefinition<_tether_v1_ListShellSessionsResponse, _tether_v1_ListShellSessionsResponse__Output>
      NodeMessage: MessageTypeDefinition<_tether_v1_NodeMessage, _tether_v1_NodeMessage__Output>
      NodeRef: MessageTypeDefinition<_tether_v1_NodeRef, _tether_v1_NodeRef__Output>
      NodeSession: SubtypeConstructor<typeof grpc.Client, _tether_v1_NodeSessionClient> & { service: _tether_v1_NodeSessionDefinition }
      ProbeRequest: MessageTypeDefinition<_tether_v1_ProbeRequest, _tether_v1_ProbeRequest__Output>
      ProbeResponse: MessageTypeDefinition<_tether_v1_ProbeResponse, _tether_v1_ProbeResponse__Output>
      RelayedGatewayReport: MessageTypeDefinition<_tether_v1_RelayedGatewayReport, _tether_v1_RelayedGatewayReport__Output>
      RelayedReport: MessageTypeDefinition<_tether_v1_RelayedReport, _tether_v1_RelayedReport__Output>
      RenewRequest: MessageTypeDefinition<_tether_v1_RenewRequest, _tether_v1_RenewRequest__Output>
      RenewResponse: MessageTypeDefinition<_tether_v1_RenewResponse, _tether_v1_RenewResponse__Output>
      Resource: MessageTypeDefinition<_tether_v1_Resource, _tether_v1_Resource__Output>
      /**
       * Operator (tether shell) ↔ controller.
       */
      Shell: SubtypeConstructor<typeof grpc.Client, _tether_v1_ShellClient> & { service: _tether_v1_ShellDefinition }
      ShellClientMessage: MessageTypeDefinition<_tether_v1_ShellClientMessage, _tether_v1_ShellClientMessage__Output>
      ShellEnd: MessageTypeDefinition<_tether_v1_ShellEnd, _tether_v1_ShellEnd__Output>
      ShellFrame: MessageTypeDefinition<_tether_v1_ShellFrame, _tether_v1_ShellFrame__Output>
      ShellOpen: MessageTypeDefinition<_tether_v1_ShellOpen, _tether_v1_ShellOpen__Output>
      ShellServerMessage: MessageTypeDefinition<_tether_v1_ShellServerMessage, _tether_v1_ShellServerMessage__Output>
      ShellSize: MessageTypeDefinition<_tether_v1_ShellSize, _tether_v1_ShellSize__Output>
      ShellStart: MessageTypeDefinition<_tether_v1_ShellStart, _tether_v1_ShellStart__Output>
      ShellStarted: MessageTypeDefinition<_tether_v1_ShellStarted, _tether_v1_ShellStarted__Output>
      SignedReport: MessageTypeDefinition<_tether_v1_SignedReport, _tether_v1_SignedReport__Output>
      SiteAgents: MessageTypeDefinition<_tether_v1_SiteAgents, _tether_v1_SiteAgents__Output>
      SiteLocal: MessageTypeDefinition<_tether_v1_SiteLocal, _tether_v1_SiteLocal__Output>
      /**
       * Served on every node's proxy port (mTLS, node certificates of the same site only), so that
       * the site's nodes can decide among themselves which of them runs the site's proxy (no
       * central lease; docs/proxy.md "Election").
       */
      SiteProxy: SubtypeConstructor<typeof grpc.Client, _tether_v1_SiteProxyClient> & { service: _tether_v1_SiteProxyDefinition }
      SnapshotBegin: MessageTypeDefinition<_tether_v1_SnapshotBegin, _tether_v1_SnapshotBegin__Output>
      SnapshotEnd: MessageTypeDefinition<_tether_v1_SnapshotEnd, _tether_v1_SnapshotEnd__Output>
      WatchEvent: MessageTypeDefinition<_tether_v1_WatchEvent, _tether_v1_WatchEvent__Output>
      WatchRequest: MessageTypeDefinition<_tether_v1_WatchRequest, _tether_v1_WatchRequest__Output>
    }
  }
}

