/** Public surface of the vRouter agent's kernel side (see docs/vrouter.md). */
export {
  assertConverged,
  type PolicyCounter,
  type SyncProgress,
  type SyncReport,
  VRouter,
  type VRouterOptions,
} from './agent.js';
export { type ApplyResult, applyPlan } from './applier.js';
export * from './model.js';
export { type Observed, observe } from './observe.js';
export { type Plan, type PlanStats, plan, policyFamily, policyTable } from './planner.js';
export { choosePolicyMode, type PolicyChoice, type PolicyMode } from './policy-mode.js';
export {
  allocateTransit,
  desiredFromResources,
  type EndpointSpec,
  type NetworkPolicySpec,
  type ResourceProblem,
  type ResourcesInput,
  type VirtualNetworkSpec,
  type VirtualNetworkStatus,
} from './resources.js';
export { validateDesired } from './validate.js';
