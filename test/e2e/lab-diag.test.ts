// `tether status` and `tether diag` on a lab node, against the real kernel, controller and
// daemons (issue 11): WAN RTT, clock and peer VTEPs in the status; then a wrong MTU on the
// path between two sites' VTEPs, a cut WAN and an expired certificate, each named by diag
// with its remedy and exit code 7.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCa } from '../../src/controller/init.js';
import { defaultBinaries, defaultLabStateDir, Lab, listNetns } from '../../src/lab/index.js';
import { createCsrForKey, signCsr } from '../../src/lib/pki.js';
import { controlSocketPath, readTraffic } from '../../src/node/control-api.js';
import { nodePaths } from '../../src/node/identity.js';
import { waitFor } from '../integration/support/proc.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn('test/e2e/lab-diag.test.ts: skipped (needs root for network namespaces)');

const name = `d${randomBytes(2).toString('hex')}`;
const stateDir = defaultLabStateDir(name);
const tether = defaultBinaries().tether;
let lab: Lab;

interface Check {
  name: string;
  verdict: 'pass' | 'warn' | 'fail';
  detail: string;
  remedy?: string;
}

/** `tether <args>` inside a node's namespace, where its daemon runs. */
async function onNode(node: string, args: string[]) {
  const n = lab.node(node);
  return lab.exec(n.ns, tether, [...args, '--state-dir', n.stateDir], {
    allowFailure: true,
    timeoutMs: 120_000,
  });
}

async function diag(node: string): Promise<{ code: number; checks: Check[]; text: string }> {
  const j = await onNode(node, ['diag', '-o', 'json', '--timeout', '2000']);
  const t = await onNode(node, ['diag', '--timeout', '2000']);
  expect(t.code).toBe(j.code);
  return { code: j.code, checks: (JSON.parse(j.stdout) as { checks: Check[] }).checks, text: t.stdout };
}

const named = (cs: Check[], n: string) => cs.find((c) => c.name === n);

async function status(node: string): Promise<Record<string, unknown>> {
  const r = await onNode(node, ['status', '-o', 'json']);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

describe.skipIf(!isRoot)('tether status and tether diag on a lab node', () => {
  beforeAll(async () => {
    lab = await Lab.up(
      // One node per site: each is its site's active proxy, so the WAN RTT and the clock come
      // from the proxy's WAN session (the production layout); one red workload each, so each
      // node programs the other's VTEP.
      { name, sites: 2, nodesPerSite: 1, workloadsPerNode: 1, stateDir },
      { progress: (m) => process.stderr.write(`[lab ${name}] ${m}\n`) },
    );
  }, 180_000);

  afterAll(async () => {
    const l = lab ?? (existsSync(stateDir) ? Lab.open(stateDir) : undefined);
    await l?.down();
    const left = (await listNetns()).filter((ns) => ns.startsWith(`${name}-`) || ns.startsWith(`${name}_`));
    expect(left).toEqual([]);
  }, 60_000);

  it('status shows the WAN RTT, the controller clock and the peer VTEP; diag passes them', async () => {
    const peerVtep = lab.node('s2n1').ip;
    let s: Record<string, unknown> = {};
    await waitFor(
      'a WAN RTT sample in s1n1 status',
      async () => {
        s = await status('s1n1');
        return (s.wan as { rtt?: unknown } | undefined)?.rtt !== undefined;
      },
      60_000,
      500,
    );
    const wan = s.wan as { via: string; rtt: { srttMs: number; offsetMs: number; samples: number } };
    expect(wan.via).toBe('proxy');
    expect(wan.rtt.srttMs).toBeGreaterThanOrEqual(0);
    expect(wan.rtt.samples).toBeGreaterThan(0);
    // One machine, one clock: the offset is within the measurement's own error.
    expect(Math.abs(wan.rtt.offsetMs)).toBeLessThan(1000);
    const vtep = s.vtep as {
      ip: string;
      mtu: number;
      peers: Array<{ vtep: string; node?: string; networks: string[] }>;
    };
    expect(vtep.ip).toBe(lab.node('s1n1').ip);
    expect(vtep.peers).toEqual([
      expect.objectContaining({ vtep: peerVtep, node: 's2n1', networks: ['red'] }),
    ]);
    expect(s.host).toMatchObject({ profile: { state: 'none' } });
    const text = await onNode('s1n1', ['status']);
    expect(text.stdout).toMatch(/WAN RTT\s+\S+ ms/);
    expect(text.stdout).toMatch(/controller clock/);
    expect(text.stdout).toMatch(new RegExp(`peer s2n1\\s+${peerVtep.replaceAll('.', '\\.')}`));
    expect(text.stdout).toMatch(/pending reboots\s+0/);

    // The dashboard's traffic counters: the kernel's link counters of the red network's
    // namespace (VXLAN and bridge), read through the control API.
    const t = await readTraffic(controlSocketPath(lab.node('s1n1').stateDir));
    expect(t.links.map((l) => [l.network, l.link]).sort()).toEqual([
      ['blue', 'bridge'],
      ['blue', 'vxlan'],
      ['red', 'bridge'],
      ['red', 'vxlan'],
    ]);
    for (const l of t.links) expect(l.txPackets + l.rxPackets).toBeGreaterThanOrEqual(0);
    expect(Array.isArray(t.policy)).toBe(true);

    const d = await diag('s1n1');
    for (const n of ['session', 'controller', 'clock', 'ca-pin', 'certificate', 'vtep s2n1', 'profile'])
      expect(named(d.checks, n), `${n}: ${JSON.stringify(named(d.checks, n))}`).toMatchObject({
        verdict: 'pass',
      });
  });

  it('a link with a lower MTU between the sites: diag names the path MTU and what to do', async () => {
    const router = lab.site('s1').ns;
    const node = lab.node('s1n1').ns;
    await lab.exec(router, 'ip', ['link', 'set', 'wan0', 'mtu', '1400']);
    try {
      const d = await diag('s1n1');
      const v = named(d.checks, 'vtep s2n1');
      expect(v?.verdict).toBe('fail');
      expect(v?.detail).toMatch(
        /path MTU to \S+ of s2n1 (\(site s2\) )?is 1400, below the underlay MTU 1500/,
      );
      expect(v?.remedy).toMatch(/has MTU 1400: raise it to 1500.*underlayMtu to 1400/);
      expect(d.code).toBe(7);
      expect(d.text).toMatch(/^FAIL {2}vtep s2n1: path MTU/m);
      expect(d.text).toMatch(/→ a link between this site and s2n1/);
    } finally {
      await lab.exec(router, 'ip', ['link', 'set', 'wan0', 'mtu', '1500']);
      // The node learnt the lower path MTU (ICMP "fragmentation needed"); forget it.
      await lab.exec(node, 'ip', ['route', 'flush', 'cache']);
    }
    await waitFor(
      'the full-size path back',
      async () => named((await diag('s1n1')).checks, 'vtep s2n1')?.verdict === 'pass',
      60_000,
      1000,
    );
  });

  it('a cut WAN: diag names the unreachable controller and the headless site, with remedies', async () => {
    await lab.wanCut('s1');
    try {
      await waitFor(
        "s1n1's proxy WAN session to drop",
        async () =>
          ((await status('s1n1')).proxy as { wan?: { phase: string } }).wan?.phase === 'disconnected',
        60_000,
        500,
      );
      const d = await diag('s1n1');
      const c = named(d.checks, 'controller');
      expect(c?.verdict).toBe('fail');
      expect(c?.detail).toMatch(/no answer from \S+ within 2000 ms \(WAN down or filtered\)|cannot reach/);
      expect(c?.remedy).toMatch(/check the WAN link/);
      expect(named(d.checks, 'session')).toMatchObject({
        verdict: 'fail',
        detail: expect.stringMatching(/WAN session to the controller is disconnected/),
      });
      // The VTEPs are reached over the site routers, not the controller: still fine.
      expect(named(d.checks, 'vtep s2n1')?.verdict).toBe('pass');
      expect(d.code).toBe(7);
      expect(d.text).toMatch(/^FAIL {2}controller: /m);
    } finally {
      await lab.wanRestore('s1');
    }
    await waitFor(
      's1n1 back on the WAN',
      async () => ((await status('s1n1')).proxy as { wan?: { phase: string } }).wan?.phase === 'connected',
      60_000,
      500,
    );
  });

  it('an expired certificate: diag names it and says to re-enroll', async () => {
    const n = lab.node('s1n1');
    const file = nodePaths(n.stateDir).credentials;
    const saved = readFileSync(file, 'utf8');
    const creds = JSON.parse(saved) as { keyPem: string; certPem: string };
    // The lab controller's own CA signs a certificate for the node's key with one second of life.
    const ca = loadCa(lab.plan.central.dataDir);
    const cert = await signCsr(ca, await createCsrForKey('s1n1', creds.keyPem), {
      identity: { role: 'node', site: 's1', name: 's1n1' },
      validitySeconds: 1,
      client: true,
    });
    await waitFor(
      'the certificate to expire',
      () => Date.now() > cert.notAfter.getTime() + 1000,
      30_000,
      200,
    );
    writeFileSync(file, JSON.stringify({ ...creds, certPem: cert.certPem }), { mode: 0o600 });
    try {
      const d = await diag('s1n1');
      const c = named(d.checks, 'certificate');
      expect(c?.verdict).toBe('fail');
      expect(c?.detail).toMatch(/node certificate expired/);
      expect(c?.remedy).toMatch(/tether node enroll/);
      // The controller takes any client certificate at the TLS level (enrollment shares the
      // port) and judges node certificates per call: TLS and HTTP/2 still work.
      expect(named(d.checks, 'controller')?.verdict).toBe('pass');
      expect(d.code).toBe(7);
      expect(d.text).toMatch(/^FAIL {2}certificate: node certificate expired/m);
    } finally {
      writeFileSync(file, saved, { mode: 0o600 });
    }
  });
});
