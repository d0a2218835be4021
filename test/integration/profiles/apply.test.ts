/**
 * Applies profiles to fixture trees through the fake kernel: expected files, idempotence,
 * reboot flow, and crash/resume at every state-changing step (Felix-style failure loop).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isTetherError } from '../../../src/lib/errors.js';
import { applyProfile } from '../../../src/profiles/apply.js';
import { loadProfile } from '../../../src/profiles/load.js';
import { converge, machine, PROFILES, planFor, profile, snapshot } from '../../fixtures/hw/scenario.js';

const E810 = '0000:51:00.0';
const CX6 = '0000:98:00.0';
const read = (root: string, p: string) => readFileSync(join(root, p), 'utf8').trim();
const NOT_JOURNAL = [/^\/var\/lib\/tether\/profile\/journal\.json$/];

describe('apply a DU profile to a fresh two-socket E810 server', () => {
  it('boot config, one reboot, runtime; each apply after convergence changes nothing', async () => {
    const k = machine('du-e810');
    const du = profile('du');
    const first = await applyProfile(du, { fs: k, runner: k.runner });
    expect(first).toMatchObject({ executed: 3, rebootRequired: true });
    const grub = read(k.root, '/etc/default/grub.d/60-tether.cfg');
    expect(grub).toMatch(
      /^TETHER_CMDLINE=".*isolcpus=managed_irq,domain,2-31,34-63 .*intel_iommu=on iommu=pt .*hugepages=0:16/m,
    );
    expect(read(k.root, '/etc/modprobe.d/60-tether-blacklist.conf')).toContain('blacklist irdma');
    expect(read(k.root, `/sys/bus/pci/devices/${E810}/sriov_numvfs`)).toBe('0'); // runtime waits for the reboot
    expect(k.log).toContain('update-grub');

    // Before the reboot, applying again does nothing: the reboot is pending.
    const before = snapshot(k.root);
    const again = await applyProfile(du, { fs: k, runner: k.runner });
    expect(again).toMatchObject({ executed: 0, rebootRequired: true });
    expect(again.plan.reboot.pending).toBe(true);
    expect(snapshot(k.root)).toEqual(before);

    k.reboot();
    expect(read(k.root, '/proc/cmdline')).toContain('nohz_full=2-31,34-63');
    const after = await applyProfile(du, { fs: k, runner: k.runner });
    expect(after.rebootRequired).toBe(false);
    expect(after.executed).toBe(after.plan.ops.length);

    // The expected state in the tree.
    const dev = `/sys/bus/pci/devices/${E810}`;
    expect(read(k.root, `${dev}/sriov_numvfs`)).toBe('8');
    expect(read(k.root, '/sys/class/net/ens1f0/mtu')).toBe('9000');
    for (let i = 0; i < 4; i++)
      expect(read(k.root, `/sys/bus/pci/devices/0000:51:01.${i}/driver_override`)).toBe('vfio-pci');
    expect(await k.readlink('/sys/bus/pci/devices/0000:51:01.0/driver')).toMatch(/vfio-pci$/);
    expect(await k.readlink('/sys/bus/pci/devices/0000:51:01.5/driver')).toMatch(/iavf$/);
    expect(read(k.root, '/sys/bus/pci/devices/0000:51:01.5/net/ens1f0v5/mtu')).toBe('9000');
    const admin = JSON.parse(read(k.root, `/run/fake/vf/${E810}.json`));
    expect(admin[0]).toMatchObject({ vf: 0, vlan: 100, qos: 5, spoofchk: false, trust: true });
    expect(admin[6]).toMatchObject({ vf: 6, vlan: 200, spoofchk: true, maxTxRate: 10000 });
    expect(read(k.root, '/sys/devices/system/node/node0/hugepages/hugepages-1048576kB/nr_hugepages')).toBe(
      '16',
    );
    expect(read(k.root, '/proc/sys/kernel/sched_rt_runtime_us')).toBe('-1');
    expect(read(k.root, '/etc/sysctl.d/60-tether.conf')).toContain('vm.stat_interval = 10');
    expect(read(k.root, '/etc/tether/ptp/ptp4l.conf')).toContain('domainNumber 24');
    expect(read(k.root, '/etc/tether/ptp/ptp.env')).toContain(
      'PTP4L_OPTS="-2 -s -f /etc/tether/ptp/ptp4l.conf -i ens1f0"',
    );
    expect(JSON.parse(read(k.root, '/var/lib/tether/profile/applied.json'))).toEqual({
      profile: 'du',
      pfs: [E810],
    });

    // Twice: nothing changes the second time.
    const converged = snapshot(k.root);
    const second = await applyProfile(du, { fs: k, runner: k.runner });
    expect(second).toMatchObject({ executed: 0, rebootRequired: false });
    expect(snapshot(k.root)).toEqual(converged);
  });

  it('a profile that does not fit the node is refused and changes nothing', async () => {
    const k = machine('cx6dx'); // no E810: the du profile's fronthaul PF is missing
    const before = snapshot(k.root);
    const err = await applyProfile(profile('du'), { fs: k, runner: k.runner }).catch((e) => e);
    expect(isTetherError(err, 'TETHER_E_INVALID')).toBe(true);
    expect(err.details.issues).toContainEqual(
      expect.objectContaining({
        file: expect.stringMatching(/sriov-e810\.yaml$/),
        line: 8,
        field: 'sriov[fronthaul].pf',
      }),
    );
    expect(err.details).toMatchObject({
      file: expect.stringMatching(/\.yaml$/),
      line: expect.any(Number),
      field: expect.any(String),
    });
    expect(snapshot(k.root)).toEqual(before);
  });
});

/** Reference run, then one run per crash point: crash, re-run, compare with the reference. */
async function crashLoop(
  prepare: () => Promise<ReturnType<typeof machine>>,
  target: ReturnType<typeof profile>,
  every = 1,
): Promise<{ points: number; resumed: number }> {
  const ref = await prepare();
  const refMutations = ref.log.length;
  await applyProfile(target, { fs: ref, runner: ref.runner });
  const total = ref.log.length - refMutations;
  const want = snapshot(ref.root, NOT_JOURNAL);
  let resumed = 0;
  let points = 0;
  for (let n = 0; n < total; n += every) {
    const k = await prepare();
    k.failAtMutation(n);
    await expect(applyProfile(target, { fs: k, runner: k.runner })).rejects.toThrow(/injected crash/);
    const res = await applyProfile(target, { fs: k, runner: k.runner });
    if (res.resumed) resumed++;
    points++;
    expect(snapshot(k.root, NOT_JOURNAL), `crash at mutation ${n}`).toEqual(rootless(want, ref.root, k.root));
    const again = await planFor(k, target);
    expect(again.ops, `crash at mutation ${n}`).toEqual([]);
  }
  return { points, resumed };
}

/** Snapshots of different temp roots differ only where absolute paths leak: none do (links are relative). */
function rootless(s: Record<string, string>, _from: string, _to: string): Record<string, string> {
  return s;
}

describe('an interrupted apply resumes and completes', () => {
  it('ConnectX-6 Dx legacy → switchdev, crashing at every second step', async () => {
    const prepare = async () => {
      const k = machine('cx6dx', { iommu: true });
      await converge(k, profile('sriov-cx6dx'));
      return k;
    };
    const { points, resumed } = await crashLoop(prepare, profile('smartnic-cx6dx'), 2);
    expect(points).toBeGreaterThan(15);
    expect(resumed).toBeGreaterThan(10);
  });

  it('DU → DU with 16 VFs on an E810, crashing at every fifth step', async () => {
    const prepare = async () => {
      const k = machine('du-e810');
      await converge(k, profile('du'));
      return k;
    };
    const site = loadProfile(join(PROFILES, 'sites/cell-0042-more-vfs.yaml'), { searchPath: [PROFILES] });
    const { points } = await crashLoop(prepare, site, 5);
    expect(points).toBeGreaterThan(10);
  });

  it('a journal left by a different profile is not resumed: the new profile is planned afresh', async () => {
    const k = machine('cx6dx', { iommu: true });
    await converge(k, profile('sriov-cx6dx'));
    k.failAtMutation(6);
    await expect(applyProfile(profile('smartnic-cx6dx'), { fs: k, runner: k.runner })).rejects.toThrow(
      /injected crash/,
    );
    // The operator changes their mind: back to legacy with the same VFs.
    const back = await applyProfile(profile('sriov-cx6dx'), { fs: k, runner: k.runner });
    expect(back.resumed).toBe(false);
    expect(k.eswitchMode(CX6)).toBe('legacy');
    expect((await planFor(k, profile('sriov-cx6dx'))).ops).toEqual([]);
  });

  it('after the switch the CX-6 Dx has representors named by the udev rule template', async () => {
    const k = machine('cx6dx', { iommu: true });
    await converge(k, profile('smartnic-cx6dx'));
    expect(k.eswitchMode(CX6)).toBe('switchdev');
    expect(read(k.root, '/etc/udev/rules.d/70-tether-representors.rules')).toContain('NAME="ens2f0np0_7"');
    expect(read(k.root, '/run/fake/ethtool/ens2f0np0/hw-tc-offload')).toBe('on');
    expect(await k.readlink('/sys/bus/pci/devices/0000:98:00.2/driver')).toMatch(/mlx5_core$/);
  });
});
