import { type EndpointSpec, GATEWAY_MAC_PREFIX, type VirtualNetwork } from '../api/kinds.js';
import { API_VERSION, type TetherObject } from '../api/resource.js';
import { validateObject } from '../api/validate.js';
import { asTetherError, type ErrorCode, TetherError } from '../lib/errors.js';
import { parseJson } from '../lib/input.js';
import { type Cidr, cidrContains, formatIp, lastOf, parseCidr, parseIp } from '../lib/ipv4.js';
import type { Logger } from '../lib/log.js';
import type { Store, StoreEvent, TxnOp } from './store/store.js';

/**
 * What a node may say about its endpoints. A report is the node's complete endpoint set; the
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

interface Held {
  node: string;
  ipKey: string;
  macKey: string;
}

/**
 * Endpoints by node, by network+IP and by network+MAC, kept current from the store's events,
 * so a report costs lookups for what it names instead of a scan of every Endpoint.
 */
export class EndpointIndex {
  private readonly byName = new Map<string, Held>();
  private readonly byNode = new Map<string, Set<string>>();
  private readonly byIp = new Map<string, string>();
  private readonly byMac = new Map<string, string>();
  private readonly unsubscribe: () => void;

  constructor(store: Store) {
    this.unsubscribe = store.subscribe((events) => this.onEvents(events));
    for (const it of store.list('Endpoint').items) this.add(it.name, it.object);
  }

  close(): void {
    this.unsubscribe();
  }

  /** Names of the node's stored endpoints. */
  ofNode(node: string): string[] {
    return [...(this.byNode.get(node) ?? [])];
  }

  ipHolder(network: string, ip: string): Holder | undefined {
    return this.holder(this.byIp.get(`${network} ${ip}`));
  }

  macHolder(network: string, mac: string): Holder | undefined {
    return this.holder(this.byMac.get(`${network} ${mac}`));
  }

  private holder(name: string | undefined): Holder | undefined {
    const h = name ? this.byName.get(name) : undefined;
    return name && h ? { name, node: h.node } : undefined;
  }

  private onEvents(events: readonly StoreEvent[]): void {
    for (const ev of events) {
      if (ev.kind !== 'Endpoint') continue;
      this.remove(ev.name);
      if (ev.type === 'put') this.add(ev.name, ev.object);
    }
  }

  private add(name: string, obj: TetherObject): void {
    const s = obj.spec as Partial<EndpointSpec>;
    const node = s.node ?? '';
    const held: Held = { node, ipKey: `${s.network} ${s.ip}`, macKey: `${s.network} ${s.mac}` };
    this.byName.set(name, held);
    let set = this.byNode.get(node);
    if (!set) {
      set = new Set();
      this.byNode.set(node, set);
    }
    set.add(name);
    // The first holder keeps an address: endpoints stored before these checks may collide.
    if (!this.byIp.has(held.ipKey)) this.byIp.set(held.ipKey, name);
    if (!this.byMac.has(held.macKey)) this.byMac.set(held.macKey, name);
  }

  private remove(name: string): void {
    const h = this.byName.get(name);
    if (!h) return;
    this.byName.delete(name);
    const set = this.byNode.get(h.node);
    set?.delete(name);
    if (set && set.size === 0) this.byNode.delete(h.node);
    if (this.byIp.get(h.ipKey) === name) this.byIp.delete(h.ipKey);
    if (this.byMac.get(h.macKey) === name) this.byMac.delete(h.macKey);
  }
}

export interface ReportOutcome {
  revision: number;
  accepted: number;
  refused: EndpointRefusal[];
}

/** Refusal counters, overall and per node (shown on the Node object when read). */
export interface RefusalStats {
  refused: number;
  byCode: Record<string, number>;
  last?: EndpointRefusal & { at: string };
}

/** Stores nodes' endpoint reports after checkReport; counts and logs what it refuses. */
export class EndpointClaims {
  readonly index: EndpointIndex;
  readonly total: RefusalStats = { refused: 0, byCode: {} };
  private readonly perNode = new Map<string, RefusalStats>();

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly limits: ClaimLimits = DEFAULT_CLAIM_LIMITS,
  ) {
    this.index = new EndpointIndex(store);
  }

  close(): void {
    this.index.close();
  }

  stats(node: string): RefusalStats | undefined {
    return this.perNode.get(node);
  }

  /**
   * Stores the node's complete endpoint set: the accepted endpoints are put, the node's
   * other stored endpoints (including refused ones) deleted, in one transaction. A report
   * refused whole changes nothing.
   */
  report(node: string, site: string, reported: readonly Buffer[]): ReportOutcome {
    const store = this.store;
    const st = store.get('Node', node)?.object.status as { vtep?: string; phase?: string } | undefined;
    // The session of a revoked, reset or deleted node is closed in the same turn, but a report
    // already on its way must not bring its endpoints back.
    if (st?.phase !== 'Approved') {
      const refusal: EndpointRefusal = {
        name: '*',
        code: 'TETHER_E_PERMISSION',
        field: '',
        message: `node "${node}" is ${st?.phase ? st.phase.toLowerCase() : 'not registered'}: its endpoints are not accepted`,
      };
      this.count(node, refusal);
      return { revision: store.revision(), accepted: 0, refused: [refusal] };
    }
    const vtep = st.vtep;
    const checked = checkReport(
      {
        node,
        site,
        vtep,
        network: (n) => store.get('VirtualNetwork', n)?.object as VirtualNetwork | undefined,
        ipHolder: (net, ip) => this.index.ipHolder(net, ip),
        macHolder: (net, mac) => this.index.macHolder(net, mac),
      },
      reported,
      this.limits,
    );
    for (const r of checked.refused) this.count(node, r, false);
    // One line per report, not per endpoint: a node refused 1024 times must not flood the journal.
    if (checked.refused.length > 0)
      this.log.warn(
        {
          event: 'endpoint_refused',
          node,
          refused: checked.refused.length,
          first: checked.refused
            .slice(0, 5)
            .map((r) => ({ endpoint: r.name, code: r.code, field: r.field, err: r.message })),
        },
        'endpoints refused',
      );
    if (checked.whole) return { revision: store.revision(), accepted: 0, refused: checked.refused };
    const ops: TxnOp[] = checked.accepted.map((object) => ({ op: 'put', object }));
    const keep = new Set(checked.accepted.map((o) => o.metadata.name));
    for (const name of this.index.ofNode(node))
      if (!keep.has(name)) ops.push({ op: 'delete', kind: 'Endpoint', name });
    const revision = ops.length ? store.txn(ops).revision : store.revision();
    return { revision, accepted: checked.accepted.length, refused: checked.refused };
  }

  /** Counts a refusal and logs it as an event with its code. */
  count(node: string, r: EndpointRefusal, log = true): void {
    let s = this.perNode.get(node);
    if (!s) {
      s = { refused: 0, byCode: {} };
      this.perNode.set(node, s);
    }
    const last = { ...r, at: new Date().toISOString() };
    for (const t of [s, this.total]) {
      t.refused++;
      t.byCode[r.code] = (t.byCode[r.code] ?? 0) + 1;
      t.last = last;
    }
    if (log)
      this.log.warn(
        { event: 'endpoint_refused', node, endpoint: r.name, code: r.code, field: r.field, err: r.message },
        'endpoint refused',
      );
  }

  forget(node: string): void {
    this.perNode.delete(node);
  }
}

/**
 * Paces one session's endpoint reports: at most one is handled per `intervalMs`; one that
 * comes sooner waits, and a newer one replaces it (each report is the node's complete set, so
 * only the latest matters). A node that reports in a loop then costs the controller one
 * checked, durable transaction per interval instead of one per message.
 */
export class ReportPacer<T> {
  private last = Number.NEGATIVE_INFINITY;
  private pending: T | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly intervalMs: number,
    private readonly handle: (report: T) => void,
    private readonly now: () => number = () => Date.now(),
  ) {}

  offer(report: T): void {
    const wait = this.last + this.intervalMs - this.now();
    if (wait <= 0 && !this.timer) {
      this.run(report);
      return;
    }
    this.pending = report;
    this.timer ??= setTimeout(
      () => {
        this.timer = undefined;
        const r = this.pending;
        this.pending = undefined;
        if (r !== undefined) this.run(r);
      },
      Math.max(0, wait),
    );
  }

  /** Drops what waits (the session ended). */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = undefined;
  }

  private run(report: T): void {
    this.last = this.now();
    this.handle(report);
  }
}
