import type { TetherObject } from '../api/resource.js';
import { isTetherError } from '../lib/errors.js';
import { type Cidr, formatCidr, parseCidr } from '../lib/ipv4.js';
import type { Logger } from '../lib/log.js';
import { claimName, takeClaim } from './claimkeys.js';
import { type Leadership, SoleWriter } from './leader.js';
import type { ControllerStore } from './mirror.js';
import type { TxnOp } from './store/store.js';

/** First VNI the controller hands out; lower ones are left for manual assignment. */
export const VNI_BASE = 4096;
const VNI_MAX = 16_777_215;

/** Size of each site's block: a /24 per site in big networks, a quarter of a small one. */
export function blockPrefix(networkPrefix: number): number {
  return networkPrefix <= 20 ? 24 : Math.min(networkPrefix + 2, 30);
}

export interface NetworkStatus {
  vni?: number;
  siteBlocks?: Record<string, string>;
  /** Each node's share of its site's block: nodes of one site allocate independently
   *  (also while the WAN is down), so they must never draw from the same addresses. */
  nodeBlocks?: Record<string, string>;
  /** Why something could not be allocated (e.g. more sites than blocks). */
  message?: string;
}

/**
 * What a VirtualNetwork's controller-owned status should be: a VNI (kept once given; the
 * spec's if set) and one address block per site it covers, carved from `subnets[0]`, so each
 * site allocates workload addresses on its own — also while its WAN is down. Pure.
 */
/** How a site block is split among its nodes: sub-blocks of at least 16 addresses, at most
 *  16 of them (a /24 per site → 16 × /28; a /26 → 4 × /28). Fixed, so shares never move. */
export function nodeBlockPrefix(sitePrefix: number): number {
  return sitePrefix + Math.max(0, Math.min(4, 28 - sitePrefix));
}

/** Gives each key a slot below `slots`, keeping the slots already held. Pure. */
function assign(
  keys: readonly string[],
  held: Record<string, number | undefined>,
  slots: number,
): { got: Map<string, number>; left: string[] } {
  const got = new Map<string, number>();
  const used = new Set<number>();
  for (const k of keys) {
    const h = held[k];
    if (h !== undefined && h < slots && !used.has(h)) {
      got.set(k, h);
      used.add(h);
    }
  }
  const left: string[] = [];
  let next = 0;
  for (const k of keys) {
    if (got.has(k)) continue;
    while (used.has(next)) next++;
    if (next >= slots) {
      left.push(k);
      continue;
    }
    got.set(k, next);
    used.add(next);
  }
  return { got, left };
}

export function networkStatus(
  vn: TetherObject,
  others: readonly TetherObject[],
  sites: readonly string[],
  nodesBySite: ReadonlyMap<string, readonly string[]> = new Map(),
): NetworkStatus {
  const spec = vn.spec as { subnets?: string[]; vni?: number; sites?: string[] };
  const cur = (vn.status ?? {}) as NetworkStatus;
  const out: NetworkStatus = {};
  const messages: string[] = [];
  const taken = new Set<number>();
  for (const o of others) {
    if (o.metadata.name === vn.metadata.name) continue;
    const v = (o.status as NetworkStatus | undefined)?.vni ?? (o.spec as { vni?: number }).vni;
    if (typeof v === 'number') taken.add(v);
  }
  if (typeof spec.vni === 'number') {
    if (taken.has(spec.vni)) messages.push(`spec.vni ${spec.vni} is already used by another network`);
    else out.vni = spec.vni;
  } else if (typeof cur.vni === 'number' && !taken.has(cur.vni)) {
    out.vni = cur.vni;
  } else {
    for (let v = VNI_BASE; v <= VNI_MAX; v++) {
      if (!taken.has(v)) {
        out.vni = v;
        break;
      }
    }
  }
  const net = spec.subnets?.[0] ? parseCidr(spec.subnets[0]) : undefined;
  if (net) {
    const bp = blockPrefix(net.prefix);
    const count = 2 ** (bp - net.prefix);
    const size = 2 ** (32 - bp);
    const covered = (spec.sites ?? sites).slice().sort();
    const blocks: Record<string, string> = {};
    const used = new Set<number>();
    const inNet = (c: Cidr | undefined) => c && c.prefix === bp && (c.base - net.base) >>> 0 < count * size;
    // Keep what sites already have, so addresses in use never move.
    for (const site of covered) {
      const prev = cur.siteBlocks?.[site] ? parseCidr(cur.siteBlocks[site]!) : undefined;
      if (prev && inNet(prev)) {
        const idx = ((prev.base - net.base) >>> 0) / size;
        if (!used.has(idx)) {
          used.add(idx);
          blocks[site] = formatCidr(prev);
        }
      }
    }
    let next = 0;
    for (const site of covered) {
      if (blocks[site]) continue;
      while (used.has(next)) next++;
      if (next >= count) {
        messages.push(
          `no address block left for site ${site}: ${spec.subnets![0]} holds ${count} blocks of /${bp}`,
        );
        continue;
      }
      used.add(next);
      blocks[site] = formatCidr({ base: (net.base + next * size) >>> 0, prefix: bp });
    }
    out.siteBlocks = blocks;
    const nodeBlocks: Record<string, string> = {};
    const np = nodeBlockPrefix(bp);
    const per = 2 ** (np - bp);
    const nsize = 2 ** (32 - np);
    for (const site of Object.keys(blocks).sort()) {
      const sb = parseCidr(blocks[site]!)!;
      const nodes = [...(nodesBySite.get(site) ?? [])].sort();
      const held: Record<string, number | undefined> = {};
      for (const n of nodes) {
        const prev = cur.nodeBlocks?.[n] ? parseCidr(cur.nodeBlocks[n]!) : undefined;
        if (prev && prev.prefix === np && (prev.base - sb.base) >>> 0 < per * nsize)
          held[n] = ((prev.base - sb.base) >>> 0) / nsize;
      }
      const { got, left } = assign(nodes, held, per);
      for (const [n, i] of got) nodeBlocks[n] = formatCidr({ base: (sb.base + i * nsize) >>> 0, prefix: np });
      if (left.length)
        messages.push(
          `site ${site} has more nodes than its block has shares (${per} × /${np}): ${left.join(', ')} get no addresses`,
        );
    }
    if (Object.keys(nodeBlocks).length) out.nodeBlocks = nodeBlocks;
  }
  if (messages.length) out.message = messages.join('; ');
  return out;
}

/** Enrolled (or pending) nodes by site; revoked nodes give their share back. */
export function nodesPerSite(store: ControllerStore): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const n of store.list('Node').items) {
    if ((n.object.status as { phase?: string } | undefined)?.phase === 'Revoked') continue;
    const site = (n.object.spec as { site?: string }).site;
    if (!site) continue;
    // Appended in place: copying the list per node made this quadratic in a site's nodes.
    const l = out.get(site);
    if (l) l.push(n.name);
    else out.set(site, [n.name]);
  }
  return out;
}

/**
 * Keeps every VirtualNetwork's status (VNI, per-site blocks) current as networks and sites
 * come and go. Runs after the store commits, never inside a write, and writes with
 * compare-and-swap so an admin's concurrent apply wins and is simply reconciled again.
 */
export class NetworkReconciler {
  private scheduled = false;
  private unsubscribe: (() => void) | undefined;
  private unlead: (() => void) | undefined;

  constructor(
    private readonly store: ControllerStore,
    private readonly log: Logger,
    /** Only the leader reconciles (one writer of allocations); a new leader starts with a
     *  full pass, so nothing a deposed one left half done stays so. */
    private readonly leadership: Leadership = new SoleWriter(),
  ) {}

  start(): void {
    this.unsubscribe = this.store.subscribe((events) => {
      if (events.some((e) => e.kind === 'VirtualNetwork' || e.kind === 'Site' || e.kind === 'Node'))
        this.schedule();
    });
    this.unlead = this.leadership.subscribe((leader) => {
      if (leader) this.schedule();
    });
    this.schedule();
  }

  stop(): void {
    this.unsubscribe?.();
    this.unlead?.();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.reconcile().catch((e: Error) => {
        if (isTetherError(e, 'TETHER_E_CONFLICT')) this.schedule();
        else if (isTetherError(e, 'TETHER_E_PRECONDITION') && !this.leadership.isLeader())
          this.log.info({ err: e.message }, 'network reconcile stopped: no longer the leader');
        else this.log.error({ err: e.message }, 'network reconcile failed');
      });
    });
  }

  async reconcile(): Promise<number> {
    if (!this.leadership.isLeader()) return 0;
    const fence = this.leadership.fence();
    const vns = this.store.list('VirtualNetwork').items;
    const updated = this.withStatus(vns.map((v) => v.object));
    const ops: TxnOp[] = [];
    vns.forEach((v, i) => {
      const object = updated[i]!;
      if (JSON.stringify(object.status ?? {}) !== JSON.stringify(v.object.status ?? {})) {
        ops.push({ op: 'put', object, expectRevision: v.revision });
      }
    });
    if (ops.length) {
      const claims = vniClaimOps(this.store, updated);
      await this.store.txn([...ops, ...claims], fence ? { fence } : {});
    }
    return ops.length;
  }

  /**
   * `networks` with their status computed against the store (its other networks, sites and
   * nodes): used by reconcile and by Apply, which writes a network and its status in one
   * revision. Each network sees the VNIs just given to the ones before it.
   */
  withStatus(networks: readonly TetherObject[]): TetherObject[] {
    // Every apply passes through here; one without networks must not read every Node.
    if (networks.length === 0) return [];
    const sites = this.store.list('Site').items.map((s) => s.name);
    const nodesBySite = nodesPerSite(this.store);
    const all = new Map(this.store.list('VirtualNetwork').items.map((v) => [v.name, v.object] as const));
    for (const n of networks) all.set(n.metadata.name, n);
    return networks.map((n) => {
      const object = {
        ...n,
        status: networkStatus(n, [...all.values()], sites, nodesBySite) as Record<string, unknown>,
      };
      all.set(n.metadata.name, object);
      return object;
    });
  }
}

function vniOf(o: TetherObject | undefined): number | undefined {
  const v = (o?.status as NetworkStatus | undefined)?.vni;
  return typeof v === 'number' ? v : undefined;
}

/**
 * The claim ops (claimkeys.ts) for the VNIs of `networks`, to commit with them: a VNI is
 * held once across every writer (replicas applying at the same moment, the leader's
 * reconciler), not only on this replica's copy. A claim whose network is gone or now has
 * another VNI is stale and taken over.
 */
export function vniClaimOps(store: ControllerStore, networks: readonly TetherObject[]): TxnOp[] {
  const inTxn = new Map(networks.map((n) => [n.metadata.name, n] as const));
  const ops: TxnOp[] = [];
  for (const n of networks) {
    const vni = vniOf(n);
    if (vni === undefined) continue;
    const op = takeClaim(
      store,
      claimName('vni', String(vni)),
      { kind: 'VirtualNetwork', name: n.metadata.name },
      (h) =>
        h.kind === 'VirtualNetwork' &&
        vniOf(inTxn.get(h.name) ?? store.get('VirtualNetwork', h.name)?.object) === vni,
    );
    if (op) ops.push(op);
  }
  return ops;
}
