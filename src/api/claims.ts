import { asTetherError, type ErrorCode, TetherError } from '../lib/errors.js';
import { parseJson } from '../lib/input.js';
import { type Cidr, cidrContains, formatIp, lastOf, parseCidr, parseIp } from '../lib/ipv4.js';
import { type EndpointSpec, GATEWAY_MAC_PREFIX, type VirtualNetwork } from './kinds.js';
import { API_VERSION, type TetherObject } from './resource.js';
import { validateObject } from './validate.js';

/**
 * The claim rules, shared by the controller (src/controller/endpoints.ts) and the site proxy
 * (src/node/proxy/), so that a site deciding alone while the WAN is down decides as the
 * controller would. What a node may say about its endpoints. A report is the node's complete endpoint set; the
 * controller stores an endpoint only if the node may claim it — a network that covers the
 * node's site, an address inside the node's own share of it (`status.nodeBlocks[node]`), the
 * VTEP the controller recorded for the node, no IP or MAC another node's endpoint holds in
 * that network, no `status` — because whatever it stores is reflected into every other
 * site's ARP and FDB tables.
 */

export interface ClaimLimits {
  /** Endpoints in one report; a report with more is refused whole. */
  maxEndpoints: number;
  /** Bytes of one endpoint's JSON. */
  maxEndpointBytes: number;
}

/** A /28 share per network is 16 addresses; 1024 leaves room for many networks per node. */
export const DEFAULT_CLAIM_LIMITS: ClaimLimits = { maxEndpoints: 1024, maxEndpointBytes: 16 * 1024 };

export interface EndpointRefusal {
  /** The endpoint's name as reported (`*` for the whole report). */
  name: string;
  code: ErrorCode;
  message: string;
  field: string;
}

/** Who holds an address or MAC in a network. */
export interface Holder {
  name: string;
  node: string;
}

/** What checkReport needs to know besides the report: all lookups, no scans. */
export interface ClaimContext {
  node: string;
  site: string;
  /** The node's underlay address as the controller recorded it (never the report's). */
  vtep: string | undefined;
  network(name: string): VirtualNetwork | undefined;
  ipHolder(network: string, ip: string): Holder | undefined;
  macHolder(network: string, mac: string): Holder | undefined;
}

export interface CheckedReport {
  accepted: TetherObject[];
  refused: EndpointRefusal[];
}

function claim(field: string, message: string): TetherError {
  return new TetherError('TETHER_E_CLAIM', message, { field });
}

function parseReported(buf: Buffer, limits: ClaimLimits): Record<string, unknown> {
  if (buf.length > limits.maxEndpointBytes) {
    throw new TetherError('TETHER_E_TOO_LARGE', `endpoint is ${buf.length} bytes`, {
      field: '',
      expected: `at most ${limits.maxEndpointBytes} bytes`,
    });
  }
  // Depth-bounded: validation recurses over what the node sent.
  const raw = parseJson(buf, { source: 'endpoint report' });
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new TetherError('TETHER_E_INVALID', 'endpoint is not a mapping', { field: '' });
  }
  return raw as Record<string, unknown>;
}

function reportedName(raw: Record<string, unknown>): string {
  const meta = raw.metadata as { name?: unknown } | undefined;
  return typeof meta?.name === 'string' ? meta.name : '';
}

/** The subnet of `vn` that holds `ip`, if any. */
function homeSubnet(vn: VirtualNetwork, ip: number): Cidr | undefined {
  for (const s of vn.spec.subnets ?? []) {
    const c = parseCidr(s);
    if (c && cidrContains(c, ip)) return c;
  }
  return undefined;
}

/** Checks one endpoint against what the node may claim; returns the object to store. */
function checkOne(
  ctx: ClaimContext,
  raw: Record<string, unknown>,
  seenIp: Set<string>,
  seenMac: Set<string>,
  seenName: Set<string>,
): TetherObject {
  const { node, site } = ctx;
  if (raw.status !== undefined)
    throw claim('status', "an endpoint's status is the controller's, not the node's");
  if (raw.kind !== undefined && raw.kind !== 'Endpoint') {
    throw new TetherError('TETHER_E_INVALID', `kind is ${JSON.stringify(raw.kind)}`, {
      field: 'kind',
      expected: 'Endpoint',
    });
  }
  const spec = (raw.spec ?? {}) as Partial<EndpointSpec>;
  if (spec.node !== undefined && spec.node !== node)
    throw claim('spec.node', `node "${node}" cannot report an endpoint of node "${String(spec.node)}"`);
  if (spec.site !== undefined && spec.site !== site)
    throw claim('spec.site', `node "${node}" is in site "${site}", not "${String(spec.site)}"`);
  const name = reportedName(raw);
  const id = name.startsWith(`${node}.`) ? name : `${node}.${name}`;
  const obj = validateObject(
    {
      ...raw,
      apiVersion: API_VERSION,
      kind: 'Endpoint',
      metadata: { ...(raw.metadata as object), name: id },
      spec: { ...spec, node, site },
    },
    { file: `endpoint report from ${node}` },
  );
  const ep = obj.spec as unknown as EndpointSpec;
  if (seenName.has(id)) throw claim('metadata.name', `endpoint "${id}" appears twice in the report`);
  const vn = ctx.network(ep.network);
  if (!vn) throw claim('spec.network', `there is no VirtualNetwork "${ep.network}"`);
  if (vn.spec.sites && !vn.spec.sites.includes(site))
    throw claim('spec.network', `network "${ep.network}" does not cover site "${site}"`);
  const shareText = vn.status?.nodeBlocks?.[node];
  const share = shareText ? parseCidr(shareText) : undefined;
  if (!share)
    throw claim('spec.ip', `network "${ep.network}" has given node "${node}" no address share (yet)`);
  const ip = parseIp(ep.ip)!;
  if (!cidrContains(share, ip))
    throw claim('spec.ip', `${ep.ip} is outside node "${node}"'s share ${shareText} of "${ep.network}"`);
  const home = homeSubnet(vn, ip);
  const first = vn.spec.subnets?.[0] ? parseCidr(vn.spec.subnets[0]) : undefined;
  const gateway = vn.spec.gateway ?? (first ? formatIp(first.base + 1) : undefined);
  if (ep.ip === gateway) throw claim('spec.ip', `${ep.ip} is the gateway of "${ep.network}"`);
  if (home && home.prefix < 31 && (ip === home.base || ip === lastOf(home)))
    throw claim('spec.ip', `${ep.ip} is the network or broadcast address of its subnet`);
  if (!ctx.vtep)
    throw claim(
      'spec.vtep',
      `the controller has no underlay address recorded for node "${node}" (its hello declared none)`,
    );
  if (ep.vtep !== ctx.vtep)
    throw claim('spec.vtep', `VTEP ${ep.vtep} is not node "${node}"'s recorded underlay address ${ctx.vtep}`);
  // 02:74:67 is the prefix of every network's anycast gateway MAC (gatewayMacFor): a remote
  // entry for it would take over the gateway's bridge entry on every other node.
  if (ep.mac.startsWith(`${GATEWAY_MAC_PREFIX}:`))
    throw claim(
      'spec.mac',
      `${ep.mac} is in ${GATEWAY_MAC_PREFIX}:…, the range of Tether's anycast gateway MACs`,
    );
  const ipKey = `${ep.network} ${ep.ip}`;
  const macKey = `${ep.network} ${ep.mac}`;
  const ipHeld = ctx.ipHolder(ep.network, ep.ip);
  if ((ipHeld && ipHeld.node !== node) || seenIp.has(ipKey))
    throw claim(
      'spec.ip',
      `${ep.ip} in "${ep.network}" is already held by endpoint "${ipHeld && ipHeld.node !== node ? ipHeld.name : 'another endpoint of this report'}"`,
    );
  const macHeld = ctx.macHolder(ep.network, ep.mac);
  if ((macHeld && macHeld.node !== node) || seenMac.has(macKey))
    throw claim(
      'spec.mac',
      `${ep.mac} in "${ep.network}" is already held by endpoint "${macHeld && macHeld.node !== node ? macHeld.name : 'another endpoint of this report'}"`,
    );
  seenName.add(id);
  seenIp.add(ipKey);
  seenMac.add(macKey);
  return obj;
}

/** Sorts a report into what may be stored and what is refused (with why). Pure given ctx. */
export function checkReport(
  ctx: ClaimContext,
  reported: readonly Buffer[],
  limits: ClaimLimits = DEFAULT_CLAIM_LIMITS,
): CheckedReport & { whole: boolean } {
  if (reported.length > limits.maxEndpoints) {
    return {
      accepted: [],
      whole: true,
      refused: [
        {
          name: '*',
          code: 'TETHER_E_TOO_LARGE',
          field: 'endpoints',
          message: `report holds ${reported.length} endpoints; at most ${limits.maxEndpoints} are accepted (nothing changed)`,
        },
      ],
    };
  }
  const accepted: TetherObject[] = [];
  const refused: EndpointRefusal[] = [];
  const seenIp = new Set<string>();
  const seenMac = new Set<string>();
  const seenName = new Set<string>();
  reported.forEach((buf, i) => {
    let name = `[${i}]`;
    try {
      const raw = parseReported(buf, limits);
      name = reportedName(raw) || name;
      accepted.push(checkOne(ctx, raw, seenIp, seenMac, seenName));
    } catch (e) {
      const err = asTetherError(e);
      refused.push({ name, code: err.code, message: err.message, field: err.details.field ?? '' });
    }
  });
  return { accepted, refused, whole: false };
}

/** The refusal of a whole report from a node that is not approved (revoked, reset, pending,
 *  deleted, unknown), or undefined when it is approved. */
export function unapprovedRefusal(node: string, phase: string | undefined): EndpointRefusal | undefined {
  if (phase === 'Approved') return undefined;
  return {
    name: '*',
    code: 'TETHER_E_PERMISSION',
    field: '',
    message: `node "${node}" is ${phase ? phase.toLowerCase() : 'not registered'}: its endpoints are not accepted`,
  };
}
