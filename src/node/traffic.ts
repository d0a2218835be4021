import type { CommandRunner } from '../lib/exec.js';
import type { NodeNetworking } from './networking.js';
import type { PolicyCounter } from './vrouter/agent.js';
import { names } from './vrouter/model.js';

/**
 * Traffic counters of the node's virtual networks, read from the kernel: link counters of each
 * network namespace's VXLAN and bridge (`ip -s -j link`), and the vRouter's nft policy
 * counters (its own read-back). One reader serves /metrics and the control API's /v1/traffic
 * (the dashboard), so a scrape and a dashboard refresh in the same half second cost one read.
 */

/** Largest `ip -s -j link` answer looked at; a network namespace holds a handful of links. */
export const MAX_LINK_JSON_BYTES = 1024 * 1024;
const IP_TIMEOUT_MS = 5000;

export interface LinkCounters {
  ifname: string;
  rxBytes: number;
  rxPackets: number;
  txBytes: number;
  txPackets: number;
}

function count(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0;
}

/** `ip -s -j link show` output → counters per link; anything malformed is skipped, not thrown. */
export function parseLinkStats(text: string): LinkCounters[] {
  if (text.length > MAX_LINK_JSON_BYTES) return [];
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return [];
  }
  if (!Array.isArray(v)) return [];
  const out: LinkCounters[] = [];
  for (const l of v.slice(0, 256)) {
    if (typeof l !== 'object' || l === null) continue;
    const o = l as {
      ifname?: unknown;
      stats64?: { rx?: Record<string, unknown>; tx?: Record<string, unknown> };
    };
    if (typeof o.ifname !== 'string' || typeof o.stats64 !== 'object' || o.stats64 === null) continue;
    out.push({
      ifname: o.ifname.slice(0, 15),
      rxBytes: count(o.stats64.rx?.bytes),
      rxPackets: count(o.stats64.rx?.packets),
      txBytes: count(o.stats64.tx?.bytes),
      txPackets: count(o.stats64.tx?.packets),
    });
  }
  return out;
}

export interface NetworkLink {
  network: string;
  /** `vxlan`: the overlay to other nodes; `bridge`: all traffic of the network on this node. */
  link: 'vxlan' | 'bridge';
  c: LinkCounters;
}

export interface TrafficReader {
  links(): Promise<NetworkLink[]>;
  /** Per-rule policy counters; `rule: '(default)'` is the network's default-deny drop counter. */
  policy(): Promise<PolicyCounter[]>;
}

/** Reads younger than this are shared. */
const SHARE_MS = 500;

export function trafficReader(networking: NodeNetworking | undefined, runner: CommandRunner): TrafficReader {
  let linkRead: { at: number; p: Promise<NetworkLink[]> } | undefined;
  let policyRead: { at: number; p: Promise<PolicyCounter[]> } | undefined;
  const readLinks = async (): Promise<NetworkLink[]> => {
    const d = networking?.planned();
    if (!d) return [];
    const per = await Promise.all(
      d.networks.map(async (n) => {
        const r = await runner
          .run('ip', ['-n', names.vnNetns(d.netnsPrefix, n.vni), '-s', '-j', 'link', 'show'], {
            allowFailure: true,
            timeoutMs: IP_TIMEOUT_MS,
          })
          .catch(() => undefined);
        if (r?.code !== 0) return [];
        const want = new Map<string, NetworkLink['link']>([
          [names.vxlan(n.vni), 'vxlan'],
          [names.bridge, 'bridge'],
        ]);
        return parseLinkStats(r.stdout).flatMap((c) => {
          const link = want.get(c.ifname);
          return link ? [{ network: n.name, link, c }] : [];
        });
      }),
    );
    return per.flat();
  };
  return {
    links: () => {
      const now = performance.now();
      if (!linkRead || now - linkRead.at > SHARE_MS) linkRead = { at: now, p: readLinks() };
      return linkRead.p;
    },
    policy: () => {
      const now = performance.now();
      if (!policyRead || now - policyRead.at > SHARE_MS)
        policyRead = { at: now, p: networking?.counters().catch(() => []) ?? Promise.resolve([]) };
      return policyRead.p;
    },
  };
}
