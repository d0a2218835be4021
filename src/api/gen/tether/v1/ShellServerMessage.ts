// Original file: src/api/proto/tether/v1/tether.proto

import type { ShellStarted as _tether_v1_ShellStarted, ShellStarted__Output as _tether_v1_ShellStarted__Output } from '../../tether/v1/ShellStarted.js';
import type { ShellEnd as _tether_v1_ShellEnd, ShellEnd__Output as _tether_v1_ShellEnd__Output } from '../../tether/v1/ShellEnd.js';

export interface ShellServerMessage {
  'started'?: (_tether_v1_ShellStarted | null);
  'output'?: (Buffer | Uint8Array | string);
  'end'?: (_tether_v1_ShellEnd | null);
  'msg'?: "started"|"output"|"end";
}

export interface ShellServerMessage__Output {
  'started'?: (_tether_v1_ShellStarted__Output | null);
  'output'?: (Buffer);
  'end'?: (_tether_v1_ShellEnd__Output | null);
  'msg'?: "started"|"output"|"end";
}
