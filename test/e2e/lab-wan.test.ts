// WAN impairment in the lab, against the real kernel: per-site cut and restore (nft in the
// WAN router, one table per site), delay through the site's userspace impairment proxy
// (measured on a TLS round trip to the controller through it), loss by nft numgen (counted
// by its counters), all recorded in lab.json and shown by `tether lab wan status`.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultLabStateDir, Lab, listNetns } from '../../src/lab/index.js';
import { readLabState } from '../../src/lab/state.js';
import { runTether, waitFor } from '../integration/support/proc.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn('test/e2e/lab-wan.test.ts: skipped (needs root for network namespaces)');

const name = `w${randomBytes(2).toString('hex')}`;
const stateDir = defaultLabStateDir(name);
let lab: Lab;

/** Milliseconds of a TLS handshake from a node namespace to its site's controller address. */
async function tlsHandshakeMs(nodeNs: string, address: string): Promise<number> {
  const [host, port] = address.split(':');
  const script = `
    const tls = require('node:tls');
    const t0 = performance.now();
    const s = tls.connect({ host: ${JSON.stringify(host)}, port: ${Number(port)}, rejectUnauthorized: false }, () => {
      process.stdout.write(String(performance.now() - t0));
      s.destroy();
    });
    s.on('error', (e) => { console.error(e.message); process.exit(2); });`;
  const r = await lab.exec(nodeNs, process.execPath, ['-e', script]);
  return Number(r.stdout);
}

const connected = (node: string) => lab.nodeStatusFile(node)?.session.phase === 'connected';

describe.skipIf(!isRoot)('tether lab wan: per-site cut, delay and loss', () => {
  beforeAll(async () => {
    lab = await Lab.up(
      // Direct node sessions (--proxy off): this suite checks each node's own WAN session;
      // the site proxy's behaviour over a cut is test/e2e/headless.test.ts.
      { name, sites: 2, nodesPerSite: 1, workloadsPerNode: 0, stateDir, proxy: false },
      { progress: (m) => process.stderr.write(`[lab ${name}] ${m}\n`) },
    );
    await waitFor('both nodes connected', () => connected('s1n1') && connected('s2n1'), 60_000, 200);
  }, 180_000);

  afterAll(async () => {
    const l = lab ?? (existsSync(stateDir) ? Lab.open(stateDir) : undefined);
    await l?.down();
    const left = (await listNetns()).filter((ns) => ns.startsWith(`${name}-`) || ns.startsWith(`${name}_`));
    expect(left).toEqual([]);
  }, 60_000);

  it("each site's nodes reach the controller through their own impairment proxy, which counts the bytes", async () => {
    const st = await lab.wanStatus();
    expect(st.map((s) => [s.site, s.proxy.address, s.proxy.alive])).toEqual([
      ['s1', `${lab.plan.central.ip}:7451`, true],
      ['s2', `${lab.plan.central.ip}:7452`, true],
    ]);
    for (const s of st) {
      expect(s.proxy.connectionsOpen).toBeGreaterThanOrEqual(1); // the node's session
      expect(s.proxy.bytesToController).toBeGreaterThan(0);
      expect(s.proxy.bytesFromController).toBeGreaterThan(0);
    }
    // Heartbeats keep flowing: the count rises.
    const before = st[0]?.proxy.bytesToController ?? 0;
    await waitFor(
      "more bytes through s1's proxy",
      async () => ((await lab.wanStatus())[0]?.proxy.bytesToController ?? 0) > before,
      15_000,
      200,
    );
  });

  it('cutting one site leaves the other connected; restoring it brings it back', async () => {
    const c = lab.plan.central.ip;
    await lab.wanCut('s1');
    expect(readLabState(stateDir)?.wan?.s1).toEqual({ cut: true, delayMs: 0, lossPct: 0 });
    expect((await lab.ping(lab.node('s1n1').ns, c, { count: 3, intervalS: 0.1 })).received).toBe(0);
    expect((await lab.wanDrops('s1')).cut).toBeGreaterThanOrEqual(3);
    expect((await lab.ping(lab.node('s2n1').ns, c, { count: 3, intervalS: 0.1 })).received).toBe(3);
    await waitFor('s1n1 to lose its session', () => !connected('s1n1'), 30_000, 200);
    expect(connected('s2n1')).toBe(true);
    const shown = await runTether([
      'lab',
      'wan',
      'status',
      '--name',
      name,
      '--state-dir',
      stateDir,
      '-o',
      'json',
    ]);
    expect(JSON.parse(shown.stdout).map((s: { site: string; cut: boolean }) => [s.site, s.cut])).toEqual([
      ['s1', true],
      ['s2', false],
    ]);
    // Cutting the other site too, then restoring only s1: s2 stays cut.
    await lab.wanCut('s2');
    await lab.wanRestore('s1');
    expect((await lab.ping(lab.node('s1n1').ns, c, { count: 3, intervalS: 0.1 })).received).toBe(3);
    expect((await lab.ping(lab.node('s2n1').ns, c, { count: 3, intervalS: 0.1 })).received).toBe(0);
    await waitFor('s1n1 to reconnect', () => connected('s1n1'), 60_000, 200);
    const r = await runTether([
      'lab',
      'wan',
      'restore',
      '--site',
      's2',
      '--name',
      name,
      '--state-dir',
      stateDir,
    ]);
    expect(r.code).toBe(0);
    expect((await lab.ping(lab.node('s2n1').ns, c, { count: 3, intervalS: 0.1 })).received).toBe(3);
    // A clean site has no table left in the WAN router.
    const tables = (await lab.exec(lab.plan.wan.ns, 'nft', ['list', 'tables'])).stdout;
    expect(tables).not.toMatch(/tether_lab_s[12]/);
    await waitFor('s2n1 to reconnect', () => connected('s2n1'), 60_000, 200);
  });

  it('delay: a round trip through the proxy takes at least twice the delay; restore removes it', async () => {
    const s1 = lab.site('s1');
    const base = await tlsHandshakeMs(lab.node('s1n1').ns, s1.controllerAddress);
    const d = 150;
    const r = await runTether([
      'lab',
      'wan',
      'delay',
      String(d),
      '--site',
      's1',
      '--name',
      name,
      '--state-dir',
      stateDir,
    ]);
    expect(r.code).toBe(0);
    expect(readLabState(stateDir)?.wan?.s1?.delayMs).toBe(d);
    const delayed = await tlsHandshakeMs(lab.node('s1n1').ns, s1.controllerAddress);
    // TLS 1.3: ClientHello out, the server's flight back: one round trip through the proxy.
    expect(delayed).toBeGreaterThanOrEqual(2 * d);
    // The other site is not delayed.
    const other = (await lab.wanStatus()).find((x) => x.site === 's2');
    expect(other?.proxy.delayMs).toBe(0);
    process.stderr.write(
      `[lab ${name}] TLS handshake via s1's proxy: ${base.toFixed(1)} ms clean, ${delayed.toFixed(1)} ms with +${d} ms each way\n`,
    );
    // The node's session works through the delay.
    await waitFor('s1n1 connected through the delay', () => connected('s1n1'), 60_000, 200);
    await lab.wanRestore('s1');
    expect((await lab.wanStatus()).find((x) => x.site === 's1')?.proxy.delayMs).toBe(0);
    const bad = await runTether([
      'lab',
      'wan',
      'delay',
      'x',
      '--site',
      's1',
      '--name',
      name,
      '--state-dir',
      stateDir,
    ]);
    expect(bad.code).not.toBe(0);
    const badSite = await runTether([
      'lab',
      'wan',
      'cut',
      '--site',
      's9',
      '--name',
      name,
      '--state-dir',
      stateDir,
    ]);
    expect(badSite.code).not.toBe(0);
    expect(badSite.stderr).toMatch(/no site s9/);
    expect(readLabState(stateDir)?.wan?.s9).toBeUndefined();
  });

  it('loss: nft drops a random share of the packets, counted, and TCP recovers', async () => {
    const c = lab.plan.central.ip;
    const ns = lab.node('s1n1').ns;
    await lab.wanLoss('s1', 30);
    expect(readLabState(stateDir)?.wan?.s1).toEqual({ cut: false, delayMs: 0, lossPct: 30 });
    const before = (await lab.wanDrops('s1')).loss;
    const p = await lab.ping(ns, c, { count: 200, intervalS: 0.01, waitS: 1 });
    const lost = p.transmitted - p.received;
    const drops = (await lab.wanDrops('s1')).loss - before;
    process.stderr.write(`[lab ${name}] 30% loss: ${lost}/200 pings lost, ${drops} packets dropped by nft\n`);
    expect(lost).toBeGreaterThan(0);
    expect(lost).toBeLessThan(200);
    // Every lost ping is one dropped request or reply (the session's own packets add more).
    expect(drops).toBeGreaterThanOrEqual(lost);
    // A TCP round trip still completes through the loss (retransmission, not the proxy).
    expect(await tlsHandshakeMs(ns, lab.site('s1').controllerAddress)).toBeGreaterThan(0);
    // The other site loses nothing.
    expect((await lab.ping(lab.node('s2n1').ns, c, { count: 50, intervalS: 0.01 })).received).toBe(50);
    await lab.wanLoss('s1', 0);
    expect((await lab.ping(ns, c, { count: 50, intervalS: 0.01 })).received).toBe(50);
  });
});
