// The overlay's two cheap wins on the real kernel (issue 10): br_netfilter off in every
// network namespace where policy does not need it, and `notrack` for the node's own VXLAN
// packets, so a node whose namespace has conntrack loaded (breakout's masquerade) does not
// track encapsulated traffic.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/lib/log.js';
import { VRouter } from '../../../src/node/vrouter/agent.js';
import { type DesiredPolicy, names } from '../../../src/node/vrouter/model.js';
import { isRoot, local, network, nodeDesired, remote, Topo, type Workload } from './topo.js';

if (!isRoot)
  console.warn('skipping vRouter fast-path integration tests: they need root (network namespaces)');

const BRNF = ['iptables', 'ip6tables', 'arptables'].map((t) => `net.bridge.bridge-nf-call-${t}`);

describe.skipIf(!isRoot)('vRouter fast path on the real kernel: br_netfilter and VXLAN notrack', () => {
  const topo = new Topo('vf');
  let wa: Workload;
  let wb: Workload;
  const zeroTrust: DesiredPolicy = {
    name: 'zt',
    defaultAction: 'allow',
    rules: [{ name: 'r', action: 'allow', from: { matchLabels: {} }, to: { matchLabels: {} } }],
  };
  const desiredA = (policies: DesiredPolicy[] = []) => {
    const red = network('red', 510, { breakout: true });
    red.localEndpoints = [local(wa)];
    red.remoteEndpoints = [remote(wb, topo.vtepB)];
    red.policies = policies;
    return nodeDesired(topo, 'a', [red], true);
  };
  const desiredB = () => {
    const red = network('red', 510);
    red.localEndpoints = [local(wb)];
    red.remoteEndpoints = [remote(wa, topo.vtepA)];
    return nodeDesired(topo, 'b', [red]);
  };
  const vnA = () => names.vnNetns(`${topo.id}a`, 510);
  const sysctls = async (ns: string) =>
    Object.fromEntries(
      (await topo.sh('sysctl', BRNF, ns))
        .trim()
        .split('\n')
        .map((l) => l.split(' = ') as [string, string]),
    );
  /** The node namespace's conntrack entries (its own table: /proc/net/nf_conntrack is per namespace). */
  const conntrack = async (ns: string) => (await topo.sh('cat', ['/proc/net/nf_conntrack'], ns)).split('\n');

  beforeAll(async () => {
    await topo.build({ router: true });
    wa = await topo.addWorkload('a', 'fa', '10.1.0.60', '10.1.0.1');
    wb = await topo.addWorkload('b', 'fb', '10.1.0.61', '10.1.0.1');
    const a = await new VRouter(topo.runner, silentLogger()).sync(desiredA());
    const b = await new VRouter(topo.runner, silentLogger()).sync(desiredB());
    expect(a.ok, JSON.stringify(a.failures)).toBe(true);
    expect(b.ok, JSON.stringify(b.failures)).toBe(true);
  });

  afterAll(async () => {
    const k = new VRouter(topo.runner, silentLogger());
    await k.teardown(desiredA()).catch(() => undefined);
    await k.teardown(desiredB()).catch(() => undefined);
    await topo.destroyPrefixed([`${topo.id}a`, `${topo.id}b`]);
    await topo.destroy();
  });

  it('a network without policy: every bridge-nf-call-* is 0 (read back from the kernel)', async () => {
    expect(await sysctls(vnA())).toEqual(Object.fromEntries(BRNF.map((k) => [k, '0'])));
    expect(await sysctls(names.vnNetns(`${topo.id}b`, 510))).toEqual(
      Object.fromEntries(BRNF.map((k) => [k, '0'])),
    );
  });

  it('with policy only the IPv4 switch goes on (policy is IPv4), and off again when it goes', async () => {
    const r = await new VRouter(topo.runner, silentLogger()).sync(desiredA([zeroTrust]));
    expect(r.ok, JSON.stringify(r.failures)).toBe(true);
    expect(await sysctls(vnA())).toEqual({ [BRNF[0]!]: '1', [BRNF[1]!]: '0', [BRNF[2]!]: '0' });
    expect(await topo.ping(wa, wb.ip, 2)).toBe(true);
    const off = await new VRouter(topo.runner, silentLogger()).sync(desiredA());
    expect(off.ok).toBe(true);
    expect(await sysctls(vnA())).toEqual(Object.fromEntries(BRNF.map((k) => [k, '0'])));
  });

  it('VXLAN packets are never tracked in the node namespace, while breakout traffic there is', async () => {
    const raw = await topo.sh('nft', ['list', 'table', 'ip', names.nodeRawTable(`${topo.id}a`)], topo.nodeA);
    expect(raw).toContain(`ip saddr ${topo.vtepA} udp dport 4789 notrack`);
    expect(raw).toContain(`ip daddr ${topo.vtepA} udp dport 4789 notrack`);
    // Traffic both ways over VXLAN, and breakout through node A's masquerade (which loads conntrack there).
    expect(await topo.ping(wa, wb.ip, 5)).toBe(true);
    expect(await topo.ping(wb, wa.ip, 5)).toBe(true);
    expect(await topo.ping(wa, topo.siteNet, 2)).toBe(true);
    const entries = await conntrack(topo.nodeA);
    expect(entries.some((e) => e.includes(`dst=${topo.siteNet}`))).toBe(true);
    expect(entries.filter((e) => /dport=4789\b/.test(e))).toEqual([]);
    expect((await conntrack(topo.nodeB)).filter((e) => /dport=4789\b/.test(e))).toEqual([]);
  });

  it('teardown removes the notrack table with the rest', async () => {
    await new VRouter(topo.runner, silentLogger()).teardown(desiredA());
    const tables = await topo.sh('nft', ['list', 'tables'], topo.nodeA);
    expect(tables).not.toContain(names.nodeRawTable(`${topo.id}a`));
    const again = await new VRouter(topo.runner, silentLogger()).sync(desiredA());
    expect(again.ok).toBe(true);
  });
});
