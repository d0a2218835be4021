import type { TetherObject } from '../api/resource.js';
import { withHaKeys } from './ha-keys.js';

/**
 * Which objects a site's nodes receive. Pure: membership of endpoints and policies depends on
 * their network's `spec.sites`, looked up through `networkSites`.
 *
 * - Site: only the node's own.
 * - VirtualNetwork: when `spec.sites` is absent or names the site.
 * - Endpoint, NetworkPolicy: when their network is in the slice.
 * - Profile: all (a node picks its own by its Site's spec.profile).
 * - Gateway: the site's own, with its HA heartbeat keys in `status.haKeys` (ha-keys.ts; the
 *   slice is the only place they ever appear). FloatingIP: when its network is in the slice.
 * - Node: the site roster — a summary of each node of the site (`nodeSummary`: name,
 *   revision, site, phase, VTEP, certificate serials), never the whole object: no CSR, no
 *   certificate, no facts, nothing of another site's nodes. A site proxy authorises its
 *   agents and elects itself from it (docs/proxy.md).
 * - Never: EnrollmentToken (secrets stay central).
 */
export type NetworkSites = (network: string) => readonly string[] | 'all' | undefined;

export function vnCoversSite(vn: TetherObject | undefined, site: string): boolean {
  if (!vn) return false;
  const sites = (vn.spec as { sites?: unknown }).sites;
  return !Array.isArray(sites) || sites.includes(site);
}

export function inSlice(site: string, obj: TetherObject, networkSites: NetworkSites): boolean {
  switch (obj.kind) {
    case 'Site':
      return obj.metadata.name === site;
    case 'VirtualNetwork':
      return vnCoversSite(obj, site);
    case 'Endpoint':
    case 'NetworkPolicy': {
      const net = (obj.spec as { network?: unknown }).network;
      if (typeof net !== 'string') return false;
      const sites = networkSites(net);
      return sites === 'all' || Boolean(sites?.includes(site));
    }
    case 'Profile':
      return true;
    case 'Gateway':
      return (obj.spec as { site?: unknown } | undefined)?.site === site;
    case 'FloatingIP': {
      // A floating IP goes where its network goes: the gateway nodes of any covered site
      // may bind it (the node checks that its own site's Gateway is the one named).
      const net = (obj.spec as { network?: unknown }).network;
      if (typeof net !== 'string') return false;
      const sites = networkSites(net);
      return sites === 'all' || Boolean(sites?.includes(site));
    }
    case 'Node':
      return (obj.spec as { site?: unknown } | undefined)?.site === site;
    default:
      return false;
  }
}

export function sitesOf(vn: TetherObject): readonly string[] | 'all' {
  const sites = (vn.spec as { sites?: unknown }).sites;
  return Array.isArray(sites) ? (sites as string[]) : 'all';
}

/** What a site slice carries of a Node: exactly these fields, whatever the record holds. */
export function nodeSummary(node: TetherObject): TetherObject {
  const st = (node.status ?? {}) as { phase?: unknown; vtep?: unknown; certSerials?: unknown };
  const status: Record<string, unknown> = {};
  if (typeof st.phase === 'string') status.phase = st.phase;
  if (typeof st.vtep === 'string') status.vtep = st.vtep;
  status.certSerials = Array.isArray(st.certSerials)
    ? st.certSerials.filter((x): x is string => typeof x === 'string')
    : [];
  return {
    apiVersion: node.apiVersion,
    kind: 'Node',
    metadata: {
      name: node.metadata.name,
      ...(node.metadata.revision !== undefined ? { revision: node.metadata.revision } : {}),
    },
    spec: { site: (node.spec as { site?: unknown } | undefined)?.site },
    status,
  };
}

/** The object as a site slice carries it (a Node as its summary, a Gateway with its HA keys
 *  when the controller has a master key, the rest whole). */
export function sliceView(obj: TetherObject, haMaster?: Uint8Array): TetherObject {
  if (obj.kind === 'Node') return nodeSummary(obj);
  if (obj.kind === 'Gateway' && haMaster) return withHaKeys(obj, haMaster);
  return obj;
}
