// Original file: src/api/proto/tether/v1/tether.proto

import type { ShellOpen as _tether_v1_ShellOpen, ShellOpen__Output as _tether_v1_ShellOpen__Output } from '../../tether/v1/ShellOpen.js';
import type { ShellSize as _tether_v1_ShellSize, ShellSize__Output as _tether_v1_ShellSize__Output } from '../../tether/v1/ShellSize.js';
import type { ShellEnd as _tether_v1_ShellEnd, ShellEnd__Output as _tether_v1_ShellEnd__Output } from '../../tether/v1/ShellEnd.js';
import type { Long } from '@grpc/proto-loader';

/**
 * One frame of a remote shell between the controller and the node that runs it, carried on
 * the node's own session (no inbound port at the site). Every field is bounded: `data` at
 * most 64 KiB, `session_id` 8 to 64 of [a-z0-9-].
 */
export interface ShellFrame {
  'session_id'?: (string);
  /**
   * The node the frame is for or from. Set on a site proxy's WAN session, where one session
   * carries many nodes; the proxy overwrites it with the agent's certificate name upstream.
   */
  'node'?: (string);
  /**
   * controller → node: start a pty. Only the controller's signature makes a node spawn one.
   */
  'open'?: (_tether_v1_ShellOpen | null);
  /**
   * controller → node: operator input; node → controller: pty output.
   */
  'data'?: (Buffer | Uint8Array | string);
  'resize'?: (_tether_v1_ShellSize | null);
  /**
   * controller → node: this many more output bytes may be sent (flow control window).
   */
  'credit'?: (number | string | Long);
  /**
   * node → controller: the shell ended; controller → node: end it now.
   */
  'end'?: (_tether_v1_ShellEnd | null);
  'op'?: "open"|"data"|"resize"|"credit"|"end";
}

/**
 * One frame of a remote shell between the controller and the node that runs it, carried on
 * the node's own session (no inbound port at the site). Every field is bounded: `data` at
 * most 64 KiB, `session_id` 8 to 64 of [a-z0-9-].
 */
export interface ShellFrame__Output {
  'session_id': (string);
  /**
   * The node the frame is for or from. Set on a site proxy's WAN session, where one session
   * carries many nodes; the proxy overwrites it with the agent's certificate name upstream.
   */
  'node': (string);
  /**
   * controller → node: start a pty. Only the controller's signature makes a node spawn one.
   */
  'open'?: (_tether_v1_ShellOpen__Output | null);
  /**
   * controller → node: operator input; node → controller: pty output.
   */
  'data'?: (Buffer);
  'resize'?: (_tether_v1_ShellSize__Output | null);
  /**
   * controller → node: this many more output bytes may be sent (flow control window).
   */
  'credit'?: (number);
  /**
   * node → controller: the shell ended; controller → node: end it now.
   */
  'end'?: (_tether_v1_ShellEnd__Output | null);
  'op'?: "open"|"data"|"resize"|"credit"|"end";
}
