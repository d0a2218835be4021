// A static WAN from bootstrap.yaml (`wan:` with the port's MAC, address, gateway, DNS)
// applied by the real `tether node firstboot` to a real veth inside a network namespace this
// test creates, and the controller reached through it: the controller listens on an address
// the node can reach only through the configured gateway (a /32 on the loopback of the
// other namespace), so enrollment proves the address and the default route were applied.
// The networkd file and resolver file go to a fixture host root. Everything created here is
// named with this run's suffix and removed by name.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { FirstBootState } from '../../../src/node/bootstrap/firstboot.js';
import { type Ran, runProcess, TETHER, waitFor } from '../support/proc.js';

const isRoot = process.getuid?.() === 0;
const sfx = randomBytes(3).toString('hex');
const NODE_NS = `tfwn-${sfx}`;
const CTL_NS = `tfwc-${sfx}`;
const MAC = `02:54:${sfx.slice(0, 2)}:${sfx.slice(2, 4)}:${sfx.slice(4, 6)}:01`;
const CTL_ADDR = '198.51.100.7:7443';
const dir = mkdtempSync(join(tmpdir(), 'tether-static-wan-'));
const createdNs: string[] = [];
let ctl: ChildProcess | undefined;

const sh = async (cmd: string, args: string[]): Promise<Ran> => {
  const r = await runProcess(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r;
};
const ip = (ns: string, args: string) => sh('ip', ['-n', ns, ...args.split(' ')]);
const tetherIn = (ns: string, args: string[], timeoutMs = 120_000) =>
  runProcess('ip', ['netns', 'exec', ns, TETHER, ...args], { timeoutMs });
const umask077In = (ns: string, args: string[]) =>
  runProcess('ip', ['netns', 'exec', ns, 'sh', '-c', 'umask 077 && exec "$0" "$@"', TETHER, ...args], {
    timeoutMs: 120_000,
  });
const admin = (args: string[]) =>
  tetherIn(CTL_NS, [...args, '--config', join(dir, 'controller', 'admin.yaml')]);

beforeAll(async () => {
  if (!isRoot) return;
  for (const ns of [NODE_NS, CTL_NS]) {
    createdNs.push(ns);
    await sh('ip', ['netns', 'add', ns]);
    await ip(ns, 'link set lo up');
  }
  // The node's WAN port: a veth with a known MAC and nothing on it (what a box has when it
  // boots); the far end is the site's gateway, 192.0.2.1.
  await sh('ip', [
    '-n',
    CTL_NS,
    'link',
    'add',
    'gw0',
    'type',
    'veth',
    'peer',
    'name',
    'wan0',
    'address',
    MAC,
    'netns',
    NODE_NS,
  ]);
  await ip(CTL_NS, 'addr add 192.0.2.1/24 dev gw0');
  await ip(CTL_NS, 'link set gw0 up');
  await ip(CTL_NS, 'addr add 198.51.100.7/32 dev lo');

  const data = join(dir, 'controller');
  const init = await tetherIn(CTL_NS, [
    'controller',
    'init',
    '--data-dir',
    data,
    '--listen',
    CTL_ADDR,
    '--advertise',
    CTL_ADDR,
  ]);
  expect(init.code, init.stderr).toBe(0);
  ctl = spawn('ip', ['netns', 'exec', CTL_NS, TETHER, 'controller', 'start', '--data-dir', data], {
    stdio: 'ignore',
    env: { ...process.env, NO_COLOR: '1' },
  });
  await waitFor(
    'the controller to serve',
    async () => {
      if (ctl?.exitCode !== null) throw new Error('controller exited');
      return (await admin(['get', 'sites'])).code === 0;
    },
    60_000,
    300,
  );
}, 180_000);

afterAll(async () => {
  if (ctl && ctl.exitCode === null && ctl.signalCode === null) {
    const gone = new Promise((r) => ctl?.once('exit', r));
    ctl.kill('SIGTERM');
    await gone;
  }
  for (const ns of createdNs) await runProcess('ip', ['netns', 'delete', ns]);
  rmSync(dir, { recursive: true, force: true });
});

async function token(): Promise<string> {
  const r = await admin(['token', 'create', '--site', 'wan', '--uses', '1']);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

/** Writes a case's bootstrap.yaml and runs first boot for it in the node's namespace. */
async function firstboot(name: string, wan: Record<string, unknown>) {
  const tok = await token();
  const state = join(dir, name, 'state');
  const root = join(dir, name, 'root');
  mkdirSync(root, { recursive: true });
  const file = join(dir, name, 'bootstrap.yaml');
  writeFileSync(
    file,
    stringify({
      apiVersion: 'tether.dev/v1',
      kind: 'Bootstrap',
      controllers: [CTL_ADDR],
      caFingerprint: tok.slice(3, 67),
      token: tok,
      site: 'wan',
      nodeName: name,
      wan,
    }),
  );
  writeFileSync(join(dir, 'cmdline'), 'BOOT_IMAGE=/vmlinuz quiet\n');
  // With the first-boot unit's UMask=0077, as systemd runs it.
  const r = await umask077In(NODE_NS, [
    'node',
    'firstboot',
    '--state-dir',
    state,
    '--local-file',
    file,
    '--image-config',
    join(dir, 'no-image.yaml'),
    '--cmdline',
    join(dir, 'cmdline'),
    '--config-drive-dir',
    join(dir, 'no-drive'),
    '--no-dhcp',
    '--host-root',
    root,
    '--max-attempts',
    '2',
    '--backoff',
    '100ms',
  ]);
  const fb = JSON.parse(readFileSync(join(state, 'firstboot.json'), 'utf8')) as FirstBootState;
  return { r, fb, state, root };
}

describe.skipIf(!isRoot)('static WAN from bootstrap.yaml on a real interface', () => {
  it('a MAC the box does not have: preflight fails naming wan.mac, and nothing is configured', async () => {
    const { r, fb, root } = await firstboot('wrongmac', {
      mac: '02:00:00:00:00:99',
      address: '192.0.2.10/24',
      gateway: '192.0.2.1',
    });
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/no Ethernet port has the MAC address 02:00:00:00:00:99/);
    expect(r.stdout + r.stderr).toContain(`wan0 ${MAC}`);
    expect(fb.phase).toBe('failed');
    expect(fb.failedPhase).toBe('preflight');
    expect(existsSync(join(root, 'etc/systemd/network/10-tether-wan.network'))).toBe(false);
    const addrs = JSON.parse((await ip(NODE_NS, '-j -4 addr show dev wan0')).stdout) as Array<{
      addr_info: unknown[];
    }>;
    expect(addrs[0]?.addr_info ?? []).toEqual([]);
  });

  it('by MAC: address, gateway and DNS applied, the controller reached through the gateway, enrolled', async () => {
    const { r, fb, root } = await firstboot('static', {
      mac: MAC.toUpperCase(),
      address: '192.0.2.10/24',
      gateway: '192.0.2.1',
      dns: ['192.0.2.53', '192.0.2.54'],
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toContain(
      'static WAN address 192.0.2.10/24 on wan0 via 192.0.2.1, DNS 192.0.2.53 192.0.2.54',
    );
    expect(fb.phase).toBe('ready');

    // The kernel state of the real port.
    const addrs = JSON.parse((await ip(NODE_NS, '-j -4 addr show dev wan0')).stdout) as Array<{
      operstate: string;
      addr_info: Array<{ local: string; prefixlen: number }>;
    }>;
    expect(addrs[0]?.addr_info.map((a) => `${a.local}/${a.prefixlen}`)).toEqual(['192.0.2.10/24']);
    const routes = JSON.parse((await ip(NODE_NS, '-j -4 route show default')).stdout) as Array<{
      gateway: string;
      dev: string;
    }>;
    expect(routes.map((x) => `${x.gateway} ${x.dev}`)).toEqual(['192.0.2.1 wan0']);

    // What makes it last beyond this boot: networkd's file and the resolver.
    const net = readFileSync(join(root, 'etc/systemd/network/10-tether-wan.network'), 'utf8');
    expect(net).toContain(`MACAddress=${MAC}\n`);
    // systemd-networkd reads it as user systemd-network.
    expect(statSync(join(root, 'etc/systemd/network/10-tether-wan.network')).mode & 0o777).toBe(0o644);
    expect(net).toContain('Address=192.0.2.10/24\nGateway=192.0.2.1\nDNS=192.0.2.53\nDNS=192.0.2.54\n');
    expect(readFileSync(join(root, 'etc/resolv.conf'), 'utf8')).toMatch(
      /\nnameserver 192\.0\.2\.53\nnameserver 192\.0\.2\.54\n$/,
    );

    // The controller saw the node over that path, and its first boot as Ready.
    const nodes = JSON.parse((await admin(['get', 'nodes', '-o', 'json'])).stdout) as {
      items: Array<{ metadata: { name: string }; status: { phase: string; firstBoot?: { phase: string } } }>;
    };
    const n = nodes.items.find((i) => i.metadata.name === 'static');
    expect(n?.status.phase).toBe('Approved');
    expect(n?.status.firstBoot?.phase).toBe('ready');
  });

  it('first boot from the start again over the applied WAN (a retry after a failure) duplicates nothing', async () => {
    const before = (await ip(NODE_NS, '-j -4 addr show dev wan0')).stdout;
    const { r, fb, root } = await firstboot('again', {
      mac: MAC,
      address: '192.0.2.10/24',
      gateway: '192.0.2.1',
      dns: ['192.0.2.53', '192.0.2.54'],
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(fb.phase).toBe('ready');
    expect((await ip(NODE_NS, '-j -4 addr show dev wan0')).stdout).toBe(before);
    expect((await ip(NODE_NS, '-j -4 route show')).stdout.match(/"dst":"default"/g)).toHaveLength(1);
    expect(readFileSync(join(root, 'etc/systemd/network/10-tether-wan.network'), 'utf8')).toBe(
      readFileSync(join(dir, 'static', 'root', 'etc/systemd/network/10-tether-wan.network'), 'utf8'),
    );
  });
});
