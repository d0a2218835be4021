// Original file: src/api/proto/tether/v1/tether.proto

import type { Hello as _tether_v1_Hello, Hello__Output as _tether_v1_Hello__Output } from '../../tether/v1/Hello.js';
import type { Ack as _tether_v1_Ack, Ack__Output as _tether_v1_Ack__Output } from '../../tether/v1/Ack.js';
import type { Heartbeat as _tether_v1_Heartbeat, Heartbeat__Output as _tether_v1_Heartbeat__Output } from '../../tether/v1/Heartbeat.js';
import type { EndpointReport as _tether_v1_EndpointReport, EndpointReport__Output as _tether_v1_EndpointReport__Output } from '../../tether/v1/EndpointReport.js';
import type { SiteAgents as _tether_v1_SiteAgents, SiteAgents__Output as _tether_v1_SiteAgents__Output } from '../../tether/v1/SiteAgents.js';
import type { RelayedReport as _tether_v1_RelayedReport, RelayedReport__Output as _tether_v1_RelayedReport__Output } from '../../tether/v1/RelayedReport.js';
import type { GatewayReport as _tether_v1_GatewayReport, GatewayReport__Output as _tether_v1_GatewayReport__Output } from '../../tether/v1/GatewayReport.js';
import type { ShellFrame as _tether_v1_ShellFrame, ShellFrame__Output as _tether_v1_ShellFrame__Output } from '../../tether/v1/ShellFrame.js';
import type { RelayedGatewayReport as _tether_v1_RelayedGatewayReport, RelayedGatewayReport__Output as _tether_v1_RelayedGatewayReport__Output } from '../../tether/v1/RelayedGatewayReport.js';

export interface NodeMessage {
  'hello'?: (_tether_v1_Hello | null);
  'ack'?: (_tether_v1_Ack | null);
  'heartbeat'?: (_tether_v1_Heartbeat | null);
  'endpoints'?: (_tether_v1_EndpointReport | null);
  /**
   * Only on a proxy's WAN session (Hello.role = "proxy").
   */
  'site_agents'?: (_tether_v1_SiteAgents | null);
  'relayed_report'?: (_tether_v1_RelayedReport | null);
  'gateway'?: (_tether_v1_GatewayReport | null);
  /**
   * Output and the end of a remote shell this node runs (docs/shell.md).
   */
  'shell'?: (_tether_v1_ShellFrame | null);
  /**
   * Only on a proxy's WAN session: the gateway status of one of its site's nodes.
   */
  'relayed_gateway'?: (_tether_v1_RelayedGatewayReport | null);
  'msg'?: "hello"|"ack"|"heartbeat"|"endpoints"|"site_agents"|"relayed_report"|"gateway"|"shell"|"relayed_gateway";
}

export interface NodeMessage__Output {
  'hello'?: (_tether_v1_Hello__Output | null);
  'ack'?: (_tether_v1_Ack__Output | null);
  'heartbeat'?: (_tether_v1_Heartbeat__Output | null);
  'endpoints'?: (_tether_v1_EndpointReport__Output | null);
  /**
   * Only on a proxy's WAN session (Hello.role = "proxy").
   */
  'site_agents'?: (_tether_v1_SiteAgents__Output | null);
  'relayed_report'?: (_tether_v1_RelayedReport__Output | null);
  'gateway'?: (_tether_v1_GatewayReport__Output | null);
  /**
   * Output and the end of a remote shell this node runs (docs/shell.md).
   */
  'shell'?: (_tether_v1_ShellFrame__Output | null);
  /**
   * Only on a proxy's WAN session: the gateway status of one of its site's nodes.
   */
  'relayed_gateway'?: (_tether_v1_RelayedGatewayReport__Output | null);
  'msg'?: "hello"|"ack"|"heartbeat"|"endpoints"|"site_agents"|"relayed_report"|"gateway"|"shell"|"relayed_gateway";
}
