// Profile apply state, pending reboots, VFs and drift as `tether status` / `tether diag` read
// them, against the fake kernel's sysfs fixture trees (the same ones profile apply is tested on).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { profileDrift } from '../../../src/node/support/diag-net.js';
import { readFirstBoot, readProfileState, readProfileVfs } from '../../../src/node/support/host-state.js';
import { applyProfile } from '../../../src/profiles/apply.js';
import { machine, profile } from '../../fixtures/hw/scenario.js';

const E810 = '0000:51:00.0';
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('profile state, pending reboot, VFs and drift', () => {
  it('follows a DU apply through its reboot, reads back the VFs, and names drift', async () => {
    const k = machine('du-e810');
    expect(await readProfileState(k)).toEqual({ state: 'none' });
    expect(await readProfileVfs(k)).toEqual([]);

    const du = profile('du');
    await applyProfile(du, { fs: k, runner: k.runner });
    const pending = await readProfileState(k);
    expect(pending).toMatchObject({ name: 'du', state: 'awaiting-reboot' });
    expect(pending.pendingReboot?.length).toBeGreaterThan(0);
    const before = await profileDrift(k, k.runner, 'du');
    expect(before.rebootPending).toBe(true);

    k.reboot();
    expect(await readProfileState(k)).toMatchObject({ name: 'du', state: 'rebooted' });
    await applyProfile(du, { fs: k, runner: k.runner });
    expect(await readProfileState(k)).toEqual({ name: 'du', state: 'applied' });

    const vfs = await readProfileVfs(k);
    const pf = vfs.find((v) => v.pf === E810);
    expect(pf).toMatchObject({ netdev: 'ens1f0', numVfs: 8 });
    expect(pf?.vfs).toHaveLength(8);
    expect(pf?.vfs[0]).toMatchObject({ index: 0, pci: '0000:51:01.0' });
    expect(pf?.vfs.map((v) => v.driver)).toContain('vfio-pci');

    const clean = await profileDrift(k, k.runner, 'du');
    expect(clean).toMatchObject({ profile: 'du', steps: [], rebootPending: false, errors: [] });

    // Behind Tether's back: the VFs are removed and the PF's MTU is put back.
    await k.writeAttr(`/sys/bus/pci/devices/${E810}/sriov_numvfs`, '0');
    await k.writeAttr('/sys/class/net/ens1f0/mtu', '1500');
    const drift = await profileDrift(k, k.runner, 'du');
    expect(drift.steps.length).toBeGreaterThan(0);
    expect(drift.steps.map((s) => s.summary).join('\n')).toMatch(/VF|numvfs|sriov/i);
    expect((await readProfileVfs(k)).find((v) => v.pf === E810)?.numVfs).toBe(0);
  });

  it('a damaged journal or applied record is reported, not thrown', async () => {
    const k = machine('du-e810');
    await k.writeConfig('/var/lib/tether/profile/applied.json', '{not json');
    expect(await readProfileState(k)).toMatchObject({
      state: 'none',
      problem: expect.stringMatching(/not JSON/),
    });
    await k.writeConfig(
      '/var/lib/tether/profile/applied.json',
      JSON.stringify({ profile: 'du', pfs: ['../../etc', 7, E810] }),
    );
    const vfs = await readProfileVfs(k);
    expect(vfs.map((v) => v.pf)).toEqual([E810]); // only PCI addresses become sysfs paths
  });

  it('first boot phase from the state file', () => {
    const d = mkdtempSync(join(tmpdir(), 'tfb-'));
    dirs.push(d);
    expect(readFirstBoot(d)).toBeUndefined();
    writeFileSync(
      join(d, 'firstboot.json'),
      JSON.stringify({
        version: 1,
        seq: 3,
        phase: 'failed',
        failedPhase: 'enroll',
        phases: [],
        lastError: { phase: 'enroll', code: 'TETHER_E_TOKEN', message: 'token expired', at: 'x' },
        reboots: { planned: 1, done: 1 },
        reportedSeq: 0,
      }),
    );
    expect(readFirstBoot(d)).toEqual({
      phase: 'failed',
      failedPhase: 'enroll',
      lastError: { phase: 'enroll', code: 'TETHER_E_TOKEN', message: 'token expired' },
      reboots: { done: 1, planned: 1, pending: false },
    });
    writeFileSync(
      join(d, 'firstboot.json'),
      JSON.stringify({ phase: 'profile', reboots: { done: 0, pending: { fromBootId: 'b', at: 'x' } } }),
    );
    expect(readFirstBoot(d)).toMatchObject({
      phase: 'profile',
      step: { n: 3, of: 6 },
      reboots: { pending: true },
    });
    writeFileSync(join(d, 'firstboot.json'), '\u0000garbage');
    expect(readFirstBoot(d)?.phase).toMatch(/unknown/);
  });
});

describe('host state readers never throw on damaged files (fuzz)', () => {
  const json = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.jsonValue().map((v) => JSON.stringify(v)),
    fc
      .record({
        profile: fc.anything(),
        bootId: fc.anything(),
        state: fc.constantFrom('running', 'awaiting-reboot', 'done', 7, null),
        done: fc.anything(),
        ops: fc.anything(),
        pfs: fc.anything(),
        phase: fc.anything(),
        failedPhase: fc.anything(),
        lastError: fc.anything(),
        reboots: fc.anything(),
      })
      .map((v) => JSON.stringify(v)),
  );
  it('readProfileState and readProfileVfs', async () => {
    await fc.assert(
      fc.asyncProperty(
        json,
        json,
        fc.option(fc.string({ maxLength: 40 })),
        async (journal, applied, boot) => {
          const files: Record<string, string | undefined> = {
            '/var/lib/tether/profile/journal.json': journal,
            '/var/lib/tether/profile/applied.json': applied,
            '/proc/sys/kernel/random/boot_id': boot ?? undefined,
          };
          const fs = {
            root: '/',
            read: async (p: string) => files[p],
            exists: async () => false,
            isDir: async () => false,
            list: async () => [],
            readlink: async () => undefined,
            resolve: async () => undefined,
            writeAttr: async () => {},
            writeConfig: async () => {},
            remove: async () => {},
          };
          const st = await readProfileState(fs);
          expect(['none', 'applied', 'applying', 'awaiting-reboot', 'rebooted']).toContain(st.state);
          expect(Array.isArray(await readProfileVfs(fs))).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
  it('readFirstBoot', () => {
    const d = mkdtempSync(join(tmpdir(), 'tfbz-'));
    dirs.push(d);
    fc.assert(
      fc.property(json, (text) => {
        writeFileSync(join(d, 'firstboot.json'), text);
        const v = readFirstBoot(d);
        expect(typeof v?.phase).toBe('string');
        expect(typeof v?.reboots.done).toBe('number');
      }),
      { numRuns: 300 },
    );
  });
});
