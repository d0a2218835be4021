/**
 * CNI conformance: drives bin/tether-cni the way a runtime (libcni) does — exec from CNI_PATH
 * with CNI_* in the environment and the network config on stdin — against a real CniServer
 * + FileIpam in this process and the real kernel. Root only: it creates network namespaces
 * and veth pairs, every one named with this run's unique prefix and removed by name.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostIfnameFor } from '../../../src/cni/result.js';
import type { CniResult } from '../../../src/cni/spec.js';
import { FileIpam } from '../../../src/node/cni/file-ipam.js';
import { CniServer } from '../../../src/node/cni/server.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn('skipping CNI conformance test: needs root (network namespaces, veth)');

const repo = resolve(import.meta.dirname, '../../..');
const run = randomBytes(3).toString('hex');
const NS1 = `tcni-${run}-a`;
const NS2 = `tcni-${run}-b`;
const cid = (n: string): string => `tcni-${run}-${n}`;

let dir: string;
let cniPath: string;
let sock: string;
let stateFile: string;
let server: CniServer;
let ipam: FileIpam;
let sleeper: ChildProcess | undefined;
/** Every (containerId, ifname) a test used, so afterAll removes leftover host ends by name. */
const used: [string, string][] = [];

const BLOCK = { cidr: '10.231.7.64/26', gateway: '10.231.7.1', prefixLength: 24, mtu: 1400 };

interface Invocation {
  code: number;
  stdout: string;
  // biome-ignore lint/suspicious/noExplicitAny: parsed CNI JSON, asserted field by field
  json: any;
}

/** Execs a plugin from CNI_PATH by `type`, exactly as libcni does. */
function invoke(type: string, env: Record<string, string | undefined>, stdin: string): Promise<Invocation> {
  return new Promise((resolveP, reject) => {
    const child = spawn(join(cniPath, type), [], {
      env: { PATH: process.env.PATH, CNI_PATH: cniPath, ...env } as NodeJS.ProcessEnv,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      const stdout = Buffer.concat(out).toString('utf8');
      let json: unknown;
      try {
        json = stdout.trim() ? JSON.parse(stdout) : undefined;
      } catch {
        reject(
          new Error(`plugin ${type} printed non-JSON: ${stdout} ${Buffer.concat(err).toString('utf8')}`),
        );
        return;
      }
      resolveP({ code: code ?? -1, stdout, json });
    });
    child.stdin.end(stdin);
  });
}

function netConf(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    cniVersion: '1.0.0',
    name: 'pods',
    type: 'tether-cni',
    network: 'blue',
    agentSocket: sock,
    ...extra,
  };
}

function attachEnv(command: string, containerId: string, netns: string, ifname = 'eth0') {
  used.push([containerId, ifname]);
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: containerId,
    CNI_NETNS: netns,
    CNI_IFNAME: ifname,
    CNI_ARGS: '',
  };
}

function tether(
  command: string,
  containerId: string,
  netns: string,
  conf = netConf(),
  ifname = 'eth0',
): Promise<Invocation> {
  return invoke('tether-cni', attachEnv(command, containerId, netns, ifname), JSON.stringify(conf));
}

/** libcni's chain semantics for a conflist: ADD in order feeding prevResult; CHECK and DEL with the cached result. */
async function runChain(
  conflist: { cniVersion: string; name: string; plugins: Record<string, unknown>[] },
  command: 'ADD' | 'CHECK' | 'DEL',
  env: Record<string, string>,
  cached?: CniResult,
): Promise<{ result?: CniResult; failed?: Invocation }> {
  const plugins = command === 'DEL' ? [...conflist.plugins].reverse() : conflist.plugins;
  let prev: CniResult | undefined = cached;
  for (const p of plugins) {
    const conf: Record<string, unknown> = { ...p, cniVersion: conflist.cniVersion, name: conflist.name };
    if (prev) conf.prevResult = prev;
    const inv = await invoke(String(p.type), { ...env, CNI_COMMAND: command }, JSON.stringify(conf));
    if (inv.code !== 0) return { failed: inv };
    if (command === 'ADD') prev = inv.json as CniResult;
  }
  return prev ? { result: prev } : {};
}

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8' });
}

// biome-ignore lint/suspicious/noExplicitAny: iproute2 JSON
function ipJson(args: string[]): any[] {
  return JSON.parse(ip(['-j', ...args]));
}

function hostLinkExists(name: string): boolean {
  try {
    execFileSync('ip', ['link', 'show', 'dev', name], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(!isRoot)('tether-cni conformance (real kernel)', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tether-cni-conf-'));
    cniPath = join(dir, 'bin');
    mkdirSync(cniPath);
    symlinkSync(join(repo, 'bin', 'tether-cni'), join(cniPath, 'tether-cni'));
    symlinkSync(
      join(repo, 'test/integration/cni/fixtures/tether-annotate'),
      join(cniPath, 'tether-annotate'),
    );
    sock = join(dir, 'run', 'cni.sock');
    stateFile = join(dir, 'state', 'endpoints.json');
    ipam = new FileIpam({ file: stateFile, blockFor: (n) => (n === 'blue' ? BLOCK : undefined) });
    server = new CniServer({ socketPath: sock, registry: ipam });
    await server.start();
    ip(['netns', 'add', NS1]);
    ip(['netns', 'add', NS2]);
  });

  afterAll(async () => {
    await server?.close();
    if (sleeper?.pid) process.kill(sleeper.pid, 'SIGKILL');
    for (const [c, ifname] of used) {
      const h = hostIfnameFor(c, ifname);
      if (hostLinkExists(h)) ip(['link', 'del', h]);
    }
    for (const ns of [NS1, NS2]) {
      try {
        ip(['netns', 'del', ns]);
      } catch {
        /* already gone */
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('VERSION reports the supported versions', async () => {
    const v = await invoke('tether-cni', { CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}');
    expect(v.code).toBe(0);
    expect(v.json.cniVersion).toBe('1.0.0');
    expect(v.json.supportedVersions).toEqual(expect.arrayContaining(['0.4.0', '1.0.0', '1.1.0']));
  });

  it('ADD into /var/run/netns/NAME, CHECK, DEL twice', async () => {
    const c = cid('p1');
    const netns = `/var/run/netns/${NS1}`;
    const add = await tether('ADD', c, netns);
    expect(add.code, add.stdout).toBe(0);
    const r = add.json as CniResult;
    const host = hostIfnameFor(c, 'eth0');
    expect(r.cniVersion).toBe('1.0.0');
    expect(r.interfaces).toEqual([
      expect.objectContaining({ name: host }),
      expect.objectContaining({ name: 'eth0', sandbox: netns }),
    ]);
    expect(r.ips).toEqual([{ address: '10.231.7.64/24', gateway: '10.231.7.1', interface: 1 }]);
    expect(r.routes).toEqual([{ dst: '0.0.0.0/0', gw: '10.231.7.1' }]);

    // Inside the namespace: the interface, its MAC, MTU, address and default route.
    const [link] = ipJson(['-n', NS1, 'addr', 'show', 'dev', 'eth0']);
    expect(link.mtu).toBe(1400);
    expect(link.flags).toContain('UP');
    expect(link.address).toBe(r.interfaces?.[1]?.mac);
    expect(link.addr_info).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ family: 'inet', local: '10.231.7.64', prefixlen: 24 }),
      ]),
    );
    expect(ipJson(['-n', NS1, 'route', 'show', 'default'])).toEqual([
      expect.objectContaining({ dst: 'default', gateway: '10.231.7.1', dev: 'eth0' }),
    ]);
    // The host end stays in the node's namespace, up, same MTU, for the vRouter to attach.
    const [h] = ipJson(['-d', 'link', 'show', 'dev', host]);
    expect(h.mtu).toBe(1400);
    expect(h.flags).toContain('UP');
    expect(h.linkinfo.info_kind).toBe('veth');
    // The agent recorded the endpoint as attached, persisted.
    expect(ipam.get({ containerId: c, ifname: 'eth0' })).toMatchObject({
      state: 'attached',
      hostIfname: host,
    });

    // A repeated ADD (runtime retry) gets the same address.
    const again = await tether('ADD', c, netns);
    expect(again.code, again.stdout).toBe(0);
    expect(again.json.ips[0].address).toBe('10.231.7.64/24');

    // CHECK with the prevResult passes; after the address is removed it fails.
    const check = await tether('CHECK', c, netns, netConf({ prevResult: r }));
    expect(check.code, check.stdout).toBe(0);
    ip(['-n', NS1, 'addr', 'del', '10.231.7.64/24', 'dev', 'eth0']);
    const bad = await tether('CHECK', c, netns, netConf({ prevResult: r }));
    expect(bad.code).not.toBe(0);
    expect(bad.json).toMatchObject({ cniVersion: '1.0.0', code: 103 });
    expect(bad.json.msg).toContain('10.231.7.64/24');

    // DEL removes everything; a second DEL (already gone) succeeds too.
    const del1 = await tether('DEL', c, netns, netConf({ prevResult: r }));
    expect(del1.code, del1.stdout).toBe(0);
    expect(del1.stdout).toBe('');
    expect(hostLinkExists(host)).toBe(false);
    expect(ipJson(['-n', NS1, 'link', 'show']).map((l) => l.ifname)).toEqual(['lo']);
    expect(ipam.get({ containerId: c, ifname: 'eth0' })).toBeUndefined();
    const del2 = await tether('DEL', c, netns);
    expect(del2.code, del2.stdout).toBe(0);
    // and with the namespace gone as well (CNI_NETNS empty)
    const del3 = await invoke(
      'tether-cni',
      { ...attachEnv('DEL', c, ''), CNI_NETNS: '' },
      JSON.stringify(netConf()),
    );
    expect(del3.code, del3.stdout).toBe(0);
  });

  it('ADD into a /proc/PID/ns/net namespace (no name)', async () => {
    sleeper = spawn('unshare', ['--net', 'sleep', '120'], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 300));
    const netns = `/proc/${sleeper.pid}/ns/net`;
    const c = cid('p2');
    const add = await tether('ADD', c, netns, netConf({ cniVersion: '0.4.0' }));
    expect(add.code, add.stdout).toBe(0);
    expect(add.json.cniVersion).toBe('0.4.0');
    expect(add.json.ips[0]).toMatchObject({ version: '4', interface: 1 });
    const inside = JSON.parse(
      execFileSync('nsenter', [`--net=${netns}`, 'ip', '-j', 'addr', 'show', 'dev', 'eth0'], {
        encoding: 'utf8',
      }),
    );
    expect(inside[0].addr_info[0].local).toBe(add.json.ips[0].address.split('/')[0]);
    const check = await tether('CHECK', c, netns, netConf({ cniVersion: '0.4.0', prevResult: add.json }));
    expect(check.code, check.stdout).toBe(0);
    const del = await tether('DEL', c, netns, netConf({ cniVersion: '0.4.0' }));
    expect(del.code, del.stdout).toBe(0);
    expect(hostLinkExists(hostIfnameFor(c, 'eth0'))).toBe(false);
  });

  it('a chained plugin consumes and extends the prevResult (libcni conflist semantics)', async () => {
    const conflist = {
      cniVersion: '1.0.0',
      name: 'pods',
      plugins: [
        { type: 'tether-cni', network: 'blue', agentSocket: sock },
        { type: 'tether-annotate', nameserver: '10.231.7.53' },
      ],
    };
    const c = cid('p3');
    const env = attachEnv('ADD', c, `/var/run/netns/${NS2}`, 'net1');
    const add = await runChain(conflist, 'ADD', env);
    expect(add.failed?.stdout).toBeUndefined();
    const r = add.result!;
    expect(r).toMatchObject({
      cniVersion: '1.0.0',
      annotatedBy: 'tether-annotate',
      dns: { nameservers: ['10.231.7.53'], search: ['tether.test'] },
      ips: [{ gateway: '10.231.7.1', interface: 1 }],
    });
    expect(r.interfaces?.[1]).toMatchObject({ name: 'net1', sandbox: `/var/run/netns/${NS2}` });
    // The cached final result drives CHECK through the whole chain, and DEL in reverse order.
    expect((await runChain(conflist, 'CHECK', env, r)).failed).toBeUndefined();
    expect((await runChain(conflist, 'DEL', env, r)).failed).toBeUndefined();
    expect(hostLinkExists(hostIfnameFor(c, 'net1'))).toBe(false);

    // The chained plugin alone (no prevResult) refuses, as real chained plugins do.
    const alone = await invoke('tether-annotate', env, JSON.stringify({ cniVersion: '1.0.0', name: 'pods' }));
    expect(alone.json).toMatchObject({ code: 7 });
  });

  it('concurrent ADDs (a runtime starting many pods) get distinct addresses; GC and STATUS (1.1.0)', async () => {
    const netns = `/var/run/netns/${NS2}`;
    const ids = Array.from({ length: 6 }, (_, i) => cid(`par${i}`));
    // One namespace stands in for six pods: each attachment gets its own interface name.
    const ifn = (i: number): string => `net${i}`;
    const adds = await Promise.all(
      ids.map((c, i) => tether('ADD', c, netns, netConf({ cniVersion: '1.1.0' }), ifn(i))),
    );
    for (const a of adds) expect(a.code, a.stdout).toBe(0);
    const addrs = adds.map((a) => a.json.ips[0].address as string);
    expect(new Set(addrs).size).toBe(ids.length);
    for (const a of addrs) expect(a).toMatch(/^10\.231\.7\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\/24$/);

    const conf11 = netConf({ cniVersion: '1.1.0' });
    const st = await invoke('tether-cni', { CNI_COMMAND: 'STATUS' }, JSON.stringify(conf11));
    expect(st.code, st.stdout).toBe(0);
    // GC: the runtime still knows only the first two; the rest are released and their host ends deleted.
    const valid = ids.slice(0, 2).map((c, i) => ({ containerID: c, ifname: ifn(i) }));
    const gc = await invoke(
      'tether-cni',
      { CNI_COMMAND: 'GC' },
      JSON.stringify({ ...conf11, 'cni.dev/valid-attachments': valid }),
    );
    expect(gc.code, gc.stdout).toBe(0);
    expect(ids.map((c, i) => hostLinkExists(hostIfnameFor(c, ifn(i))))).toEqual([
      true,
      true,
      false,
      false,
      false,
      false,
    ]);
    expect(
      ipam
        .list()
        .filter((e) => ids.includes(e.containerId))
        .map((e) => e.containerId)
        .sort(),
    ).toEqual(ids.slice(0, 2).sort());
    for (const [i, c] of ids.slice(0, 2).entries())
      expect((await tether('DEL', c, netns, netConf(), ifn(i))).code).toBe(0);
    expect(ipJson(['-n', NS2, 'link', 'show']).map((l) => l.ifname)).toEqual(['lo']);

    const down = await invoke(
      'tether-cni',
      { CNI_COMMAND: 'STATUS' },
      JSON.stringify({ ...conf11, agentSocket: join(dir, 'run', 'nobody.sock') }),
    );
    expect(down.json).toMatchObject({ code: 50 });
  });

  describe('bad input gets the spec error codes', () => {
    const netns = (): string => `/var/run/netns/${NS1}`;
    const cases: [string, number, () => string, Record<string, string | undefined>][] = [
      ['missing cniVersion', 7, () => JSON.stringify(netConf({ cniVersion: undefined })), {}],
      ['missing network', 7, () => JSON.stringify(netConf({ network: undefined })), {}],
      ['unknown cniVersion', 1, () => JSON.stringify(netConf({ cniVersion: '9.9.9' })), {}],
      ['missing CNI_CONTAINERID', 4, () => JSON.stringify(netConf()), { CNI_CONTAINERID: undefined }],
      ['malformed JSON', 6, () => '{"cniVersion": "1.0.0", "name": ', {}],
      [
        'namespace does not exist',
        3,
        () => JSON.stringify(netConf()),
        { CNI_NETNS: '/var/run/netns/tcni-none' },
      ],
      ['agent down', 11, () => JSON.stringify(netConf({ agentSocket: join(dir, 'run', 'nobody.sock') })), {}],
    ];
    it.each(cases)('%s → code %i', async (_name, code, stdin, envPatch) => {
      const env = { ...attachEnv('ADD', cid('bad'), netns()), ...envPatch };
      const inv = await invoke('tether-cni', env, stdin());
      expect(inv.code).not.toBe(0);
      expect(inv.json).toMatchObject({ code });
      expect(typeof inv.json.msg).toBe('string');
      expect(typeof inv.json.cniVersion).toBe('string');
      // nothing was allocated or created
      expect(ipam.get({ containerId: cid('bad'), ifname: 'eth0' })).toBeUndefined();
      expect(hostLinkExists(hostIfnameFor(cid('bad'), 'eth0'))).toBe(false);
    });
  });

  it('allocations survive an agent restart (new FileIpam on the same file)', async () => {
    const c = cid('p4');
    const netns = `/var/run/netns/${NS1}`;
    const add = await tether('ADD', c, netns);
    expect(add.code, add.stdout).toBe(0);
    await server.close();
    const down = await tether('ADD', cid('p5'), netns);
    expect(down.json).toMatchObject({ code: 11 });
    ipam = new FileIpam({ file: stateFile, blockFor: (n) => (n === 'blue' ? BLOCK : undefined) });
    server = new CniServer({ socketPath: sock, registry: ipam });
    await server.start();
    const again = await tether('ADD', c, netns);
    expect(again.json.ips[0].address).toBe(add.json.ips[0].address);
    expect((await tether('DEL', c, netns)).code).toBe(0);
  });
});
