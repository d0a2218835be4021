// Original file: src/api/proto/tether/v1/tether.proto


/**
 * One phase of first boot: discover, preflight, profile, enroll, configure, ready.
 */
export interface FirstBootPhase {
  'name'?: (string);
  /**
   * RFC 3339 times; ended_at is empty while the phase runs.
   */
  'started_at'?: (string);
  'ended_at'?: (string);
  'attempts'?: (number);
}

/**
 * One phase of first boot: discover, preflight, profile, enroll, configure, ready.
 */
export interface FirstBootPhase__Output {
  'name': (string);
  /**
   * RFC 3339 times; ended_at is empty while the phase runs.
   */
  'started_at': (string);
  'ended_at': (string);
  'attempts': (number);
}
