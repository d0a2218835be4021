import { TetherError } from '../lib/errors.js';
import type { TetherObject } from './resource.js';

/**
 * Resource kinds: the JSON Schema (draft-07, as Ajv runs it) of each kind's `spec` and
 * `status`, the TypeScript types that match them, and the semantic checks a schema cannot
 * express (CIDR host bits, gateway inside the subnet, …). docs/resources.md is the
 * field-by-field reference; keep the three in step.
 *
 * Validation itself (envelope, Ajv, error shaping, YAML line numbers) is src/api/validate.ts.
 */

// ---------------------------------------------------------------------------------------
// TypeScript types

export type LabelMap = Record<string, string>;

export interface SiteSpec {
  description?: string;
  /** How nodes of this site are admitted after enrollment. Default `auto`. */
  approval?: 'auto' | 'manual';
  labels?: LabelMap;
  /** MTU of the site's underlay; workload MTU = underlayMtu − 50 (VXLAN). Default 1500. */
  underlayMtu?: number;
  /** How long the site runs headless before it reports itself degraded. */
  autonomySeconds?: number;
  /** Name of the Profile resource the site's nodes use (see docs/profiles.md). */
  profile?: string;
}
export type SiteStatus = Record<string, unknown>;

export interface NodeSpec {
  site: string;
  /** Hardware facts reported at enrollment (free-form). */
  facts?: Record<string, unknown>;
}
export interface NodeStatus {
  phase: 'Pending' | 'Approved' | 'Revoked' | 'Reset';
  /** The current certificate's serial first, then the previous one during rotation. */
  certSerials?: string[];
  certNotAfter?: string;
  /** Underlay (VTEP) address recorded from the node's first hello that declared one. */
  vtep?: string;
  [key: string]: unknown;
}

export interface EnrollmentTokenSpec {
  site: string;
  /** RFC 3339 date-time. */
  expiresAt: string;
  uses: number;
  description?: string;
}
export interface EnrollmentTokenStatus {
  secretHash: string;
  used: number;
  [key: string]: unknown;
}

export interface VirtualNetworkSpec {
  /** IPv4 CIDRs with host bits zero; at least one. */
  subnets: string[];
  /** IPv4 address inside subnets[0]. */
  gateway?: string;
  localBreakout?: boolean;
  /** Sites the network extends to (all sites when absent). */
  sites?: string[];
  /** VXLAN network identifier; allocated by the controller when absent. */
  vni?: number;
}
export interface VirtualNetworkStatus {
  vni?: number;
  siteBlocks?: Record<string, string>;
  /** Each node's share of its site's block (the node allocates only from its share). */
  nodeBlocks?: Record<string, string>;
  [key: string]: unknown;
}

export type PolicyAction = 'allow' | 'deny';
export interface PolicyPort {
  protocol: 'tcp' | 'udp' | 'icmp';
  port?: number;
}
export interface PolicyRule {
  name: string;
  action: PolicyAction;
  from: { matchLabels: LabelMap };
  to: { matchLabels: LabelMap };
  ports?: PolicyPort[];
}
export interface NetworkPolicySpec {
  network: string;
  defaultAction: PolicyAction;
  rules: PolicyRule[];
}

export interface EndpointSpec {
  network: string;
  node: string;
  site: string;
  /** Lowercase colon-separated MAC, e.g. 02:00:0a:00:00:05. */
  mac: string;
  ip: string;
  /** Underlay address of the VXLAN tunnel endpoint that reaches this endpoint. */
  vtep: string;
  hostIfname?: string;
  labels?: LabelMap;
}

export type Site = TetherObject<SiteSpec, SiteStatus>;
export type NodeObject = TetherObject<NodeSpec, NodeStatus>;
export type EnrollmentToken = TetherObject<EnrollmentTokenSpec, EnrollmentTokenStatus>;
export type VirtualNetwork = TetherObject<VirtualNetworkSpec, VirtualNetworkStatus>;
export type NetworkPolicy = TetherObject<NetworkPolicySpec>;
export type Endpoint = TetherObject<EndpointSpec>;

export const SITE_DEFAULTS = { approval: 'auto', underlayMtu: 1500 } as const;

// ---------------------------------------------------------------------------------------
// Schemas

export type JsonSchema = Record<string, unknown>;

const NAME_REF: JsonSchema = {
  type: 'string',
  minLength: 1,
  maxLength: 63,
  pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$',
  description: 'the name of an object (a DNS-1123 label)',
};

export const LABEL_MAP_SCHEMA: JsonSchema = {
  type: 'object',
  propertyNames: {
    type: 'string',
    maxLength: 253,
    pattern: '^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$',
    description: 'a label key: letters, digits, "-", "_", ".", "/", starting and ending alphanumeric',
  },
  additionalProperties: { type: 'string', maxLength: 253, description: 'a string label value' },
  description: 'a map of string labels',
};

const IPV4: JsonSchema = { type: 'string', format: 'ipv4', description: 'an IPv4 address like 10.0.0.1' };
const CIDR: JsonSchema = {
  type: 'string',
  format: 'ipv4-cidr',
  description: 'an IPv4 CIDR like 10.0.0.0/24',
};

export const SITE_SPEC_SCHEMA: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    description: { type: 'string', maxLength: 1024 },
    approval: { enum: ['auto', 'manual'], default: SITE_DEFAULTS.approval },
    labels: LABEL_MAP_SCHEMA,
    underlayMtu: {
      type: 'integer',
      minimum: 1280,
      maximum: 9216,
      default: SITE_DEFAULTS.underlayMtu,
      description: 'an integer MTU from 1280 to 9216',
    },
    autonomySeconds: { type: 'integer', minimum: 0, description: 'a whole number of seconds >= 0' },
    profile: {
      type: 'string',
      pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$',
      description: "the name of the Profile resource the site's nodes use",
    },
  },
};

export const NODE_SPEC_SCHEMA: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['site'],
  properties: {
    site: NAME_REF,
    facts: { type: 'object', description: 'a mapping of hardware facts' },
  },
};

export const ENROLLMENT_TOKEN_SPEC_SCHEMA: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['site', 'expiresAt', 'uses'],
  properties: {
    site: NAME_REF,
    expiresAt: {
      type: 'string',
      format: 'date-time',
      description: 'an RFC 3339 date-time like 2026-01-31T12:00:00Z',
    },
    uses: { type: 'integer', minimum: 1, description: 'an integer >= 1' },
    description: { type: 'string', maxLength: 1024 },
  },
};

export const VIRTUAL_NETWORK_SPEC_SCHEMA: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['subnets'],
  properties: {
    subnets: { type: 'array', minItems: 1, items: CIDR, description: 'a list of at least one IPv4 CIDR' },
    gateway: IPV4,
    localBreakout: { type: 'boolean' },
    sites: {
      type: 'array',
      items: NAME_REF,
      uniqueItems: true,
      description: 'a list of distinct site names',
    },
    vni: { type: 'integer', minimum: 1, maximum: 16777215, description: 'an integer VNI from 1 to 16777215' },
  },
};

export const NETWORK_POLICY_SPEC_SCHEMA: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['network', 'defaultAction', 'rules'],
  properties: {
    network: NAME_REF,
    defaultAction: { enum: ['allow', 'deny'] },
    rules: {
      type: 'array',
      description: 'a list of rules',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'action', 'from', 'to'],
        properties: {
          name: NAME_REF,
          action: { enum: ['allow', 'deny'] },
          from: selectorSchema(),
          to: selectorSchema(),
          ports: {
            type: 'array',
            description: 'a list of {protocol, port}',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['protocol'],
              properties: {
                protocol: { enum: ['tcp', 'udp', 'icmp'] },
                port: { type: 'integer', minimum: 1, maximum: 65535, description: 'a port from 1 to 65535' },
              },
            },
          },
        },
      },
    },
  },
};

function selectorSchema(): JsonSchema {
  return {
    type: 'object',
    additionalProperties: false,
    required: ['matchLabels'],
    properties: { matchLabels: LABEL_MAP_SCHEMA },
    description: 'a selector {matchLabels: {...}}',
  };
}

/**
 * First three octets of every virtual network's anycast gateway MAC (`02:74:67` + VNI): the
 * controller refuses endpoints in this range, nodes never generate one, and the vRouter
 * derives each gateway from it. Part of the contract, so controller and node share it.
 */
export const GATEWAY_MAC_PREFIX = '02:74:67';

export const ENDPOINT_SPEC_SCHEMA: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['network', 'node', 'site', 'mac', 'ip', 'vtep'],
  properties: {
    network: NAME_REF,
    node: NAME_REF,
    site: NAME_REF,
    mac: {
      type: 'string',
      pattern: '^[0-9a-f]{2}(:[0-9a-f]{2}){5}$',
      description: 'a lowercase MAC address like 02:00:0a:00:00:05',
    },
    ip: IPV4,
    vtep: IPV4,
    hostIfname: {
      type: 'string',
      minLength: 1,
      maxLength: 15,
      pattern: '^[^/\\s:]+$',
      description: 'a Linux interface name (1-15 characters, no "/", ":" or spaces)',
    },
    labels: LABEL_MAP_SCHEMA,
  },
};

const FREE_STATUS: JsonSchema = { type: 'object', description: 'a status mapping' };

// ---------------------------------------------------------------------------------------
// Semantic checks

/** One problem found by a semantic check; `field` is relative to the object root. */
export interface Issue {
  field: string;
  message: string;
  expected: string;
}

export type SemanticCheck = (obj: TetherObject) => Issue[];

/** Parses a dotted-quad IPv4 address into a 32-bit unsigned number, or undefined. */
export function parseIPv4(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i]!;
    if (part.length > 1 && part.startsWith('0')) return undefined; // no octal-looking octets
    const o = Number(part);
    if (o > 255) return undefined;
    n = n * 256 + o;
  }
  return n;
}

export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export interface Cidr {
  /** Network address as given (may have host bits set; see `network`). */
  address: number;
  prefix: number;
  /** Address with host bits cleared. */
  network: number;
  /** Last address of the block. */
  broadcast: number;
}

/** Parses `a.b.c.d/n` syntactically (host bits are not checked here). */
export function parseCidr(s: string): Cidr | undefined {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(s);
  if (!m) return undefined;
  const address = parseIPv4(m[1]!);
  const prefix = Number(m[2]);
  if (address === undefined || prefix > 32 || (m[2]!.length > 1 && m[2]!.startsWith('0'))) return undefined;
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const network = (address & mask) >>> 0;
  const broadcast = (network | (~mask >>> 0)) >>> 0;
  return { address, prefix, network, broadcast };
}

export function cidrContains(c: Cidr, ip: number): boolean {
  return ip >= c.network && ip <= c.broadcast;
}

function checkVirtualNetwork(obj: TetherObject): Issue[] {
  const spec = obj.spec as unknown as VirtualNetworkSpec;
  const issues: Issue[] = [];
  const parsed: Array<Cidr | undefined> = spec.subnets.map((s) => parseCidr(s));
  parsed.forEach((c, i) => {
    if (c && c.address !== c.network) {
      const fixed = `${formatIPv4(c.network)}/${c.prefix}`;
      issues.push({
        field: `spec.subnets[${i}]`,
        message: `${spec.subnets[i]} has host bits set (did you mean ${fixed}?)`,
        expected: `a network address with host bits zero, e.g. ${fixed}`,
      });
    }
  });
  parsed.forEach((a, i) => {
    parsed.forEach((b, j) => {
      if (a && b && j > i && a.network <= b.broadcast && b.network <= a.broadcast) {
        issues.push({
          field: `spec.subnets[${j}]`,
          message: `${spec.subnets[j]} overlaps ${spec.subnets[i]} (spec.subnets[${i}])`,
          expected: 'subnets that do not overlap',
        });
      }
    });
  });
  const first = parsed[0];
  if (spec.gateway !== undefined && first) {
    const gw = parseIPv4(spec.gateway);
    const sub = spec.subnets[0];
    if (gw !== undefined) {
      if (!cidrContains(first, gw)) {
        issues.push({
          field: 'spec.gateway',
          message: `${spec.gateway} is outside ${sub}`,
          expected: `an address inside spec.subnets[0] (${sub})`,
        });
      } else if (first.prefix < 31 && (gw === first.network || gw === first.broadcast)) {
        issues.push({
          field: 'spec.gateway',
          message: `${spec.gateway} is the ${gw === first.network ? 'network' : 'broadcast'} address of ${sub}`,
          expected: `a host address inside ${sub}`,
        });
      }
    }
  }
  return issues;
}

function checkNetworkPolicy(obj: TetherObject): Issue[] {
  const spec = obj.spec as unknown as NetworkPolicySpec;
  const issues: Issue[] = [];
  const seen = new Map<string, number>();
  spec.rules.forEach((r, i) => {
    const prev = seen.get(r.name);
    if (prev !== undefined) {
      issues.push({
        field: `spec.rules[${i}].name`,
        message: `rule name "${r.name}" is already used by spec.rules[${prev}]`,
        expected: 'rule names unique within the policy',
      });
    } else {
      seen.set(r.name, i);
    }
    r.ports?.forEach((p, k) => {
      if (p.protocol === 'icmp' && p.port !== undefined) {
        issues.push({
          field: `spec.rules[${i}].ports[${k}].port`,
          message: 'icmp has no ports',
          expected: 'no port for protocol icmp',
        });
      }
    });
  });
  return issues;
}

function checkEndpoint(obj: TetherObject): Issue[] {
  const spec = obj.spec as unknown as EndpointSpec;
  const mac = spec.mac.split(':').map((h) => Number.parseInt(h, 16));
  const issues: Issue[] = [];
  if ((mac[0]! & 1) === 1) {
    issues.push({
      field: 'spec.mac',
      message: `${spec.mac} is a multicast address`,
      expected: 'a unicast MAC (lowest bit of the first octet clear)',
    });
  } else if (mac.every((b) => b === 0)) {
    issues.push({
      field: 'spec.mac',
      message: 'the all-zero MAC is not an address',
      expected: 'a unicast MAC',
    });
  }
  return issues;
}

// ---------------------------------------------------------------------------------------
// Registry

export type NameRule = 'dns-label' | 'dns-subdomain';

export interface KindDefinition {
  kind: string;
  specSchema: JsonSchema;
  statusSchema: JsonSchema;
  /** `dns-label` (default): `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, ≤ 63; `dns-subdomain`: labels
   *  joined by dots, ≤ 253. */
  name: NameRule;
  /** Checks run after the schema passed (so they may rely on the shape). */
  check?: SemanticCheck;
}

const registry = new Map<string, KindDefinition>();

/**
 * Adds a kind (e.g. `Profile` from src/profiles). Registering the same kind again with an
 * identical definition is a no-op; with a different one it is a bug (TETHER_E_INTERNAL).
 */
export function registerKind(
  kind: string,
  specSchema: JsonSchema,
  statusSchema?: JsonSchema,
  options: { name?: NameRule; check?: SemanticCheck } = {},
): void {
  if (!/^[A-Z][A-Za-z0-9]*$/.test(kind)) {
    throw new TetherError('TETHER_E_INTERNAL', `kind "${kind}" is not a PascalCase name`);
  }
  const def: KindDefinition = {
    kind,
    specSchema,
    statusSchema: statusSchema ?? FREE_STATUS,
    name: options.name ?? 'dns-label',
    ...(options.check ? { check: options.check } : {}),
  };
  const old = registry.get(kind);
  if (old) {
    const same =
      JSON.stringify([old.specSchema, old.statusSchema, old.name]) ===
        JSON.stringify([def.specSchema, def.statusSchema, def.name]) && old.check === def.check;
    if (same) return;
    throw new TetherError('TETHER_E_INTERNAL', `kind ${kind} is already registered with a different schema`);
  }
  registry.set(kind, def);
}

export function kindDefinition(kind: string): KindDefinition | undefined {
  return registry.get(kind);
}

/** Registered kinds, sorted. */
export function knownKinds(): string[] {
  return [...registry.keys()].sort();
}

registerKind('Site', SITE_SPEC_SCHEMA);
registerKind('Node', NODE_SPEC_SCHEMA);
registerKind('EnrollmentToken', ENROLLMENT_TOKEN_SPEC_SCHEMA);
registerKind('VirtualNetwork', VIRTUAL_NETWORK_SPEC_SCHEMA, undefined, { check: checkVirtualNetwork });
registerKind('NetworkPolicy', NETWORK_POLICY_SPEC_SCHEMA, undefined, { check: checkNetworkPolicy });
registerKind('Endpoint', ENDPOINT_SPEC_SCHEMA, undefined, { name: 'dns-subdomain', check: checkEndpoint });
