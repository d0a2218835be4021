// The full path with the real controller process: nodes enrolled with the real CLI, two
// site proxies elect one, which opens the site's WAN session (Hello.role "proxy"); agents sync
// through it; a report relayed by the proxy is stored by the controller; while the controller
// is down the site converges locally, and after it returns the journaled report is stored.

import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControllerMessage__Output } from '../../../src/api/gen/tether/v1/ControllerMessage.js';
import { tetherProto } from '../../../src/api/grpc.js';
import type { TetherObject } from '../../../src/api/resource.js';
import { Admin, loadClientConfig } from '../../../src/cli/admin.js';
import { formatIp, parseCidr } from '../../../src/lib/ipv4.js';
import { silentLogger } from '../../../src/lib/log.js';
import { serialOf } from '../../../src/lib/pki.js';
import { CHANNEL_OPTIONS, controllerCredentials } from '../../../src/node/connect.js';
import { ControllerSet } from '../../../src/node/controllers.js';
import { loadIdentity } from '../../../src/node/identity.js';
import { SiteProxy } from '../../../src/node/proxy/proxy.js';
import { initTestController, startTestController, type TestController } from '../support/controller.js';
import { enrollArgs, freePort, runTether, waitFor } from '../support/proc.js';
import { TestAgent, until } from '../support/site.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-proxy-path-'));
const ctlDir = join(dir, 'controller');
const nodeDir = (n: string) => join(dir, `node-${n}`);
const VTEP: Record<string, string> = { a1: '192.0.2.11', a2: '192.0.2.12' };
const LISTEN: Record<string, string> = { a1: '127.0.0.1', a2: '127.0.0.2' };
let ctl: TestController;
let init: Awaited<ReturnType<typeof initTestController>>;
let admin: Admin;
let caPem = '';
let port = 0;
let slice: TetherObject[] = [];
const proxies = new Map<string, SiteProxy>();
const agents = new Map<string, TestAgent>();

/** A node's own first sync: records its VTEP at the controller, returns its slice. */
async function firstSync(name: string): Promise<{ objects: TetherObject[]; revision: number }> {
  const id = loadIdentity(nodeDir(name));
  const client = new (tetherProto().tether.v1.NodeSession)(
    ctl.addr,
    controllerCredentials(caPem, id.credentials),
    CHANNEL_OPTIONS,
  );
  const call = client.Sync();
  const got: ControllerMessage__Output[] = [];
  call.on('data', (m: ControllerMessage__Output) => got.push(m));
  call.on('error', () => {});
  call.write({ hello: { node_name: name, held_revision: 0, boot_id: `b-${name}`, underlay_ip: VTEP[name] } });
  const end = await waitFor(
    `${name} snapshot`,
    () => got.find((m) => m.snapshot_end)?.snapshot_end ?? undefined,
  );
  call.cancel();
  client.close();
  return {
    revision: Number(end.revision),
    objects: got
      .flatMap((m) => m.snapshot_chunk?.put ?? [])
      .map((r) => JSON.parse(Buffer.from(r.json).toString()) as TetherObject),
  };
}

beforeAll(async () => {
  init = await initTestController(ctlDir, { heartbeatSeconds: 1 });
  ctl = await startTestController(ctlDir, init);
  admin = new Admin(loadClientConfig(ctl.cfg));
  caPem = loadClientConfig(ctl.cfg).ca;
  for (const n of ['a1', 'a2']) {
    const tok = await runTether(['token', 'create', '--site', 'site-a', '--config', ctl.cfg]);
    expect(tok.code, tok.stderr).toBe(0);
    const r = await runTether(enrollArgs(ctl.addr, tok.stdout.trim(), n, nodeDir(n)));
    expect(r.code, r.stderr).toBe(0);
  }
  const vn =
    'apiVersion: tether.dev/v1\nkind: VirtualNetwork\nmetadata:\n  name: red\nspec:\n  subnets: [10.1.0.0/16]\n  sites: [site-a]\n';
  expect((await runTether(['apply', '-f', '-', '--config', ctl.cfg], { input: vn })).code).toBe(0);
  for (const n of ['a1', 'a2']) await firstSync(n);
  await waitFor('shares of red', async () => {
    const b = ((await admin.get('VirtualNetwork', 'red')).status as { nodeBlocks?: Record<string, string> })
      .nodeBlocks;
    return b?.a1 && b.a2;
  });
  slice = (await firstSync('a1')).objects;
  port = await freePort();
}, 120_000);

afterAll(async () => {
  for (const a of agents.values()) a.close();
  for (const p of proxies.values()) await p.stop();
  admin?.close();
  await ctl?.daemon.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function share(node: string): Promise<ReturnType<typeof parseCidr>> {
  const b = ((await admin.get('VirtualNetwork', 'red')).status as { nodeBlocks: Record<string, string> })
    .nodeBlocks;
  return parseCidr(b[node]!);
}

const ep = (node: string, base: number, k: number): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind: 'Endpoint',
  metadata: { name: `${node}.w${k}` },
  spec: {
    network: 'red',
    node,
    site: 'site-a',
    mac: `02:00:00:00:${node === 'a1' ? 'a1' : 'a2'}:0${k}`,
    ip: formatIp(base + 1 + k),
    vtep: VTEP[node],
  },
});

describe('site proxy against the real controller', () => {
  it('elects a proxy whose WAN session the controller serves with the roster; agents sync through it', async () => {
    const nodes = slice
      .filter((o) => o.kind === 'Node')
      .map((o) => o.metadata.name)
      .sort();
    expect(nodes).toEqual(['a1', 'a2']);
    for (const n of ['a1', 'a2']) {
      const id = loadIdentity(nodeDir(n));
      const roster = slice.filter((o) => o.kind === 'Node');
      proxies.set(
        n,
        new SiteProxy({
          stateDir: nodeDir(n),
          node: n,
          site: 'site-a',
          controllers: new ControllerSet([ctl.addr]),
          caPem: id.caPem,
          credentials: id.credentials,
          vtep: VTEP[n]!,
          listenHost: LISTEN[n]!,
          port,
          log: silentLogger(),
          agentNodes: () => roster,
          addressOf: (c) => `${LISTEN[c.name]}:${port}`,
          probeMs: 200,
          probeTimeoutMs: 300,
          backoff: { baseMs: 100, capMs: 500 },
        }),
      );
      agents.set(
        n,
        new TestAgent(
          {
            name: n,
            site: 'site-a',
            ...id.credentials,
            serial: serialOf(new X509Certificate(id.credentials.certPem)),
          },
          id.caPem,
        ),
      );
    }
    for (const p of proxies.values()) await p.start();
    await until(
      'a1 active with its WAN session up',
      () => proxies.get('a1')!.status().wan?.up === true,
      30_000,
    );
    expect(proxies.get('a2')!.status().active).toBe(false);
    const a1 = await admin.get('Node', 'a1');
    expect((a1.status as { proxySession?: { site: string } }).proxySession?.site).toBe('site-a');
    for (const a of agents.values()) a.connect(`${LISTEN.a1}:${port}`);
    const head = proxies.get('a1')!.status().revision;
    await until('agents synced', () =>
      [...agents.values()].every((a) => a.revision === head && a.objects.has('VirtualNetwork/red')),
    );
  });

  it('a report relayed by the proxy is stored by the controller and reaches the other agent in the slice', async () => {
    const b = (await share('a2'))!;
    agents.get('a2')!.report([ep('a2', b.base, 1)]);
    await waitFor(
      'a2.w1 stored',
      async () => (await admin.list('Endpoint')).items.some((o) => o.metadata.name === 'a2.w1'),
      20_000,
    );
    await until('a1 has a2.w1 from the slice', () => agents.get('a1')!.objects.has('Endpoint/a2.w1'));
    await until('SiteLocal empty (confirmed)', () => agents.get('a1')!.siteLocal.length === 0);
  });

  it('with the controller down the site converges locally; after it returns the journaled report is stored', async () => {
    await ctl.daemon.stop();
    await until('WAN down', () => proxies.get('a1')!.status().wan?.up === false, 20_000);
    const b =
      (await share('a1').catch(() => undefined)) ??
      parseCidr(
        (slice.find((o) => o.kind === 'VirtualNetwork')!.status as { nodeBlocks: Record<string, string> })
          .nodeBlocks.a1!,
      )!;
    void b;
    const red = agents.get('a1')!.objects.get('VirtualNetwork/red')!;
    const a1share = parseCidr((red.status as { nodeBlocks: Record<string, string> }).nodeBlocks.a1!)!;
    agents.get('a1')!.report([ep('a1', a1share.base, 1)]);
    await until('a2 learns a1.w1 locally', () =>
      agents.get('a2')!.siteLocal.some((e) => e.metadata.name === 'a1.w1'),
    );
    ctl = await startTestController(ctlDir, init);
    admin.close();
    admin = new Admin(loadClientConfig(ctl.cfg));
    await until('WAN back', () => proxies.get('a1')!.status().wan?.up === true, 60_000);
    await waitFor(
      'a1.w1 stored',
      async () => (await admin.list('Endpoint')).items.some((o) => o.metadata.name === 'a1.w1'),
      20_000,
    );
    await until('a2 has a1.w1 from the slice', () => agents.get('a2')!.objects.has('Endpoint/a1.w1'), 20_000);
    await until('SiteLocal empty again', () => agents.get('a2')!.siteLocal.length === 0);
  });
});
