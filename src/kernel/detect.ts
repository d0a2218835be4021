import { TetherError } from '../lib/errors.js';
import type { CommandRunner } from '../lib/exec.js';

export interface DetectedUplink {
  ifname: string;
  address: string;
  mtu: number;
  /** `ip -d` link kind (`bridge`, `veth`, `vlan`, …); undefined for a plain NIC. */
  kind?: string;
}

interface IpAddrJson {
  ifname: string;
  mtu: number;
  linkinfo?: { info_kind?: string };
  addr_info?: Array<{ family: string; local: string; scope?: string }>;
}

/**
 * The node's uplink: the interface of the default route (or the one named), its first
 * global IPv4 address and its MTU, read from the kernel in `netns` (default: ours).
 */
export async function detectUplink(
  runner: CommandRunner,
  ifname?: string,
  netns?: string,
): Promise<DetectedUplink> {
  let dev = ifname;
  if (!dev) {
    const r = await runner.run('ip', ['-j', '-4', 'route', 'show', 'default'], { netns });
    const routes = JSON.parse(r.stdout || '[]') as Array<{ dev?: string }>;
    dev = routes[0]?.dev;
    if (!dev) {
      throw new TetherError('TETHER_E_PRECONDITION', 'no default route to find the uplink by', {
        field: '--underlay-if',
        expected: 'the uplink interface name, or a default route',
      });
    }
  }
  const r = await runner.run('ip', ['-d', '-j', '-4', 'addr', 'show', 'dev', dev], {
    netns,
    allowFailure: true,
  });
  const links = JSON.parse(r.stdout || '[]') as IpAddrJson[];
  const link = links[0];
  const addr = link?.addr_info?.find((a) => a.family === 'inet' && a.scope !== 'host');
  if (!link || !addr) {
    throw new TetherError('TETHER_E_PRECONDITION', `uplink ${dev} has no IPv4 address`, {
      field: '--underlay-if',
      expected: 'an interface with an IPv4 address',
    });
  }
  const kind = link.linkinfo?.info_kind;
  return { ifname: dev, address: addr.local, mtu: link.mtu, ...(kind ? { kind } : {}) };
}

/**
 * Why an uplink that is itself a Linux bridge holding the node's address is slow for the
 * overlay, and what to do, in one sentence (`tether check` and `node run` say it): VXLAN GSO
 * packets routed into an L3 bridge device are segmented in software (`__skb_gso_segment`
 * under `ip_finish_output2`), so the overlay carries MTU-sized packets where the underlay
 * keeps 64 KB ones; measured at a fifth of the underlay's throughput (BENCHMARKS.md).
 */
export function l3BridgeUplinkAdvice(ifname: string): string {
  return (
    `put the node's address on a veth whose peer is a port of ${ifname} ("ip link add up0 type veth peer name up0p; ` +
    `ip link set up0p master ${ifname} up", then move the address and routes from ${ifname} to up0 and run with ` +
    '--underlay-if up0), or use the NIC itself'
  );
}
