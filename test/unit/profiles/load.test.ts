import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readInventory } from '../../../src/kernel/hw/inventory.js';
import { loadProfile, originOf } from '../../../src/profiles/load.js';
import { kernelArgs } from '../../../src/profiles/plan.js';
import { PROFILE_RESOURCE_SPEC_SCHEMA, PROFILE_SPEC_SCHEMA } from '../../../src/profiles/schema.js';
import { validateProfile } from '../../../src/profiles/validate.js';
import { machine, PROFILES, profile } from '../../fixtures/hw/scenario.js';

const shipped = readdirSync(PROFILES)
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => f.replace(/\.yaml$/, ''));

describe('shipped profiles', () => {
  it('ships at least base, du, cu, sriov-e810, sriov-cx6dx, smartnic-cx6dx', () => {
    expect(shipped).toEqual(
      expect.arrayContaining(['base', 'du', 'cu', 'sriov-e810', 'sriov-cx6dx', 'smartnic-cx6dx']),
    );
  });

  it('publishes the schema the code uses (profiles/profile.schema.json), also as the Profile resource spec', () => {
    const file = JSON.parse(readFileSync(join(PROFILES, 'profile.schema.json'), 'utf8'));
    expect(file).toEqual(JSON.parse(JSON.stringify(PROFILE_SPEC_SCHEMA)));
    expect(PROFILE_RESOURCE_SPEC_SCHEMA).toBe(PROFILE_SPEC_SCHEMA);
  });

  const target: Record<string, 'du-e810' | 'cx6dx'> = { 'sriov-cx6dx': 'cx6dx', 'smartnic-cx6dx': 'cx6dx' };
  for (const name of [...shipped, 'sites/cell-0042-more-vfs']) {
    it(`${name} loads, passes the schema and validates against its fixture machine`, async () => {
      const p = loadProfile(name.includes('/') ? join(PROFILES, `${name}.yaml`) : name, {
        searchPath: [PROFILES],
      });
      const k = machine(target[name] ?? 'du-e810');
      const issues = validateProfile(p, await readInventory(k));
      expect(issues.filter((i) => i.severity === 'error')).toEqual([]);
    });
  }
});

describe('composition', () => {
  it('du = base + sriov-e810 + du, with kernel args accumulated and origins kept per field', () => {
    const p = profile('du');
    expect(p.files.map((f) => f.split('/').pop())).toEqual(['base.yaml', 'sriov-e810.yaml', 'du.yaml']);
    expect(p.spec.site?.role).toBe('du');
    expect(p.spec.kernel?.sysctls?.['net.core.rmem_max']).toBe(16777216); // from base
    expect(p.spec.kernel?.sysctls?.['vm.stat_interval']).toBe(10); // from du
    expect(p.spec.sriov?.[0]?.name).toBe('fronthaul'); // from sriov-e810
    expect(originOf(p, 'kernel.sysctls[net.core.rmem_max]')?.file).toMatch(/base\.yaml$/);
    expect(originOf(p, 'sriov[fronthaul].numVfs')).toMatchObject({
      file: expect.stringMatching(/sriov-e810\.yaml$/),
      line: 12,
    });
    expect(originOf(p, 'cpu.reserved')).toMatchObject({ file: expect.stringMatching(/du\.yaml$/), line: 10 });
  });

  it('a site file overrides one SR-IOV policy by name and keeps the rest', () => {
    const p = profile(join(PROFILES, 'sites/cell-0042-more-vfs.yaml'));
    const fh = p.spec.sriov?.find((s) => s.name === 'fronthaul');
    expect(fh?.numVfs).toBe(16);
    expect(fh?.pf).toEqual({ vendor: '8086', device: '159b', port: 0 }); // inherited
    expect(fh?.mtu).toBe(9000); // inherited
    expect(fh?.vfGroups?.[1]?.range).toBe('4-15'); // replaced list
    expect(p.spec.cpu?.reserved).toBe('0-1,32-33');
    expect(originOf(p, 'sriov[fronthaul].numVfs')?.file).toMatch(/cell-0042-more-vfs\.yaml$/);
    expect(originOf(p, 'sriov[fronthaul].mtu')?.file).toMatch(/sriov-e810\.yaml$/);
  });

  it('derives DU kernel arguments from cpu, hints, hugepages, iommu and blacklist', async () => {
    const inv = await readInventory(machine('du-e810'));
    const args = kernelArgs(profile('du').spec, inv);
    expect(args).toEqual([
      'isolcpus=managed_irq,domain,2-31,34-63',
      'nohz=on',
      'rcu_nocbs=2-31,34-63',
      'irqaffinity=0-1,32-33',
      'systemd.cpu_affinity=0-1,32-33',
      'nohz_full=2-31,34-63',
      'tsc=nowatchdog',
      'nosoftlockup',
      'nmi_watchdog=0',
      'mce=off',
      'skew_tick=1',
      'rcutree.kthread_prio=11',
      'intel_pstate=disable',
      'intel_iommu=on',
      'iommu=pt',
      'default_hugepagesz=1G',
      'hugepagesz=1G',
      'hugepages=0:16',
      'module_blacklist=irdma',
      'rcupdate.rcu_normal_after_boot=0',
      'vfio_pci.enable_sriov=1',
      'vfio_pci.disable_idle_d3=1',
      'efi=runtime',
    ]);
    expect(kernelArgs(profile('cu').spec, inv)).toEqual([
      'intel_iommu=on',
      'iommu=pt',
      'default_hugepagesz=2M',
    ]);
  });
});
