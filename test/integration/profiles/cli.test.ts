/**
 * The CLI end to end, in process: `tether check` on this very machine (no SR-IOV hardware:
 * an honest failing report) and on a fixture tree of a good DU server (passes), and
 * `tether profile validate|plan|apply` against fixture trees.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { EXIT } from '../../../src/cli/exit.js';
import { main } from '../../../src/cli/main.js';
import { RootedHostFs } from '../../../src/kernel/hw/hostfs.js';
import { readInventory } from '../../../src/kernel/hw/inventory.js';
import { tempMachine } from '../../fixtures/hw/build.js';

async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => {
    stdout += String(c);
    return true;
  });
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => {
    stderr += String(c);
    return true;
  });
  try {
    const code = await main(argv);
    return { code, stdout, stderr };
  } finally {
    o.mockRestore();
    e.mockRestore();
    process.exitCode = undefined;
  }
}

afterEach(() => {
  process.exitCode = undefined;
});

interface Report {
  ok: boolean;
  results: Array<{ id: string; status: string; detail: string; hint?: string }>;
}

describe('tether check', () => {
  it('on this machine against du: an honest failing report and exit 7 when the hardware is missing', async () => {
    const inv = await readInventory(new RootedHostFs('/'));
    const r = await run('check', '--profile', 'du', '-o', 'json');
    const report = JSON.parse(r.stdout) as Report;
    const byId = Object.fromEntries(report.results.map((x) => [x.id, x]));
    if (!inv.nics.some((n) => n.sriov)) {
      expect(r.code).toBe(EXIT.CHECK_FAILED);
      expect(report.ok).toBe(false);
      expect(byId.sriov?.status).toBe('fail');
      expect(byId.sriov?.hint).toMatch(/no SR-IOV capable PCI NIC/);
    }
    if (inv.online.length < 64) expect(byId.cpu?.status).toBe('fail');
    if (!inv.realtime) expect(byId['kernel.realtime']?.status).toBe('fail');
    for (const x of report.results.filter((y) => y.status === 'fail')) expect(x.hint).toBeTruthy();
  });

  it('on a fixture tree of a good DU server: passes (exit 0), table on stdout, hints on stderr', async () => {
    const root = tempMachine('du-e810');
    const r = await run('check', '--profile', 'du', '--root', root);
    expect(r.code).toBe(EXIT.OK);
    expect(r.stdout).toMatch(
      /PASS\s+SR-IOV NICs and VF capacity\s+fronthaul: ens1f0 0000:51:00\.0 ice 8\/128 VFs/,
    );
    expect(r.stdout).toMatch(/WARN\s+IOMMU\s+IOMMU is off now; the profile enables it/);
    expect(r.stderr).toMatch(/ready for profile du: \d+ pass, 1 warn, 0 fail/);
  });

  it('on a fixture server without the RT kernel or kernel config: fails with hints', async () => {
    const root = tempMachine('du-e810', { realtime: false, kernelTree: false, gigantic: false });
    const r = await run('check', '--profile', 'du', '--root', root, '-o', 'json');
    expect(r.code).toBe(EXIT.CHECK_FAILED);
    const byId = Object.fromEntries((JSON.parse(r.stdout) as Report).results.map((x) => [x.id, x]));
    expect(byId['kernel.realtime']?.status).toBe('fail');
    expect(byId['kernel.config']?.status).toBe('warn');
    expect(byId.hugepages?.detail).toMatch(/this node does not support 1G hugepages|pdpe1gb/);
  });
});

describe('tether profile', () => {
  it('validate: shipped profiles are valid; a broken one exits 4 naming file:line and field', async () => {
    expect(
      (await run('profile', 'validate', 'base', 'du', 'cu', 'sriov-e810', 'sriov-cx6dx', 'smartnic-cx6dx'))
        .code,
    ).toBe(0);
    const dir = mkdtempSync(join(tmpdir(), 'tether-cli-'));
    const f = join(dir, 'bad.yaml');
    writeFileSync(f, 'extends: [du]\ncpu:\n  reserved: "0-1"\n  isolatd: "2-63"\n');
    const r = await run('profile', 'validate', f);
    expect(r.code).toBe(EXIT.INVALID);
    expect(r.stderr).toContain(`${f}:4: cpu.isolatd: unknown field`);
  });

  it('validate --hardware checks against the inventory under --root', async () => {
    const ok = await run('profile', 'validate', 'du', '--hardware', '--root', tempMachine('du-e810'));
    expect(ok.code).toBe(0);
    expect(ok.stderr).toMatch(/valid\s+du/);
    const bad = await run(
      'profile',
      'validate',
      'smartnic-cx6dx',
      '--hardware',
      '--root',
      tempMachine('du-e810'),
    );
    expect(bad.code).toBe(EXIT.INVALID);
    expect(bad.stderr).toMatch(
      /sriov-cx6dx\.yaml:\d+: sriov\[uplink\]\.pf: no NIC matches vendor=15b3 device=101d port=0/,
    );
  });

  it('plan and apply against a fixture tree with the fake kernel', async () => {
    const root = tempMachine('cx6dx', { iommu: true });
    const plan = await run(
      'profile',
      'plan',
      'smartnic-cx6dx',
      '--root',
      root,
      '--fake-kernel',
      '-o',
      'json',
    );
    expect(plan.code).toBe(0);
    expect(JSON.parse(plan.stdout).reboot.count).toBe(0);
    const human = await run('profile', 'plan', 'smartnic-cx6dx', '--root', root, '--fake-kernel');
    expect(human.stdout).toMatch(/Runtime \(no reboot\)/);
    expect(human.stdout).toMatch(/set eswitch mode of ens2f0np0 to switchdev/);
    const apply = await run('profile', 'apply', 'smartnic-cx6dx', '--root', root, '--fake-kernel');
    expect(apply.code).toBe(0);
    expect(apply.stderr).toMatch(/applied smartnic-cx6dx: \d+ steps/);
    const again = await run('profile', 'apply', 'smartnic-cx6dx', '--root', root, '--fake-kernel');
    expect(again.stderr).toMatch(/nothing to do/);
  });

  it('plan on a profile that does not fit exits 4 and plans nothing', async () => {
    const root = tempMachine('cx6dx');
    const r = await run('profile', 'plan', 'du', '--root', root, '--fake-kernel');
    expect(r.code).toBe(EXIT.INVALID);
    expect(r.stderr).toMatch(
      /sriov-e810\.yaml:8: sriov\[fronthaul\]\.pf: no NIC matches vendor=8086 device=159b port=0/,
    );
  });

  it('show, schema, list, origin', async () => {
    expect(JSON.parse((await run('profile', 'show', 'du', '-o', 'json')).stdout).cpu.reserved).toBe(
      '0-1,32-33',
    );
    expect(JSON.parse((await run('profile', 'schema')).stdout).title).toMatch(/profile/);
    expect((await run('profile', 'list')).stdout).toMatch(/smartnic-cx6dx\s+sriov-cx6dx/);
    expect((await run('profile', 'origin', 'du', 'sriov[fronthaul].numVfs')).stdout).toMatch(
      /sriov-e810\.yaml:12/,
    );
  });
});
