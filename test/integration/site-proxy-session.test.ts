// The controller's side of a site proxy, over real TLS on loopback: a real controller
// process, nodes enrolled with the real CLI, and a fake proxy (a plain gRPC client with a
// node's certificate) speaking Hello role "proxy", SiteAgents and relayed reports.
import 'reflect-metadata';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControllerMessage__Output } from '../../src/api/gen/tether/v1/ControllerMessage.js';
import type { NodeMessage } from '../../src/api/gen/tether/v1/NodeMessage.js';
import { tetherProto } from '../../src/api/grpc.js';
import type { TetherObject } from '../../src/api/resource.js';
import { type EndpointReportBody, signReport } from '../../src/api/signed-report.js';
import { Admin, loadClientConfig } from '../../src/cli/admin.js';
import { formatIp, parseCidr } from '../../src/lib/ipv4.js';
import { CHANNEL_OPTIONS, controllerCredentials } from '../../src/node/connect.js';
import { loadIdentity } from '../../src/node/identity.js';
import { initTestController, startTestController, type TestController } from './support/controller.js';
import { enrollArgs, runTether, waitFor } from './support/proc.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-proxy-session-'));
const ctlDir = join(dir, 'controller');
const QUEUE_LIMIT = 256 * 1024;
let ctl: TestController;
let init: Awaited<ReturnType<typeof initTestController>>;
let admin: Admin;
let caPem = '';

const nodeDir = (n: string) => join(dir, `node-${n}`);

/** One gRPC Sync stream with a node's certificate, recording what it receives. */
class Peer {
  readonly got: ControllerMessage__Output[] = [];
  readonly call: grpc.ClientDuplexStream<NodeMessage, ControllerMessage__Output>;
  ended: string | undefined;
  private readonly client: grpc.Client;

  constructor(readonly node: string) {
    const id = loadIdentity(nodeDir(node));
    const proto = tetherProto();
    const client = new proto.tether.v1.NodeSession(ctl.addr, controllerCredentials(caPem, id.credentials), {
      ...CHANNEL_OPTIONS,
      'grpc.use_local_subchannel_pool': 1,
    });
    this.client = client;
    this.call = client.Sync();
    this.call.on('data', (m: ControllerMessage__Output) => this.got.push(m));
    this.call.on('error', (e: grpc.ServiceError) => {
      this.ended ??= `error ${e.details || e.message}`;
    });
    this.call.on('end', () => {
      this.ended ??= 'end';
    });
  }

  hello(h: Partial<NonNullable<NodeMessage['hello']>>): this {
    this.call.write({ hello: { node_name: this.node, held_revision: 0, boot_id: `b-${this.node}`, ...h } });
    return this;
  }

  send(m: NodeMessage): void {
    this.call.write(m);
  }

  async snapshot(after = 0): Promise<{ objects: TetherObject[]; revision: number; reason: string }> {
    const end = await waitFor(`${this.node}: a snapshot`, () => {
      const i = this.got.findIndex((m, k) => k >= after && m.snapshot_end);
      return i >= 0 ? i : undefined;
    });
    let begin = end;
    while (begin >= 0 && !this.got[begin]!.snapshot_begin) begin--;
    const objects = this.got
      .slice(begin, end)
      .flatMap((m) => m.snapshot_chunk?.put ?? [])
      .map((r) => JSON.parse(Buffer.from(r.json).toString()) as TetherObject);
    return {
      objects,
      revision: Number(this.got[end]!.snapshot_end!.revision),
      reason: this.got[begin]?.snapshot_begin?.reason ?? '',
    };
  }

  async result(
    node: string,
    after: number,
  ): Promise<NonNullable<ControllerMessage__Output['endpoint_result']>> {
    return waitFor(
      `${this.node}: an endpoint result for ${node}`,
      () => this.got.slice(after).find((m) => m.endpoint_result?.node === node)?.endpoint_result ?? undefined,
    );
  }

  close(): void {
    try {
      this.call.cancel();
    } catch {
      /* gone */
    }
    this.client.close();
  }
}

const peers: Peer[] = [];
const peer = (node: string) => {
  const p = new Peer(node);
  peers.push(p);
  return p;
};

async function enroll(name: string, site: string): Promise<void> {
  const tok = await runTether(['token', 'create', '--site', site, '--config', ctl.cfg]);
  expect(tok.code, tok.stderr).toBe(0);
  const r = await runTether(enrollArgs(ctl.addr, tok.stdout.trim(), name, nodeDir(name)));
  expect(r.code, r.stderr).toBe(0);
}

/** A direct session that declares the node's VTEP (as a node's first sync does). */
async function recordVtep(name: string, vtep: string): Promise<void> {
  const p = peer(name).hello({ underlay_ip: vtep });
  await p.snapshot();
  await waitFor(
    `${name} VTEP`,
    async () => ((await admin.get('Node', name)).status as { vtep?: string }).vtep === vtep,
  );
  p.close();
}

function sign(node: string, b: Partial<EndpointReportBody> & { seq: number }, by = node) {
  const id = loadIdentity(nodeDir(node));
  const key = loadIdentity(nodeDir(by)).credentials;
  const body: EndpointReportBody = {
    node,
    site: id.site,
    bootId: 'boot-1',
    at: Date.now(),
    endpoints: [],
    ...b,
  };
  return signReport(body, key.keyPem, id.credentials.certPem);
}

beforeAll(async () => {
  init = await initTestController(ctlDir, { heartbeatSeconds: 1, sendQueueBytes: QUEUE_LIMIT });
  ctl = await startTestController(ctlDir, init);
  admin = new Admin(loadClientConfig(ctl.cfg));
  caPem = loadClientConfig(ctl.cfg).ca;
  await enroll('a1', 'site-a');
  await enroll('a2', 'site-a');
  await enroll('b1', 'site-b');
  const vn =
    'apiVersion: tether.dev/v1\nkind: VirtualNetwork\nmetadata:\n  name: red\nspec:\n  subnets: [10.1.0.0/16]\n  sites: [site-a]\n';
  const r = await runTether(['apply', '-f', '-', '--config', ctl.cfg], { input: vn });
  expect(r.code, r.stderr).toBe(0);
  await recordVtep('a1', '192.0.2.11');
  await recordVtep('a2', '192.0.2.12');
}, 90_000);

afterAll(async () => {
  for (const p of peers) p.close();
  admin?.close();
  await ctl?.daemon.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('site proxy sessions', () => {
  it("serves a proxy its site's slice with the roster, and refuses an unknown role", async () => {
    const p = peer('a1').hello({ role: 'proxy', heartbeat_ms: 5000 });
    const snap = await p.snapshot();
    const nodes = snap.objects.filter((o) => o.kind === 'Node');
    expect(nodes.map((n) => n.metadata.name).sort()).toEqual(['a1', 'a2']);
    for (const n of nodes) {
      expect(Object.keys(n.status ?? {}).sort()).toEqual(['certSerials', 'phase', 'publicKey', 'vtep']);
      expect(JSON.stringify(n)).not.toMatch(/BEGIN|facts|csr|issued/i);
    }
    expect(snap.objects.some((o) => o.kind === 'VirtualNetwork' && o.metadata.name === 'red')).toBe(true);
    // The Node object shows the proxy session it hosts.
    const a1 = await admin.get('Node', 'a1');
    expect((a1.status as { proxySession?: { site: string } }).proxySession?.site).toBe('site-a');
    p.close();

    const bad = peer('a2').hello({ role: 'controller' });
    const why = await waitFor('refusal', () => bad.ended);
    expect(why).toMatch(/unknown session role/);
  });

  it('keeps one proxy session per site: a better-ranked one replaces the older with TETHER_E_CONFLICT', async () => {
    const first = peer('a2').hello({ role: 'proxy' });
    await first.snapshot();
    const second = peer('a1').hello({ role: 'proxy' });
    await second.snapshot();
    const bye = await waitFor('goodbye', () => first.got.find((m) => m.goodbye)?.goodbye ?? undefined);
    expect(bye.code).toBe('TETHER_E_CONFLICT');
    // Another site's proxy is independent and sees only its own site.
    const b = peer('b1').hello({ role: 'proxy' });
    const snap = await b.snapshot();
    expect(snap.objects.filter((o) => o.kind === 'Node').map((n) => n.metadata.name)).toEqual(['b1']);
    expect(snap.objects.some((o) => o.metadata.name === 'red')).toBe(false);
    expect(second.got.some((m) => m.goodbye)).toBe(false);
    second.close();
    b.close();
  });

  it('shows proxied nodes on their Node objects from SiteAgents', async () => {
    const p = peer('a1').hello({ role: 'proxy' });
    const snap = await p.snapshot();
    p.send({
      site_agents: {
        complete: true,
        agents: [
          { node: 'a2', acked: snap.revision, connected: true, boot_id: 'agent-boot', underlay_ip: '' },
          { node: 'b1', acked: snap.revision, connected: true, boot_id: 'x', underlay_ip: '' },
        ],
      },
    });
    const st = await waitFor('a2 via a1', async () => {
      const s = ((await admin.get('Node', 'a2')).status as { session?: Record<string, unknown> }).session;
      return s?.via === 'a1' ? s : undefined;
    });
    expect(st).toMatchObject({ connected: true, ackedRevision: snap.revision, bootId: 'agent-boot' });
    // Another site's node is not the proxy's to speak for.
    expect(
      ((await admin.get('Node', 'b1')).status as { session?: { via?: string } }).session?.via,
    ).toBeUndefined();
    p.send({ site_agents: { complete: true, agents: [] } });
    await waitFor('a2 disconnected', async () => {
      const s = ((await admin.get('Node', 'a2')).status as { session?: { connected?: boolean } }).session;
      return s?.connected === false;
    });
    p.close();
  });

  it("relays gateway reports of its site's nodes only; the site's roster carries each node's public key, no key is in the Gateway", async () => {
    const gw =
      'apiVersion: tether.dev/v1\nkind: Gateway\nmetadata:\n  name: gw-a\nspec:\n  site: site-a\n  nodes: [a1, a2]\n  localAsn: 65001\n  pool: [203.0.113.0/28]\n  peers:\n    - {name: rtr, address: 10.0.0.1, asn: 65000}\n';
    const r = await runTether(['apply', '-f', '-', '--config', ctl.cfg], { input: gw });
    expect(r.code, r.stderr).toBe(0);
    const p = peer('a1').hello({ role: 'proxy' });
    const snap = await p.snapshot();
    const inSlice = snap.objects.find((o) => o.kind === 'Gateway' && o.metadata.name === 'gw-a');
    // Heartbeats are signed with each node's own key (docs/gateway.md): the Gateway carries
    // no shared secret, the roster carries the public key of the certificate each node holds.
    expect(inSlice).toBeDefined();
    expect((inSlice?.status as { haKeys?: unknown } | undefined)?.haKeys).toBeUndefined();
    const a2 = snap.objects.find((o) => o.kind === 'Node' && o.metadata.name === 'a2');
    const spki = new X509Certificate(loadIdentity(nodeDir('a2')).credentials.certPem).publicKey
      .export({ type: 'spki', format: 'der' })
      .toString('base64');
    expect((a2?.status as { publicKey?: unknown } | undefined)?.publicKey).toBe(spki);
    const report = (role: string) => ({
      gateway: 'gw-a',
      role,
      running: true,
      config_hash: 'h',
      error: '',
      peers: [],
      bound: [],
      announced: 1,
    });
    p.send({ relayed_gateway: { node: 'a2', report: report('standby') } });
    p.send({ relayed_gateway: { node: 'b1', report: report('active') } });
    const nodes = await waitFor('a2 gateway status via the proxy', async () => {
      const st = (await admin.get('Gateway', 'gw-a')).status as
        | { nodes?: Record<string, { role?: string }> }
        | undefined;
      return st?.nodes?.a2?.role === 'standby' ? st.nodes : undefined;
    });
    // Another site's node is not the proxy's to speak for.
    expect(Object.keys(nodes)).toEqual(['a2']);
    const out = await runTether(['get', 'gateways', '-o', 'yaml', '--config', ctl.cfg]);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toContain('gw-a');
    p.close();
    const d = await runTether(['delete', 'gateway', 'gw-a', '--config', ctl.cfg]);
    expect(d.code, d.stderr).toBe(0);
  });

  it("stores a relayed report the node signed; refuses one the proxy's node signed for it, and a replay", async () => {
    const vn = await waitFor('share of red for a2', async () => {
      const o = await admin.get('VirtualNetwork', 'red');
      return (o.status as { nodeBlocks?: Record<string, string> }).nodeBlocks?.a2 ? o : undefined;
    });
    const block = parseCidr((vn.status as { nodeBlocks: Record<string, string> }).nodeBlocks.a2!)!;
    const endpoint: TetherObject = {
      apiVersion: 'tether.dev/v1',
      kind: 'Endpoint',
      metadata: { name: 'a2.w1' },
      spec: {
        network: 'red',
        node: 'a2',
        site: 'site-a',
        mac: '02:00:00:00:a2:01',
        ip: formatIp(block.base + 2),
        vtep: '192.0.2.12',
      },
    };
    const p = peer('a1').hello({ role: 'proxy' });
    await p.snapshot();
    const before = (await admin.get('Node', 'a2')).status as { endpointReports?: { refused: number } };

    let mark = p.got.length;
    p.send({ relayed_report: { node: 'a2', signed: sign('a2', { seq: 1, endpoints: [endpoint] }, 'a1') } });
    const forged = await p.result('a2', mark);
    expect(forged.accepted).toBe(0);
    expect(forged.refused[0]?.code).toBe('TETHER_E_PERMISSION');

    mark = p.got.length;
    const good = sign('a2', { seq: 2, endpoints: [endpoint] });
    p.send({ relayed_report: { node: 'a2', signed: good } });
    const ok = await p.result('a2', mark);
    expect(ok.refused).toEqual([]);
    expect(ok.accepted).toBe(1);
    const stored = await admin.get('Endpoint', 'a2.w1');
    expect((stored.spec as { node: string }).node).toBe('a2');

    mark = p.got.length;
    p.send({ relayed_report: { node: 'a2', signed: good } });
    const replay = await p.result('a2', mark);
    expect(replay.refused[0]?.code).toBe('TETHER_E_CONFLICT');

    // Another site's node, with its own genuine signature.
    mark = p.got.length;
    p.send({ relayed_report: { node: 'b1', signed: sign('b1', { seq: 1 }) } });
    expect((await p.result('b1', mark)).refused[0]?.code).toBe('TETHER_E_PERMISSION');

    const after = (await admin.get('Node', 'a2')).status as { endpointReports?: { refused: number } };
    expect((after.endpointReports?.refused ?? 0) - (before.endpointReports?.refused ?? 0)).toBe(2);
    p.close();
  });

  it('refuses a replay of an older relayed report after a kill -9 and restart of the controller; a fresh one is stored', async () => {
    const vn = await admin.get('VirtualNetwork', 'red');
    const block = parseCidr((vn.status as { nodeBlocks: Record<string, string> }).nodeBlocks.a2!)!;
    const ep = (name: string, k: number): TetherObject => ({
      apiVersion: 'tether.dev/v1',
      kind: 'Endpoint',
      metadata: { name },
      spec: {
        network: 'red',
        node: 'a2',
        site: 'site-a',
        mac: `02:00:00:00:a2:${(16 + k).toString(16)}`,
        ip: formatIp(block.base + 3 + k),
        vtep: '192.0.2.12',
      },
    });
    const has = async (name: string) =>
      (await admin.list('Endpoint')).items.some((o) => o.metadata.name === name);
    // Before the restart: a2 reported w7 (seq 100), then withdrew it (seq 101).
    let p = peer('a1').hello({ role: 'proxy' });
    await p.snapshot();
    let mark = p.got.length;
    const older = sign('a2', { seq: 100, endpoints: [ep('a2.w7', 7)] });
    p.send({ relayed_report: { node: 'a2', signed: older } });
    const first = await p.result('a2', mark);
    expect(first.accepted, JSON.stringify(first.refused)).toBe(1);
    expect(await has('a2.w7')).toBe(true);
    mark = p.got.length;
    p.send({ relayed_report: { node: 'a2', signed: sign('a2', { seq: 101, endpoints: [] }) } });
    expect((await p.result('a2', mark)).refused).toEqual([]);
    expect(await has('a2.w7')).toBe(false);
    p.close();

    await ctl.daemon.kill9();
    await ctl.exited;
    ctl = await startTestController(ctlDir, init);

    // The proxy's node replays a2's older signed report (and the latest, and one made up
    // under another boot id with a later time, but with a seq a2 already used).
    p = peer('a1').hello({ role: 'proxy' });
    await p.snapshot();
    const otherBoot = sign('a2', {
      seq: 100,
      bootId: 'boot-x',
      at: Date.now() + 86_400_000,
      endpoints: [ep('a2.w7', 7)],
    });
    for (const replay of [older, otherBoot]) {
      mark = p.got.length;
      p.send({ relayed_report: { node: 'a2', signed: replay } });
      const r = await p.result('a2', mark);
      expect(r.accepted).toBe(0);
      expect(r.refused[0]).toMatchObject({ name: '*', code: 'TETHER_E_CONFLICT' });
    }
    expect(await has('a2.w7')).toBe(false);
    // a2's next report is stored, even though its time is earlier (its clock stepped back).
    mark = p.got.length;
    p.send({
      relayed_report: { node: 'a2', signed: sign('a2', { seq: 102, at: 1, endpoints: [ep('a2.w8', 8)] }) },
    });
    const fresh = await p.result('a2', mark);
    expect(fresh).toMatchObject({ accepted: 1, refused: [] });
    expect(await has('a2.w8')).toBe(true);
    p.close();
  }, 90_000);

  it("only echoes a proxy's heartbeats and ends its session after 3 silent intervals", async () => {
    const p = peer('a1').hello({ role: 'proxy', heartbeat_ms: 1000 });
    await p.snapshot();
    for (let i = 1; i <= 3; i++) {
      p.send({ heartbeat: { seq: i, unix_ms: Date.now() } });
      await waitFor(`echo ${i}`, () => p.got.filter((m) => m.heartbeat).length >= i);
    }
    // Then silence: the controller ends the session; every heartbeat it sent was an echo.
    const bye = await waitFor('timeout', () => p.got.find((m) => m.goodbye)?.goodbye ?? undefined, 15_000);
    expect(bye.code).toBe('TETHER_E_TIMEOUT');
    expect(p.got.filter((m) => m.heartbeat).map((m) => Number(m.heartbeat!.seq))).toEqual([1, 2, 3]);
  });

  it('bounds the send queue of a proxy that stops reading, and resends a snapshot equal to the slice', async () => {
    const p = peer('a1').hello({ role: 'proxy', heartbeat_ms: 60_000 });
    await p.snapshot();
    // Stop reading: grpc-js stops taking from HTTP/2 once its buffer is full, the window
    // closes, and the controller's writes stay queued.
    p.call.pause();
    const applies = 2000;
    const pad = 'x'.repeat(8 * 1024);
    let next = 0;
    const worker = async () => {
      while (next < applies) {
        const i = next++;
        const obj = {
          apiVersion: 'tether.dev/v1',
          kind: 'VirtualNetwork',
          metadata: { name: 'red', annotations: { pad: `${i}-${pad}` } },
          spec: { subnets: ['10.1.0.0/16'], sites: ['site-a'] },
        };
        await admin.apply({
          json: [Buffer.from(JSON.stringify(obj))],
          sources: ['test'],
          expect_revision: 0,
        });
      }
    };
    let maxQueued = 0;
    let overflowed = false;
    const watch = (async () => {
      while (next < applies) {
        const ps = (
          (await admin.get('Node', 'a1')).status as {
            proxySession?: { queuedBytes: number; overflowed: boolean };
          }
        ).proxySession;
        maxQueued = Math.max(maxQueued, ps?.queuedBytes ?? 0);
        overflowed ||= ps?.overflowed ?? false;
      }
    })();
    await Promise.all([worker(), worker(), worker(), worker(), watch]);
    const ps = (
      (await admin.get('Node', 'a1')).status as { proxySession: { queuedBytes: number; overflowed: boolean } }
    ).proxySession;
    expect(ps.overflowed || overflowed).toBe(true);
    // Never more than the limit plus one message (8 KiB deltas), against 16 MiB applied.
    expect(Math.max(maxQueued, ps.queuedBytes)).toBeLessThan(QUEUE_LIMIT + 64 * 1024);

    const mark = p.got.length;
    p.call.resume();
    const snap = await p.snapshot(mark);
    expect(snap.reason).toBe('send queue overflowed');
    const sb = p.got.findIndex((m, k) => k >= mark && m.snapshot_begin);
    // What reached the stalled proxy before the snapshot: what was queued when it overflowed.
    expect(p.got.slice(0, sb).filter((m) => m.delta).length).toBeLessThan(applies / 4);
    // The snapshot is the store's slice for site-a at its revision.
    const want = new Map<string, number>();
    for (const kind of ['Site', 'VirtualNetwork', 'Endpoint', 'Node', 'Profile', 'NetworkPolicy']) {
      for (const o of (await admin.list(kind)).items) {
        const site = (o.spec as { site?: string; sites?: string[] }).site;
        const sites = (o.spec as { sites?: string[] }).sites;
        const inA =
          kind === 'Site'
            ? o.metadata.name === 'site-a'
            : kind === 'VirtualNetwork'
              ? !sites || sites.includes('site-a')
              : kind === 'Node' || kind === 'Endpoint'
                ? site === 'site-a'
                : true;
        if (inA) want.set(`${kind}/${o.metadata.name}`, o.metadata.revision ?? 0);
      }
    }
    const got = new Map(snap.objects.map((o) => [`${o.kind}/${o.metadata.name}`, o.metadata.revision ?? 0]));
    expect(got).toEqual(want);
    // And deltas flow again.
    const m2 = p.got.length;
    await admin.apply({
      json: [
        Buffer.from(
          JSON.stringify({
            apiVersion: 'tether.dev/v1',
            kind: 'VirtualNetwork',
            metadata: { name: 'blue' },
            spec: { subnets: ['10.9.0.0/16'] },
          }),
        ),
      ],
      sources: ['test'],
      expect_revision: 0,
    });
    await waitFor('a delta after the snapshot', () => p.got.slice(m2).some((m) => m.delta));
    p.close();
  }, 180_000);
});
