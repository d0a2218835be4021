// Original file: src/api/proto/tether/v1/tether.proto

import type { SnapshotBegin as _tether_v1_SnapshotBegin, SnapshotBegin__Output as _tether_v1_SnapshotBegin__Output } from '../../tether/v1/SnapshotBegin.js';
import type { Delta as _tether_v1_Delta, Delta__Output as _tether_v1_Delta__Output } from '../../tether/v1/Delta.js';
import type { SnapshotEnd as _tether_v1_SnapshotEnd, SnapshotEnd__Output as _tether_v1_SnapshotEnd__Output } from '../../tether/v1/SnapshotEnd.js';
import type { Heartbeat as _tether_v1_Heartbeat, Heartbeat__Output as _tether_v1_Heartbeat__Output } from '../../tether/v1/Heartbeat.js';
import type { Goodbye as _tether_v1_Goodbye, Goodbye__Output as _tether_v1_Goodbye__Output } from '../../tether/v1/Goodbye.js';
import type { EndpointReportResult as _tether_v1_EndpointReportResult, EndpointReportResult__Output as _tether_v1_EndpointReportResult__Output } from '../../tether/v1/EndpointReportResult.js';
import type { SiteLocal as _tether_v1_SiteLocal, SiteLocal__Output as _tether_v1_SiteLocal__Output } from '../../tether/v1/SiteLocal.js';
import type { ShellFrame as _tether_v1_ShellFrame, ShellFrame__Output as _tether_v1_ShellFrame__Output } from '../../tether/v1/ShellFrame.js';
import type { ControllerList as _tether_v1_ControllerList, ControllerList__Output as _tether_v1_ControllerList__Output } from '../../tether/v1/ControllerList.js';

export interface ControllerMessage {
  'snapshot_begin'?: (_tether_v1_SnapshotBegin | null);
  /**
   * Resources of the snapshot, in chunks, between begin and end.
   */
  'snapshot_chunk'?: (_tether_v1_Delta | null);
  'snapshot_end'?: (_tether_v1_SnapshotEnd | null);
  'delta'?: (_tether_v1_Delta | null);
  'heartbeat'?: (_tether_v1_Heartbeat | null);
  'goodbye'?: (_tether_v1_Goodbye | null);
  'endpoint_result'?: (_tether_v1_EndpointReportResult | null);
  /**
   * Only from a site proxy to its agents.
   */
  'site_local'?: (_tether_v1_SiteLocal | null);
  /**
   * A remote shell on this node: open (signed by the controller), input, resize, credit,
   * close (docs/shell.md).
   */
  'shell'?: (_tether_v1_ShellFrame | null);
  /**
   * The controller replicas a node may fail over to (issue 12), sent after the initial
   * sync when the controller is configured with `replicas`. Only from the controller.
   */
  'controllers'?: (_tether_v1_ControllerList | null);
  'msg'?: "snapshot_begin"|"snapshot_chunk"|"snapshot_end"|"delta"|"heartbeat"|"goodbye"|"endpoint_result"|"site_local"|"shell"|"controllers";
}

export interface ControllerMessage__Output {
  'snapshot_begin'?: (_tether_v1_SnapshotBegin__Output | null);
  /**
   * Resources of the snapshot, in chunks, between begin and end.
   */
  'snapshot_chunk'?: (_tether_v1_Delta__Output | null);
  'snapshot_end'?: (_tether_v1_SnapshotEnd__Output | null);
  'delta'?: (_tether_v1_Delta__Output | null);
  'heartbeat'?: (_tether_v1_Heartbeat__Output | null);
  'goodbye'?: (_tether_v1_Goodbye__Output | null);
  'endpoint_result'?: (_tether_v1_EndpointReportResult__Output | null);
  /**
   * Only from a site proxy to its agents.
   */
  'site_local'?: (_tether_v1_SiteLocal__Output | null);
  /**
   * A remote shell on this node: open (signed by the controller), input, resize, credit,
   * close (docs/shell.md).
   */
  'shell'?: (_tether_v1_ShellFrame__Output | null);
  /**
   * The controller replicas a node may fail over to (issue 12), sent after the initial
   * sync when the controller is configured with `replicas`. Only from the controller.
   */
  'controllers'?: (_tether_v1_ControllerList__Output | null);
  'msg'?: "snapshot_begin"|"snapshot_chunk"|"snapshot_end"|"delta"|"heartbeat"|"goodbye"|"endpoint_result"|"site_local"|"shell"|"controllers";
}
