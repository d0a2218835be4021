// Remote shell to a node behind its site proxy, on loopback: a real controller, a real
// `tether node run --no-vrouter` in the proxy role (a-px, 127.0.0.1) and a second real node
// (b-sh, 127.0.0.2) that syncs through it, an operator on Shell.Open and `tether shell` in a
// real pty. A third enrolled node of the site (c-ev) speaks to the proxy itself and tries to
// inject output into b-sh's shell. The proxy's relayed shells and dropped frames are read
// back from `tether status` and its metrics while the shell is open.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { siteProxyUpstream, type UpstreamCall } from '../../src/node/agent/upstream.js';
import type { NodeLiveStatus } from '../../src/node/control-types.js';
import { loadIdentity } from '../../src/node/identity.js';
import type { TestController } from './support/controller.js';
import { type Daemon, freePort, runProcess, runTether, startTether, waitFor } from './support/proc.js';
import {
  createOperator,
  nodeStatusFile,
  openShell,
  ptyShellRoundTrip,
  ShellClients,
  shellController,
  shellRecords,
} from './support/shell.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-shell-px-it-'));
const ctlDir = join(dir, 'controller');
const pxDir = join(dir, 'node-a-px');
const shDir = join(dir, 'node-b-sh');
const evDir = join(dir, 'node-c-ev');
const alice = join(dir, 'alice.yaml');
let ctl: TestController | undefined;
let proxyPort = 0;
let pxMetricsPort = 0;
const daemons: Daemon[] = [];
const clients = new ShellClients();
const calls: UpstreamCall[] = [];

/** The proxy node's view of its relayed shells, as `tether status -o json` prints it. */
async function pxShells(): Promise<NodeLiveStatus['proxy']['shells']> {
  const r = await runTether(['status', '--state-dir', pxDir, '-o', 'json']);
  if (r.code !== 0) throw new Error(`tether status: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { proxy?: NodeLiveStatus['proxy'] }).proxy?.shells;
}

async function pxMetrics(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${pxMetricsPort}/metrics`)).text();
}

beforeAll(async () => {
  ctl = await shellController(ctlDir, 'pxsite', [
    ['a-px', pxDir],
    ['b-sh', shDir],
    ['c-ev', evDir],
  ]);
  proxyPort = await freePort();
  pxMetricsPort = await freePort();
  const run = (d: string, addr: string, extra: readonly string[] = []) =>
    startTether([
      'node',
      'run',
      '--state-dir',
      d,
      '--heartbeat',
      '1s',
      '--no-vrouter',
      '--proxy',
      'on',
      '--proxy-port',
      String(proxyPort),
      '--proxy-address',
      addr,
      ...extra,
    ]);
  daemons.push(run(pxDir, '127.0.0.1', ['--metrics-listen', `127.0.0.1:${pxMetricsPort}`]));
  await waitFor('a-px connected', () => nodeStatusFile(pxDir)?.session.phase === 'connected', 60_000);
  daemons.push(run(shDir, '127.0.0.2'));
  // b-sh ranks after a-px, so it follows a-px's proxy once the election has run.
  await waitFor(
    'b-sh synced through the site proxy',
    () => {
      const s = nodeStatusFile(shDir)?.session;
      return s?.phase === 'connected' && JSON.stringify(s.upstream ?? '').includes('proxy');
    },
    90_000,
  );
  await createOperator(ctlDir, 'alice', alice);
}, 180_000);

afterAll(async () => {
  for (const c of calls) c.cancel();
  clients.close();
  for (const d of daemons.reverse()) await d.stop();
  await ctl?.daemon.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('remote shell through the site proxy', () => {
  it('echo, resize and exit through the proxy; audited as proxied and recorded; an injected frame of another node is dropped', {
    timeout: 120_000,
  }, async () => {
    // The controller learns that b-sh sits behind a-px from the proxy's SiteAgents: retry
    // the open until it routes there.
    let s = openShell(clients.client(alice), 'b-sh', 'INC-7 behind the proxy');
    const id = await waitFor(
      'shell started through the proxy',
      () => {
        const st = s.got.find((m) => m.started)?.started;
        if (st) return st.session_id;
        if (s.error()) s = openShell(clients.client(alice), 'b-sh', 'INC-7 behind the proxy');
        return undefined;
      },
      60_000,
      1000,
    );
    s.call.write({ input: Buffer.from('echo p""x\r') });
    await waitFor('echo output', () => /\bpx\r?\n/.test(s.output()), 30_000);

    // c-ev, Approved in the same site, attaches to the proxy and claims b-sh's shell.
    const ev = siteProxyUpstream(loadIdentity(evDir), `127.0.0.1:${proxyPort}`).open();
    calls.push(ev);
    let evSynced = false;
    ev.on('data', (m) => {
      if (m.snapshot_end || m.delta) evSynced = true;
    });
    ev.on('error', () => {});
    ev.write({
      hello: {
        node_name: 'c-ev',
        held_revision: 0,
        version: '',
        boot_id: 'ev',
        underlay_ip: '',
        role: '',
        heartbeat_ms: 1000,
      },
    });
    await waitFor('c-ev attached to the proxy', () => evSynced, 30_000);
    for (const node of ['b-sh', 'c-ev'])
      ev.write({ shell: { session_id: id, node, data: Buffer.from('FORGED-OUTPUT\r\n') } });
    ev.write({
      shell: {
        session_id: id,
        node: 'b-sh',
        end: { ending: 'exit', exit_code: 9, signal: 0, code: '', message: '' },
      },
    });
    // The real shell still answers, and nothing of c-ev's reached the operator.
    s.call.write({ resize: { cols: 100, rows: 30 } });
    s.call.write({ input: Buffer.from('stty size\r') });
    await waitFor('stty size through the proxy', () => s.output().includes('30 100'), 30_000);
    expect(s.output()).not.toContain('FORGED');
    expect(s.got.find((m) => m.end)).toBeUndefined();

    // While the shell is open the proxy counts it, and c-ev's two data frames as dropped (not
    // its shell; an end for a shell an agent does not run is not counted).
    const seen = await waitFor(
      "c-ev's frames counted by the proxy",
      async () => {
        const sh = await pxShells();
        return sh && sh.dropped.notOwner >= 2 ? sh : undefined;
      },
      15_000,
      250,
    );
    expect(seen).toEqual({ open: 1, dropped: { bad: 0, notOwner: 2, notAttached: 0, notAllowed: 0 } });
    const human = await runTether(['status', '--state-dir', pxDir]);
    expect(human.stdout).toMatch(/proxy role\s+active.*, 1 shell\(s\) relayed/);
    expect(human.stdout).toMatch(/proxy shell drops\s+2 frame\(s\) since start \(not its shell 2\)/);
    const scrape = await pxMetrics();
    expect(scrape).toMatch(/^tether_node_proxy_shells 1$/m);
    expect(scrape).toMatch(/^tether_node_proxy_shells_dropped_total\{reason="not_owner"\} 2$/m);
    expect(scrape).toMatch(/^tether_node_proxy_shells_dropped_total\{reason="bad"\} 0$/m);
    const lint = await runProcess('promtool', ['check', 'metrics'], { input: scrape, timeoutMs: 20_000 });
    expect(lint.code, `${lint.stdout}${lint.stderr}`).toBe(0);

    s.call.write({ input: Buffer.from('exit 3\r') });
    const end = await waitFor('end', () => s.got.find((m) => m.end)?.end, 30_000);
    expect(end).toMatchObject({ ending: 'exit', exit_code: 3 });
    // The relay forgot the shell with its end; the drops stay counted (a credit of the
    // controller's that crossed the end may add one).
    await waitFor('the proxy relays no shell', async () => (await pxShells())?.open === 0, 15_000, 250);
    expect((await pxShells())?.dropped.notOwner).toBeGreaterThanOrEqual(2);
    expect(await pxMetrics()).toMatch(/^tether_node_proxy_shells 0$/m);
    const text = readFileSync(join(ctlDir, 'shell', 'recordings', `${id}.cast`), 'utf8');
    expect(text).toMatch(/px/);
    expect(text).toContain('30 100');
    expect(text).not.toContain('FORGED');
    const recs = await shellRecords(clients.client(alice), 'b-sh');
    expect(recs.find((r) => r.id === id)).toMatchObject({
      operator: 'alice',
      node: 'b-sh',
      site: 'pxsite',
      reason: 'INC-7 behind the proxy',
      path: 'proxy a-px',
      ending: 'exit',
      exitCode: 3,
    });
  });

  it('`tether shell b-sh` in a real pty through the proxy: echo, resize, remote exit code', {
    timeout: 90_000,
  }, async () => {
    const code = await ptyShellRoundTrip({
      node: 'b-sh',
      reason: 'INC-8 cli via proxy',
      cfg: alice,
      promptMs: 30_000,
      echoMs: 20_000,
      resizeMs: 30_000,
    });
    expect(code).toBe(4);
  });
});
