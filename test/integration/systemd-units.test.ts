// The shipped units are checked by systemd itself: `systemd-analyze verify` (unknown keys,
// bad values, missing executables) and `systemd-analyze security --offline` against an
// exposure ceiling, so hardening cannot silently regress; the measured scores must be the
// ones docs/install.md records.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

/** `Key=value` lines of a unit (comments and sections dropped); repeated keys accumulate. */
function unitKeys(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';') || line.startsWith('[')) continue;
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    const k = line.slice(0, eq).trim();
    out.set(k, [...(out.get(k) ?? []), line.slice(eq + 1).trim()]);
  }
  return out;
}

function exposure(unit: string): number {
  const out = execFileSync('systemd-analyze', ['security', '--offline=yes', staged(unit)], {
    encoding: 'utf8',
  });
  const m = /Overall exposure level for \S+: (\d+\.\d)/.exec(out);
  if (!m) throw new Error(`no exposure level in:\n${out}`);
  return Number(m[1]);
}

// Exposure ceilings (0 = locked down, 10 = exposed), as systemd-analyze prints them. The node
// needs CAP_NET_ADMIN/CAP_SYS_ADMIN and the host's mount namespace, hence its higher ceiling.
const CEILING: Record<string, number> = {
  'tether-controller.service': 2.0,
  'tether-node.service': 5.0,
  'tether-firstboot.service': 5.0,
  // Writes sysfs and runs devlink/ip as root by nature.
  'tether-profile.service': 9.5,
};
const DAEMONS = new Set(['tether-controller.service', 'tether-node.service']);

/**
 * Options that give a service its own mount namespace (systemd's exec_needs_mount_namespace).
 * A mount made inside one never reaches the host, so `ip netns add` there creates namespaces
 * nobody else can open and that vanish with the service.
 */
const MOUNT_NAMESPACE_OPTIONS = [
  'PrivateTmp',
  'PrivateDevices',
  'PrivateMounts',
  'ProtectSystem',
  'ProtectHome',
  'ProtectKernelTunables',
  'ProtectKernelModules',
  'ProtectKernelLogs',
  'ProtectControlGroups',
  'ProtectProc',
  'ProcSubset',
  'ReadWritePaths',
  'ReadOnlyPaths',
  'InaccessiblePaths',
  'ExecPaths',
  'NoExecPaths',
  'BindPaths',
  'BindReadOnlyPaths',
  'TemporaryFileSystem',
  'RootDirectory',
  'RootImage',
  'MountAPIVFS',
  'LogNamespace',
];
const OFF = new Set(['no', 'false', '0', 'off', 'default']);

describe('systemd units', () => {
  const units = readdirSync(unitsDir).filter((f) => f.endsWith('.service'));

  it('ships the controller, node and first-boot units', () => {
    expect(units.sort()).toEqual(
      expect.arrayContaining([
        'tether-controller.service',
        'tether-firstboot.service',
        'tether-node.service',
      ]),
    );
  });

  it.each(units)('%s passes systemd-analyze verify', (unit) => {
    const r = spawnSync('systemd-analyze', ['verify', staged(unit)], { encoding: 'utf8' });
    expect(r.stderr.trim()).toBe('');
    expect(r.status).toBe(0);
  });

  it.each(units)('%s stays under its exposure ceiling; daemons are Type=notify with a watchdog', (unit) => {
    const text = readFileSync(join(unitsDir, unit), 'utf8');
    const keys = unitKeys(text);
    if (DAEMONS.has(unit)) {
      expect(keys.get('Type')).toEqual(['notify']);
      expect(keys.get('WatchdogSec')?.length).toBe(1);
      expect(keys.get('Restart')).toEqual(['always']);
    }
    // V8 maps W+X pages for its JIT: Node.js dies at start under MemoryDenyWriteExecute=yes.
    expect(keys.get('MemoryDenyWriteExecute') ?? []).not.toContain('yes');
    // `tether node run` exits 6 when revoked; restarting it would only be refused again.
    if (unit === 'tether-node.service') expect(keys.get('RestartPreventExitStatus')).toEqual(['6']);
    expect(exposure(unit)).toBeLessThanOrEqual(CEILING[unit] ?? 5.0);
  });

  it('docs/install.md records the exposure score systemd measures for every unit', () => {
    const doc = readFileSync(join(REPO, 'docs/install.md'), 'utf8');
    for (const unit of units) {
      const row = new RegExp(`^\\| \`${unit.replace('.', '\\.')}\` \\| (\\d+\\.\\d) \\|`, 'm').exec(doc);
      expect(row, `docs/install.md has no exposure row for ${unit}`).not.toBeNull();
      expect(Number(row?.[1]), unit).toBe(exposure(unit));
    }
  });

  it('the node daemon keeps the host mount namespace (its network namespaces must outlive it)', () => {
    const keys = unitKeys(readFileSync(join(unitsDir, 'tether-node.service'), 'utf8'));
    for (const opt of MOUNT_NAMESPACE_OPTIONS) {
      const v = keys.get(opt) ?? [];
      expect(
        v.filter((x) => x !== '' && !OFF.has(x.toLowerCase())),
        `${opt}= would give tether-node.service a private mount namespace`,
      ).toEqual([]);
    }
    const flags = keys.get('MountFlags') ?? [];
    expect(flags.filter((f) => f !== 'shared')).toEqual([]);
  });

  it('every capability a daemon keeps is justified in the unit, and only those the vRouter needs', () => {
    const text = readFileSync(join(unitsDir, 'tether-node.service'), 'utf8');
    const caps = (unitKeys(text).get('CapabilityBoundingSet') ?? []).join(' ').split(/\s+/).filter(Boolean);
    expect(caps.sort()).toEqual(['CAP_NET_ADMIN', 'CAP_SYS_ADMIN']);
    for (const c of caps)
      expect(text, `no justification comment for ${c}`).toMatch(new RegExp(`^#\\s+${c}\\s+\\S`, 'm'));
    expect(unitKeys(text).get('AmbientCapabilities')).toEqual(['']);
  });

  it('first boot runs once, before the node daemon, and keeps trying', () => {
    const fb = unitKeys(readFileSync(join(unitsDir, 'tether-firstboot.service'), 'utf8'));
    const node = unitKeys(readFileSync(join(unitsDir, 'tether-node.service'), 'utf8'));
    expect(fb.get('Type')).toEqual(['oneshot']);
    expect(fb.get('ExecStart')?.[0]).toMatch(
      /^\/usr\/bin\/tether node firstboot --state-dir \/var\/lib\/tether\/node$/,
    );
    expect((fb.get('Before') ?? []).join(' ').split(/\s+/)).toContain('tether-node.service');
    expect((node.get('After') ?? []).join(' ').split(/\s+/)).toContain('tether-firstboot.service');
    expect(fb.get('ConditionPathExists')).toEqual(['!/var/lib/tether/node/firstboot.ready']);
    expect(fb.get('Restart')).toEqual(['on-failure']);
    expect(fb.get('StartLimitIntervalSec')).toEqual(['0']);
    expect(fb.get('TimeoutStartSec')).toEqual(['infinity']);
    expect(fb.get('StandardOutput')).toEqual(['journal+console']);
    expect(fb.get('ExecStartPost')).toEqual([
      '/usr/bin/env node /usr/lib/tether/firstboot-ready.mjs /var/lib/tether/node',
    ]);
  });

  // The node unit's TETHER_NODE_FLAGS (V8 lite mode, which NODE_OPTIONS refuses) only help if
  // the wrapper puts them on node's command line and node takes them without a word.
  it('the node unit runs V8 in lite mode through the wrapper, silently', () => {
    const text = readFileSync(join(unitsDir, 'tether-node.service'), 'utf8');
    const flags = /^Environment="TETHER_NODE_FLAGS=([^"]*)"$/m.exec(text)?.[1];
    expect(flags).toContain('--lite-mode');
    const env = { ...process.env, TETHER_NODE_FLAGS: flags };
    // Lite mode implies jitless, which takes WebAssembly away: visible from inside.
    const probe = spawnSync('sh', ['-c', 'exec node $TETHER_NODE_FLAGS -p "typeof WebAssembly"'], {
      env,
      encoding: 'utf8',
    });
    expect(probe.stderr).toBe('');
    expect(probe.stdout.trim()).toBe('undefined');
    // The checkout's wrapper (what the integration tests start) passes them the same way.
    const cli = spawnSync(join(REPO, 'bin/tether'), ['--version'], { env, encoding: 'utf8' });
    expect(cli.stderr).toBe('');
    expect(cli.status).toBe(0);
    const release = readFileSync(join(REPO, 'scripts/release.mjs'), 'utf8');
    expect(release).toMatch(/exec node \\\$\{TETHER_NODE_FLAGS:-\} \/usr\/lib\/tether\//);
  });

  // The marker decides whether first boot ever runs again: only a state whose own phase is
  // Ready may write it, never a failed one, one in the middle, or a reboot in flight.
  it.each([
    ['ready', true, { phase: 'ready', phases: [] }],
    ['failed in ready', false, { phase: 'failed', failedPhase: 'ready', lastError: { phase: 'ready' } }],
    ['mid-profile (reboot requested)', false, { phase: 'profile', reboots: { done: 0, pending: {} } }],
    ['enroll', false, { phase: 'enroll' }],
    ['not JSON', false, 'phase: ready'],
    ['no state', false, undefined],
  ] as const)('firstboot-ready.mjs, state %s: marker written %s', (_what, marked, state) => {
    const sd = mkdtempSync(join(dir, 'state-'));
    if (state !== undefined)
      writeFileSync(
        join(sd, 'firstboot.json'),
        typeof state === 'string' ? state : JSON.stringify(state, null, 1),
      );
    const r = spawnSync(process.execPath, [join(REPO, 'installer/firstboot-ready.mjs'), sd], {
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(existsSync(join(sd, 'firstboot.ready'))).toBe(marked);
    expect(readdirSync(sd).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});
