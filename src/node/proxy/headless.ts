import { type ClaimContext, checkReport, type EndpointRefusal, unapprovedRefusal } from '../../api/claims.js';
import type { EndpointSpec, VirtualNetwork } from '../../api/kinds.js';
import type { TetherObject } from '../../api/resource.js';
import {
  type EndpointReportBody,
  isNewerReport,
  type SignedReportWire,
  verifyReport,
} from '../../api/signed-report.js';
import { resolveSiteLocal } from '../../api/site-local.js';
import { asTetherError, TetherError } from '../../lib/errors.js';
import { field, LineLog } from './line-log.js';
import type { RosterEntry } from './roster.js';

/** What the headless logic reads of the proxy's cached slice. */
export interface SliceView {
  revision: number;
  network(name: string): VirtualNetwork | undefined;
  endpoints(): Iterable<TetherObject>;
  roster(): ReadonlyMap<string, RosterEntry>;
}

/** One node's latest report as the proxy holds it. */
interface HeldReport {
  node: string;
  body: EndpointReportBody;
  wire: SignedReportWire;
  /** Order of arrival (journal order): replay and claim precedence follow it. */
  order: number;
  /** The controller answered it: nothing to replay. */
  done: boolean;
  /** Names the controller refused in its answer to this report. */
  refusedByController: Set<string>;
}

type Line =
  | { t: 'report'; node: string; order: number; payload: string; signature: string; serial: string }
  | { t: 'done'; node: string; order: number; refused: string[] };

function checkLine(v: Record<string, unknown>, where: string): Line {
  const node = field<string>(v, 'node', 'string', where);
  const order = field<number>(v, 'order', 'number', where);
  if (v.t === 'report')
    return {
      t: 'report',
      node,
      order,
      payload: field<string>(v, 'payload', 'string', where),
      signature: field<string>(v, 'signature', 'string', where),
      serial: field<string>(v, 'serial', 'string', where),
    };
  if (v.t === 'done' && Array.isArray(v.refused) && v.refused.every((x) => typeof x === 'string'))
    return { t: 'done', node, order, refused: v.refused as string[] };
  throw new TetherError('TETHER_E_STATE', 'report journal record is neither a report nor an answer', {
    file: where,
    field: 't',
    expected: '"report", or "done" with a list of refused names',
  });
}

export interface LocalResult {
  revision: number;
  accepted: number;
  refused: EndpointRefusal[];
}

function specOf(o: TetherObject): Partial<EndpointSpec> {
  return (o.spec ?? {}) as Partial<EndpointSpec>;
}

/**
 * Headless convergence: the site's own nodes' endpoint reports, checked with the controller's
 * claim rules (src/api/claims.ts) against the proxy's cached slice, become the SiteLocal set
 * every agent forwards to. Every report the proxy keeps is journaled (fsync) before it is
 * answered, and the latest of each node that the controller has not answered is replayed in
 * journal order when the WAN returns. The controller wins: an entry the slice carries, or the
 * controller refused, leaves the set (docs/proxy.md "Conflicts").
 */
export class SiteLocalSet {
  private readonly reports = new Map<string, HeldReport>();
  private readonly journal: LineLog<Line>;
  private order = 0;
  private current: TetherObject[] = [];
  private covered: string[] = [];
  private key = '';
  private seqNo = 0;

  constructor(
    path: string,
    private readonly site: string,
    private readonly slice: SliceView,
  ) {
    this.journal = new LineLog<Line>(path, checkLine);
    for (const l of this.journal.loaded) {
      this.order = Math.max(this.order, l.order);
      if (l.t === 'report') {
        const wire = {
          payload: Buffer.from(l.payload, 'base64'),
          signature: Buffer.from(l.signature, 'base64'),
          cert_serial: l.serial,
        };
        // Our own journal: the signature was checked before the line was written.
        const body = JSON.parse(wire.payload.toString('utf8')) as EndpointReportBody;
        this.reports.set(l.node, {
          node: l.node,
          body,
          wire,
          order: l.order,
          done: false,
          refusedByController: new Set(),
        });
      } else {
        const r = this.reports.get(l.node);
        if (r && r.order === l.order) {
          r.done = true;
          r.refusedByController = new Set(l.refused);
        }
      }
    }
    this.recompute();
  }

  /** The set agents receive, with its sequence number (bumped on every change). */
  get set(): { endpoints: TetherObject[]; seq: number; nodes: string[] } {
    return { endpoints: this.current, seq: this.seqNo, nodes: this.covered };
  }

  /**
   * Checks and keeps one agent's report. Throws a TetherError (nothing kept) when the report is
   * not the node's own, is older than the one held, or the node is not approved; otherwise the
   * report is on disk when this returns.
   */
  accept(node: string, peerCertPem: string, wire: SignedReportWire): LocalResult & { changed: boolean } {
    const body = verifyReport(wire, peerCertPem, { node, site: this.site });
    const prev = this.reports.get(node);
    if (
      prev &&
      !isNewerReport(
        { serial: prev.wire.cert_serial, seq: prev.body.seq },
        { serial: wire.cert_serial, seq: body.seq },
      )
    )
      throw new TetherError(
        'TETHER_E_CONFLICT',
        `report ${body.bootId}/${body.seq} is not newer than the one held`,
        {
          field: 'signed.payload.seq',
          expected: `a sequence number above ${prev.body.seq}`,
        },
      );
    const refusal = unapprovedRefusal(node, this.slice.roster().get(node)?.phase);
    if (refusal) throw new TetherError(refusal.code, refusal.message);
    const order = ++this.order;
    this.journal.append(
      {
        t: 'report',
        node,
        order,
        payload: Buffer.from(wire.payload).toString('base64'),
        signature: Buffer.from(wire.signature).toString('base64'),
        serial: wire.cert_serial,
      },
      () => this.lines(),
    );
    this.reports.set(node, { node, body, wire, order, done: false, refusedByController: new Set() });
    this.compactIfDue();
    const changed = this.recompute();
    const checked = this.checked.get(node) ?? { accepted: 0, refused: [] };
    return { revision: this.slice.revision, accepted: checked.accepted, refused: checked.refused, changed };
  }

  /** The reports to relay (latest per node not yet answered), in journal order. */
  pending(): Array<{ node: string; wire: SignedReportWire; order: number }> {
    return [...this.reports.values()]
      .filter((r) => !r.done)
      .sort((a, b) => a.order - b.order)
      .map((r) => ({ node: r.node, wire: r.wire, order: r.order }));
  }

  /** The controller answered `node`'s report `order`; returns whether the set changed. */
  answered(node: string, order: number, refused: readonly string[]): boolean {
    const r = this.reports.get(node);
    if (!r || r.order !== order || r.done) return false;
    this.journal.append({ t: 'done', node, order, refused: [...refused] }, () => this.lines());
    r.done = true;
    r.refusedByController = new Set(refused);
    return this.recompute();
  }

  /** The node left the roster or lost approval: its entries go. */
  forget(node: string): boolean {
    if (!this.reports.delete(node)) return false;
    this.journal.rewrite(this.lines());
    return this.recompute();
  }

  private checked = new Map<string, { accepted: number; refused: EndpointRefusal[] }>();

  /**
   * Rebuilds the set from the held reports against the current slice, in journal order (the
   * first claim of an address wins, as at the controller). Returns whether it changed.
   */
  recompute(): boolean {
    const roster = this.slice.roster();
    const held = [...this.reports.values()]
      .filter((r) => roster.get(r.node)?.phase === 'Approved')
      .sort((a, b) => a.order - b.order);
    // A node whose latest report the controller has not answered speaks for itself at the
    // site: its report, not the slice's older copy, is what its endpoints are now (a
    // workload deleted or re-addressed during a cut). Its slice copies neither hold
    // addresses here nor reach the agents (SiteLocal.nodes).
    const covered = new Set(held.filter((r) => !r.done).map((r) => r.node));
    const sliceEndpoints = [...this.slice.endpoints()];
    const byIp = new Map<string, { name: string; node: string }>();
    const byMac = new Map<string, { name: string; node: string }>();
    for (const e of resolveSiteLocal({ slice: sliceEndpoints, siteLocal: [], covered }).slice) {
      const s = specOf(e);
      const h = { name: e.metadata.name, node: s.node ?? '' };
      if (!byIp.has(`${s.network} ${s.ip}`)) byIp.set(`${s.network} ${s.ip}`, h);
      if (!byMac.has(`${s.network} ${s.mac}`)) byMac.set(`${s.network} ${s.mac}`, h);
    }
    const out: TetherObject[] = [];
    this.checked = new Map();
    for (const r of held) {
      const entry = roster.get(r.node)!;
      const ctx: ClaimContext = {
        node: r.node,
        site: this.site,
        vtep: entry.vtep,
        network: (n) => this.slice.network(n),
        ipHolder: (net, ip) => byIp.get(`${net} ${ip}`),
        macHolder: (net, mac) => byMac.get(`${net} ${mac}`),
      };
      let res: ReturnType<typeof checkReport>;
      try {
        const bodies = Array.isArray(r.body.endpoints) ? r.body.endpoints : [];
        res = checkReport(
          ctx,
          bodies.map((e) => Buffer.from(JSON.stringify(e))),
        );
      } catch (e) {
        // A report refused as a whole does not speak for the node: its slice copies stand.
        covered.delete(r.node);
        const err = asTetherError(e);
        this.checked.set(r.node, {
          accepted: 0,
          refused: [{ name: '*', code: err.code, message: err.message, field: err.details.field ?? '' }],
        });
        continue;
      }
      this.checked.set(r.node, { accepted: res.accepted.length, refused: res.refused });
      // The controller refused the whole report: none of it stands (it wins).
      if (r.refusedByController.has('*')) continue;
      for (const o of res.accepted) {
        const s = specOf(o);
        byIp.set(`${s.network} ${s.ip}`, { name: o.metadata.name, node: r.node });
        byMac.set(`${s.network} ${s.mac}`, { name: o.metadata.name, node: r.node });
        if (r.refusedByController.has(o.metadata.name)) continue;
        out.push(o);
      }
    }
    // What the agents will forward to (the same rules as theirs): an answered node's entry
    // that the slice confirmed or decided otherwise, by name, IP or MAC, goes.
    const standing = resolveSiteLocal({ slice: sliceEndpoints, siteLocal: out, covered }).siteLocal;
    out.length = 0;
    out.push(...standing);
    out.sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));
    const nodes = [...covered].sort();
    const key = JSON.stringify([nodes, out.map((o) => [o.metadata.name, o.spec])]);
    if (key === this.key) return false;
    this.key = key;
    this.current = out;
    this.covered = nodes;
    this.seqNo++;
    return true;
  }

  close(): void {
    this.journal.close();
  }

  private lines(): Line[] {
    const out: Line[] = [];
    for (const r of [...this.reports.values()].sort((a, b) => a.order - b.order)) {
      out.push({
        t: 'report',
        node: r.node,
        order: r.order,
        payload: Buffer.from(r.wire.payload).toString('base64'),
        signature: Buffer.from(r.wire.signature).toString('base64'),
        serial: r.wire.cert_serial,
      });
      if (r.done) out.push({ t: 'done', node: r.node, order: r.order, refused: [...r.refusedByController] });
    }
    return out;
  }

  private compactIfDue(): void {
    if (this.journal.lines > 4 * this.reports.size + 64) this.journal.rewrite(this.lines());
  }
}
