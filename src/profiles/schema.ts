/**
 * The profile schema: TypeScript types and the JSON Schema (draft-07) of a profile file's
 * body, which is also the `spec` of a `kind: Profile` controller resource. The published
 * copy is profiles/profile.schema.json (a unit test keeps it identical to this one), so
 * editors validate profiles through the `# yaml-language-server: $schema=` modeline.
 */

import { MAX_HUGEPAGES, MAX_NUMA_NODE, MAX_TX_RATE, MAX_VFS } from './limits.js';

export type HugepageSize = '2M' | '1G';
export type DeviceType = 'netdevice' | 'vfio-pci';
export type LinkState = 'auto' | 'enable' | 'disable';
export type EswitchMode = 'legacy' | 'switchdev';

export interface PfSelector {
  /** Interface name, e.g. ens1f0. */
  name?: string;
  /** PCI address, e.g. 0000:51:00.0. */
  pciAddress?: string;
  /** PCI vendor id, hex without 0x (8086, 15b3). */
  vendor?: string;
  /** PCI device id, hex without 0x (159b, 101d). */
  device?: string;
  /** With vendor/device: which of the matching PFs, in PCI address order (0 = first). */
  port?: number;
}

export interface VfGroup {
  /** VF indexes, kernel list syntax: "0-3", "4,6". */
  range: string;
  deviceType?: DeviceType;
  mtu?: number;
  vlan?: number;
  qos?: number;
  spoofchk?: boolean;
  trust?: boolean;
  linkState?: LinkState;
  /** Mbit/s; 0 = unlimited. */
  minTxRate?: number;
  maxTxRate?: number;
  /** Name under which the VFs are offered to workloads (device plugin pool). */
  resourceName?: string;
}

export interface SriovPolicy {
  /** Unique name of this policy; site overrides merge into the policy with the same name. */
  name: string;
  pf: PfSelector;
  numVfs: number;
  /** PF MTU (VF MTUs are set per group). */
  mtu?: number;
  vfGroups?: VfGroup[];
}

export interface ProfileSpec {
  description?: string;
  /** Profiles this one builds on, applied left to right, then this file on top. */
  extends?: string[];
  site?: {
    role?: 'du' | 'cu' | 'du-cu' | 'generic';
    hardwareType?: string;
    labels?: Record<string, string>;
  };
  cpu?: {
    /** Housekeeping CPUs: the OS, IRQs and Tether's own services run here. */
    reserved?: string;
    /** CPUs for latency-sensitive workloads; "remaining" = every online CPU not reserved or offlined. */
    isolated?: string;
    /** CPUs taken offline to save power. */
    offlined?: string;
  };
  memory?: {
    hugepages?: {
      defaultSize?: HugepageSize;
      pages?: Array<{ size: HugepageSize; count: number; node?: number }>;
    };
  };
  kernel?: {
    /** Requires a PREEMPT_RT kernel (shipped in the node image). */
    realtime?: boolean;
    workloadHints?: { realTime?: boolean; highPowerConsumption?: boolean; perPodPowerManagement?: boolean };
    /** Adds intel_iommu=on iommu=pt (needed for vfio-pci VFs). */
    iommu?: boolean;
    additionalArgs?: string[];
    moduleBlacklist?: string[];
    sysctls?: Record<string, string | number>;
  };
  time?: {
    ptp?: {
      role: 'none' | 'slave' | 'bc' | 'gm';
      interface?: string;
      profile?: 'G.8275.1' | 'G.8275.2' | 'default';
      domainNumber?: number;
      ptp4lOpts?: string;
      phc2sysOpts?: string;
      schedPolicy?: 'SCHED_FIFO' | 'SCHED_OTHER';
      schedPriority?: number;
    };
  };
  sriov?: SriovPolicy[];
  smartnic?: {
    /** Names of sriov policies whose PFs this applies to. */
    sriov: string[];
    eswitchMode: EswitchMode;
    hwTcOffload?: boolean;
    /** Representor name template: {pf} = PF name, {vf} = VF index. Default "{pf}_{vf}". */
    representorNaming?: string;
  };
}

const bool = { type: 'boolean' } as const;
const cpuList = {
  type: 'string',
  pattern: '^(\\s*|\\d+(-\\d+)?(,\\d+(-\\d+)?)*)$',
  description: 'Kernel CPU list, e.g. "0-1,32-33"',
} as const;

export const PROFILE_SPEC_SCHEMA = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://tether.dev/schemas/profile.schema.json',
  title: 'Tether site/hardware profile',
  description:
    'Body of a Tether profile file (profiles/*.yaml) and spec of a kind: Profile resource. See docs/profiles.md.',
  type: 'object',
  additionalProperties: false,
  properties: {
    $schema: { type: 'string' },
    description: { type: 'string' },
    extends: {
      type: 'array',
      items: { type: 'string', pattern: '^[a-z0-9][a-z0-9._-]*$' },
      uniqueItems: true,
      description: 'Profiles this one builds on, applied left to right; this file wins.',
    },
    site: {
      type: 'object',
      additionalProperties: false,
      properties: {
        role: { enum: ['du', 'cu', 'du-cu', 'generic'] },
        hardwareType: { type: 'string' },
        labels: { type: 'object', additionalProperties: { type: 'string' } },
      },
    },
    cpu: {
      type: 'object',
      additionalProperties: false,
      properties: {
        reserved: { ...cpuList, description: 'Housekeeping CPUs (OS, IRQs, Tether services)' },
        isolated: {
          anyOf: [cpuList, { const: 'remaining' }],
          description: 'Workload CPUs; "remaining" = all online CPUs not reserved or offlined',
        },
        offlined: { ...cpuList, description: 'CPUs to take offline' },
      },
    },
    memory: {
      type: 'object',
      additionalProperties: false,
      properties: {
        hugepages: {
          type: 'object',
          additionalProperties: false,
          properties: {
            defaultSize: { enum: ['2M', '1G'] },
            pages: {
              type: 'array',
              items: {
                type: 'object',
                additionalProperties: false,
                required: ['size', 'count'],
                properties: {
                  size: { enum: ['2M', '1G'] },
                  count: { type: 'integer', minimum: 0, maximum: MAX_HUGEPAGES },
                  node: {
                    type: 'integer',
                    minimum: 0,
                    maximum: MAX_NUMA_NODE,
                    description: 'NUMA node; omitted = spread by the kernel',
                  },
                },
              },
            },
          },
        },
      },
    },
    kernel: {
      type: 'object',
      additionalProperties: false,
      properties: {
        realtime: { ...bool, description: 'Requires a PREEMPT_RT kernel' },
        workloadHints: {
          type: 'object',
          additionalProperties: false,
          properties: { realTime: bool, highPowerConsumption: bool, perPodPowerManagement: bool },
        },
        iommu: { ...bool, description: 'Adds intel_iommu=on iommu=pt' },
        additionalArgs: {
          type: 'array',
          items: { type: 'string', pattern: '^\\S+$' },
          description: 'Extra kernel arguments (merged with inherited ones)',
        },
        moduleBlacklist: { type: 'array', items: { type: 'string', pattern: '^[A-Za-z0-9_-]+$' } },
        sysctls: {
          type: 'object',
          propertyNames: { pattern: '^[a-z0-9_]+(\\.[A-Za-z0-9_-]+)+$' },
          additionalProperties: { type: ['string', 'integer'] },
        },
      },
    },
    time: {
      type: 'object',
      additionalProperties: false,
      properties: {
        ptp: {
          type: 'object',
          additionalProperties: false,
          required: ['role'],
          properties: {
            role: { enum: ['none', 'slave', 'bc', 'gm'] },
            interface: { type: 'string' },
            profile: { enum: ['G.8275.1', 'G.8275.2', 'default'] },
            domainNumber: { type: 'integer', minimum: 0, maximum: 255 },
            ptp4lOpts: { type: 'string' },
            phc2sysOpts: { type: 'string' },
            schedPolicy: { enum: ['SCHED_FIFO', 'SCHED_OTHER'] },
            schedPriority: { type: 'integer', minimum: 0, maximum: 99 },
          },
        },
      },
    },
    sriov: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        description:
          'pf and numVfs are required after composition (a site file may override only some fields)',
        properties: {
          name: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]*$' },
          pf: {
            type: 'object',
            additionalProperties: false,
            minProperties: 1,
            properties: {
              name: { type: 'string' },
              pciAddress: { type: 'string', pattern: '^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]$' },
              vendor: { type: 'string', pattern: '^[0-9a-f]{4}$' },
              device: { type: 'string', pattern: '^[0-9a-f]{4}$' },
              port: { type: 'integer', minimum: 0, maximum: 255 },
            },
          },
          numVfs: { type: 'integer', minimum: 0, maximum: MAX_VFS },
          mtu: { type: 'integer', minimum: 68, maximum: 9702 },
          vfGroups: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['range'],
              properties: {
                range: { type: 'string', pattern: '^\\d+(-\\d+)?(,\\d+(-\\d+)?)*$' },
                deviceType: { enum: ['netdevice', 'vfio-pci'] },
                mtu: { type: 'integer', minimum: 68, maximum: 9702 },
                vlan: { type: 'integer', minimum: 0, maximum: 4094 },
                qos: { type: 'integer', minimum: 0, maximum: 7 },
                spoofchk: bool,
                trust: bool,
                linkState: { enum: ['auto', 'enable', 'disable'] },
                minTxRate: { type: 'integer', minimum: 0, maximum: MAX_TX_RATE },
                maxTxRate: { type: 'integer', minimum: 0, maximum: MAX_TX_RATE },
                resourceName: { type: 'string' },
              },
            },
          },
        },
      },
    },
    smartnic: {
      type: 'object',
      additionalProperties: false,
      required: ['sriov', 'eswitchMode'],
      properties: {
        sriov: { type: 'array', items: { type: 'string' }, minItems: 1 },
        eswitchMode: { enum: ['legacy', 'switchdev'] },
        hwTcOffload: bool,
        representorNaming: { type: 'string', pattern: '\\{vf\\}' },
      },
    },
  },
} as const;

/** Schema of a `kind: Profile` resource's spec for the controller: the same as a profile file body. */
export const PROFILE_RESOURCE_SPEC_SCHEMA = PROFILE_SPEC_SCHEMA;

export const HUGEPAGE_KB: Record<HugepageSize, number> = { '2M': 2048, '1G': 1048576 };
