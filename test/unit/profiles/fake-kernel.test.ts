import { readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readInventory } from '../../../src/kernel/hw/inventory.js';
import { machine } from '../../fixtures/hw/scenario.js';

const E810 = '0000:51:00.0';
const CX6 = '0000:98:00.0';
const X710 = '0000:3b:00.0';
const code = async (p: Promise<unknown>): Promise<string | undefined> => {
  try {
    await p;
    return undefined;
  } catch (e) {
    return (e as { details?: { errno?: string } }).details?.errno ?? (e as { code?: string }).code;
  }
};

describe('fixture trees follow the kernel sysfs ABI', () => {
  it('two-socket topology, NUMA memory, hugepage pools and three NIC families', async () => {
    const k = machine('all-nics');
    const inv = await readInventory(k, { runner: k.runner });
    expect(inv.online).toHaveLength(64);
    expect(inv.nodes.map((n) => [n.id, n.cpus.length, n.memTotalKb])).toEqual([
      [0, 32, 96 * 1048576],
      [1, 32, 96 * 1048576],
    ]);
    expect(inv.cpus.find((c) => c.id === 33)).toMatchObject({ socket: 0, node: 0, siblings: [1, 33] });
    expect(inv.hugepageSizesKb).toEqual([2048, 1048576]);
    expect(inv.nics.map((n) => [n.name, n.pci, n.driver, n.sriov?.totalVfs, n.eswitchMode])).toEqual([
      ['ens1f0', E810, 'ice', 128, 'legacy'],
      ['ens1f1', '0000:51:00.1', 'ice', 128, 'legacy'],
      ['ens2f0np0', CX6, 'mlx5_core', 16, 'legacy'],
      ['ens2f1np1', '0000:98:00.1', 'mlx5_core', 16, 'legacy'],
      ['ens3f0', X710, 'i40e', 64, undefined],
      ['ens3f1', '0000:3b:00.1', 'i40e', 64, undefined],
    ]);
  });

  it('creating VFs makes virtfnN/physfn links, binds the VF driver, and follows offset/stride', async () => {
    const k = machine('du-e810');
    await k.writeAttr(`/sys/bus/pci/devices/${E810}/sriov_numvfs`, '4');
    const dev = join(k.root, `/sys/bus/pci/devices/${E810}`);
    expect(readlinkSync(join(dev, 'virtfn3'))).toBe('../0000:51:01.3');
    expect(readlinkSync(join(k.root, '/sys/bus/pci/devices/0000:51:01.3/physfn'))).toBe(`../${E810}`);
    expect(readFileSync(join(k.root, '/sys/bus/pci/devices/0000:51:01.3/device'), 'utf8').trim()).toBe(
      '0x1889',
    );
    const inv = await readInventory(k);
    const pf = inv.nics.find((n) => n.pci === E810);
    expect(pf?.vfs.map((v) => [v.index, v.pci, v.driver, v.netdevs])).toEqual([
      [0, '0000:51:01.0', 'iavf', ['ens1f0v0']],
      [1, '0000:51:01.1', 'iavf', ['ens1f0v1']],
      [2, '0000:51:01.2', 'iavf', ['ens1f0v2']],
      [3, '0000:51:01.3', 'iavf', ['ens1f0v3']],
    ]);
    expect(inv.nics.map((n) => n.name)).not.toContain('ens1f0v0'); // VFs are not PFs
  });
});

describe('the fake behaves like the kernel where order matters', () => {
  it('sriov_numvfs: non-zero over non-zero is EBUSY, over totalvfs is ERANGE, same value is a no-op', async () => {
    const k = machine('du-e810');
    const p = `/sys/bus/pci/devices/${E810}/sriov_numvfs`;
    await k.writeAttr(p, '8');
    expect(await code(k.writeAttr(p, '16'))).toBe('EBUSY');
    expect(await code(k.writeAttr(p, '8'))).toBeUndefined();
    expect(await code(k.writeAttr(p, '0'))).toBeUndefined();
    expect(await code(k.writeAttr(p, '129'))).toBe('ERANGE');
    expect(await code(k.writeAttr(p, '16'))).toBeUndefined();
  });

  it('ice refuses an eswitch mode change while VFs exist (EOPNOTSUPP)', async () => {
    const k = machine('du-e810');
    await k.writeAttr(`/sys/bus/pci/devices/${E810}/sriov_numvfs`, '2');
    const set = k.runner.run('devlink', ['dev', 'eswitch', 'set', `pci/${E810}`, 'mode', 'switchdev']);
    expect(await code(set)).toBe('EOPNOTSUPP');
    await k.writeAttr(`/sys/bus/pci/devices/${E810}/sriov_numvfs`, '0');
    await k.runner.run('devlink', ['dev', 'eswitch', 'set', `pci/${E810}`, 'mode', 'switchdev']);
    await k.writeAttr(`/sys/bus/pci/devices/${E810}/sriov_numvfs`, '2');
    const inv = await readInventory(k, { runner: k.runner });
    const pf = inv.nics.find((n) => n.pci === E810);
    expect(pf?.eswitchMode).toBe('switchdev');
    expect(pf?.representors.map((r) => r.portName)).toEqual(['pf0vf0', 'pf0vf1']);
  });

  it('mlx5 refuses switchdev while VFs are bound (EBUSY); unbound VFs switch and get representors', async () => {
    const k = machine('cx6dx');
    await k.writeAttr(`/sys/bus/pci/devices/${CX6}/sriov_numvfs`, '2');
    const set = () => k.runner.run('devlink', ['dev', 'eswitch', 'set', `pci/${CX6}`, 'mode', 'switchdev']);
    expect(await code(set())).toBe('EBUSY');
    await k.writeAttr('/sys/bus/pci/drivers/mlx5_core/unbind', '0000:98:00.2');
    await k.writeAttr('/sys/bus/pci/drivers/mlx5_core/unbind', '0000:98:00.3');
    await set();
    expect(k.eswitchMode(CX6)).toBe('switchdev');
    const inv = await readInventory(k, { runner: k.runner });
    expect(inv.nics.find((n) => n.pci === CX6)?.representors.map((r) => r.name)).toEqual([
      'ens2f0npf0vf0',
      'ens2f0npf0vf1',
    ]);
  });

  it('i40e has no switchdev; vfio-pci needs an IOMMU group; ip link refuses a VF that does not exist', async () => {
    const k = machine('du-e810');
    expect(
      await code(k.runner.run('devlink', ['dev', 'eswitch', 'set', `pci/${X710}`, 'mode', 'switchdev'])),
    ).toBe('EOPNOTSUPP');
    await k.writeAttr(`/sys/bus/pci/devices/${E810}/sriov_numvfs`, '1');
    await k.writeAttr('/sys/bus/pci/devices/0000:51:01.0/driver_override', 'vfio-pci');
    await k.writeAttr('/sys/bus/pci/drivers/iavf/unbind', '0000:51:01.0');
    expect(await code(k.writeAttr('/sys/bus/pci/drivers_probe', '0000:51:01.0'))).toBe('EINVAL');
    expect(await code(k.runner.run('ip', ['link', 'set', 'ens1f0', 'vf', '5', 'vlan', '10']))).toBe('EINVAL');
  });

  it('runtime 2M hugepages are granted only up to what the node has; 1G pages only at boot', async () => {
    const k = machine('du-e810');
    const p2 = '/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages';
    await k.writeAttr(p2, '1000000');
    expect(Number(await k.read(p2))).toBe(Math.floor((96 * 1048576 * 0.9) / 2048));
    const p1 = '/sys/devices/system/node/node0/hugepages/hugepages-1048576kB/nr_hugepages';
    await k.writeAttr(p1, '4');
    expect((await k.read(p1))?.trim()).toBe('0');
  });

  it('a wrong order fails: switchdev on an E810 with VFs, or a second non-zero VF count', async () => {
    const k = machine('du-e810');
    await k.writeAttr(`/sys/bus/pci/devices/${E810}/sriov_numvfs`, '8');
    // the order a naive tool uses (mode first, then count) fails on ice ...
    await expect(
      k.runner.run('devlink', ['dev', 'eswitch', 'set', `pci/${E810}`, 'mode', 'switchdev']),
    ).rejects.toThrow(/allowed only if there is no VFs created/);
    // ... and growing the VF count in place fails everywhere.
    await expect(k.writeAttr(`/sys/bus/pci/devices/${E810}/sriov_numvfs`, '16')).rejects.toThrow(
      /Device or resource busy/,
    );
  });
});
