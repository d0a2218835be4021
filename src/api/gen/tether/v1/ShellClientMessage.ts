// Original file: src/api/proto/tether/v1/tether.proto

import type { ShellStart as _tether_v1_ShellStart, ShellStart__Output as _tether_v1_ShellStart__Output } from '../../tether/v1/ShellStart.js';
import type { ShellSize as _tether_v1_ShellSize, ShellSize__Output as _tether_v1_ShellSize__Output } from '../../tether/v1/ShellSize.js';
import type { ShellEnd as _tether_v1_ShellEnd, ShellEnd__Output as _tether_v1_ShellEnd__Output } from '../../tether/v1/ShellEnd.js';

export interface ShellClientMessage {
  'start'?: (_tether_v1_ShellStart | null);
  'input'?: (Buffer | Uint8Array | string);
  'resize'?: (_tether_v1_ShellSize | null);
  /**
   * The operator ends the session (the pty gets SIGHUP).
   */
  'close'?: (_tether_v1_ShellEnd | null);
  'msg'?: "start"|"input"|"resize"|"close";
}

export interface ShellClientMessage__Output {
  'start'?: (_tether_v1_ShellStart__Output | null);
  'input'?: (Buffer);
  'resize'?: (_tether_v1_ShellSize__Output | null);
  /**
   * The operator ends the session (the pty gets SIGHUP).
   */
  'close'?: (_tether_v1_ShellEnd__Output | null);
  'msg'?: "start"|"input"|"resize"|"close";
}
