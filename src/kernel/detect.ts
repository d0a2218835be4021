import { TetherError } from '../lib/errors.js';
import type { CommandRunner } from '../lib/exec.js';

export interface DetectedUplink {
  ifname: string;
  address: string;
  mtu: number;
}

interface IpAddrJson {
  ifname: string;
  mtu: number;
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
  const r = await runner.run('ip', ['-j', '-4', 'addr', 'show', 'dev', dev], { netns, allowFailure: true });
  const links = JSON.parse(r.stdout || '[]') as IpAddrJson[];
  const link = links[0];
  const addr = link?.addr_info?.find((a) => a.family === 'inet' && a.scope !== 'host');
  if (!link || !addr) {
    throw new TetherError('TETHER_E_PRECONDITION', `uplink ${dev} has no IPv4 address`, {
      field: '--underlay-if',
      expected: 'an interface with an IPv4 address',
    });
  }
  return { ifname: dev, address: addr.local, mtu: link.mtu };
}
