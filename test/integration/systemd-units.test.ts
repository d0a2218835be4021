// The shipped units are checked by systemd itself: `systemd-analyze verify` (unknown keys,
// bad values, missing executables) and `systemd-analyze security --offline` against an
// exposure ceiling, so hardening cannot silently regress.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO } from './support/proc.js';

const unitsDir = join(REPO, 'installer/systemd');
const dir = mkdtempSync(join(tmpdir(), 'tether-units-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Units name the installed binary; point them at this checkout's so `verify` can see it. */
function staged(unit: string): string {
  const p = join(dir, unit);
  writeFileSync(
    p,
    readFileSync(join(unitsDir, unit), 'utf8').replaceAll('/usr/bin/tether', join(REPO, 'bin/tether')),
  );
  return p;
}

// Exposure ceilings (0 = locked down, 10 = exposed) on the scale of systemd-analyze security
// ×10 as --threshold takes it. The node needs CAP_NET_ADMIN/CAP_SYS_ADMIN to program
// namespaces and nftables, hence its higher ceiling.
const CEILING: Record<string, number> = {
  'tether-controller.service': 20,
  'tether-node.service': 60,
  // Writes sysfs and runs devlink/ip as root by nature.
  'tether-profile.service': 95,
};
const DAEMONS = new Set(['tether-controller.service', 'tether-node.service']);

describe('systemd units', () => {
  const units = readdirSync(unitsDir).filter((f) => f.endsWith('.service'));

  it('ships the controller and node units', () => {
    expect(units.sort()).toEqual(
      expect.arrayContaining(['tether-controller.service', 'tether-node.service']),
    );
  });

  it.each(units)('%s passes systemd-analyze verify', (unit) => {
    const r = spawnSync('systemd-analyze', ['verify', staged(unit)], { encoding: 'utf8' });
    expect(r.stderr.trim()).toBe('');
    expect(r.status).toBe(0);
  });

  it.each(units)('%s stays under its exposure ceiling; daemons are Type=notify with a watchdog', (unit) => {
    const text = readFileSync(join(unitsDir, unit), 'utf8');
    if (DAEMONS.has(unit)) {
      expect(text).toMatch(/^Type=notify$/m);
      expect(text).toMatch(/^WatchdogSec=/m);
    }
    expect(text).not.toMatch(/^MemoryDenyWriteExecute=yes/m);
    // `tether node run` exits 6 when revoked; restarting it would only be refused again.
    if (unit === 'tether-node.service') expect(text).toMatch(/^RestartPreventExitStatus=6$/m);
    const ceiling = CEILING[unit] ?? 50;
    const out = execFileSync(
      'systemd-analyze',
      ['security', '--offline=yes', `--threshold=${ceiling}`, staged(unit)],
      { encoding: 'utf8' },
    );
    expect(out).toContain('Overall exposure level');
  });
});
