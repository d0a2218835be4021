import type { TetherObject } from '../api/resource.js';
import { TetherError } from '../lib/errors.js';

const ALIASES: Record<string, string> = {
  site: 'Site',
  sites: 'Site',
  node: 'Node',
  nodes: 'Node',
  no: 'Node',
  token: 'EnrollmentToken',
  tokens: 'EnrollmentToken',
  enrollmenttoken: 'EnrollmentToken',
  enrollmenttokens: 'EnrollmentToken',
  virtualnetwork: 'VirtualNetwork',
  virtualnetworks: 'VirtualNetwork',
  vn: 'VirtualNetwork',
  vns: 'VirtualNetwork',
  networkpolicy: 'NetworkPolicy',
  networkpolicies: 'NetworkPolicy',
  netpol: 'NetworkPolicy',
  endpoint: 'Endpoint',
  endpoints: 'Endpoint',
  ep: 'Endpoint',
  gateway: 'Gateway',
  gateways: 'Gateway',
  gw: 'Gateway',
  floatingip: 'FloatingIP',
  floatingips: 'FloatingIP',
  fip: 'FloatingIP',
  fips: 'FloatingIP',
  profile: 'Profile',
  profiles: 'Profile',
};

export function resolveKind(word: string): string {
  const k = ALIASES[word.toLowerCase()];
  if (!k) {
    throw new TetherError('TETHER_E_INVALID', `unknown resource type "${word}"`, {
      field: 'KIND',
      expected: [...new Set(Object.values(ALIASES))].join(', '),
    });
  }
  return k;
}

function age(ts: string | undefined): string {
  if (!ts) return '';
  const s = Math.max(0, (Date.now() - new Date(ts).getTime()) / 1000);
  if (s < 120) return `${Math.round(s)}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172_800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86_400)}d`;
}

type Obj = Record<string, unknown>;
const str = (v: unknown) => (v === undefined || v === null ? '' : Array.isArray(v) ? v.join(',') : String(v));

/** `ready (12.3s)`, `enroll (4.0s so far)` or `failed in preflight`: the first-boot phase and
 *  the time first boot took (docs/node.md "First boot"); `tether describe node` has each phase. */
function firstBootColumn(fb: Obj | undefined): string {
  if (!fb) return '';
  const phases = (Array.isArray(fb.phases) ? fb.phases : []) as Array<{ name?: string; seconds?: number }>;
  const total = phases.reduce((t, p) => t + (typeof p.seconds === 'number' ? p.seconds : 0), 0);
  if (fb.phase === 'failed') {
    const at = (fb.lastError as { phase?: string } | undefined)?.phase;
    return `failed${at ? ` in ${at}` : ''}`;
  }
  return `${str(fb.phase)} (${total.toFixed(1)}s${fb.phase === 'ready' ? '' : ' so far'})`;
}

/** Columns for `tether get KIND` per kind. */
export function tableFor(
  kind: string,
  items: readonly TetherObject[],
): { headers: string[]; rows: string[][] } {
  const rows = (f: (o: TetherObject, spec: Obj, status: Obj) => string[]) =>
    items.map((o) => [
      o.metadata.name,
      ...f(o, o.spec as Obj, (o.status ?? {}) as Obj),
      str(o.metadata.revision),
      age(o.metadata.creationTimestamp),
    ]);
  switch (kind) {
    case 'Node':
      return {
        headers: ['name', 'site', 'phase', 'session', 'acked', 'firstboot', 'last error', 'revision', 'age'],
        rows: rows((_o, spec, st) => {
          const sess = (st.session ?? {}) as Obj;
          return [
            str(spec.site),
            str(st.phase),
            sess.connected ? 'connected' : 'offline',
            str(sess.ackedRevision),
            firstBootColumn(st.firstBoot as Obj | undefined),
            str((st.firstBoot as { lastError?: { message?: string } } | undefined)?.lastError?.message).slice(
              0,
              60,
            ),
          ];
        }),
      };
    case 'Site':
      return {
        headers: ['name', 'approval', 'revision', 'age'],
        rows: rows((_o, spec) => [str(spec.approval ?? 'auto')]),
      };
    case 'EnrollmentToken':
      return {
        headers: ['name', 'site', 'expires', 'used', 'revision', 'age'],
        rows: rows((_o, spec, st) => [
          str(spec.site),
          str(spec.expiresAt),
          `${str(st.used ?? 0)}/${str(spec.uses)}`,
        ]),
      };
    case 'VirtualNetwork':
      return {
        headers: ['name', 'subnets', 'vni', 'sites', 'breakout', 'revision', 'age'],
        rows: rows((_o, spec, st) => [
          str(spec.subnets),
          str(st.vni ?? spec.vni),
          str(spec.sites ?? '*'),
          spec.localBreakout ? 'yes' : 'no',
        ]),
      };
    case 'Endpoint':
      return {
        headers: ['name', 'network', 'node', 'ip', 'mac', 'revision', 'age'],
        rows: rows((_o, spec) => [str(spec.network), str(spec.node), str(spec.ip), str(spec.mac)]),
      };
    case 'NetworkPolicy':
      return {
        headers: ['name', 'network', 'default', 'rules', 'revision', 'age'],
        rows: rows((_o, spec) => [
          str(spec.network),
          str(spec.defaultAction),
          str((spec.rules as unknown[] | undefined)?.length ?? 0),
        ]),
      };
    case 'Gateway':
      return {
        headers: ['name', 'site', 'peers', 'state', 'role', 'sent', 'received', 'error', 'revision', 'age'],
        rows: rows((_o, spec, st) => {
          // status.nodes[node].peers[peer]: what each gateway node's BIRD reports (docs/gateway.md).
          const nodes = (st.nodes ?? {}) as Record<string, Obj>;
          const peers: string[] = [];
          let sent = 0;
          let received = 0;
          const errors: string[] = [];
          // ROLE: each gateway node's HA role as it reports it (docs/gateway.md "Gateway HA").
          const roles: string[] = [];
          for (const [node, ns] of Object.entries(nodes)) {
            roles.push(`${node}=${str(ns.role)}`);
            for (const [peer, p] of Object.entries((ns.peers ?? {}) as Record<string, Obj>)) {
              peers.push(`${node}/${peer}=${str(p.state)}`);
              sent += Number(p.exported ?? 0);
              received += Number(p.imported ?? 0);
              if (p.lastError) errors.push(`${node}/${peer}: ${str(p.lastError)}`);
            }
            if (ns.error) errors.push(`${node}: ${str(ns.error)}`);
          }
          return [
            str(spec.site),
            str(((spec.peers ?? []) as Obj[]).map((p) => `${str(p.address)}/AS${str(p.asn)}`)),
            peers.join(' ') || '-',
            roles.join(' ') || '-',
            String(sent),
            String(received),
            errors.join('; '),
          ];
        }),
      };
    case 'FloatingIP':
      return {
        headers: ['name', 'address', 'network', 'target', 'bound', 'revision', 'age'],
        rows: rows((_o, spec, st) => {
          const t = (spec.target ?? {}) as Obj;
          const target = t.endpoint
            ? str(t.endpoint)
            : Object.entries((t.matchLabels ?? {}) as Obj)
                .map(([k, v]) => `${k}=${str(v)}`)
                .join(',');
          const b = (st.bound ?? {}) as Obj;
          // `gw-a:10.1.0.5@worker-3`: bound on gw-a, the endpoint on worker-3 (over VXLAN).
          const at = b.endpointNode && b.endpointNode !== b.node ? `@${str(b.endpointNode)}` : '';
          return [
            str(spec.address),
            str(spec.network),
            target,
            b.node ? `${str(b.node)}:${str(b.ip)}${at}` : '-',
          ];
        }),
      };
    default:
      return { headers: ['name', 'revision', 'age'], rows: rows(() => []) };
  }
}
