// Bootstrap discovery against the real things: files and a kernel command line read from a
// file standing in for /proc/cmdline, a config drive made as an ext4 image on a loop device
// (found by blkid, mounted read-only, unmounted), and dnsmasq serving DHCP option 143 or
// option 43 (vendor class "tether") to busybox udhcpc inside network namespaces this test
// creates. Everything created is removed by name.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { type CommandRunner, ProcessRunner } from '../../../src/lib/exec.js';
import { type DiscoveryOptions, discover, maintenanceMessage } from '../../../src/node/bootstrap/discover.js';
import { waitFor } from '../support/proc.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-discover-'));
const runner = new ProcessRunner();
const FP = 'cd'.repeat(32);
const tokenOf = (id: string) => `T10${FP}::${id}.${'s'.repeat(32)}`;
const yamlFor = (site: string) =>
  stringify({
    apiVersion: 'tether.dev/v1',
    kind: 'Bootstrap',
    controllers: ['192.0.2.1:7443'],
    caFingerprint: FP,
    token: tokenOf('abc123'),
    site,
  });

const paths = {
  state: join(dir, 'state', 'bootstrap.yaml'),
  image: join(dir, 'usr-lib-tether', 'bootstrap.yaml'),
  local: join(dir, 'etc-tether', 'bootstrap.yaml'),
  cmdline: join(dir, 'cmdline'),
};
const NOLABEL = `NONE${process.pid % 100000}`;
const base = (over: Partial<DiscoveryOptions> = {}): DiscoveryOptions => ({
  statePath: paths.state,
  imagePath: paths.image,
  localFile: paths.local,
  cmdlinePath: paths.cmdline,
  labels: [NOLABEL],
  dhcp: false,
  runner,
  ...over,
});
const put = (p: string, text: string) => {
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, text);
};

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('discovery order: first hit wins', () => {
  it('state → image → cmdline → local file, each one only when those before it have nothing', async () => {
    put(paths.state, yamlFor('from-state'));
    put(paths.image, yamlFor('from-image'));
    put(
      paths.cmdline,
      `quiet tether.bootstrap=${Buffer.from(yamlFor('from-cmdline')).toString('base64url')}\n`,
    );
    put(paths.local, yamlFor('from-local'));
    const seen: string[] = [];
    for (const drop of [paths.state, paths.image, paths.cmdline, paths.local]) {
      const d = await discover(base());
      seen.push(d.found ? `${d.found.source}:${d.found.config.site}` : 'none');
      rmSync(drop);
    }
    expect(seen).toEqual([
      'state:from-state',
      'image:from-image',
      'cmdline:from-cmdline',
      'local-file:from-local',
    ]);
  });

  it('an invalid file is reported with file:line:field and the next source is used', async () => {
    put(paths.image, yamlFor('x').replace('site: x', 'site: Not_A_Label'));
    put(paths.local, yamlFor('rescued'));
    const d = await discover(base());
    expect(d.found?.config.site).toBe('rescued');
    const miss = d.misses.find((m) => m.source === 'image');
    expect(miss?.why).toMatch(new RegExp(`${paths.image}:\\d+`));
    expect(miss?.why).toMatch(/site/);
    rmSync(paths.image);
    rmSync(paths.local);
  });

  it('nothing anywhere: maintenance mode says what is missing, where it looked and how to provide it', async () => {
    put(paths.cmdline, 'quiet\n');
    const d = await discover(base());
    expect(d.found).toBeUndefined();
    expect(d.misses.map((m) => m.source)).toEqual([
      'state',
      'image',
      'cmdline',
      'config-drive',
      'dhcp',
      'local-file',
    ]);
    const msg = maintenanceMessage(d.misses, { localFile: paths.local, retrySeconds: 30 });
    expect(msg).toMatch(/MAINTENANCE MODE/);
    expect(msg).toMatch(/controller address, the controller CA fingerprint, a join token and the site/);
    expect(msg).toMatch(/no tether\.bootstrap= argument/);
    expect(msg).toMatch(/labelled TETHER/);
    expect(msg).toMatch(/option 143/);
    expect(msg).toContain(paths.local);
  });
});

describe('kernel command line (a file standing in for /proc/cmdline)', () => {
  it('takes base64url of the file, or a path; the last tether.bootstrap= wins', async () => {
    const other = join(dir, 'other.yaml');
    put(other, yamlFor('by-path'));
    put(paths.cmdline, `tether.bootstrap=junk quiet tether.bootstrap=${other}\n`);
    expect((await discover(base())).found?.config.site).toBe('by-path');
    const b64 = Buffer.from(yamlFor('by-b64')).toString('base64url').replace(/=+$/, '');
    put(paths.cmdline, `root=/dev/vda2 tether.bootstrap=${b64} console=ttyS0\n`);
    expect((await discover(base())).found).toMatchObject({ source: 'cmdline', config: { site: 'by-b64' } });
  });

  it('a value that is neither base64url nor a path, or decodes to a bad file, is a miss that says why', async () => {
    for (const v of ['not%base64', Buffer.from('kind: Bootstrap\n').toString('base64url')]) {
      put(paths.cmdline, `tether.bootstrap=${v}\n`);
      const d = await discover(base());
      expect(d.found).toBeUndefined();
      expect(d.misses.find((m) => m.source === 'cmdline')?.why).toMatch(/base64url|required/);
    }
  });
});

const losetup = (img: string) => execFileSync('losetup', ['-f', '--show', img], { encoding: 'utf8' }).trim();

describe('config drive directory (a drive already mounted, the lab)', () => {
  it('bootstrap.yaml (any case) in the first directory that has one; block devices are not asked', async () => {
    const a = join(dir, 'drive-a');
    const b = join(dir, 'drive-b');
    mkdirSync(a, { recursive: true });
    put(join(b, 'BOOTSTRAP.YAML'), yamlFor('from-dir'));
    const asked: string[] = [];
    const spy: CommandRunner = {
      run: (cmd, args, o) => {
        asked.push(cmd);
        return runner.run(cmd, args, o);
      },
    };
    const none = join(dir, 'none');
    const d = await discover(
      base({
        statePath: join(none, 'state.yaml'),
        imagePath: join(none, 'image.yaml'),
        cmdlinePath: join(none, 'cmdline'),
        localFile: join(none, 'local.yaml'),
        driveDirs: [join(dir, 'drive-none'), a, b],
        runner: spy,
      }),
    );
    expect(d.found?.source).toBe('config-drive');
    expect(d.found?.origin).toBe(join(b, 'BOOTSTRAP.YAML'));
    expect(d.found?.config.site).toBe('from-dir');
    expect(d.misses.filter((m) => m.source === 'config-drive').map((m) => m.why)).toEqual([
      'no such directory',
      'holds no bootstrap.yaml',
    ]);
    expect(asked).not.toContain('blkid');
    expect(asked).not.toContain('mount');
  });
});

describe('config drive (ext4 image on a loop device)', () => {
  const loops: string[] = [];
  const drive = (label: string, files: Record<string, string>) => {
    const content = mkdtempSync(join(dir, 'drive-'));
    for (const [n, t] of Object.entries(files)) writeFileSync(join(content, n), t);
    const img = join(dir, `${label}-${loops.length}.img`);
    execFileSync('truncate', ['-s', '8M', img]);
    execFileSync('mkfs.ext4', ['-q', '-F', '-L', label, '-d', content, img]);
    const dev = losetup(img);
    loops.push(dev);
    return dev;
  };
  afterAll(() => {
    for (const l of loops) execFileSync('losetup', ['-d', l]);
  });
  const mountedOurs = () =>
    readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .filter((l) => loops.some((d) => l.includes(` ${d} `)));

  it('a drive labelled TETHER holding bootstrap.yaml is mounted read-only, read and unmounted', async () => {
    const dev = drive('TETHER', { 'bootstrap.yaml': yamlFor('from-drive') });
    const before = readdirSync(tmpdir()).filter((n) => n.startsWith('tether-cfgdrive-')).length;
    const d = await discover(base({ devices: [dev], labels: ['TETHER', 'CIDATA'] }));
    expect(d.found).toMatchObject({
      source: 'config-drive',
      origin: `${dev}:/bootstrap.yaml`,
      config: { site: 'from-drive' },
    });
    expect(mountedOurs()).toEqual([]);
    expect(readdirSync(tmpdir()).filter((n) => n.startsWith('tether-cfgdrive-')).length).toBe(before);
  });

  it('blkid finds a drive by label (here a label unique to this run), CIDATA-style too', async () => {
    const label = `T${process.pid % 1000000}`;
    const dev = drive(label, { 'BOOTSTRAP.YAML': yamlFor('by-label') });
    const d = await discover(base({ labels: [label] }));
    expect(d.found).toMatchObject({ source: 'config-drive', config: { site: 'by-label' } });
    expect(d.found?.origin.startsWith(dev)).toBe(true);
  });

  it('a drive with another label, or without bootstrap.yaml, is passed over with the reason', async () => {
    const other = drive('DATA', { 'bootstrap.yaml': yamlFor('nope') });
    const emptyDrive = drive('CIDATA', { 'meta-data': 'instance-id: x\n' });
    const d = await discover(base({ devices: [other, emptyDrive], labels: ['TETHER', 'CIDATA'] }));
    expect(d.found).toBeUndefined();
    const why = d.misses.filter((m) => m.source === 'config-drive').map((m) => `${m.where} ${m.why}`);
    expect(why).toContain(`${other} label is "DATA"`);
    expect(why).toContain(`${emptyDrive} holds no bootstrap.yaml`);
    expect(mountedOurs()).toEqual([]);
  });
});

describe('DHCP (dnsmasq in a namespace, udhcpc on the WAN interface)', () => {
  const tag = `fb${process.pid % 100000}`;
  const srv = `${tag}s`;
  const cli = `${tag}c`;
  let dnsmasq: ChildProcess | undefined;
  const ip = (...a: string[]) => execFileSync('ip', a);
  const inNs: CommandRunner = { run: (cmd, args, o) => runner.run(cmd, args, { ...o, netns: cli }) };
  // No ca=: the token carries the fingerprint, and the option must fit in 255 bytes.
  const uri = `tether://192.0.2.7:7443?token=${tokenOf('dhcp01')}&site=from-dhcp&profile=du`;
  const uri2 = 'tether://192.0.2.8:7443';
  const opt143 = [uri, uri2]
    .map((u) => {
      const b = Buffer.from(u);
      const len = Buffer.alloc(2);
      len.writeUInt16BE(b.length);
      return Buffer.concat([len, b]);
    })
    .reduce((a, b) => Buffer.concat([a, b]));
  const hex = (b: Buffer) => [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');

  beforeAll(() => {
    ip('netns', 'add', srv);
    ip('netns', 'add', cli);
    ip('link', 'add', `${tag}a`, 'type', 'veth', 'peer', 'name', `${tag}b`);
    ip('link', 'set', `${tag}a`, 'netns', srv);
    ip('link', 'set', `${tag}b`, 'netns', cli);
    ip('-n', srv, 'addr', 'add', '10.211.0.1/24', 'dev', `${tag}a`);
    ip('-n', srv, 'link', 'set', `${tag}a`, 'up');
    ip('-n', cli, 'link', 'set', `${tag}b`, 'up');
  });
  const stopDnsmasq = async () => {
    if (!dnsmasq || dnsmasq.exitCode !== null) return;
    const gone = new Promise((r) => dnsmasq!.once('exit', r));
    dnsmasq.kill('SIGTERM');
    await gone;
  };
  afterAll(async () => {
    await stopDnsmasq();
    for (const n of [srv, cli]) execFileSync('ip', ['netns', 'del', n]);
  });
  async function serve(options: string[]): Promise<void> {
    await stopDnsmasq();
    let log = '';
    dnsmasq = spawn('ip', [
      'netns',
      'exec',
      srv,
      'dnsmasq',
      '--no-daemon',
      '--conf-file=/dev/null',
      '--port=0',
      '--log-dhcp',
      `--interface=${tag}a`,
      '--bind-interfaces',
      '--dhcp-range=10.211.0.10,10.211.0.20,1h',
      `--dhcp-leasefile=${join(dir, `${tag}.leases`)}`,
      `--pid-file=${join(dir, `${tag}.pid`)}`,
      ...options,
    ]);
    dnsmasq.stderr?.on('data', (b: Buffer) => {
      log += b.toString();
    });
    await waitFor('dnsmasq to listen', () => {
      if (dnsmasq?.exitCode !== null) throw new Error(`dnsmasq exited: ${log}`);
      return log.includes('DHCP, IP range');
    });
  }

  it('option 143 (RFC 8572): every URI a controller, the rest from the first', {
    timeout: 60_000,
  }, async () => {
    await serve([`--dhcp-option=143,${hex(opt143)}`]);
    const d = await discover(base({ dhcp: true, dhcpInterfaces: [`${tag}b`], runner: inNs }));
    expect(d.found).toMatchObject({
      source: 'dhcp',
      origin: `DHCP option 143 on ${tag}b`,
      config: { site: 'from-dhcp', profile: 'du', controllers: ['192.0.2.7:7443', '192.0.2.8:7443'] },
    });
  });

  it('option 43 is used only with vendor class tether (option 60)', { timeout: 60_000 }, async () => {
    await serve(['--dhcp-vendorclass=set:tv,tether', `--dhcp-option=tag:tv,vendor:tether,1,${uri}&ca=${FP}`]);
    const d = await discover(base({ dhcp: true, dhcpInterfaces: [`${tag}b`], runner: inNs }));
    expect(d.found).toMatchObject({
      source: 'dhcp',
      origin: `DHCP option 43 on ${tag}b`,
      config: { site: 'from-dhcp' },
    });
    const wrong = await discover(
      base({ dhcp: true, dhcpInterfaces: [`${tag}b`], runner: inNs, vendorClass: 'someone-else' }),
    );
    expect(wrong.found).toBeUndefined();
    expect(wrong.misses.find((m) => m.source === 'dhcp')?.why).toMatch(/no usable option 143 or 43/);
  });

  it('a DHCP server without the options, or none at all, is a miss that says which', {
    timeout: 60_000,
  }, async () => {
    await serve([]);
    const d = await discover(base({ dhcp: true, dhcpInterfaces: [`${tag}b`], runner: inNs }));
    expect(d.misses.find((m) => m.source === 'dhcp')?.why).toMatch(
      /lease 10\.211\.0\.\d+ carries no usable option/,
    );
    await stopDnsmasq();
    const none = await discover(
      base({ dhcp: true, dhcpInterfaces: [`${tag}b`], runner: inNs, dhcpTimeoutSeconds: 2 }),
    );
    expect(none.misses.find((m) => m.source === 'dhcp')?.why).toMatch(/no DHCP lease within 2 s/);
    expect(existsSync(join(dir, `${tag}.leases`))).toBe(true);
  });
});
