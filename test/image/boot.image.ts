// Boots the built node image (npm run image) in qemu under software emulation with UEFI
// (OVMF), a config drive (a vfat file system labelled TETHER holding bootstrap.yaml) and
// qemu's user networking, and checks that first boot (tether-firstboot.service) finds the
// drive, applies its static WAN, enrolls with a real controller on this machine's loopback
// and reaches Ready, and that tether-node then holds a session with the controller.
//
// Network safety: the guest's network is `restrict=on` (nothing leaves qemu) with a single
// guestfwd: connections to 10.0.2.100:7443 inside the guest are handed to a socat that
// connects to the controller on 127.0.0.1. The guest reaches nothing else.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { startTestController, type TestController } from '../integration/support/controller.js';
import { freePort, REPO, runTether, waitFor } from '../integration/support/proc.js';

const IMAGE = process.env.TETHER_IMAGE ?? join(REPO, 'dist/image/tether-node.raw');
const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';
const GUEST_CTL = '10.0.2.100:7443';
const SITE = `img-${process.pid}`;
const NODE = 'tether-node';
const GUEST_MAC = '52:54:00:7e:7e:01';

const dir = mkdtempSync(join(tmpdir(), 'tether-image-'));
const consoleLog = join(dir, 'console.log');
let ctl: TestController | undefined;
let qemu: ChildProcess | undefined;
let qemuExit: Promise<unknown> | undefined;
let t0 = 0;
const marks: Record<string, number> = {};

function consoleText(): string {
  return existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '';
}

/** Waits until the serial console shows `re`, failing early if qemu died; records when. */
async function seen(what: string, re: RegExp, timeoutMs: number): Promise<void> {
  await waitFor(
    what,
    () => {
      if (qemu && qemu.exitCode !== null) throw new Error(`qemu exited ${qemu.exitCode}`);
      return re.test(consoleText());
    },
    timeoutMs,
    500,
  ).catch((e: unknown) => {
    throw new Error(
      `${String(e)}\n--- last console lines ---\n${consoleText().split('\n').slice(-60).join('\n')}`,
    );
  });
  marks[what] = (Date.now() - t0) / 1000;
}

function need(cmd: string, pkg: string): void {
  if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0) return;
  const r = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', pkg], {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (r.status !== 0) throw new Error(`${cmd} is missing and apt-get install ${pkg} failed`);
}

/** A vfat file system image labelled TETHER with bootstrap.yaml at its top, made with
 *  mtools: no mount, no vfat driver needed on this host. */
function configDrive(file: string, bootstrap: string): void {
  const src = join(dir, 'bootstrap.yaml');
  writeFileSync(src, bootstrap);
  const mk = spawnSync('mkfs.vfat', ['-n', 'TETHER', '-C', file, '8192'], { encoding: 'utf8' });
  if (mk.status !== 0) throw new Error(`mkfs.vfat: ${mk.stderr}`);
  const cp = spawnSync('mcopy', ['-i', file, src, '::bootstrap.yaml'], { encoding: 'utf8' });
  if (cp.status !== 0) throw new Error(`mcopy: ${cp.stderr}`);
}

beforeAll(async () => {
  if (!existsSync(IMAGE)) throw new Error(`${IMAGE} does not exist: build it first with \`npm run image\``);
  need('qemu-system-x86_64', 'qemu-system-x86');
  // `need` looks for a command; OVMF is firmware files, so check the file itself.
  if (!existsSync(OVMF_CODE) || !existsSync(OVMF_VARS)) {
    const r = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'ovmf'], {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    if (r.status !== 0 || !existsSync(OVMF_CODE))
      throw new Error(`${OVMF_CODE} is missing and apt-get install ovmf failed`);
  }
  need('mkfs.vfat', 'dosfstools');
  need('mcopy', 'mtools');
  need('socat', 'socat');

  const ctlDir = join(dir, 'controller');
  const port = await freePort();
  const init = { addr: `127.0.0.1:${port}`, port, cfg: join(ctlDir, 'admin.yaml') };
  // The node dials the address it enrolled with (10.0.2.100, the guestfwd), so the server
  // certificate names it too; the admin CLI on this host dials the advertised loopback.
  const r = await runTether([
    'controller',
    'init',
    '--data-dir',
    ctlDir,
    '--listen',
    init.addr,
    '--advertise',
    init.addr,
    '--san',
    '10.0.2.100',
  ]);
  expect(r.code, r.stderr).toBe(0);
  ctl = await startTestController(ctlDir, init);
  const tok = await runTether(['token', 'create', '--site', SITE, '--config', ctl.cfg]);
  expect(tok.code, tok.stderr).toBe(0);

  const drive = join(dir, 'config.img');
  const token = tok.stdout.trim();
  // A static WAN on the port with the test NIC's MAC (the guest's interface name depends on
  // the PCI slot and naming scheme; its MAC is what this test sets): with restrict=on slirp's
  // DHCP offers no router, and the node daemon finds its uplink by the default route.
  configDrive(
    drive,
    `# written by test/image/boot.image.ts\n${stringify({
      apiVersion: 'tether.dev/v1',
      kind: 'Bootstrap',
      controllers: [GUEST_CTL],
      caFingerprint: token.slice(3, 67),
      token,
      site: SITE,
      nodeName: NODE,
      wan: { mac: GUEST_MAC, address: '10.0.2.15/24', gateway: '10.0.2.2', dns: ['10.0.2.3'] },
    })}`,
  );
  const vars = join(dir, 'OVMF_VARS.fd');
  copyFileSync(OVMF_VARS, vars);

  t0 = Date.now();
  qemu = spawn(
    'qemu-system-x86_64',
    [
      '-accel',
      'tcg',
      '-cpu',
      'max',
      '-smp',
      '2',
      '-m',
      '1536',
      '-machine',
      'q35',
      '-nographic',
      '-no-reboot',
      '-drive',
      `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`,
      '-drive',
      `if=pflash,format=raw,unit=1,file=${vars}`,
      // -snapshot: the guest's writes go to a temporary overlay; the built image stays as built.
      '-snapshot',
      '-drive',
      `if=virtio,format=raw,file=${IMAGE}`,
      '-drive',
      `if=virtio,format=raw,readonly=on,file=${drive}`,
      '-netdev',
      `user,id=wan,restrict=on,guestfwd=tcp:${GUEST_CTL}-cmd:socat - TCP:${init.addr}`,
      '-device',
      `virtio-net-pci,netdev=wan,mac=${GUEST_MAC}`,
      '-serial',
      `file:${consoleLog}`,
      '-monitor',
      'none',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  qemuExit = new Promise((resolve) => qemu?.once('exit', resolve));
});

afterAll(async () => {
  if (qemu && qemu.exitCode === null && qemu.signalCode === null) {
    qemu.kill('SIGKILL');
    await qemuExit;
  }
  await ctl?.daemon.stop();
  const keep = process.env.TETHER_IMAGE_KEEP_LOG;
  if (keep && existsSync(consoleLog)) copyFileSync(consoleLog, keep);
  rmSync(dir, { recursive: true, force: true });
  console.log(
    `image ${IMAGE} (${(statSync(IMAGE).size / 2 ** 20).toFixed(0)} MiB); seconds from qemu start:`,
    marks,
  );
});

describe('node image under qemu (TCG, OVMF, config drive, user networking)', () => {
  it('boots through systemd-boot into the first-boot service, which reaches Ready from the config drive', async () => {
    // The kernel boots with loglevel=4, so systemd's greeting is the first line it shows.
    await seen('systemd', /Welcome to .*Debian GNU\/Linux 12/, 300_000);
    await seen('firstboot discover', /tether firstboot: phase discover/, 900_000);
    await seen(
      'firstboot static WAN',
      /tether firstboot: static WAN address 10\.0\.2\.15\/24 on \S+ via 10\.0\.2\.2/,
      300_000,
    );
    await seen('firstboot ready', /tether firstboot: READY/, 600_000);
  });

  it('reaches multi-user with tether-node active', async () => {
    await seen('multi-user', /tether-boot: multi-user\.target reached/, 600_000);
    await seen('tether-node active', /tether-node\.service: active\b/, 300_000);
  });

  it('connects to the controller: the node is Approved with a live session', async () => {
    const node = await waitFor(
      'the node to hold a session with the controller',
      async () => {
        const r = await runTether(['get', 'nodes', '-o', 'json', '--config', ctl!.cfg]);
        const items = (
          JSON.parse(r.stdout) as {
            items: Array<{
              metadata: { name: string };
              spec?: { site?: string };
              status: { phase: string; session: { connected: boolean } };
            }>;
          }
        ).items;
        return items.find((i) => i.status.session.connected && i.status.phase === 'Approved');
      },
      300_000,
      1000,
    );
    marks.connected = (Date.now() - t0) / 1000;
    expect(node.metadata.name).toBe(NODE);
    // Ready as first boot reports it to the controller, every phase passed once.
    const fb = (node as { status: { firstBoot?: { phase: string; source?: string } } }).status.firstBoot;
    expect(fb?.phase).toBe('ready');
    expect(fb?.source).toMatch(/^config-drive: \/dev\/vd[a-z]:\/bootstrap\.yaml$/);
    expect(consoleText()).not.toMatch(/Failed to start .*Tether/);
  });
});
