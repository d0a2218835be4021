import {
  type ClaimLimits,
  checkReport,
  DEFAULT_CLAIM_LIMITS,
  type EndpointRefusal,
  type Holder,
  unapprovedRefusal,
} from '../api/claims.js';
import type { EndpointSpec, VirtualNetwork } from '../api/kinds.js';
import type { TetherObject } from '../api/resource.js';
import type { ReportMark } from '../api/signed-report.js';
import { isTetherError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { type ClaimHolder, claimName, isClaimConflict, takeClaim } from './claimkeys.js';
import type { ControllerStore } from './mirror.js';
import type { StoreEvent, TxnOp } from './store/store.js';

// The pure rules live in src/api/claims.ts (the site proxy checks with the same code); this
// module keeps what needs the store: the index, the transaction, counting, pacing.
export {
  type CheckedReport,
  type ClaimContext,
  type ClaimLimits,
  checkReport,
  DEFAULT_CLAIM_LIMITS,
  type EndpointRefusal,
  type Holder,
} from '../api/claims.js';

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

  constructor(store: ControllerStore) {
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

const CLAIM_RETRIES = 20;

/**
 * Claims on each accepted endpoint's IP and MAC in its network (`Claim/ip.<net>.<ip>`,
 * `Claim/mac.<net>.<mac>`), for the ones not already held by it. A claim held by an endpoint
 * that is gone, moved to another address, or is this node's own (a rename within the node) is
 * taken over; one held by another node's live endpoint would have been refused by the
 * checks on the copy, unless that node's report committed meanwhile: then the CAS fails.
 */
export function endpointClaimOps(
  store: ControllerStore,
  node: string,
  accepted: readonly TetherObject[],
): { ops: TxnOp[]; refused: EndpointRefusal[] } {
  const ops: TxnOp[] = [];
  const refused: EndpointRefusal[] = [];
  for (const o of accepted) {
    const ep = o.spec as Partial<EndpointSpec>;
    const me: ClaimHolder = { kind: 'Endpoint', name: o.metadata.name };
    const claims: Array<[string, (s: Partial<EndpointSpec>) => boolean]> = [
      [claimName('ip', `${ep.network}.${ep.ip}`), (s) => s.network === ep.network && s.ip === ep.ip],
      [claimName('mac', `${ep.network}.${ep.mac}`), (s) => s.network === ep.network && s.mac === ep.mac],
    ];
    const mine: TxnOp[] = [];
    try {
      for (const [name, same] of claims) {
        const op = takeClaim(store, name, me, (h) => {
          const held = h.kind === 'Endpoint' ? store.get('Endpoint', h.name)?.object.spec : undefined;
          const s = held as Partial<EndpointSpec> | undefined;
          return s !== undefined && s.node !== node && same(s);
        });
        if (op) mine.push(op);
      }
    } catch (e) {
      // Held by another node's endpoint the index does not name as holder (two endpoints
      // stored with one address before the checks existed): refused, as the index would.
      if (!isTetherError(e, 'TETHER_E_CLAIM')) throw e;
      const field = String(e.details.claim ?? '').startsWith('mac.') ? 'spec.mac' : 'spec.ip';
      refused.push({ name: o.metadata.name, code: 'TETHER_E_CLAIM', message: e.message, field });
      continue;
    }
    ops.push(...mine);
  }
  return { ops, refused };
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
    private readonly store: ControllerStore,
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
   * refused whole changes no endpoint. `mark` (a signed report's, src/api/signed-report.ts)
   * is stored in that same transaction, also when nothing else changes or the claims were
   * refused: once judged, the report cannot be replayed, also after a restart.
   */
  report(node: string, site: string, reported: readonly Buffer[], mark?: ReportMark): Promise<ReportOutcome> {
    // One report at a time: its checks read the index and the store, and only the commit
    // of the one before it (awaited, then seen by the index) makes those reads right; two
    // reports interleaved could both take the same IP or MAC.
    const run = this.queue.then(() => this.reportClaimed(node, site, reported, mark));
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private queue: Promise<void> = Promise.resolve();

  /**
   * The queue orders this replica's reports; another replica's are ordered by the claim keys
   * (claimkeys.ts) each report commits with its endpoints. A report that loses a claim race
   * runs again once the copy has seen the winner, whose address it is then refused.
   */
  private async reportClaimed(
    node: string,
    site: string,
    reported: readonly Buffer[],
    mark?: ReportMark,
  ): Promise<ReportOutcome> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.reportNow(node, site, reported, mark);
      } catch (e) {
        if (!isClaimConflict(e) || attempt >= CLAIM_RETRIES) throw e;
        await new Promise((r) => setTimeout(r, 20 * (attempt + 1)));
      }
    }
  }

  private async reportNow(
    node: string,
    site: string,
    reported: readonly Buffer[],
    mark?: ReportMark,
  ): Promise<ReportOutcome> {
    const store = this.store;
    const st = store.get('Node', node)?.object.status as { vtep?: string; phase?: string } | undefined;
    // The session of a revoked, reset or deleted node is closed in the same turn, but a report
    // already on its way must not bring its endpoints back.
    const refusal = unapprovedRefusal(node, st?.phase);
    if (refusal) {
      this.count(node, refusal);
      return { revision: store.revision(), accepted: 0, refused: [refusal] };
    }
    const vtep = st?.vtep;
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
    const extras = mark ? { reportMarks: [{ node, mark }] } : {};
    if (checked.whole) {
      if (mark) await store.txn([], extras, { split: true });
      return { revision: store.revision(), accepted: 0, refused: checked.refused };
    }
    // Claims first: a split transaction commits its chunks in order and stops at the first
    // that fails, so an endpoint is never stored without the claims on its IP and MAC.
    const claimed = endpointClaimOps(store, node, checked.accepted);
    for (const r of claimed.refused) this.count(node, r);
    const lost = new Set(claimed.refused.map((r) => r.name));
    const accepted = checked.accepted.filter((o) => !lost.has(o.metadata.name));
    const ops: TxnOp[] = claimed.ops;
    for (const object of accepted) ops.push({ op: 'put', object });
    const keep = new Set(accepted.map((o) => o.metadata.name));
    for (const name of this.index.ofNode(node))
      if (!keep.has(name)) ops.push({ op: 'delete', kind: 'Endpoint', name });
    const revision =
      ops.length || mark ? (await store.txn(ops, extras, { split: true })).revision : store.revision();
    return { revision, accepted: accepted.length, refused: [...checked.refused, ...claimed.refused] };
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
