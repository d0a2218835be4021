// First boot against a real controller on loopback (real processes, real TLS): a clean run,
// kill -9 at every phase boundary and in the middle of enrollment (after the controller
// answered, before the node stored its identity), and the failures a field technician meets
// (wrong CA, expired token, unreachable controller). Every run must end with one identity,
// one use of the token, and the controller showing the phases.
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { FirstBootState } from '../../../src/node/bootstrap/firstboot.js';
import { tempMachine } from '../../fixtures/hw/build.js';
import { initTestController, startTestController, type TestController } from '../support/controller.js';
import { type Daemon, freePort, REPO, runTether, startTether, waitFor } from '../support/proc.js';

/** What `tether get … -o json` lists, as far as these tests read it. */
interface Listed {
  metadata: { name: string };
  status: {
    phase?: string;
    certSerials?: string[];
    used?: number;
    firstBoot?: {
      phase: string;
      phases: Array<{ name: string; seconds?: number }>;
      source?: string;
      lastError?: unknown;
    };
  };
}

const dir = mkdtempSync(join(tmpdir(), 'tether-firstboot-'));
let ctl: TestController;
const started: Daemon[] = [];
// No config drive, image config, cmdline or DHCP here: only the local file (other tests
// cover those sources). A label nobody has keeps blkid from finding real drives.
const NO_DRIVE_LABEL = `NONE${process.pid}`;
const empty = join(dir, 'cmdline');

beforeAll(async () => {
  writeFileSync(empty, 'BOOT_IMAGE=/vmlinuz quiet\n');
  const data = join(dir, 'controller');
  ctl = await startTestController(data, await initTestController(data));
}, 180_000);

afterAll(async () => {
  for (const d of started) await d.kill9();
  await ctl?.daemon.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function token(site = 'fb', extra: string[] = []): Promise<string> {
  const r = await runTether([
    'token',
    'create',
    '--site',
    site,
    '--uses',
    '1',
    ...extra,
    '--config',
    ctl.cfg,
  ]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

function bootstrap(name: string, tok: string, over: Record<string, unknown> = {}): string {
  const file = join(dir, `${name}.bootstrap.yaml`);
  writeFileSync(
    file,
    stringify({
      apiVersion: 'tether.dev/v1',
      kind: 'Bootstrap',
      controllers: [ctl.addr],
      caFingerprint: tok.slice(3, 67),
      token: tok,
      site: 'fb',
      nodeName: name,
      ...over,
    }),
  );
  return file;
}

function firstboot(name: string, file: string, env: NodeJS.ProcessEnv = {}, extra: string[] = []): Daemon {
  const d = startTether(
    [
      'node',
      'firstboot',
      '--state-dir',
      join(dir, name),
      '--local-file',
      file,
      '--image-config',
      join(dir, 'no-image.yaml'),
      '--cmdline',
      empty,
      '--config-drive-label',
      NO_DRIVE_LABEL,
      '--no-dhcp',
      '--backoff',
      '100ms',
      ...extra,
    ],
    env,
  );
  started.push(d);
  return d;
}

const exitOf = (d: Daemon) =>
  new Promise<number>((resolve) => {
    if (d.child.exitCode !== null) resolve(d.child.exitCode);
    else d.child.once('exit', (c) => resolve(c ?? -1));
  });

async function nodeObject(name: string): Promise<Listed | undefined> {
  const r = await runTether(['get', 'nodes', '-o', 'json', '--config', ctl.cfg]);
  expect(r.code, r.stderr).toBe(0);
  const parsed = JSON.parse(r.stdout) as { items?: Array<Listed> } | Array<Listed>;
  const items = Array.isArray(parsed) ? parsed : (parsed.items ?? []);
  const mine = items.filter((n) => n.metadata.name === name);
  expect(mine.length).toBeLessThanOrEqual(1);
  return mine[0];
}

/** One identity: the certificate on the node's disk is the one the controller issued and
 *  considers current, and the token was used exactly once. */
async function expectOneIdentity(name: string, tok: string): Promise<void> {
  const state = join(dir, name);
  const creds = JSON.parse(readFileSync(join(state, 'credentials.json'), 'utf8')) as { certPem: string };
  const serial = new X509Certificate(creds.certPem).serialNumber.toLowerCase().replace(/^0+/, '');
  const n = await nodeObject(name);
  expect(n?.status.phase).toBe('Approved');
  expect((n?.status.certSerials ?? []).map((s) => s.toLowerCase().replace(/^0+/, ''))).toEqual([serial]);
  expect(existsSync(join(state, 'enroll-pending.json'))).toBe(false);
  const r = await runTether(['get', 'tokens', '-o', 'json', '--config', ctl.cfg]);
  const toks = JSON.parse(r.stdout) as { items?: Array<Listed> } | Array<Listed>;
  const id = tok.split('::')[1]!.split('.')[0]!;
  const t = (Array.isArray(toks) ? toks : (toks.items ?? [])).find((x) =>
    String(x.metadata.name).includes(id),
  );
  expect(t?.status.used).toBe(1);
}

const fbState = (name: string) =>
  JSON.parse(readFileSync(join(dir, name, 'firstboot.json'), 'utf8')) as FirstBootState;

describe('first boot against a real controller', () => {
  it('goes discover → ready, and the controller shows phase, time per phase and no error', {
    timeout: 180_000,
  }, async () => {
    const tok = await token();
    const d = firstboot('clean', bootstrap('clean', tok));
    expect(await exitOf(d), d.log()).toBe(0);
    expect(d.log()).toMatch(/READY/);
    expect(fbState('clean').phase).toBe('ready');
    await expectOneIdentity('clean', tok);
    const fb = await waitFor('ready report', async () => {
      const n = await nodeObject('clean');
      return n?.status.firstBoot?.phase === 'ready' ? n.status.firstBoot : undefined;
    });
    expect(fb.phases.map((p) => p.name)).toEqual([
      'discover',
      'preflight',
      'profile',
      'enroll',
      'configure',
      'ready',
    ]);
    for (const p of fb.phases) expect(typeof p.seconds).toBe('number');
    expect(fb.source).toMatch(/^local-file/);
    expect(fb.lastError).toBeUndefined();
    const table = await runTether(['get', 'nodes', '--config', ctl.cfg]);
    expect(table.stdout).toMatch(/clean\s.*ready \(/);
    const desc = await runTether(['describe', 'node', 'clean', '--config', ctl.cfg]);
    expect(desc.stdout).toMatch(/firstBoot:/);
    expect(desc.stdout).toMatch(/seconds:/);
    // Running again changes nothing: still one identity, still ready.
    const again = firstboot('clean', bootstrap('clean', tok));
    expect(await exitOf(again), again.log()).toBe(0);
    await expectOneIdentity('clean', tok);
  });

  it('a list of controllers: the unreachable first one is skipped and the whole list is stored', {
    timeout: 180_000,
  }, async () => {
    const tok = await token();
    const dead = `127.0.0.1:${await freePort()}`;
    const d = firstboot('list', bootstrap('list', tok, { controllers: [dead, ctl.addr] }));
    expect(await exitOf(d), d.log()).toBe(0);
    const id = parse(readFileSync(join(dir, 'list', 'identity.yaml'), 'utf8')) as { controllers: string[] };
    // Every replica kept for failover, the one preflight reached first.
    expect(id.controllers).toEqual([ctl.addr, dead]);
    expect(readFileSync(join(dir, 'list', 'node.env'), 'utf8')).toContain(
      `TETHER_CONTROLLER=${ctl.addr},${dead}`,
    );
  });

  for (const point of [
    'discover',
    'preflight',
    'profile',
    'enroll',
    'enroll-answered',
    'configure',
    'ready',
  ]) {
    it(`kill -9 at ${point}: the restart completes and enrolls exactly once`, {
      timeout: 180_000,
    }, async () => {
      const name = `kill-${point}`;
      const tok = await token();
      const file = bootstrap(name, tok);
      const d = firstboot(name, file, { TETHER_FIRSTBOOT_PAUSE_AT: point });
      await waitFor(`paused at ${point}`, () => {
        if (d.child.exitCode !== null) throw new Error(`exited: ${d.log()}`);
        return d.log().includes(`paused at ${point}`);
      });
      await d.kill9();
      const again = firstboot(name, file);
      expect(await exitOf(again), again.log()).toBe(0);
      expect(fbState(name).phase).toBe('ready');
      await expectOneIdentity(name, tok);
      if (point === 'enroll-answered')
        expect(again.log()).toMatch(/resuming the enrollment of .* with the same key/);
    });
  }

  it('no configuration anywhere: maintenance mode on the console, discover failed, exit 7', {
    timeout: 180_000,
  }, async () => {
    const d = firstboot('nothing', join(dir, 'absent.yaml'), {}, ['--max-attempts', '1']);
    expect(await exitOf(d)).toBe(7);
    expect(d.log()).toMatch(/MAINTENANCE MODE/);
    expect(d.log()).toMatch(/Copy bootstrap\.yaml to .*absent\.yaml/);
    expect(fbState('nothing')).toMatchObject({ phase: 'failed', failedPhase: 'discover' });
    // Provided later, the next run picks it up.
    const tok = await token();
    writeFileSync(join(dir, 'absent.yaml'), readFileSync(bootstrap('nothing', tok), 'utf8'));
    const again = firstboot('nothing', join(dir, 'absent.yaml'));
    expect(await exitOf(again), again.log()).toBe(0);
    await expectOneIdentity('nothing', tok);
  });

  it('a wrong CA fingerprint fails preflight with words to act on; a new bootstrap file then completes', {
    timeout: 180_000,
  }, async () => {
    const tok = await token();
    const fake = `T10${'ab'.repeat(32)}${tok.slice(67)}`;
    const file = bootstrap('wrongca', fake, { caFingerprint: 'ab'.repeat(32) });
    const d = firstboot('wrongca', file, {}, ['--max-attempts', '3']);
    expect(await exitOf(d)).toBe(6);
    expect(d.log()).toMatch(/another certificate authority/);
    const st = fbState('wrongca');
    expect(st).toMatchObject({
      phase: 'failed',
      failedPhase: 'preflight',
      lastError: { code: 'TETHER_E_CA_MISMATCH' },
    });
    // The node tried once: a wrong CA is not retried.
    expect(st.phases.find((p) => p.name === 'preflight')?.attempts).toBe(1);
    bootstrap('wrongca', tok);
    const fixed = firstboot('wrongca', file);
    expect(await exitOf(fixed), fixed.log()).toBe(0);
    await expectOneIdentity('wrongca', tok);
  });

  it('an expired token fails enrollment clearly and keeps the state it had', {
    timeout: 180_000,
  }, async () => {
    const created = Date.now();
    const tok = await token('fb', ['--ttl', '1s']);
    await waitFor('the token to expire', () => Date.now() > created + 1500);
    const file = bootstrap('expired', tok);
    const d = firstboot('expired', file, {}, ['--max-attempts', '3']);
    expect(await exitOf(d)).toBe(6);
    expect(d.log()).toMatch(/refused the join token/);
    expect(d.log()).toMatch(/expired/);
    const st = fbState('expired');
    expect(st).toMatchObject({
      phase: 'failed',
      failedPhase: 'enroll',
      lastError: { code: 'TETHER_E_TOKEN' },
    });
    // What was done stays done: discovery's copy and the finished phases.
    expect(existsSync(join(dir, 'expired', 'bootstrap.yaml'))).toBe(true);
    expect(st.phases.find((p) => p.name === 'preflight')?.endedAt).toBeTruthy();
    expect(await nodeObject('expired')).toBeUndefined();
  });

  it('an unreachable controller is retried with backoff, then the phase fails; state stays', {
    timeout: 180_000,
  }, async () => {
    const tok = await token();
    const port = await freePort();
    const file = bootstrap('unreach', tok, { controllers: [`127.0.0.1:${port}`] });
    const d = firstboot('unreach', file, {}, ['--max-attempts', '3']);
    expect(await exitOf(d)).toBe(5);
    expect(d.log()).toMatch(/WAN cable/);
    expect(d.log().match(/trying again in/g)?.length).toBe(2);
    const st = fbState('unreach');
    expect(st).toMatchObject({
      phase: 'failed',
      failedPhase: 'preflight',
      lastError: { code: 'TETHER_E_UNAVAILABLE' },
    });
    expect(st.phases.find((p) => p.name === 'preflight')?.attempts).toBe(3);
  });

  it('a profile that needs a reboot gets exactly the reboots its plan says, also when killed around it', {
    timeout: 240_000,
  }, async () => {
    const tok = await token();
    const root = tempMachine('du-e810');
    const counter = join(dir, 'reboots');
    const file = bootstrap('rebooter', tok, { profile: 'du' });
    const reboot = `${REPO}node_modules/.bin/tsx ${REPO}test/integration/firstboot/fake-reboot.ts ${root} ${counter}`;
    const args = ['--host-root', root, '--fake-kernel', '--reboot-command', reboot];
    // Killed after the reboot request is recorded, before the machine reboots.
    const d = firstboot('rebooter', file, { TETHER_FIRSTBOOT_PAUSE_AT: 'reboot' }, args);
    await waitFor('paused before the reboot', () => {
      if (d.child.exitCode !== null) throw new Error(`exited: ${d.log()}`);
      return d.log().includes('paused at reboot');
    });
    await d.kill9();
    expect(existsSync(counter)).toBe(false);
    // Same boot: the recorded request is made again (not a second reboot of the plan).
    const second = firstboot('rebooter', file, {}, args);
    expect(await exitOf(second), second.log()).toBe(0);
    expect(second.log()).toMatch(/needs a reboot .*: rebooting now/);
    expect(readFileSync(counter, 'utf8')).toBe('reboot\n');
    expect(fbState('rebooter')).toMatchObject({ phase: 'profile', reboots: { planned: 1, done: 0 } });
    // After the reboot: the runtime part, then enrollment; no further reboot.
    const after = firstboot('rebooter', file, {}, args);
    expect(await exitOf(after), after.log()).toBe(0);
    expect(after.log()).toMatch(/rebooted \(1 of 1\)/);
    expect(readFileSync(counter, 'utf8')).toBe('reboot\n');
    const st = fbState('rebooter');
    expect(st).toMatchObject({ phase: 'ready', reboots: { planned: 1, done: 1 } });
    expect(st.reboots.pending).toBeUndefined();
    expect(readFileSync(join(root, 'proc/cmdline'), 'utf8')).toContain('nohz_full=');
    await expectOneIdentity('rebooter', tok);
    const n = await waitFor('ready report', async () => {
      const o = await nodeObject('rebooter');
      return o?.status.firstBoot?.phase === 'ready' ? o : undefined;
    });
    expect(n.status.firstBoot?.phases.find((p) => p.name === 'profile')).toBeTruthy();
    rmSync(root, { recursive: true, force: true });
  });

  // Last: it restarts the shared controller.
  it('reports made while the controller is down are queued and delivered once it is back', {
    timeout: 240_000,
  }, async () => {
    const tok = await token();
    const file = bootstrap('queued', tok);
    const d = firstboot('queued', file, { TETHER_FIRSTBOOT_PAUSE_AT: 'configure' });
    await waitFor('paused at configure', () => {
      if (d.child.exitCode !== null) throw new Error(`exited: ${d.log()}`);
      return d.log().includes('paused at configure');
    });
    await d.kill9();
    await ctl.daemon.stop();
    const offline = firstboot('queued', file, {}, ['--max-attempts', '2']);
    expect(await exitOf(offline), offline.log()).toBe(0);
    const st = fbState('queued');
    expect(st.phase).toBe('ready');
    expect(st.reportedSeq).toBeLessThan(st.seq);
    ctl = await startTestController(ctl.dataDir, { addr: ctl.addr, port: ctl.port, cfg: ctl.cfg });
    expect((await nodeObject('queued'))?.status.firstBoot?.phase).not.toBe('ready');
    const back = firstboot('queued', file);
    expect(await exitOf(back), back.log()).toBe(0);
    expect((await nodeObject('queued'))?.status.firstBoot?.phase).toBe('ready');
    const after = fbState('queued');
    expect(after.reportedSeq).toBe(after.seq);
    await expectOneIdentity('queued', tok);
  });
});
