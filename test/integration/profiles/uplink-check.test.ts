/**
 * `tether check` on a node whose underlay uplink is an L3 Linux bridge (the address on the
 * bridge itself, common on servers): the real binary, run inside a network namespace built
 * here (`ip netns exec` mounts that namespace's sysfs), says so and names the remedy; after the
 * remedy (the address on a veth whose peer is a bridge port) it passes.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessRunner } from '../../../src/lib/exec.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn('skipping the uplink check test: it needs root (network namespaces)');

const TETHER = fileURLToPath(new URL('../../../bin/tether', import.meta.url));

describe.skipIf(!isRoot)('tether check: an uplink that is an L3 Linux bridge', () => {
  const runner = new ProcessRunner();
  const ns = `uc${randomBytes(3).toString('hex')}`;
  const ip = (args: string) => runner.run('ip', ['-n', ns, ...args.split(' ')]);

  interface Report {
    results: Array<{ id: string; status: string; detail: string; hint?: string }>;
  }
  const check = async (...extra: string[]) => {
    const r = await runner.run(TETHER, ['check', '--profile', 'base', '-o', 'json', ...extra], {
      netns: ns,
      allowFailure: true,
      env: { ...process.env, NO_COLOR: '1' },
    });
    const report = JSON.parse(r.stdout) as Report;
    return report.results.find((x) => x.id === 'network.uplink');
  };

  beforeAll(async () => {
    await runner.run('ip', ['netns', 'add', ns]);
    await ip('link set lo up');
    // The server layout: NIC (a veth end here) enslaved to br0, the address and default route on br0.
    await ip('link add nic0 type veth peer name peer0');
    await ip('link add br0 type bridge');
    await ip('link set nic0 master br0');
    for (const d of ['nic0', 'peer0', 'br0']) await ip(`link set ${d} up`);
    await ip('addr add 10.250.0.10/24 dev br0');
    await ip('route add default via 10.250.0.1 dev br0');
  });

  afterAll(async () => {
    await runner.run('ip', ['netns', 'del', ns], { allowFailure: true });
  });

  it('the default route through a bridge holding the address: warn, with the veth remedy', async () => {
    const r = await check();
    expect(r?.status).toBe('warn');
    expect(r?.detail).toContain('br0 (default route) is a Linux bridge');
    expect(r?.detail).toContain('10.250.0.0/24');
    expect(r?.detail).toContain('ports nic0');
    expect(r?.detail).toContain('segmented in software');
    expect(r?.hint).toContain('veth whose peer is a port of br0');
  });

  it('naming the uplink: the bridge warns, a missing interface fails', async () => {
    expect((await check('--underlay-if', 'br0'))?.status).toBe('warn');
    const missing = await check('--underlay-if', 'nope0');
    expect(missing).toMatchObject({ status: 'fail', detail: 'interface nope0 not found' });
  });

  it('after the remedy (address on a veth whose peer is a br0 port) it passes', async () => {
    await ip('addr del 10.250.0.10/24 dev br0');
    await ip('link add up0 type veth peer name up0p');
    await ip('link set up0p master br0');
    await ip('link set up0p up');
    await ip('link set up0 up');
    await ip('addr add 10.250.0.10/24 dev up0');
    await ip('route add default via 10.250.0.1 dev up0');
    const r = await check();
    expect(r).toMatchObject({ status: 'pass', detail: 'up0 (default route) is not a Linux bridge' });
  });
});
