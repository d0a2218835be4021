import {
  cidrContains,
  formatIPv4 as formatIp,
  type Issue,
  type JsonSchema,
  LABEL_MAP_SCHEMA,
  type LabelMap,
  parseCidr,
  parseIPv4 as parseIp,
  registerKind,
} from './kinds.js';
import type { TetherObject } from './resource.js';

/**
 * The local gateway's kinds: `Gateway` (a site's BGP speaker towards its router, the pool of
 * routable addresses floating IPs come from) and `FloatingIP` (one routable address mapped
 * 1:1 to an endpoint of one virtual network). docs/resources.md is the field reference.
 */

export interface BfdSpec {
  enabled: boolean;
  /** Transmit and receive interval in milliseconds. Default 300. */
  intervalMs: number;
  /** Missed packets before the session is declared down. Default 3. */
  multiplier: number;
}

export interface GatewayPeerSpec {
  name: string;
  address: string;
  asn: number;
  bfd?: BfdSpec;
  /** BGP hold time in seconds (0, or 3–65535). Default 90. */
  holdSeconds: number;
  /** Keepalive in seconds; below the hold time. Default 30. */
  keepaliveSeconds: number;
}

export interface GatewayAnnounce {
  /** The site's routable network prefixes, announced to every peer. */
  prefixes: string[];
  /** Announce the site's floating IPs (/32 each). Default true. */
  floatingIps: boolean;
  /** Accept a default route learned from the peers (installed in the node's table). Default false. */
  acceptDefaultRoute: boolean;
}

export interface GatewaySpec {
  site: string;
  /** Gateway nodes of the site (at most 2 active); absent: every node of the site. */
  nodes?: string[];
  localAsn: number;
  /** BGP router id; default the node's VTEP address. */
  routerId?: string;
  /** Routable addresses floating IPs are taken from. */
  pool: string[];
  peers: GatewayPeerSpec[];
  announce: GatewayAnnounce;
  /** RFC 4724 restart time in seconds. Default 120. */
  gracefulRestartSeconds: number;
  /** RFC 9494 long-lived stale time; absent: the site's autonomySeconds. */
  llgrStaleSeconds?: number;
}

export interface FloatingIPSpec {
  gateway: string;
  address: string;
  network: string;
  target: { endpoint?: string; matchLabels?: LabelMap };
}

export type Gateway = TetherObject<GatewaySpec>;
export type FloatingIP = TetherObject<FloatingIPSpec>;

const NAME: JsonSchema = {
  type: 'string',
  minLength: 1,
  maxLength: 63,
  pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$',
  description: 'the name of an object (a DNS-1123 label)',
};
const IPV4: JsonSchema = { type: 'string', format: 'ipv4', description: 'an IPv4 address like 10.0.0.1' };
const CIDR: JsonSchema = {
  type: 'string',
  format: 'ipv4-cidr',
  description: 'an IPv4 CIDR like 10.0.0.0/24',
};
const ASN: JsonSchema = {
  type: 'integer',
  minimum: 1,
  maximum: 4294967295,
  description: 'an AS number from 1 to 4294967295',
};

export const GATEWAY_SPEC_SCHEMA: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['site', 'localAsn', 'pool', 'peers'],
  properties: {
    site: NAME,
    nodes: {
      type: 'array',
      items: NAME,
      uniqueItems: true,
      maxItems: 2,
      description: 'at most 2 distinct node names',
    },
    localAsn: ASN,
    routerId: IPV4,
    pool: { type: 'array', items: CIDR, description: 'a list of IPv4 CIDRs' },
    peers: {
      type: 'array',
      minItems: 1,
      maxItems: 16,
      description: 'a list of 1 to 16 peers',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'address', 'asn'],
        properties: {
          name: NAME,
          address: IPV4,
          asn: ASN,
          bfd: {
            type: 'object',
            additionalProperties: false,
            properties: {
              enabled: { type: 'boolean', default: true },
              intervalMs: {
                type: 'integer',
                minimum: 10,
                maximum: 60000,
                default: 300,
                description: 'milliseconds from 10 to 60000',
              },
              multiplier: {
                type: 'integer',
                minimum: 1,
                maximum: 255,
                default: 3,
                description: 'an integer from 1 to 255',
              },
            },
          },
          holdSeconds: {
            type: 'integer',
            minimum: 0,
            maximum: 65535,
            default: 90,
            description: 'seconds: 0 or 3 to 65535',
          },
          keepaliveSeconds: {
            type: 'integer',
            minimum: 1,
            maximum: 21845,
            default: 30,
            description: 'seconds from 1 to 21845',
          },
        },
      },
    },
    announce: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        prefixes: { type: 'array', items: CIDR, default: [], description: 'a list of IPv4 CIDRs' },
        floatingIps: { type: 'boolean', default: true },
        acceptDefaultRoute: { type: 'boolean', default: false },
      },
    },
    gracefulRestartSeconds: {
      type: 'integer',
      minimum: 1,
      maximum: 4095,
      default: 120,
      description: 'seconds from 1 to 4095 (RFC 4724)',
    },
    llgrStaleSeconds: {
      type: 'integer',
      minimum: 0,
      maximum: 16777215,
      description: 'seconds from 0 to 16777215 (RFC 9494)',
    },
  },
};

export const FLOATING_IP_SPEC_SCHEMA: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['gateway', 'address', 'network', 'target'],
  properties: {
    gateway: NAME,
    address: IPV4,
    network: NAME,
    target: {
      type: 'object',
      additionalProperties: false,
      description: 'either {endpoint: NAME} or {matchLabels: {...}}',
      properties: {
        endpoint: {
          type: 'string',
          minLength: 1,
          maxLength: 253,
          pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$',
          description: 'an Endpoint name',
        },
        matchLabels: LABEL_MAP_SCHEMA,
      },
    },
  },
};

function hostBits(field: string, s: string): Issue | undefined {
  const c = parseCidr(s);
  if (!c || c.address === c.network) return undefined;
  const fixed = `${formatIp(c.network)}/${c.prefix}`;
  return {
    field,
    message: `${s} has host bits set (did you mean ${fixed}?)`,
    expected: `a network address with host bits zero, e.g. ${fixed}`,
  };
}

function checkGateway(obj: TetherObject): Issue[] {
  const spec = obj.spec as unknown as GatewaySpec;
  const issues: Issue[] = [];
  spec.pool.forEach((p, i) => {
    const h = hostBits(`spec.pool[${i}]`, p);
    if (h) issues.push(h);
  });
  spec.announce.prefixes.forEach((p, i) => {
    const h = hostBits(`spec.announce.prefixes[${i}]`, p);
    if (h) issues.push(h);
  });
  const names = new Map<string, number>();
  const addrs = new Map<string, number>();
  spec.peers.forEach((p, i) => {
    const f = `spec.peers[${i}]`;
    const n = names.get(p.name);
    if (n !== undefined)
      issues.push({
        field: `${f}.name`,
        message: `peer name "${p.name}" is already used by spec.peers[${n}]`,
        expected: 'peer names unique within the gateway',
      });
    else names.set(p.name, i);
    const a = addrs.get(p.address);
    if (a !== undefined)
      issues.push({
        field: `${f}.address`,
        message: `${p.address} is already spec.peers[${a}]`,
        expected: 'one peer per address',
      });
    else addrs.set(p.address, i);
    if (p.holdSeconds > 0 && p.holdSeconds < 3)
      issues.push({
        field: `${f}.holdSeconds`,
        message: `${p.holdSeconds} is not a valid hold time`,
        expected: '0 or 3 to 65535 (RFC 4271)',
      });
    else if (p.holdSeconds > 0 && p.keepaliveSeconds >= p.holdSeconds)
      issues.push({
        field: `${f}.keepaliveSeconds`,
        message: `keepalive ${p.keepaliveSeconds} s is not below the hold time ${p.holdSeconds} s`,
        expected: `a keepalive below holdSeconds (usually a third: ${Math.max(1, Math.floor(p.holdSeconds / 3))})`,
      });
    const ip = parseIp(p.address);
    if (ip !== undefined && (ip === 0 || ip >>> 24 === 127 || ip >>> 28 >= 14))
      issues.push({
        field: `${f}.address`,
        message: `${p.address} is not a unicast peer address`,
        expected: 'a unicast IPv4 address of the site router',
      });
  });
  return issues;
}

function checkFloatingIP(obj: TetherObject): Issue[] {
  const spec = obj.spec as unknown as FloatingIPSpec;
  const t = spec.target;
  const given = [t.endpoint !== undefined, t.matchLabels !== undefined].filter(Boolean).length;
  if (given !== 1)
    return [
      {
        field: 'spec.target',
        message: given === 0 ? 'no target given' : 'both endpoint and matchLabels given',
        expected: 'exactly one of target.endpoint or target.matchLabels',
      },
    ];
  if (t.matchLabels && Object.keys(t.matchLabels).length === 0)
    return [
      {
        field: 'spec.target.matchLabels',
        message: 'an empty selector selects every endpoint',
        expected: 'at least one label',
      },
    ];
  return [];
}

/** One claim problem across objects; `index` is the object's position in the applied list. */
export interface GatewayClaimIssue extends Issue {
  kind: string;
  name: string;
}

/**
 * Rules that span objects, judged on the store's content as it will be after a write
 * (`after`: every Gateway and FloatingIP, new versions substituted): a floating IP's address
 * lies inside its gateway's pool, no two floating IPs hold the same address, no two gateways'
 * pools overlap, a site has at most one Gateway. Only issues of objects in `changed` are
 * reported, so an old inconsistency never blocks an unrelated write.
 */
export function gatewayClaimIssues(
  after: readonly TetherObject[],
  changed: ReadonlySet<string>,
): GatewayClaimIssue[] {
  const issues: GatewayClaimIssue[] = [];
  const gateways = new Map<string, GatewaySpec>();
  const bySite = new Map<string, string>();
  const pools: { gw: string; i: number; c: NonNullable<ReturnType<typeof parseCidr>> }[] = [];
  const key = (o: TetherObject) => `${o.kind}/${o.metadata.name}`;
  // Unchanged objects first: of two holders of one address, the one being written is refused.
  const rank = (o: TetherObject) => (changed.has(key(o)) ? 1 : 0);
  const sorted = [...after].sort((a, b) => rank(a) - rank(b) || key(a).localeCompare(key(b)));
  for (const o of sorted) {
    if (o.kind !== 'Gateway') continue;
    const spec = o.spec as unknown as GatewaySpec;
    gateways.set(o.metadata.name, spec);
    const other = bySite.get(spec.site);
    if (other !== undefined && changed.has(key(o)))
      issues.push({
        kind: o.kind,
        name: o.metadata.name,
        field: 'spec.site',
        message: `site ${spec.site} already has Gateway ${other}`,
        expected: 'one Gateway per site (list both peers in it)',
      });
    else bySite.set(spec.site, o.metadata.name);
    spec.pool.forEach((p, i) => {
      const c = parseCidr(p);
      if (!c) return;
      const clash = pools.find(
        (q) => q.gw !== o.metadata.name && q.c.network <= c.broadcast && c.network <= q.c.broadcast,
      );
      if (clash && changed.has(key(o)))
        issues.push({
          kind: o.kind,
          name: o.metadata.name,
          field: `spec.pool[${i}]`,
          message: `${p} overlaps the pool of Gateway ${clash.gw}`,
          expected: 'pools of different gateways apart',
        });
      pools.push({ gw: o.metadata.name, i, c });
    });
  }
  const held = new Map<string, string>();
  for (const o of sorted) {
    if (o.kind !== 'FloatingIP') continue;
    const spec = o.spec as unknown as FloatingIPSpec;
    const mine = changed.has(key(o));
    const gw = gateways.get(spec.gateway);
    const ip = parseIp(spec.address);
    if (mine && !gw)
      issues.push({
        kind: o.kind,
        name: o.metadata.name,
        field: 'spec.gateway',
        message: `Gateway "${spec.gateway}" does not exist`,
        expected: 'the name of an existing Gateway',
      });
    else if (
      mine &&
      gw &&
      ip !== undefined &&
      !gw.pool.some((p) => {
        const c = parseCidr(p);
        return c !== undefined && cidrContains(c, ip);
      })
    )
      issues.push({
        kind: o.kind,
        name: o.metadata.name,
        field: 'spec.address',
        message: `${spec.address} is outside the pool of Gateway ${spec.gateway} (${gw.pool.join(', ') || 'empty'})`,
        expected: `an address inside ${gw.pool.join(' or ') || 'the gateway pool'}`,
      });
    const prev = held.get(spec.address);
    if (prev !== undefined && mine)
      issues.push({
        kind: o.kind,
        name: o.metadata.name,
        field: 'spec.address',
        message: `${spec.address} is already held by FloatingIP ${prev}`,
        expected: 'an address no other FloatingIP holds',
      });
    else if (prev === undefined) held.set(spec.address, o.metadata.name);
  }
  return issues;
}

registerKind('Gateway', GATEWAY_SPEC_SCHEMA, undefined, { check: checkGateway });
registerKind('FloatingIP', FLOATING_IP_SPEC_SCHEMA, undefined, { check: checkFloatingIP });
