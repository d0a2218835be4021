import type { FloatingIPSpec, GatewaySpec } from '../api/gateway-kinds.js';
import type { GatewayReport__Output } from '../api/gen/tether/v1/GatewayReport.js';
import type { TetherObject } from '../api/resource.js';

/**
 * Gateway nodes' live BGP state (NodeMessage.gateway, docs/gateway.md), kept in memory and
 * merged into `Gateway` and `FloatingIP` status when they are read (`tether get gateways`).
 * A node may report only on its own site's Gateway, only peers that Gateway names, only
 * floating IPs of that Gateway at their own address; everything is bounded.
 */

const MAX_TEXT = 256;
const MAX_BOUND = 4096;
const IPV4 = /^(\d{1,3})(\.\d{1,3}){3}$/;

export interface GatewayNodeReport {
  gateway: string;
  role: string;
  running: boolean;
  configHash: string;
  error: string;
  peers: Record<
    string,
    { state: string; protocol: string; imported: number; exported: number; since: string; lastError?: string }
  >;
  /** `endpointNode`: the node hosting the endpoint (absent from nodes before cross-node
   *  floating IPs, which bound only local endpoints). */
  bound: Array<{ name: string; ip: string; endpointNode?: string }>;
  announced: number;
  reportedAt: string;
}

const text = (s: unknown) => (typeof s === 'string' ? s.slice(0, MAX_TEXT) : '');
const count = (n: unknown) => {
  const v = Number(n);
  return Number.isFinite(v) && v >= 0 ? Math.min(Math.floor(v), 1e9) : 0;
};

export class GatewayReports {
  private readonly byNode = new Map<string, GatewayNodeReport>();

  constructor(private readonly get: (kind: string, name: string) => TetherObject | undefined) {}

  /** Takes a node's report; returns why it was dropped, if it was. */
  accept(node: string, site: string, r: GatewayReport__Output, now = Date.now()): string | undefined {
    const gw = this.get('Gateway', r.gateway);
    const spec = gw?.spec as unknown as GatewaySpec | undefined;
    if (!gw || spec?.site !== site) {
      this.byNode.delete(node);
      return r.gateway ? `Gateway "${text(r.gateway)}" is not site ${site}'s` : undefined;
    }
    // The role is a claim: only a node the Gateway lists (or any of its site's nodes when it
    // lists none, then there is no HA and each is active) may say it is active or standby.
    if (spec.nodes && !spec.nodes.includes(node)) {
      this.byNode.delete(node);
      return `node ${node} is not a gateway node of Gateway "${gw.metadata.name}"`;
    }
    if (r.role !== 'active' && r.role !== 'standby') {
      this.byNode.delete(node);
      return `role "${text(r.role)}" is neither active nor standby`;
    }
    const names = new Set(spec.peers.map((p) => p.name));
    const peers: GatewayNodeReport['peers'] = {};
    for (const p of r.peers.slice(0, 16)) {
      if (!names.has(p.name)) continue;
      peers[p.name] = {
        // The BGP state (Established, Active, …) is what `tether get gateways` shows.
        state: text(p.bgp_state),
        protocol: text(p.state),
        imported: count(p.imported),
        exported: count(p.exported),
        since: text(p.since),
        ...(p.last_error ? { lastError: text(p.last_error) } : {}),
      };
    }
    const bound: GatewayNodeReport['bound'] = [];
    for (const b of r.bound.slice(0, MAX_BOUND)) {
      const m = /^([a-z0-9-]{1,63})=([\d.]{7,15})>([\d.]{7,15})(?:@([a-z0-9][-a-z0-9]{0,62}))?$/.exec(b);
      if (!m || !IPV4.test(m[3]!)) continue;
      const f = this.get('FloatingIP', m[1]!);
      const fs = f?.spec as unknown as FloatingIPSpec | undefined;
      if (fs?.gateway !== gw.metadata.name || fs.address !== m[2]) continue;
      // The endpoint's node is a claim too: a node of this Gateway's site, or it is left out.
      const epNode = m[4];
      const epSite = epNode
        ? (this.get('Node', epNode)?.spec as { site?: unknown } | undefined)?.site
        : undefined;
      bound.push({ name: m[1]!, ip: m[3]!, ...(epNode && epSite === site ? { endpointNode: epNode } : {}) });
    }
    this.byNode.set(node, {
      gateway: gw.metadata.name,
      role: r.role,
      running: Boolean(r.running),
      configHash: text(r.config_hash),
      error: text(r.error),
      peers,
      bound,
      announced: count(r.announced),
      reportedAt: new Date(now).toISOString(),
    });
    return undefined;
  }

  /** A Gateway with `status.nodes`, a FloatingIP with `status.bound`; others as they are. */
  decorate(obj: TetherObject): TetherObject {
    if (obj.kind === 'Gateway') {
      const nodes: Record<string, Omit<GatewayNodeReport, 'gateway' | 'bound'> & { bound: number }> = {};
      for (const [node, r] of this.byNode) {
        if (r.gateway !== obj.metadata.name) continue;
        const { gateway: _g, bound, error, ...rest } = r;
        nodes[node] = { ...rest, ...(error ? { error } : {}), bound: bound.length } as (typeof nodes)[string];
      }
      if (!Object.keys(nodes).length) return obj;
      return { ...obj, status: { ...(obj.status ?? {}), nodes } };
    }
    if (obj.kind === 'FloatingIP') {
      const gw = (obj.spec as unknown as FloatingIPSpec | undefined)?.gateway;
      // Active nodes first: during a failover both may briefly report it.
      const hits = [...this.byNode.entries()]
        .filter(([, r]) => r.gateway === gw)
        .sort(([, a], [, b]) => (a.role === b.role ? 0 : a.role === 'active' ? -1 : 1));
      for (const [node, r] of hits) {
        const b = r.bound.find((x) => x.name === obj.metadata.name);
        if (b)
          return {
            ...obj,
            status: {
              ...(obj.status ?? {}),
              bound: { node, ip: b.ip, ...(b.endpointNode ? { endpointNode: b.endpointNode } : {}) },
            },
          };
      }
    }
    return obj;
  }
}
