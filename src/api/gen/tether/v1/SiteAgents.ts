// Original file: src/api/proto/tether/v1/tether.proto

import type { AgentState as _tether_v1_AgentState, AgentState__Output as _tether_v1_AgentState__Output } from '../../tether/v1/AgentState.js';

export interface SiteAgents {
  'agents'?: (_tether_v1_AgentState)[];
  /**
   * true: the complete set (a node not listed is not connected to the proxy); false: only
   * the agents that changed since the last message.
   */
  'complete'?: (boolean);
}

export interface SiteAgents__Output {
  'agents': (_tether_v1_AgentState__Output)[];
  /**
   * true: the complete set (a node not listed is not connected to the proxy); false: only
   * the agents that changed since the last message.
   */
  'complete': (boolean);
}
