import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { type Inventory, readInventory } from '../../../src/kernel/hw/inventory.js';
import { isTetherError } from '../../../src/lib/errors.js';
import { loadProfile, type ProfileIssue } from '../../../src/profiles/load.js';
import { validateProfile } from '../../../src/profiles/validate.js';
import { machine, PROFILES } from '../../fixtures/hw/scenario.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-broken-profiles-'));
mkdirSync(dir, { recursive: true });

function write(name: string, text: string): string {
  const f = join(dir, `${name}.yaml`);
  writeFileSync(f, text);
  return f;
}

/** Loads a profile expecting a TETHER_E_INVALID; returns its first issue. */
function loadError(file: string): ProfileIssue & { all: ProfileIssue[] } {
  try {
    loadProfile(file, { searchPath: [dir, PROFILES] });
  } catch (e) {
    if (!isTetherError(e, 'TETHER_E_INVALID')) throw e;
    const all = (e.details.issues as ProfileIssue[]) ?? [];
    return { ...(all[0] as ProfileIssue), all };
  }
  throw new Error(`${file} loaded without error`);
}

// ---- 1. parse/schema/composition errors: the loader refuses them ----
const loadCases: Array<{ name: string; text: string; line: number; field: string; message: RegExp }> = [
  {
    name: 'unknown-top-field',
    text: 'description: x\ncpus:\n  reserved: "0"\n',
    line: 2,
    field: 'cpus',
    message: /unknown field/,
  },
  {
    name: 'unknown-nested-field',
    text: 'cpu:\n  reserved: "0-1"\n  isolate: "2-3"\n',
    line: 3,
    field: 'cpu.isolate',
    message: /unknown field/,
  },
  {
    name: 'bad-cpu-list',
    text: 'cpu:\n  reserved: "0-1;4"\n',
    line: 2,
    field: 'cpu.reserved',
    message: /invalid format/,
  },
  {
    name: 'bad-isolated',
    text: 'cpu:\n  reserved: "0"\n  isolated: rest\n',
    line: 3,
    field: 'cpu.isolated',
    message: /invalid format/,
  },
  {
    name: 'bad-page-size',
    text: 'memory:\n  hugepages:\n    pages:\n      - size: 4M\n        count: 2\n',
    line: 4,
    field: 'memory.hugepages.pages[0].size',
    message: /invalid value/,
  },
  {
    name: 'negative-count',
    text: 'memory:\n  hugepages:\n    pages:\n      - size: 2M\n        count: -1\n',
    line: 5,
    field: 'memory.hugepages.pages[0].count',
    message: /out of range/,
  },
  {
    name: 'numvfs-string',
    text: 'sriov:\n  - name: a\n    pf: {name: ens1f0}\n    numVfs: many\n',
    line: 4,
    field: 'sriov[0].numVfs',
    message: /wrong type/,
  },
  {
    name: 'bad-pci',
    text: 'sriov:\n  - name: a\n    pf:\n      pciAddress: 51:00.0\n    numVfs: 2\n',
    line: 4,
    field: 'sriov[0].pf.pciAddress',
    message: /invalid format/,
  },
  {
    name: 'vlan-too-big',
    text: 'sriov:\n  - name: a\n    pf: {name: ens1f0}\n    numVfs: 2\n    vfGroups:\n      - range: "0-1"\n        vlan: 5000\n',
    line: 7,
    field: 'sriov[0].vfGroups[0].vlan',
    message: /out of range/,
  },
  {
    name: 'bad-device-type',
    text: 'sriov:\n  - name: a\n    pf: {name: ens1f0}\n    numVfs: 2\n    vfGroups:\n      - range: "0-1"\n        deviceType: dpdk\n',
    line: 7,
    field: 'sriov[0].vfGroups[0].deviceType',
    message: /invalid value/,
  },
  {
    name: 'bad-eswitch',
    text: 'smartnic:\n  sriov: [a]\n  eswitchMode: offload\n',
    line: 3,
    field: 'smartnic.eswitchMode',
    message: /invalid value/,
  },
  {
    name: 'ptp-no-role',
    text: 'time:\n  ptp:\n    interface: ens1f0\n',
    line: 2,
    field: 'time.ptp',
    message: /missing required field "role"/,
  },
  {
    name: 'duplicate-policy',
    text: 'sriov:\n  - name: a\n    pf: {name: ens1f0}\n    numVfs: 2\n  - name: a\n    pf: {name: ens1f1}\n    numVfs: 2\n',
    line: 5,
    field: 'sriov[1].name',
    message: /duplicate/,
  },
  {
    name: 'yaml-syntax',
    text: 'cpu:\n  reserved: x\n isolated: y\n',
    line: 3,
    field: '(syntax)',
    message: /./,
  },
  {
    name: 'extends-missing',
    text: 'description: x\nextends:\n  - base\n  - nosuchprofile\n',
    line: 4,
    field: 'extends[1]',
    message: /not found/,
  },
  {
    name: 'extends-cycle-a',
    text: 'extends: [extends-cycle-b]\n',
    line: 1,
    field: 'extends[0]',
    message: /extends itself/,
  },
];
write('extends-cycle-b', 'extends: [extends-cycle-a]\n');

describe('loader errors name file, line and field', () => {
  for (const c of loadCases) {
    it(c.name, () => {
      const f = write(c.name, c.text);
      const e = loadError(f);
      expect(
        e.file?.endsWith(c.name === 'extends-cycle-a' ? 'extends-cycle-b.yaml' : `${c.name}.yaml`) ||
          e.file === f,
      ).toBe(true);
      expect(e.line).toBe(c.name === 'extends-cycle-a' ? 1 : c.line);
      expect(e.field).toBe(c.field);
      expect(e.message).toMatch(c.message);
    });
  }
});

// ---- 2. semantic/hardware errors: validated against the E810 two-socket fixture ----
let inv: Inventory;
beforeAll(async () => {
  inv = await readInventory(machine('all-nics'));
});

const hwCases: Array<{
  name: string;
  text: string;
  field: string;
  line: number;
  message: RegExp;
  expected?: RegExp;
}> = [
  {
    name: 'cpu-overlap',
    text: 'cpu:\n  reserved: "0-3"\n  isolated: "2-63"\n',
    field: 'cpu.isolated',
    line: 3,
    message: /CPUs 2-3 are both reserved and isolated/,
  },
  {
    name: 'cpu-uncovered',
    text: 'cpu:\n  reserved: "0-1"\n  isolated: "2-31"\n',
    field: 'cpu.isolated',
    line: 3,
    message: /CPUs 32-63 are online but neither/,
    expected: /all online CPUs \(0-63\)/,
  },
  {
    name: 'cpu-missing',
    text: 'cpu:\n  reserved: "0-1"\n  isolated: "2-127"\n',
    field: 'cpu.isolated',
    line: 3,
    message: /CPUs 64-127 do not exist/,
  },
  {
    name: 'cpu0-offline',
    text: 'cpu:\n  reserved: "1"\n  isolated: remaining\n  offlined: "0"\n',
    field: 'cpu.offlined',
    line: 4,
    message: /CPU 0 cannot be taken offline/,
  },
  {
    name: 'no-reserved',
    text: 'cpu:\n  isolated: "0-63"\n',
    field: 'cpu.reserved',
    line: 1,
    message: /no reserved/,
  },
  {
    name: 'hugepages-too-big',
    text: 'memory:\n  hugepages:\n    pages:\n      - size: 1G\n        count: 100\n        node: 1\n',
    field: 'memory.hugepages.pages[0].count',
    line: 5,
    message: /NUMA node 1 need 100\.0 GiB but the node has 96\.0 GiB/,
  },
  {
    name: 'hugepages-no-node',
    text: 'memory:\n  hugepages:\n    pages:\n      - size: 2M\n        count: 10\n        node: 3\n',
    field: 'memory.hugepages.pages[0].node',
    line: 6,
    message: /NUMA node 3 does not exist/,
  },
  {
    name: 'numvfs-over-total',
    text: 'sriov:\n  - name: mgmt\n    pf: {name: ens3f0}\n    numVfs: 65\n',
    field: 'sriov[mgmt].numVfs',
    line: 4,
    message: /65 VFs requested but ens3f0 \(0000:3b:00\.0\) supports at most 64/,
  },
  {
    name: 'range-beyond',
    text: 'sriov:\n  - name: fh\n    pf: {name: ens1f0}\n    numVfs: 4\n    vfGroups:\n      - range: "2-5"\n',
    field: 'sriov[fh].vfGroups[0].range',
    line: 6,
    message: /VFs 4-5 are beyond numVfs 4/,
  },
  {
    name: 'range-overlap',
    text: 'sriov:\n  - name: fh\n    pf: {name: ens1f0}\n    numVfs: 8\n    vfGroups:\n      - range: "0-3"\n      - range: "3-7"\n',
    field: 'sriov[fh].vfGroups[1].range',
    line: 7,
    message: /VFs 3 are already in vfGroups\[0\]/,
  },
  {
    name: 'pf-not-found',
    text: 'sriov:\n  - name: fh\n    pf: {name: ens9f9}\n    numVfs: 4\n',
    field: 'sriov[fh].pf',
    line: 3,
    message: /no NIC matches name=ens9f9/,
  },
  {
    name: 'pf-ambiguous',
    text: 'sriov:\n  - name: fh\n    pf: {vendor: "8086", device: "159b"}\n    numVfs: 4\n',
    field: 'sriov[fh].pf',
    line: 3,
    message: /matches 2 PFs \(ens1f0, ens1f1\)/,
  },
  {
    name: 'pf-twice',
    text: 'sriov:\n  - name: a\n    pf: {name: ens1f0}\n    numVfs: 4\n  - name: b\n    pf: {pciAddress: "0000:51:00.0"}\n    numVfs: 4\n',
    field: 'sriov[b].pf',
    line: 6,
    message: /already configured by policy "a"/,
  },
  {
    name: 'switchdev-i40e',
    text: 'sriov:\n  - name: mgmt\n    pf: {name: ens3f0}\n    numVfs: 4\nsmartnic:\n  sriov: [mgmt]\n  eswitchMode: switchdev\n',
    field: 'smartnic.eswitchMode',
    line: 7,
    message: /ens3f0 \(i40e\) does not support switchdev/,
  },
  {
    name: 'smartnic-unknown-policy',
    text: 'smartnic:\n  sriov: [nope]\n  eswitchMode: switchdev\n',
    field: 'smartnic.sriov[0]',
    line: 2,
    message: /no SR-IOV policy named "nope"/,
  },
  {
    name: 'vfio-without-iommu',
    text: 'sriov:\n  - name: fh\n    pf: {name: ens1f0}\n    numVfs: 4\n    vfGroups:\n      - range: "0-3"\n        deviceType: vfio-pci\n',
    field: 'sriov[fh].vfGroups[0].deviceType',
    line: 7,
    message: /vfio-pci needs the IOMMU/,
  },
  {
    name: 'qos-without-vlan',
    text: 'sriov:\n  - name: fh\n    pf: {name: ens1f0}\n    numVfs: 4\n    vfGroups:\n      - range: "0-3"\n        qos: 3\n',
    field: 'sriov[fh].vfGroups[0].qos',
    line: 7,
    message: /qos needs a vlan/,
  },
  {
    name: 'vf-mtu-over-pf',
    text: 'sriov:\n  - name: fh\n    pf: {name: ens1f0}\n    numVfs: 4\n    vfGroups:\n      - range: "0-3"\n        mtu: 9000\n',
    field: 'sriov[fh].vfGroups[0].mtu',
    line: 7,
    message: /VF MTU 9000 exceeds the PF MTU 1500/,
  },
  {
    name: 'ptp-missing-iface',
    text: 'time:\n  ptp:\n    role: slave\n    interface: ens7\n',
    field: 'time.ptp.interface',
    line: 4,
    message: /ens7 does not exist/,
  },
  {
    name: 'site-policy-without-pf',
    text: 'sriov:\n  - name: extra\n    numVfs: 2\n',
    field: 'sriov[extra]',
    line: 2,
    message: /has no pf/,
  },
];

describe('validator errors against the node inventory name file, line and field', () => {
  for (const c of hwCases) {
    it(c.name, () => {
      const f = write(c.name, c.text);
      const p = loadProfile(f, { searchPath: [dir, PROFILES] });
      const errors = validateProfile(p, inv).filter((i) => i.severity === 'error');
      const hit = errors.find((e) => e.field === c.field);
      expect(hit, JSON.stringify(errors)).toBeDefined();
      expect(hit?.file).toBe(f);
      expect(hit?.line).toBe(c.line);
      expect(hit?.message).toMatch(c.message);
      if (c.expected) expect(hit?.expected).toMatch(c.expected);
    });
  }

  it('an error inherited from a base profile cites the base file', () => {
    const base = write('inh-base', 'sriov:\n  - name: fh\n    pf: {name: ens1f0}\n    numVfs: 4\n');
    const site = write('inh-site', 'extends: [inh-base]\nsriov:\n  - name: fh\n    numVfs: 400\n');
    const p = loadProfile(site, { searchPath: [dir] });
    const errors = validateProfile(p, inv);
    expect(errors.find((e) => e.field === 'sriov[fh].numVfs')).toMatchObject({ file: site, line: 4 });
    const p2 = loadProfile(
      write('inh-site2', 'extends: [inh-base]\nsriov:\n  - name: fh\n    pf: {name: ens9}\n'),
      { searchPath: [dir] },
    );
    expect(validateProfile(p2, inv).find((e) => e.field === 'sriov[fh].pf')?.line).toBe(4);
    expect(base).toMatch(/inh-base/);
  });
});
