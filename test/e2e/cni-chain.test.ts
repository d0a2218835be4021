// CNI conformance in the whole lab: the standard plugins of Debian's containernetworking-plugins
// (tuning, bandwidth, portmap) chained after tether-cni in a conflist, driven exactly as a
// runtime drives them (libcni semantics: ADD in order feeding prevResult, CHECK in order and DEL
// in reverse with the cached result, capabilities → runtimeConfig), against real `tether node
// run` processes at two sites. Traffic is checked at every step with ping from the workload.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultLabStateDir, Lab, listNetns } from '../../src/lab/index.js';
import { REPO, waitFor } from '../integration/support/proc.js';

const isRoot = process.getuid?.() === 0;
const PLUGINS_DIR = '/usr/lib/cni';
const hasPlugins = ['tuning', 'bandwidth', 'portmap'].every((p) => existsSync(join(PLUGINS_DIR, p)));
/**
 * Optional: real podman 4 with its CNI backend (Debian 12: podman, runc, busybox-static; not in
 * CI's dependencies). runc, not crun: crun refuses this machine's hybrid cgroup layout.
 */
const PODMAN = '/usr/bin/podman';
const RUNC = '/usr/sbin/runc';
const BUSYBOX = '/bin/busybox';
const hasPodman = [PODMAN, RUNC, BUSYBOX].every((f) => existsSync(f));
if (!isRoot) console.warn('test/e2e/cni-chain.test.ts: skipped (needs root)');
else if (!hasPlugins)
  console.warn('test/e2e/cni-chain.test.ts: skipped (apt-get install containernetworking-plugins)');

const run = randomBytes(2).toString('hex');
const name = `k${run}`;
const stateDir = defaultLabStateDir(name);
/** The test's own workload namespaces (not the lab's): created and deleted here by name. */
const wl = (x: string) => `tcc${run}-${x}`;
const mine: string[] = [];
let lab: Lab;
let cniPath: string;

// biome-ignore lint/suspicious/noExplicitAny: CNI JSON, asserted field by field
type Json = any;

interface PluginConf {
  type: string;
  capabilities?: Record<string, boolean>;
  [k: string]: unknown;
}
interface Conflist {
  cniVersion: string;
  name: string;
  plugins: PluginConf[];
}

/** One plugin exec, in the node's namespace (where a runtime on that node runs plugins). */
async function exec(
  ns: string,
  type: string,
  env: Record<string, string>,
  conf: object,
): Promise<{ code: number; json: Json; stderr: string }> {
  const r = await lab.exec(ns, join(cniPath, type), [], {
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', CNI_PATH: cniPath, ...env },
    input: JSON.stringify(conf),
    allowFailure: true,
  });
  return { code: r.code, json: r.stdout.trim() ? JSON.parse(r.stdout) : undefined, stderr: r.stderr };
}

/**
 * libcni's conflist semantics: every plugin gets the list's name and cniVersion; runtimeConfig
 * carries only the capabilities it declares; ADD feeds each result to the next as prevResult;
 * CHECK and DEL get the cached result of the chain (DEL in reverse order).
 */
async function chain(
  ns: string,
  list: Conflist,
  command: 'ADD' | 'CHECK' | 'DEL',
  env: Record<string, string>,
  opts: { cached?: Json; runtimeConfig?: Record<string, unknown> } = {},
): Promise<{ result?: Json; failed?: { type: string; code: number; json: Json } }> {
  const plugins = command === 'DEL' ? [...list.plugins].reverse() : list.plugins;
  let prev = opts.cached;
  for (const p of plugins) {
    const { capabilities, ...rest } = p;
    const conf: Record<string, unknown> = { ...rest, cniVersion: list.cniVersion, name: list.name };
    const rc = Object.fromEntries(
      Object.entries(opts.runtimeConfig ?? {}).filter(([k]) => capabilities?.[k]),
    );
    if (Object.keys(rc).length) conf.runtimeConfig = rc;
    if (prev) conf.prevResult = prev;
    const r = await exec(ns, p.type, { ...env, CNI_COMMAND: command }, conf);
    if (r.code !== 0) return { failed: { type: p.type, code: r.code, json: r.json } };
    if (command === 'ADD') prev = r.json;
  }
  return command === 'ADD' ? { result: prev } : {};
}

function attachEnv(containerId: string, netnsName: string): Record<string, string> {
  return {
    CNI_CONTAINERID: containerId,
    CNI_NETNS: `/var/run/netns/${netnsName}`,
    CNI_IFNAME: 'eth0',
    // As runtimes send it: IgnoreUnknown for the Go plugins, labels in the chain-safe form.
    CNI_ARGS: `IgnoreUnknown=1;TETHER_LABELS=app:${containerId}`,
  };
}

async function addNs(ns: string): Promise<void> {
  await lab.sh('ip', ['netns', 'add', ns]);
  mine.push(ns);
  await lab.sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
}

/** The node agent's endpoints, straight from its socket. */
function endpoints(node: string): Promise<Json[]> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: lab.node(node).cniSocket, path: '/v1/endpoints' }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => {
        body += c.toString();
      });
      res.on('end', () => resolve((JSON.parse(body) as { endpoints: Json[] }).endpoints));
    });
    req.on('error', reject);
    req.end();
  });
}

async function linkIndex(ns: string, dev: string): Promise<number | undefined> {
  const r = await lab.sh('ip', ['-n', ns, '-j', 'link', 'show', 'dev', dev], { allowFailure: true });
  return r.code === 0 ? (JSON.parse(r.stdout) as { ifindex: number }[])[0]?.ifindex : undefined;
}

const tetherEntry = (node: string, network: string, extra: Record<string, unknown> = {}): PluginConf => ({
  type: 'tether-cni',
  network,
  agentSocket: lab.node(node).cniSocket,
  ...extra,
});

describe.skipIf(!isRoot || !hasPlugins)('CNI: standard plugins chained after tether-cni, in the lab', () => {
  const NEW_MAC = `02:c0:ff:ee:${run.slice(0, 2)}:${run.slice(2, 4)}`;
  let conflist: Conflist;

  beforeAll(async () => {
    cniPath = mkdtempSync(join(tmpdir(), 'tether-cni-path-'));
    symlinkSync(join(REPO, 'bin', 'tether-cni'), join(cniPath, 'tether-cni'));
    for (const p of ['tuning', 'bandwidth', 'portmap']) symlinkSync(join(PLUGINS_DIR, p), join(cniPath, p));
    mkdirSync(join(cniPath, 'cache'), { recursive: true });
    lab = await Lab.up(
      { name, sites: 2, nodesPerSite: 1, workloadsPerNode: 0, stateDir },
      { progress: (m) => process.stderr.write(`[lab ${name}] ${m}\n`) },
    );
    conflist = {
      cniVersion: '1.0.0',
      name: `${name}-blue`,
      plugins: [
        tetherEntry('s1n1', 'blue'),
        { type: 'tuning', mac: NEW_MAC, sysctl: { 'net.ipv4.conf.eth0.rp_filter': '0' } },
        { type: 'portmap', capabilities: { portMappings: true }, snat: true },
      ],
    };
  }, 240_000);

  afterAll(async () => {
    for (const ns of mine) await lab?.sh('ip', ['netns', 'del', ns], { allowFailure: true });
    const l = lab ?? (existsSync(stateDir) ? Lab.open(stateDir) : undefined);
    await l?.down();
    if (cniPath) rmSync(cniPath, { recursive: true, force: true });
    const left = (await listNetns()).filter((n) => n.startsWith(`${name}-`) || n.startsWith(`${name}_`));
    expect(left, 'namespaces left behind').toEqual([]);
  }, 90_000);

  it('ADD, CHECK, ADD again, DEL, DEL again with traffic at each step; the MAC tuning set is the one other sites learn', async () => {
    const a = wl('a');
    const b = wl('b');
    await addNs(a);
    await addNs(b);
    const n1 = lab.node('s1n1');
    const vn1 = lab.vnNs('s1n1', 'blue');
    const vn2 = lab.vnNs('s2n1', 'blue');
    const envA = attachEnv(`${a}-c`, a);

    // A peer at site 2, plain tether-cni.
    const peer = await chain(
      lab.node('s2n1').ns,
      { ...conflist, plugins: [tetherEntry('s2n1', 'blue')] },
      'ADD',
      attachEnv(`${b}-c`, b),
    );
    expect(peer.failed).toBeUndefined();
    const bIp = String(peer.result.ips[0].address).split('/')[0] ?? '';

    // ADD through the whole chain.
    const added = await chain(n1.ns, conflist, 'ADD', envA);
    expect(added.failed).toBeUndefined();
    const res = added.result;
    const cont = res.interfaces[res.ips[0].interface];
    const host = res.interfaces.find((i: Json) => i !== cont);
    expect(cont).toMatchObject({ name: 'eth0', sandbox: `/var/run/netns/${a}`, mac: NEW_MAC });
    // The host end's sandbox names the namespace it lives in: the network's, not the node's.
    expect(host.sandbox).toBe(`/var/run/netns/${vn1}`);
    expect(await linkIndex(vn1, host.name)).toBeDefined();
    const aIp = String(res.ips[0].address).split('/')[0] ?? '';
    const gw = res.ips[0].gateway;
    // The first packet flows as ADD returns: no wait.
    expect((await lab.ping(a, gw, { count: 1 })).received).toBe(1);
    // The MAC the kernel has (set by tuning after tether-cni) is what site 2 programs.
    await waitFor(
      'site 2 to learn the MAC tuning set',
      async () => (await lab.vxlanFdb(vn2, lab.vni('blue'))).get(NEW_MAC) === n1.ip,
      60_000,
      250,
    );
    await waitFor(
      'cross-site ping a → b',
      async () => (await lab.ping(a, bIp, { count: 1 })).ok,
      30_000,
      250,
    );
    const neigh = JSON.parse((await lab.sh('ip', ['-n', vn2, '-j', 'neigh', 'show', aIp])).stdout) as {
      lladdr?: string;
    }[];
    expect(neigh.map((n) => n.lladdr)).toContain(NEW_MAC);
    expect((await endpoints('s1n1')).find((e) => e.containerId === `${a}-c`)?.mac).toBe(NEW_MAC);

    // CHECK through the chain with the cached result.
    const checked = await chain(n1.ns, conflist, 'CHECK', envA, { cached: res });
    expect(checked.failed).toBeUndefined();
    expect((await lab.ping(a, bIp, { count: 2 })).received).toBe(2);

    // ADD again (a runtime's retry) while traffic flows: same result, the workload untouched.
    const hostIndex = await linkIndex(vn1, host.name);
    const during = lab.ping(a, bIp, { count: 20, intervalS: 0.1 });
    const again = await chain(n1.ns, conflist, 'ADD', envA);
    expect(again.failed).toBeUndefined();
    expect(again.result.ips).toEqual(res.ips);
    expect(again.result.interfaces).toEqual(res.interfaces);
    const p = await during;
    expect(p.received).toBe(p.transmitted);
    expect(await linkIndex(vn1, host.name)).toBe(hostIndex);
    expect((await chain(n1.ns, conflist, 'CHECK', envA, { cached: again.result })).failed).toBeUndefined();

    // DEL: when it returns, the interface no longer exists anywhere.
    const deleted = await chain(n1.ns, conflist, 'DEL', envA, { cached: again.result });
    expect(deleted.failed).toBeUndefined();
    expect(await linkIndex(vn1, host.name)).toBeUndefined();
    expect(await linkIndex(a, 'eth0')).toBeUndefined();
    expect((await endpoints('s1n1')).find((e) => e.containerId === `${a}-c`)).toBeUndefined();
    await waitFor(
      'site 2 to withdraw a',
      async () => !(await lab.vxlanFdb(vn2, lab.vni('blue'))).has(NEW_MAC),
      30_000,
      250,
    );

    // DEL again: still success.
    expect((await chain(n1.ns, conflist, 'DEL', envA, { cached: again.result })).failed).toBeUndefined();
    // The peer was never disturbed.
    expect((await lab.ping(b, gw, { count: 1 })).received).toBe(1);
  }, 240_000);

  it("bandwidth cannot find a host end that lives in the network namespace: ADD fails there, and the runtime's DEL leaves nothing", async () => {
    const d = wl('d');
    await addNs(d);
    const n1 = lab.node('s1n1');
    const list: Conflist = {
      ...conflist,
      plugins: [tetherEntry('s1n1', 'blue'), { type: 'bandwidth', capabilities: { bandwidth: true } }],
    };
    const env = attachEnv(`${d}-c`, d);
    const bw = { ingressRate: 8_000_000, ingressBurst: 80_000, egressRate: 8_000_000, egressBurst: 80_000 };
    const r = await chain(n1.ns, list, 'ADD', env, { runtimeConfig: { bandwidth: bw } });
    expect(r.failed?.type).toBe('bandwidth');
    expect(String(r.failed?.json?.msg)).toMatch(/host ns/);
    // What a runtime does after a failed ADD: DEL through the whole chain, no cached result.
    expect(
      (await chain(n1.ns, list, 'DEL', env, { runtimeConfig: { bandwidth: bw } })).failed,
    ).toBeUndefined();
    expect((await endpoints('s1n1')).find((e) => e.containerId === `${d}-c`)).toBeUndefined();
    expect(await linkIndex(d, 'eth0')).toBeUndefined();
  }, 60_000);

  it.skipIf(!hasPodman)(
    'podman 4 (CNI backend) runs, stops, starts and removes containers through tether-cni',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'tether-podman-'));
      const n1 = lab.node('s1n1');
      const net = `${name}-pod`;
      const rootfs = join(dir, 'rootfs');
      for (const d of ['bin', 'proc', 'sys', 'dev', 'etc']) mkdirSync(join(rootfs, d), { recursive: true });
      copyFileSync(BUSYBOX, join(rootfs, 'bin', 'busybox'));
      chmodSync(join(rootfs, 'bin', 'busybox'), 0o755);
      for (const a of ['sh', 'sleep', 'ping']) symlinkSync('busybox', join(rootfs, 'bin', a));
      mkdirSync(join(dir, 'net.d'));
      // The documented podman conflist (docs/cni.md), pointed at this lab's node.
      writeFileSync(
        join(dir, 'net.d', `${net}.conflist`),
        JSON.stringify({
          cniVersion: '1.0.0',
          name: net,
          plugins: [tetherEntry('s1n1', 'blue', { capabilities: { ips: true, portMappings: true } })],
        }),
      );
      writeFileSync(
        join(dir, 'containers.conf'),
        `[network]\nnetwork_backend = "cni"\nnetwork_config_dir = "${join(dir, 'net.d')}"\n` +
          `cni_plugin_dirs = ["${cniPath}"]\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n` +
          `events_logfile_path = "${join(dir, 'events.log')}"\n`,
      );
      // podman runs in the node's namespace, as it would on the node: it runs its plugins there.
      const podman = (args: string[]) =>
        lab.sh(
          'nsenter',
          [
            `--net=/run/netns/${n1.ns}`,
            PODMAN,
            '--root',
            join(dir, 'root'),
            '--runroot',
            join(dir, 'run'),
            '--cgroup-manager=cgroupfs',
            '--runtime',
            RUNC,
            ...args,
          ],
          {
            env: { ...process.env, CONTAINERS_CONF: join(dir, 'containers.conf') },
            allowFailure: true,
            timeoutMs: 90_000,
          },
        );
      const runArgs = (c: string, extra: string[]) => [
        'run',
        '-d',
        '--ulimit',
        'nofile=1024:1024',
        '--ulimit',
        'nproc=1024:1024',
        '--name',
        c,
        '--network',
        net,
        ...extra,
        '--rootfs',
        rootfs,
        '/bin/sleep',
        '600',
      ];
      const c1 = `${name}-p1`;
      const c2 = `${name}-p2`;
      try {
        const r = await podman(runArgs(c1, []));
        expect(r.code, r.stderr).toBe(0);
        const id = r.stdout.trim();
        const ep = (await endpoints('s1n1')).find((e) => e.containerId === id);
        expect(ep?.state).toBe('attached');
        const ping = await podman(['exec', c1, '/bin/ping', '-c', '1', '-W', '2', ep.gateway]);
        expect(ping.stdout).toMatch(/1 packets received/);
        // stop: podman's DEL; the interface is gone when it returns.
        expect((await podman(['stop', '-t', '1', c1])).code).toBe(0);
        expect((await endpoints('s1n1')).some((e) => e.containerId === id)).toBe(false);
        expect(await linkIndex(lab.vnNs('s1n1', 'blue'), ep.hostIfname)).toBeUndefined();
        expect((await podman(['start', c1])).code).toBe(0);
        const again = (await endpoints('s1n1')).find((e) => e.containerId === id);
        expect((await podman(['exec', c1, '/bin/ping', '-c', '1', '-W', '2', again.gateway])).stdout).toMatch(
          /1 packets received/,
        );
        // --ip: honoured inside the node's share, refused with the reason outside it.
        const share: string = JSON.parse((await lab.admin(['get', 'vn', 'blue', '-o', 'json'])).stdout).status
          .nodeBlocks.s1n1;
        const o = share.split('/')[0]?.split('.').map(Number) ?? [];
        const want = `${o.slice(0, 3).join('.')}.${(o[3] ?? 0) + 11}`;
        const r2 = await podman(runArgs(c2, ['--ip', want]));
        expect(r2.code, r2.stderr).toBe(0);
        expect((await endpoints('s1n1')).find((e) => e.containerId === r2.stdout.trim())?.ip).toBe(want);
        const bad = await podman(runArgs(`${name}-p3`, ['--ip', '10.1.0.250']));
        expect(bad.code).not.toBe(0);
        expect(bad.stderr).toContain('static address 10.1.0.250');
      } finally {
        await podman(['rm', '-f', '-t', '1', c1, c2, `${name}-p3`]);
        rmSync(dir, { recursive: true, force: true });
      }
      expect(
        (await endpoints('s1n1')).filter((e) => String(e.args?.K8S_POD_NAME ?? '').startsWith(`${name}-p`)),
      ).toEqual([]);
    },
    240_000,
  );

  it('a static address (ips capability) inside the node block is honoured, outside it is a clear code 7', async () => {
    const s = wl('s');
    await addNs(s);
    const vn = JSON.parse((await lab.admin(['get', 'vn', 'blue', '-o', 'json'])).stdout) as Json;
    const share: string = vn.status.nodeBlocks?.s1n1 ?? vn.status.siteBlocks.s1;
    const [base, prefix] = share.split('/');
    const octets = String(base).split('.').map(Number);
    const want = `${octets.slice(0, 3).join('.')}.${(octets[3] ?? 0) + 9}`;
    const list: Conflist = {
      ...conflist,
      plugins: [tetherEntry('s1n1', 'blue', { capabilities: { ips: true } })],
    };
    const env = attachEnv(`${s}-c`, s);
    const ok = await chain(lab.node('s1n1').ns, list, 'ADD', env, { runtimeConfig: { ips: [`${want}/24`] } });
    expect(ok.failed).toBeUndefined();
    expect(ok.result.ips[0].address).toBe(`${want}/24`);
    expect((await lab.ping(s, ok.result.ips[0].gateway, { count: 1 })).received).toBe(1);
    expect(
      (await chain(lab.node('s1n1').ns, list, 'DEL', env, { cached: ok.result })).failed,
    ).toBeUndefined();

    // An address of another site's block: refused, nothing allocated, nothing left.
    const outside = `${octets.slice(0, 3).join('.')}.${((octets[3] ?? 0) + 2 ** (32 - Number(prefix)) + 3) % 256}`;
    const bad = await chain(lab.node('s1n1').ns, list, 'ADD', env, { runtimeConfig: { ips: [outside] } });
    expect(bad.failed?.json).toMatchObject({ code: 7, msg: expect.stringContaining(outside) });
    expect((await endpoints('s1n1')).find((e) => e.containerId === `${s}-c`)).toBeUndefined();
    expect(await linkIndex(s, 'eth0')).toBeUndefined();
  }, 120_000);

  it('an unknown network is code 7 (a configuration error), not 11', async () => {
    const u = wl('u');
    await addNs(u);
    const list: Conflist = { ...conflist, plugins: [tetherEntry('s1n1', 'no-such-net')] };
    const r = await chain(lab.node('s1n1').ns, list, 'ADD', attachEnv(`${u}-c`, u));
    expect(r.failed?.json).toMatchObject({ code: 7, msg: expect.stringContaining('no-such-net') });
  }, 60_000);

  it('ADD run in the wrong namespace fails and rolls back instead of answering an unwired address', async () => {
    const w = wl('w');
    const wrong = wl('x');
    await addNs(w);
    await addNs(wrong);
    const list: Conflist = { ...conflist, plugins: [tetherEntry('s1n1', 'blue')] };
    const env = attachEnv(`${w}-c`, w);
    const r = await chain(wrong, list, 'ADD', env);
    expect(r.failed?.json).toMatchObject({ code: 101, msg: expect.stringContaining('not wired') });
    expect((await endpoints('s1n1')).find((e) => e.containerId === `${w}-c`)).toBeUndefined();
    const left = JSON.parse((await lab.sh('ip', ['-n', wrong, '-j', 'link', 'show'])).stdout) as {
      ifname: string;
    }[];
    expect(left.map((l) => l.ifname)).toEqual(['lo']);
    expect(await linkIndex(w, 'eth0')).toBeUndefined();
  }, 60_000);

  it('an endpoint whose namespace is gone without a DEL (podman 4 does not retry DEL) is released by the node', async () => {
    const g = wl('g');
    await addNs(g);
    const list: Conflist = { ...conflist, plugins: [tetherEntry('s1n1', 'blue')] };
    const added = await chain(lab.node('s1n1').ns, list, 'ADD', attachEnv(`${g}-c`, g));
    expect(added.failed).toBeUndefined();
    const host = added.result.interfaces[0].name;
    expect((await endpoints('s1n1')).some((e) => e.containerId === `${g}-c`)).toBe(true);
    await lab.sh('ip', ['netns', 'del', g]);
    mine.splice(mine.indexOf(g), 1);
    await waitFor(
      'the node to release the endpoint of a deleted namespace',
      async () => !(await endpoints('s1n1')).some((e) => e.containerId === `${g}-c`),
      40_000,
      250,
    );
    await waitFor(
      'its host end to go',
      async () => (await linkIndex(lab.vnNs('s1n1', 'blue'), host)) === undefined,
      20_000,
      250,
    );
  }, 90_000);

  it('a host port on the node reaches the workload through local breakout, and stops with DEL', async () => {
    const pns = wl('p');
    await addNs(pns);
    const n1 = lab.node('s1n1');
    const hostPort = 18000 + (Number.parseInt(run, 16) % 1000);
    const list: Conflist = {
      cniVersion: '1.0.0',
      name: `${name}-red`,
      plugins: [tetherEntry('s1n1', 'red', { capabilities: { portMappings: true } })],
    };
    const env = attachEnv(`${pns}-c`, pns);
    const portMappings = [{ hostPort, containerPort: 8080, protocol: 'tcp', hostIP: '' }];
    const added = await chain(n1.ns, list, 'ADD', env, { runtimeConfig: { portMappings } });
    expect(added.failed).toBeUndefined();
    const server = spawn(
      'ip',
      ['netns', 'exec', pns, 'socat', 'TCP-LISTEN:8080,reuseaddr,fork', `SYSTEM:echo hello-${run}`],
      {
        stdio: 'ignore',
      },
    );
    try {
      // From the site router (outside the node): the node's address and the host port.
      const siteNs = `${name}-s1`;
      const get = async () =>
        (
          await lab.exec(siteNs, 'socat', ['-T', '2', '-', `TCP:${n1.ip}:${hostPort},connect-timeout=2`], {
            input: '',
            allowFailure: true,
          })
        ).stdout.trim();
      await waitFor(
        'the workload to answer on the host port',
        async () => (await get()) === `hello-${run}`,
        30_000,
        250,
      );

      // The same host port for a second workload is refused; a network without breakout too.
      const q = wl('q');
      await addNs(q);
      const taken = await chain(n1.ns, list, 'ADD', attachEnv(`${q}-c`, q), {
        runtimeConfig: { portMappings },
      });
      expect(taken.failed?.json).toMatchObject({ code: 7, msg: expect.stringContaining(String(hostPort)) });
      const blue: Conflist = {
        ...list,
        plugins: [tetherEntry('s1n1', 'blue', { capabilities: { portMappings: true } })],
      };
      const noBreakout = await chain(n1.ns, blue, 'ADD', attachEnv(`${q}-c`, q), {
        runtimeConfig: { portMappings: [{ hostPort: hostPort + 1, containerPort: 80, protocol: 'tcp' }] },
      });
      expect(noBreakout.failed?.json).toMatchObject({
        code: 7,
        msg: expect.stringContaining('local breakout'),
      });
      // The node's own ports (the VXLAN overlay above all) are never given to a workload.
      for (const [port, protocol] of [
        [4789, 'udp'],
        [22, 'tcp'],
        [179, 'tcp'],
      ] as const) {
        const own = await chain(n1.ns, list, 'ADD', attachEnv(`${q}-c`, q), {
          runtimeConfig: { portMappings: [{ hostPort: port, containerPort: 80, protocol }] },
        });
        expect(own.failed?.json, `${port}/${protocol}`).toMatchObject({
          code: 7,
          msg: expect.stringContaining("the node's own"),
        });
      }

      expect((await chain(n1.ns, list, 'DEL', env, { cached: added.result })).failed).toBeUndefined();
      // DEL returned: the mapping is gone with the interface.
      expect(await get()).toBe('');
    } finally {
      server.kill('SIGTERM');
    }
  }, 120_000);
});
