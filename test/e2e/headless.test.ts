// Issue 8, "What it must show": a site that keeps working, changing, rebooting and recovering
// while its WAN is down, on the lab (2 sites × 2 nodes, the real kernel). Each test cuts the
// WAN itself and restores it in `finally`. The measured numbers are printed on stderr as
// `[headless] …` lines.
//
// Which parts need the site proxy (src/node/proxy/, issue 8 §2) to pass: the new workload
// reached during the cut (site-local reflection), the proxy takeover (the proxy role in the
// node's control API). The rest exercise headless forwarding that exists already.
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  allNodes,
  defaultLabStateDir,
  Lab,
  type LabWorkload,
  listNetns,
  processAlive,
  vnNamespaceRe,
} from '../../src/lab/index.js';
import { controlSocketPath, type NodeLiveStatus, readLiveStatus } from '../../src/node/control-api.js';
import { waitFor } from '../integration/support/proc.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn('test/e2e/headless.test.ts: skipped (needs root for network namespaces)');

const name = `h${randomBytes(2).toString('hex')}`;
const stateDir = defaultLabStateDir(name);
let lab: Lab;

const report = (m: string) => process.stderr.write(`[headless] ${m}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const nodesOf = (site: string) =>
  allNodes(lab.plan)
    .filter((n) => n.site === site)
    .map((n) => n.name);
const sessionPhase = (node: string) => lab.nodeStatusFile(node)?.session.phase;

const siteOf = (node: string) => lab.node(node).site;

/**
 * The WAN session of a site, as the site itself sees it: the phase its active proxy reports
 * on its control API. With the proxy, agents stay connected to it during a cut (that is the
 * point); only the proxy's WAN session goes down. `undefined` when no node is active.
 */
async function siteWanPhase(site: string): Promise<string | undefined> {
  for (const n of nodesOf(site)) {
    const p = lab.nodeProcess(n);
    if (!p || !processAlive(p)) continue;
    const s = await live(n);
    if (s?.proxy.role === 'active') return s.proxy.wan?.phase ?? 'disconnected';
  }
  return undefined;
}

async function waitHeadless(nodes: string[]): Promise<void> {
  const sites = [...new Set(nodes.map(siteOf))];
  await waitFor(
    'the sites to notice the WAN is gone',
    async () => {
      for (const site of sites) if ((await siteWanPhase(site)) === 'connected') return false;
      return true;
    },
    30_000,
    100,
  );
}

async function waitConnected(nodes: string[], timeoutMs = 90_000): Promise<void> {
  const sites = [...new Set(nodes.map(siteOf))];
  await waitFor(
    "the nodes and their sites' WAN sessions to reconnect",
    async () => {
      if (!nodes.every((n) => sessionPhase(n) === 'connected')) return false;
      for (const site of sites) if ((await siteWanPhase(site)) !== 'connected') return false;
      return true;
    },
    timeoutMs,
    200,
  );
}

async function live(node: string): Promise<NodeLiveStatus | undefined> {
  return readLiveStatus(controlSocketPath(lab.node(node).stateDir), 1000).catch(() => undefined);
}

/** The node of `site` whose control API says it runs the site's proxy. */
async function activeProxy(site: string, timeoutMs = 30_000): Promise<string> {
  return waitFor(
    `a node of ${site} to report the proxy role`,
    async () => {
      for (const n of nodesOf(site)) {
        const p = lab.nodeProcess(n);
        if (!p || !processAlive(p)) continue;
        if ((await live(n))?.proxy.role === 'active') return n;
      }
      return undefined;
    },
    timeoutMs,
    50,
  );
}

/** Milliseconds until `ns` gets an answer from `ip` (single pings with a short wait). */
async function timeToReach(ns: string, ip: string, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  await waitFor(
    `${ns} to reach ${ip}`,
    async () => (await lab.ping(ns, ip, { count: 1, waitS: 0.2 })).ok,
    timeoutMs,
    10,
  );
  return performance.now() - t0;
}

/** `ping -i 0.01 -c N -q` inside a workload: transmitted, received (lost = the difference). */
async function fastPing(ns: string, ip: string, count: number) {
  return lab.ping(ns, ip, { count, intervalS: 0.01, waitS: 1 });
}

function kill9(node: string): void {
  const p = lab.nodeProcess(node);
  if (!p || !processAlive(p)) throw new Error(`node ${node} is not running`);
  process.kill(p.pid, 'SIGKILL');
}

async function waitDead(node: string): Promise<void> {
  const p = lab.nodeProcess(node);
  if (p) await waitFor(`${node} to die`, () => !processAlive(p), 10_000, 20);
}

async function vnNamespacesOf(node: string): Promise<string[]> {
  const re = vnNamespaceRe(lab.node(node).netnsPrefix);
  return (await listNetns()).filter((n) => re.test(n));
}

/**
 * What a reboot takes away from a node, of what Tether owns in the kernel: the VXLAN devices
 * (their forwarding entries go with them), the breakout links, every Tether nft table in the
 * node's and its networks' namespaces, and the permanent neighbour entries. The workloads'
 * own interfaces belong to the runtime, which re-creates them itself after a real reboot.
 */
async function flushTetherKernelState(node: string): Promise<void> {
  const n = lab.node(node);
  const nsList = [n.ns, ...(await vnNamespacesOf(node))];
  for (const ns of nsList) {
    const links = JSON.parse((await lab.sh('ip', ['-n', ns, '-j', 'link', 'show'])).stdout) as Array<{
      ifname: string;
    }>;
    for (const l of links.filter((x) => /^(tvx|tbo)\d+$/.test(x.ifname))) {
      await lab.sh('ip', ['-n', ns, 'link', 'del', l.ifname], { allowFailure: true });
    }
    await lab.sh('ip', ['-n', ns, 'neigh', 'flush', 'nud', 'permanent'], { allowFailure: true });
    const tables = JSON.parse((await lab.exec(ns, 'nft', ['-j', 'list', 'tables'])).stdout) as {
      nftables: Array<{ table?: { family: string; name: string } }>;
    };
    for (const t of tables.nftables.flatMap((x) => (x.table?.name.startsWith('tether') ? [x.table] : []))) {
      await lab.exec(ns, 'nft', ['delete', 'table', t.family, t.name], { allowFailure: true });
    }
  }
}

/** Forwarding entries the vRouter programs in one network namespace (FDB with a VTEP, permanent neighbours, routes). */
async function forwardingEntries(ns: string): Promise<string[]> {
  const fdb = JSON.parse((await lab.sh('bridge', ['-n', ns, '-j', 'fdb', 'show'])).stdout) as Array<{
    mac: string;
    ifname?: string;
    dst?: string;
  }>;
  const neigh = JSON.parse(
    (await lab.sh('ip', ['-n', ns, '-j', 'neigh', 'show', 'nud', 'permanent'])).stdout,
  ) as Array<{
    dst: string;
    lladdr?: string;
    dev: string;
  }>;
  const routes = JSON.parse((await lab.sh('ip', ['-n', ns, '-j', 'route', 'show'])).stdout) as Array<{
    dst: string;
    dev?: string;
    gateway?: string;
  }>;
  return [
    ...fdb.filter((e) => e.dst).map((e) => `fdb ${e.mac} ${e.ifname ?? ''} ${e.dst}`),
    ...neigh.map((e) => `neigh ${e.dst} ${e.lladdr ?? ''} ${e.dev}`),
    ...routes.map((r) => `route ${r.dst} ${r.gateway ?? ''} ${r.dev ?? ''}`),
  ].sort();
}

interface ControllerEndpoint {
  metadata: { name: string };
  spec: { network: string; node: string; mac: string; ip: string; vtep: string };
}

async function controllerEndpoints(): Promise<ControllerEndpoint[]> {
  const r = await lab.admin(['get', 'endpoints', '-o', 'json']);
  return (JSON.parse(r.stdout) as { items: ControllerEndpoint[] }).items;
}

/** Why a node's `network` forwarding differs from the controller's endpoints (undefined: it matches). */
async function differsFromController(network: 'red' | 'blue'): Promise<string | undefined> {
  const eps = (await controllerEndpoints()).filter((e) => e.spec.network === network);
  for (const n of allNodes(lab.plan)) {
    const want = new Map(eps.filter((e) => e.spec.node !== n.name).map((e) => [e.spec.mac, e.spec.vtep]));
    const have = await lab.vxlanFdb(lab.vnNs(n.name, network), lab.vni(network));
    for (const [mac, vtep] of want) if (have.get(mac) !== vtep) return `${n.name}: ${mac} → ${vtep} missing`;
    for (const mac of have.keys()) if (!want.has(mac)) return `${n.name}: stale ${mac}`;
  }
  return undefined;
}

function procFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** What a process's fds point at, counted by kind ("socket", "pipe", a file path), to name what grew. */
function procFdKinds(pid: number): Map<string, number> {
  const kinds = new Map<string, number>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target = 'gone';
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`).replace(/:\[\d+\]$/, '');
    } catch {
      // closed between readdir and readlink
    }
    kinds.set(target, (kinds.get(target) ?? 0) + 1);
  }
  return kinds;
}

function fdGrowth(before: Map<string, number>, after: Map<string, number>): string {
  const grew: string[] = [];
  for (const [k, n] of after) if (n > (before.get(k) ?? 0)) grew.push(`${k} ${before.get(k) ?? 0}→${n}`);
  return grew.join(', ') || 'nothing by kind';
}

function procRssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

describe.skipIf(!isRoot)('headless site (issue 8): 2 sites × 2 nodes', () => {
  beforeAll(async () => {
    // Three workloads per node: w1 red, w2 blue, w3 red. Site 1's w3s are detached again so
    // the tests can attach them as *new* workloads during a cut.
    lab = await Lab.up(
      { name, sites: 2, nodesPerSite: 2, workloadsPerNode: 3, stateDir },
      { progress: (m) => process.stderr.write(`[lab ${name}] ${m}\n`), timeoutMs: 240_000 },
    );
    await lab.cniDel('s1n1w3');
    await lab.cniDel('s1n2w3');
    await lab.waitConverged(120_000);
    await waitConnected(allNodes(lab.plan).map((n) => n.name));
  }, 400_000);

  afterAll(async () => {
    const l = lab ?? (existsSync(stateDir) ? Lab.open(stateDir) : undefined);
    await l?.wanRestore().catch(() => {});
    await l?.down();
    const left = (await listNetns()).filter((ns) => ns.startsWith(`${name}-`) || ns.startsWith(`${name}_`));
    expect(left).toEqual([]);
  }, 90_000);

  it('a 60-second WAN cut loses no packet of a 10 ms ping within the site and to the site router', async () => {
    const a = lab.workload('s1n1w1');
    const b = lab.workload('s1n2w1');
    expect([a.network, b.network, a.node !== b.node]).toEqual(['red', 'red', true]);
    const router = lab.site('s1').routerIp;
    await lab.wanCut();
    try {
      await waitHeadless(allNodes(lab.plan).map((n) => n.name));
      const t0 = performance.now();
      const [within, toRouter] = await Promise.all([
        fastPing(a.ns, b.ip, 6000),
        fastPing(b.ns, router, 6000),
      ]);
      const secs = (performance.now() - t0) / 1000;
      report(
        `60 s cut: ${a.name}→${b.name} ${within.received}/${within.transmitted}, ${b.name}→router ${toRouter.received}/${toRouter.transmitted} (${secs.toFixed(1)} s of pinging, WAN cut throughout)`,
      );
      expect(within.transmitted).toBe(6000);
      expect(within.received).toBe(6000);
      expect(toRouter.transmitted).toBe(6000);
      expect(toRouter.received).toBe(6000);
      expect(await lab.wanIsCut()).toBe(true);
    } finally {
      await lab.wanRestore();
    }
    await waitConnected(allNodes(lab.plan).map((n) => n.name));
  }, 180_000);

  it("during the cut a new workload reaches the other node's workload at once; after restore site 2 reaches it", async () => {
    const existing = lab.workload('s1n1w1');
    await lab.wanCut();
    let added: LabWorkload | undefined;
    try {
      await waitHeadless(allNodes(lab.plan).map((n) => n.name));
      const t0 = performance.now();
      added = await lab.cniAdd('s1n2w3', 30_000);
      const addMs = performance.now() - t0;
      // Both directions: the new one reaches the existing one, and the existing one's node
      // has learned the new endpoint (its answer needs it).
      const reachMs = await timeToReach(added.ns, existing.ip, 30_000);
      const backMs = await timeToReach(existing.ns, added.ip, 30_000);
      report(
        `new workload during the cut: CNI ADD ${addMs.toFixed(0)} ms, then reaches ${existing.name} after ${reachMs.toFixed(0)} ms (reverse ${backMs.toFixed(0)} ms)`,
      );
      expect((await lab.ping(added.ns, existing.ip, { count: 20, intervalS: 0.01 })).received).toBe(20);
    } finally {
      await lab.wanRestore();
    }
    await waitConnected(allNodes(lab.plan).map((n) => n.name));
    if (!added) throw new Error('the new workload was not attached');
    const remote = lab.workload('s2n1w1');
    const learnMs = await timeToReach(remote.ns, added.ip, 60_000);
    report(
      `after restore: site 2 (${remote.name}) reaches the new workload ${learnMs.toFixed(0)} ms after reconnecting`,
    );
    expect((await lab.ping(remote.ns, added.ip, { count: 5, intervalS: 0.05 })).received).toBe(5);
  }, 240_000);

  it("during the cut, kill -9 of the proxy's node daemon: the other node takes over and the site keeps converging", async () => {
    const site = 's1';
    const proxyNode = await activeProxy(site);
    const other = nodesOf(site).find((n) => n !== proxyNode) as string;
    await lab.wanCut();
    try {
      await waitHeadless(allNodes(lab.plan).map((n) => n.name));
      const t0 = performance.now();
      kill9(proxyNode);
      await waitDead(proxyNode);
      const taken = await activeProxy(site, 60_000);
      const takeoverMs = performance.now() - t0;
      report(
        `proxy takeover during the cut: ${proxyNode} killed, ${taken} active after ${takeoverMs.toFixed(0)} ms`,
      );
      expect(taken).toBe(other);
      // The killed node comes back (still headless) and follows the new proxy...
      await lab.startNode(proxyNode);
      await waitFor(
        `${proxyNode} to follow ${other}`,
        async () => {
          const s = await live(proxyNode);
          return s?.proxy.role === 'standby' && s.proxy.activeNode === other;
        },
        60_000,
        100,
      );
      // ...and a workload attached on it now is learned by the site through the new proxy.
      const w = `${proxyNode}w3`;
      if (lab.state.workloads.some((x) => x.name === w)) await lab.cniDel(w);
      const added = await lab.cniAdd(w, 30_000);
      const peer = lab.workload(`${other}w1`);
      const ms = await timeToReach(peer.ns, added.ip, 30_000);
      report(
        `site-local convergence after the takeover: ${peer.name} reaches new ${w} after ${ms.toFixed(0)} ms`,
      );
      expect((await lab.ping(added.ns, peer.ip, { count: 10, intervalS: 0.01 })).received).toBe(10);
    } finally {
      await lab.wanRestore();
      const p = lab.nodeProcess(proxyNode);
      if (!p || !processAlive(p)) await lab.startNode(proxyNode);
    }
    await waitConnected(allNodes(lab.plan).map((n) => n.name));
  }, 300_000);

  it('during the cut, a node killed with -9 and its Tether kernel state flushed forwards again from disk alone', async () => {
    const victim = 's1n2';
    const peer = lab.workload('s1n1w1');
    const local = lab.workload('s1n2w1');
    const ns = lab.vnNs(victim, 'red');
    const before = await forwardingEntries(ns);
    await lab.wanCut();
    try {
      await waitHeadless(allNodes(lab.plan).map((n) => n.name));
      kill9(victim);
      await waitDead(victim);
      await flushTetherKernelState(victim);
      expect((await lab.ping(local.ns, peer.ip, { count: 2, intervalS: 0.1, waitS: 0.5 })).received).toBe(0);
      const t0 = performance.now();
      await lab.startNode(victim);
      const startMs = performance.now() - t0;
      const there = await timeToReach(local.ns, peer.ip, 60_000);
      const back = await timeToReach(peer.ns, local.ip, 60_000);
      report(
        `offline reboot of ${victim}: daemon up (status written) after ${startMs.toFixed(0)} ms; forwarding back ${(startMs + there).toFixed(0)} ms after the restart (${there.toFixed(0)} ms after it was up; reverse ${back.toFixed(0)} ms later)`,
      );
      // Still headless: the site's WAN session is down (the victim may sync from its proxy).
      expect(await siteWanPhase('s1')).not.toBe('connected');
      expect(await forwardingEntries(ns)).toEqual(before);
      expect((await fastPing(local.ns, peer.ip, 100)).received).toBe(100);
    } finally {
      await lab.wanRestore();
    }
    await waitConnected(allNodes(lab.plan).map((n) => n.name));
  }, 240_000);

  it('a network deleted at the controller during the cut is gone from the site after restore; other networks untouched', async () => {
    const site1 = nodesOf('s1');
    // Start from a converged state: what the earlier tests changed has reached every site.
    await waitFor(
      'forwarding to equal the controller',
      async () => (await differsFromController('red')) === undefined,
      60_000,
      500,
    );
    const redBefore = new Map<string, string[]>();
    for (const n of allNodes(lab.plan))
      redBefore.set(n.name, await forwardingEntries(lab.vnNs(n.name, 'red')));
    const blueVni = lab.vni('blue');
    const blueBefore = await Promise.all(
      site1.map(async (n) => (await lab.vxlanFdb(lab.vnNs(n, 'blue'), blueVni)).size),
    );
    expect(blueBefore.every((c) => c > 0)).toBe(true);
    await lab.wanCut('s1');
    try {
      await waitHeadless(site1);
      await lab.delete('vn', 'blue');
      const vns = JSON.parse((await lab.admin(['get', 'vn', '-o', 'json'])).stdout) as {
        items: Array<{ metadata: { name: string } }>;
      };
      expect(vns.items.map((i) => i.metadata.name)).not.toContain('blue');
      // Headless, the site still has blue (nothing is removed on a guess).
      for (const n of site1)
        expect((await lab.vxlanFdb(lab.vnNs(n, 'blue'), blueVni)).size).toBeGreaterThan(0);
    } finally {
      await lab.wanRestore('s1');
    }
    await waitConnected(site1);
    await waitFor(
      'blue to be gone from site 1',
      async () => {
        for (const n of site1) {
          const nsName = lab.vnNs(n, 'blue');
          if ((await listNetns()).includes(nsName) && (await lab.vxlanFdb(nsName, blueVni)).size > 0)
            return false;
        }
        return true;
      },
      60_000,
      200,
    );
    const counts: string[] = [];
    for (const n of allNodes(lab.plan)) {
      const after = await forwardingEntries(lab.vnNs(n.name, 'red'));
      counts.push(`${n.name} ${redBefore.get(n.name)?.length}→${after.length}`);
      expect(after, `red forwarding on ${n.name}`).toEqual(redBefore.get(n.name));
    }
    report(
      `network delete during the cut: blue gone from site 1 (had ${blueBefore.join('+')} FDB entries); red entries before→after: ${counts.join(', ')}`,
    );
    // The lab's record follows the controller: blue's workloads no longer exist as endpoints.
    lab.state.workloads = lab.state.workloads.filter((w) => w.network !== 'blue');
    delete lab.state.networks.blue;
    lab.save();
  }, 240_000);

  it('100 WAN flaps of random length: daemons keep their fds and memory, and end equal to the controller', async () => {
    const nodes = allNodes(lab.plan).map((n) => n.name);
    const pids = () => nodes.map((n) => lab.nodeProcess(n)?.pid as number);
    const ctl = lab.state.processes.find((p) => p.role === 'controller')?.pid as number;
    const flap = async () => {
      await lab.wanCut();
      await sleep(50 + Math.floor(Math.random() * 950));
      await lab.wanRestore();
      await sleep(50 + Math.floor(Math.random() * 950));
    };
    // Warm up (first reconnects allocate buffers and caches once), then settle and measure.
    for (let i = 0; i < 5; i++) await flap();
    await waitConnected(nodes);
    const fds0 = pids().map(procFds);
    const kinds0 = pids().map(procFdKinds);
    const rss0 = pids().map(procRssKb);
    const ctlFds0 = procFds(ctl);
    const t0 = performance.now();
    for (let i = 0; i < 100; i++) await flap();
    await waitConnected(nodes, 120_000);
    await waitFor(
      'forwarding to equal the controller',
      async () => (await differsFromController('red')) === undefined,
      60_000,
      500,
    );
    // A socket replaced during the last flaps closes once its peer answers or its timer
    // fires (a TLS close, an HTTP keep-alive of 5 s); a leak never gives its fds back. So the
    // bound must hold once within a minute, not at one instant.
    const fdBound = (i: number) => (fds0[i] as number) + 8;
    await waitFor(
      'node fds to settle',
      async () => pids().every((p, i) => procFds(p) <= fdBound(i)) && procFds(ctl) <= ctlFds0 + 8,
      60_000,
      1000,
    ).catch(() => {});
    const fds1 = pids().map(procFds);
    const kinds1 = pids().map(procFdKinds);
    const rss1 = pids().map(procRssKb);
    const ctlFds1 = procFds(ctl);
    report(
      `100 flaps in ${((performance.now() - t0) / 1000).toFixed(0)} s: node fds ${fds0.join(',')} → ${fds1.join(',')}; node RSS MB ${rss0.map((k) => (k / 1024).toFixed(0)).join(',')} → ${rss1.map((k) => (k / 1024).toFixed(0)).join(',')}; controller fds ${ctlFds0} → ${ctlFds1}`,
    );
    for (let i = 0; i < nodes.length; i++) {
      // Noise: a socket being replaced, a log fd; a leak of one per flap would be 100.
      expect(
        fds1[i] as number,
        `fds of ${nodes[i]} (grew: ${fdGrowth(kinds0[i] as Map<string, number>, kinds1[i] as Map<string, number>)})`,
      ).toBeLessThanOrEqual(fdBound(i));
      // Noise: GC timing; a leak of a few hundred KB per flap would show as tens of MB.
      expect(rss1[i] as number, `RSS of ${nodes[i]}`).toBeLessThanOrEqual(
        (rss0[i] as number) * 1.25 + 16 * 1024,
      );
    }
    expect(ctlFds1).toBeLessThanOrEqual(ctlFds0 + 8);
    expect(await differsFromController('red')).toBeUndefined();
    // Traffic within and across sites works at the end.
    expect(
      (await lab.ping(lab.workload('s1n1w1').ns, lab.workload('s2n2w1').ip, { count: 3 })).received,
    ).toBe(3);
  }, 600_000);
});
