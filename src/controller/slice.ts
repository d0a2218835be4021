import type { TetherObject } from '../api/resource.js';

/**
 * Which objects a site's nodes receive. Pure: membership of endpoints and policies depends on
 * their network's `spec.sites`, looked up through `networkSites`.
 *
 * - Site: only the node's own.
 * - VirtualNetwork: when `spec.sites` is absent or names the site.
 * - Endpoint, NetworkPolicy: when their network is in the slice.
 * - Profile: all (a node picks its own by its Site's spec.profile).
 * - Never: Node, EnrollmentToken (identities and secrets stay central).
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
    default:
      return false;
  }
}

export function sitesOf(vn: TetherObject): readonly string[] | 'all' {
  const sites = (vn.spec as { sites?: unknown }).sites;
  return Array.isArray(sites) ? (sites as string[]) : 'all';
}
