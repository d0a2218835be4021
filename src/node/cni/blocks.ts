/**
 * The `blockFor` the node daemon wires into FileIpam: a VirtualNetwork resource (as the
 * proxy caches it) → this site's IPAM block. Pure.
 */
import type { VirtualNetwork } from '../../api/kinds.js';
import { cidrContains as contains, formatIp, parseCidr } from '../../lib/ipv4.js';
import type { SiteBlock } from './registry.js';

/**
 * `status.siteBlocks[site]` of the network, with the gateway (spec.gateway, default the first
 * host of `spec.subnets[0]`, as the vRouter assigns it), the prefix length of the subnet that
 * holds the block, and `mtu` (the site's overlay MTU: underlay − 50). `undefined` while the
 * controller has not delegated a block to this site.
 */
export function siteBlockOf(
  vn: VirtualNetwork | undefined,
  site: string,
  mtu: number,
): SiteBlock | undefined {
  const cidr = vn?.status?.siteBlocks?.[site];
  if (!vn || !cidr) return undefined;
  const block = parseCidr(cidr);
  if (!block) return undefined;
  const subnets = (vn.spec.subnets ?? []).map((s) => parseCidr(s)).filter((c) => c !== undefined);
  const home = subnets.find((s) => s.prefix <= block.prefix && contains(s, block.base));
  const first = subnets[0];
  if (!home || !first) return undefined;
  return {
    cidr,
    gateway: vn.spec.gateway ?? formatIp(first.base + 1),
    prefixLength: home.prefix,
    mtu,
  };
}
