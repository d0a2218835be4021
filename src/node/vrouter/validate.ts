import { TetherError } from '../../lib/errors.js';
import { cidrContains, isMac, parseCidr, parseIp } from '../../lib/ipv4.js';
import { type DesiredNodeNetwork, VXLAN_OVERHEAD } from './model.js';

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

/**
 * Checks a DesiredNodeNetwork before anything touches the kernel, so a bad value changes
 * nothing. Throws TETHER_E_INVALID naming the field and what was expected.
 */
export function validateDesired(d: DesiredNodeNetwork): void {
  const fail = (field: string, expected: string, got?: unknown): never => {
    throw new TetherError(
      'TETHER_E_INVALID',
      `invalid desired network state at ${field}: got ${JSON.stringify(got)}`,
      {
        field,
        expected,
      },
    );
  };
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$/.test(d.netnsPrefix))
    fail('netnsPrefix', 'letters, digits, _ or - (1–16, starting with a letter or digit)', d.netnsPrefix);
  if (!IFNAME.test(d.underlay.ifname)) fail('underlay.ifname', 'an interface name', d.underlay.ifname);
  if (parseIp(d.underlay.vtepIp) === undefined) fail('underlay.vtepIp', 'an IPv4 address', d.underlay.vtepIp);
  if (!Number.isInteger(d.underlay.mtu) || d.underlay.mtu < 576 + VXLAN_OVERHEAD || d.underlay.mtu > 65535)
    fail('underlay.mtu', `an integer MTU ≥ ${576 + VXLAN_OVERHEAD}`, d.underlay.mtu);
  if (d.breakout && !IFNAME.test(d.breakout.uplinkIfname))
    fail('breakout.uplinkIfname', 'an interface name', d.breakout.uplinkIfname);
  const vnis = new Set<number>();
  const ifnames = new Set<string>();
  d.networks.forEach((n, i) => {
    const f = `networks[${i}]`;
    if (!Number.isInteger(n.vni) || n.vni < 1 || n.vni > 0xffffff) fail(`${f}.vni`, '1‥16777215', n.vni);
    if (vnis.has(n.vni)) fail(`${f}.vni`, 'a VNI unique on the node', n.vni);
    vnis.add(n.vni);
    const subnets = n.subnets.map((s, j) => parseCidr(s) ?? fail(`${f}.subnets[${j}]`, 'an IPv4 CIDR', s));
    if (subnets.length === 0) fail(`${f}.subnets`, 'at least one subnet', n.subnets);
    const gw = parseIp(n.gateway);
    if (gw === undefined || !subnets.some((s) => cidrContains(s, gw)))
      fail(`${f}.gateway`, 'an IPv4 address inside subnets', n.gateway);
    if (!isMac(n.gatewayMac)) fail(`${f}.gatewayMac`, 'a lower-case MAC', n.gatewayMac);
    if (n.localBreakout) {
      if (!d.breakout) fail(`${f}.localBreakout`, 'breakout configured on the node', true);
      if (
        !n.breakoutTransit ||
        parseIp(n.breakoutTransit.nodeIp) === undefined ||
        parseIp(n.breakoutTransit.vnIp) === undefined
      )
        fail(`${f}.breakoutTransit`, '{nodeIp, vnIp} IPv4 addresses', n.breakoutTransit);
    }
    n.localEndpoints.forEach((e, j) => {
      const g = `${f}.localEndpoints[${j}]`;
      if (!IFNAME.test(e.hostIfname) || /^(tvx|tbo|tbr)\d*$/.test(e.hostIfname) || e.hostIfname === 'lo')
        fail(`${g}.hostIfname`, 'an interface name not reserved by Tether (tvx*, tbo*, tbr*)', e.hostIfname);
      if (ifnames.has(e.hostIfname)) fail(`${g}.hostIfname`, 'unique on the node', e.hostIfname);
      ifnames.add(e.hostIfname);
      if (!isMac(e.mac)) fail(`${g}.mac`, 'a lower-case MAC', e.mac);
      if (parseIp(e.ip) === undefined) fail(`${g}.ip`, 'an IPv4 address', e.ip);
    });
    n.remoteEndpoints.forEach((e, j) => {
      const g = `${f}.remoteEndpoints[${j}]`;
      if (!isMac(e.mac)) fail(`${g}.mac`, 'a lower-case MAC', e.mac);
      if (parseIp(e.ip) === undefined) fail(`${g}.ip`, 'an IPv4 address', e.ip);
      if (parseIp(e.vtep) === undefined) fail(`${g}.vtep`, 'an IPv4 address', e.vtep);
    });
  });
}
