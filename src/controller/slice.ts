import { X509Certificate } from 'node:crypto';
import type { TetherObject } from '../api/resource.js';

/**
 * Which objects a site's nodes receive. Pure: membership of endpoints and policies depends on
 * their network's `spec.sites`, looked up through `networkSites`.
 *
 * - Site: only the node's own.
 * - VirtualNetwork: when `spec.sites` is absent or names the site.
 * - Endpoint, NetworkPolicy: when their network is in the slice.
 * - Profile: all (a node picks its own by its Site's spec.profile).
 * - Gateway: the site's own. FloatingIP: when its network is in the slice.
 * - Node: the site roster — a summary of each node of the site (`nodeSummary`: name,
 *   revision, site, phase, VTEP, certificate serials, the public key of its current
 *   certificate that gateway HA heartbeats are verified with), never the whole object: no CSR, no
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

/** SPKIs by certificate PEM: the same certificate is summarised for every delta and
 *  snapshot of its site; bounded, dropped whole when full (a cache, not state). */
const spkiMemo = new Map<string, string | undefined>();
const SPKI_MEMO_MAX = 4096;

/**
 * The public key of the certificate the controller issued to a node (base64 SPKI DER), which
 * the node's gateway HA heartbeats are verified with (docs/gateway.md "Heartbeat
 * authentication"). A public value; undefined when the record holds no readable certificate.
 */
export function certSpki(certPem: unknown): string | undefined {
  if (typeof certPem !== 'string') return undefined;
  if (spkiMemo.has(certPem)) return spkiMemo.get(certPem);
  let spki: string | undefined;
  try {
    const key = new X509Certificate(certPem).publicKey;
    spki = key.export({ type: 'spki', format: 'der' }).toString('base64');
  } catch {
    spki = undefined;
  }
  if (spkiMemo.size >= SPKI_MEMO_MAX) spkiMemo.clear();
  spkiMemo.set(certPem, spki);
  return spki;
}

/** What a site slice carries of a Node: exactly these fields, whatever the record holds. */
export function nodeSummary(node: TetherObject): TetherObject {
  const st = (node.status ?? {}) as {
    phase?: unknown;
    vtep?: unknown;
    certSerials?: unknown;
    issuedCertPem?: unknown;
  };
  const status: Record<string, unknown> = {};
  if (typeof st.phase === 'string') status.phase = st.phase;
  if (typeof st.vtep === 'string') status.vtep = st.vtep;
  // Only an approved node's: a revoked node's key must stop counting at once.
  const publicKey = st.phase === 'Approved' ? certSpki(st.issuedCertPem) : undefined;
  if (publicKey) status.publicKey = publicKey;
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

/** The object as a site slice carries it (a Node as its summary, the rest whole). */
export function sliceView(obj: TetherObject): TetherObject {
  return obj.kind === 'Node' ? nodeSummary(obj) : obj;
}
