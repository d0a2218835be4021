import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Plan } from '../../../src/profiles/plan.js';
import { converge, machine, PROFILES, planFor, profile } from '../../fixtures/hw/scenario.js';

const ids = (plan: Plan, phase?: 'boot' | 'runtime') =>
  plan.ops.filter((o) => !phase || o.phase === phase).map((o) => o.id);
const range = <T>(n: number, f: (i: number) => T): T[] => Array.from({ length: n }, (_, i) => f(i));
const E810 = '0000:51:00.0';
const CX6 = '0000:98:00.0';

const extra = mkdtempSync(join(tmpdir(), 'tether-plan-profiles-'));
writeFileSync(
  join(extra, 'smartnic-e810.yaml'),
  'extends: [sriov-e810]\nsmartnic:\n  sriov: [fronthaul]\n  eswitchMode: switchdev\n  hwTcOffload: true\n',
);

describe('reboot count and reasons', () => {
  it('fresh DU install: one reboot (CPU isolation, 1G hugepages, IOMMU, blacklist); runtime after it', async () => {
    const plan = await planFor(machine('du-e810'), profile('du'));
    expect(plan.reboot.count).toBe(1);
    expect(plan.reboot.pending).toBe(false);
    expect(plan.runtimeAfterReboot).toBe(true);
    expect(ids(plan, 'boot')).toEqual(['boot/modprobe-blacklist', 'boot/kernel-args', 'boot/update-grub']);
    const reasons = plan.reboot.reasons.join('\n');
    expect(reasons).toMatch(/CPU isolation .* fixed at boot: \+isolcpus=managed_irq,domain,2-31,34-63/);
    expect(reasons).toMatch(/1 GiB hugepages .* at boot: .*\+hugepages=0:16/);
    expect(reasons).toMatch(/IOMMU .* enabled at boot: \+intel_iommu=on \+iommu=pt/);
    expect(reasons).toMatch(/module blacklist .*\+module_blacklist=irdma/);
    // The runtime part is planned against the node as it will be after the reboot (0 VFs).
    expect(ids(plan, 'runtime')).toEqual([
      'sysctl/persist',
      'sysctl/kernel.panic_on_unrecovered_nmi',
      'sysctl/kernel.sched_rt_runtime_us',
      'sysctl/net.core.rmem_max',
      'sysctl/net.core.wmem_max',
      'sysctl/vm.stat_interval',
      `sriov/${E810}/mtu=9000`,
      `sriov/${E810}/numvfs=8`,
      ...range(4, (i) => [
        `sriov/${E810}/vf${i}/driver_override`,
        `sriov/${E810}/vf${i}/unbind`,
        `sriov/${E810}/vf${i}/probe`,
      ]).flat(),
      ...range(8, (i) => `sriov/${E810}/vf${i}/admin`),
      ...range(4, (i) => `sriov/${E810}/vf${i + 4}/mtu=9000`),
      'ptp/ptp4l.conf',
      'ptp/ptp.env',
    ]);
  });

  it('DU → DU with more VFs: no reboot; VFs go to 0 first (EBUSY rule), then 16', async () => {
    const k = machine('du-e810');
    await converge(k, profile('du'));
    const plan = await planFor(k, profile(join(PROFILES, 'sites/cell-0042-more-vfs.yaml')));
    expect(plan.reboot).toEqual({ count: 0, reasons: [], pending: false });
    const sr = ids(plan).filter((x) => x.includes('numvfs'));
    expect(sr).toEqual([`sriov/${E810}/numvfs=0`, `sriov/${E810}/numvfs=16`]);
    expect(plan.ops.find((o) => o.id === `sriov/${E810}/numvfs=0`)?.disruptive).toMatch(
      /destroys the 8 existing VFs/,
    );
    expect(plan.notes.join('\n')).toMatch(/8 → 16 needs no reboot.*EBUSY/);
    // Recreated VFs lose their settings: all 16 get their admin settings again.
    expect(ids(plan).filter((x) => x.endsWith('/admin'))).toHaveLength(16);
  });

  it('CU → DU: one reboot for the kernel arguments; the CU 2M pools go away with it', async () => {
    const k = machine('du-e810');
    await converge(k, profile('cu'));
    const plan = await planFor(k, profile('du'));
    expect(plan.reboot.count).toBe(1);
    expect(plan.reboot.reasons.join('\n')).toMatch(/CPU isolation/);
    expect(plan.reboot.reasons.join('\n')).not.toMatch(/IOMMU/); // the CU already booted with it
    expect(ids(plan, 'boot')).toEqual(['boot/modprobe-blacklist', 'boot/kernel-args', 'boot/update-grub']);
    expect(ids(plan).some((x) => x.startsWith('hugepages/'))).toBe(false);
  });

  it('ConnectX-6 Dx legacy → switchdev: no reboot; mlx5 order hw-tc-offload, unbind VFs, switchdev, rebind', async () => {
    const k = machine('cx6dx', { iommu: true });
    await converge(k, profile('sriov-cx6dx'));
    const plan = await planFor(k, profile('smartnic-cx6dx'));
    expect(plan.reboot.count).toBe(0);
    expect(ids(plan)).toEqual([
      'smartnic/representor-names',
      'smartnic/udev-reload',
      `sriov/${CX6}/hw-tc-offload`,
      ...range(8, (i) => `sriov/${CX6}/vf${i}/unbind`),
      `sriov/${CX6}/eswitch=switchdev`,
      ...range(8, (i) => `sriov/${CX6}/vf${i}/probe`),
      // a rebound VF gets a fresh netdev with the default MTU
      ...range(8, (i) => `sriov/${CX6}/vf${i}/mtu=9000`),
    ]);
    expect(plan.ops[0]?.content).toContain('ATTR{phys_port_name}=="pf0vf3", NAME="ens2f0np0_3"');
  });
});

describe('CPUs and hugepages at runtime', () => {
  it('offlines CPUs and reserves 2M pages per NUMA node without a reboot', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-cpu-'));
    writeFileSync(
      join(dir, 'lite.yaml'),
      'cpu:\n  offlined: "62-63"\nmemory:\n  hugepages:\n    pages:\n      - {size: 2M, count: 512, node: 1}\n      - {size: 2M, count: 100}\n',
    );
    const k = machine('du-e810');
    const p = profile('lite', [dir]);
    const plan = await planFor(k, p);
    expect(plan.reboot.count).toBe(0);
    expect(plan.ops.map((o) => `${o.path}=${o.value}`)).toEqual([
      '/sys/devices/system/cpu/cpu62/online=0',
      '/sys/devices/system/cpu/cpu63/online=0',
      '/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages=50',
      '/sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages=562',
    ]);
    await converge(k, p);
    expect((await k.read('/sys/devices/system/cpu/online'))?.trim()).toBe('0-61');
    expect((await k.read('/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages'))?.trim()).toBe('612');
    expect((await planFor(k, p)).ops).toEqual([]);
  });

  it('a hugepage shortfall at runtime is an error, not a silent success', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-hp-'));
    // 58.6 GiB of 2M pages fits a 96 GiB node (validation passes) ...
    writeFileSync(
      join(dir, 'big.yaml'),
      'memory:\n  hugepages:\n    pages:\n      - {size: 2M, count: 30000, node: 0}\n',
    );
    const k = machine('du-e810');
    // ... but 40 GiB already sit in 1G pages reserved at boot: the kernel grants fewer.
    await k.fs.writeConfig(
      '/sys/devices/system/node/node0/hugepages/hugepages-1048576kB/nr_hugepages',
      '40\n',
    );
    const { applyProfile } = await import('../../../src/profiles/apply.js');
    await expect(applyProfile(profile('big', [dir]), { fs: k, runner: k.runner })).rejects.toThrow(
      /reserved only \d+ pages/,
    );
  });
});

describe('vendor-specific SR-IOV / switchdev order', () => {
  it('mlx5 from scratch to switchdev: legacy numvfs first, then unbind, switchdev, rebind', async () => {
    const plan = await planFor(machine('cx6dx', { iommu: true }), profile('smartnic-cx6dx'));
    const sr = ids(plan).filter((x) => x.startsWith(`sriov/${CX6}`));
    expect(sr).toEqual([
      `sriov/${CX6}/hw-tc-offload`,
      `sriov/${CX6}/mtu=9000`,
      `sriov/${CX6}/numvfs=8`,
      ...range(8, (i) => `sriov/${CX6}/vf${i}/unbind`),
      `sriov/${CX6}/eswitch=switchdev`,
      ...range(8, (i) => `sriov/${CX6}/vf${i}/probe`),
      ...range(8, (i) => `sriov/${CX6}/vf${i}/mtu=9000`),
    ]);
  });

  it('ice (E810) to switchdev with VFs present: numvfs=0, eswitch, numvfs=N', async () => {
    const k = machine('du-e810', { iommu: true });
    await converge(k, profile('sriov-e810'));
    const plan = await planFor(k, profile('smartnic-e810', [extra]));
    const sr = ids(plan).filter((x) => /numvfs|eswitch/.test(x));
    expect(sr).toEqual([
      `sriov/${E810}/numvfs=0`,
      `sriov/${E810}/eswitch=switchdev`,
      `sriov/${E810}/numvfs=8`,
    ]);
    expect(plan.warnings.join('\n')).toMatch(/representor/); // vlan/qos of switchdev VFs are not ip-link settings
  });

  it('X710 (i40e) has no eswitch: VF count only', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-x710-'));
    writeFileSync(join(dir, 'x710.yaml'), 'sriov:\n  - name: mgmt\n    pf: {name: ens3f1}\n    numVfs: 4\n');
    const plan = await planFor(machine('du-e810'), profile('x710', [dir]));
    expect(ids(plan)).toEqual(['sriov/0000:3b:00.1/numvfs=4']);
  });

  it('a converged node plans nothing', async () => {
    const k = machine('cx6dx', { iommu: true });
    await converge(k, profile('smartnic-cx6dx'));
    const plan = await planFor(k, profile('smartnic-cx6dx'));
    expect(plan.ops).toEqual([]);
    expect(plan.reboot.count).toBe(0);
  });

  it('dropping an SR-IOV policy removes the VFs the earlier profile created', async () => {
    const k = machine('cx6dx', { iommu: true });
    await converge(k, profile('sriov-cx6dx'));
    // Same kernel arguments (IOMMU on), no SR-IOV policy: no reboot, VFs removed at runtime.
    writeFileSync(join(extra, 'iommu-only.yaml'), 'extends: [base]\nkernel:\n  iommu: true\n');
    const plan = await planFor(k, profile('iommu-only', [extra]));
    expect(plan.reboot.count).toBe(0);
    expect(ids(plan)).toContain(`sriov/${CX6}/numvfs=0`);
  });
});
