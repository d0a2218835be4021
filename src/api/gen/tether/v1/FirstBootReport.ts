// Original file: src/api/proto/tether/v1/tether.proto

import type { FirstBootPhase as _tether_v1_FirstBootPhase, FirstBootPhase__Output as _tether_v1_FirstBootPhase__Output } from '../../tether/v1/FirstBootPhase.js';
import type { Long } from '@grpc/proto-loader';

export interface FirstBootReport {
  /**
   * Increases with every transition the node records; older reports are ignored.
   */
  'seq'?: (number | string | Long);
  /**
   * The phase the node is in, or "ready", or "failed".
   */
  'phase'?: (string);
  'phases'?: (_tether_v1_FirstBootPhase)[];
  /**
   * The last error: its phase, stable code and message (empty when none).
   */
  'last_error_phase'?: (string);
  'last_error_code'?: (string);
  'last_error'?: (string);
  'last_error_at'?: (string);
  /**
   * Where the bootstrap configuration came from (embedded, cmdline, config-drive, dhcp, …).
   */
  'source'?: (string);
  'reboots'?: (number);
  'updated_at'?: (string);
}

export interface FirstBootReport__Output {
  /**
   * Increases with every transition the node records; older reports are ignored.
   */
  'seq': (number);
  /**
   * The phase the node is in, or "ready", or "failed".
   */
  'phase': (string);
  'phases': (_tether_v1_FirstBootPhase__Output)[];
  /**
   * The last error: its phase, stable code and message (empty when none).
   */
  'last_error_phase': (string);
  'last_error_code': (string);
  'last_error': (string);
  'last_error_at': (string);
  /**
   * Where the bootstrap configuration came from (embedded, cmdline, config-drive, dhcp, …).
   */
  'source': (string);
  'reboots': (number);
  'updated_at': (string);
}
