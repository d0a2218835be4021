export {
  defaultBinaries,
  defaultLabStateDir,
  Lab,
  type LabStatusView,
  listNetns,
  processAlive,
  type WanSiteStatus,
} from './lab.js';
export {
  allNodes,
  allWorkloads,
  LAB_NETWORKS,
  LAB_SUBNET,
  type LabNetwork,
  type LabOptions,
  type LabPlan,
  planLab,
  plannedNamespaces,
  vnNamespaceRe,
} from './plan.js';
export type { LabState, LabWorkload, WanImpairment } from './state.js';
