// A node may only speak for itself, over real TLS on loopback: a real controller process,
// nodes enrolled with the real CLI, node daemons (the real NodeAgent in this process, so the
// test can make one report what an attacker would) and an observer node process whose disk
// shows what the controller reflected.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EnrollResponse__Output } from '../../src/api/gen/tether/v1/EnrollResponse.js';
import { tetherProto } from '../../src/api/grpc.js';
import type { TetherObject } from '../../src/api/resource.js';
import { fromGrpcError } from '../../src/api/status.js';
import { credentialOf, parseToken } from '../../src/api/token.js';
import { Admin, loadClientConfig } from '../../src/cli/admin.js';
import type { TetherError } from '../../src/lib/errors.js';
import { formatIp, parseCidr } from '../../src/lib/ipv4.js';
import { silentLogger } from '../../src/lib/log.js';
import { createKeyAndCsr } from '../../src/lib/pki.js';
import { NodeAgent, type NodeStatusFile } from '../../src/node/agent/daemon.js';
import { readStateCache } from '../../src/node/cache.js';
import { CHANNEL_OPTIONS, controllerCredentials } from '../../src/node/connect.js';
import { initTestController } from './support/controller.js';
import { type Daemon, enrollArgs, runTether, startTether, waitFor } from './support/proc.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-claims-'));
const ctlDir = join(dir, 'controller');
const cfg = join(ctlDir, 'admin.yaml');
let addr = '';
let controller: Daemon | undefined;
let admin: Admin;
let caPem = '';
const processes: Daemon[] = [];
const daemons: NodeAgent[] = [];

const nodeDir = (n: string) => join(dir, `node-${n}`);
const statusOf = (n: string): NodeStatusFile | undefined => {
  const p = join(nodeDir(n), 'status.json');
  return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as NodeStatusFile) : undefined;
};
const cachedEndpoints = (n: string): TetherObject[] => {
  return readStateCache(join(nodeDir(n), 'cache.json')).objects.filter((o) => o.kind === 'Endpoint');
};

async function token(site: string, extra: string[] = []): Promise<string> {
  const r = await runTether(['token', 'create', '--site', site, '--config', cfg, ...extra]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

function enrollCli(name: string, tok: string, stateDir = nodeDir(name)) {
  return runTether(enrollArgs(addr, tok, name, stateDir));
}

async function enrolled(name: string, site = 'site-a'): Promise<void> {
  const r = await enrollCli(name, await token(site));
  expect(r.code, r.stderr).toBe(0);
}

/** A node daemon in this process (no vRouter), declaring `underlayIp` in its hello. */
async function nodeDaemon(name: string, underlayIp: string): Promise<NodeAgent> {
  const d = new NodeAgent({ stateDir: nodeDir(name), log: silentLogger(), heartbeatMs: 1000, underlayIp });
  daemons.push(d);
  await d.start();
  await waitFor(`${name} connected`, () => statusOf(name)?.session.phase === 'connected');
  return d;
}

function observer(name: string): void {
  processes.push(
    startTether(['node', 'run', '--state-dir', nodeDir(name), '--heartbeat', '1s', '--no-vrouter']),
  );
}

/** The node's /28 share of network red, and the n-th address in it. */
async function share(node: string): Promise<(i: number) => string> {
  const vn = await waitFor(`a share of red for ${node}`, async () => {
    const o = await admin.get('VirtualNetwork', 'red');
    return (o.status as { nodeBlocks?: Record<string, string> }).nodeBlocks?.[node] ? o : undefined;
  });
  const c = parseCidr((vn.status as { nodeBlocks: Record<string, string> }).nodeBlocks[node]!)!;
  return (i) => formatIp(c.base + i);
}

function ep(node: string, id: string, spec: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: 'tether.dev/v1',
    kind: 'Endpoint',
    metadata: { name: `${node}.${id}` },
    spec: { network: 'red', node, site: 'site-a', ...spec },
    ...extra,
  } as TetherObject;
}

beforeAll(async () => {
  addr = (await initTestController(ctlDir, { heartbeatSeconds: 1 })).addr;
  controller = startTether(['controller', 'start', '--data-dir', ctlDir]);
  await waitFor(
    'controller',
    async () => (await runTether(['get', 'sites', '--config', cfg])).code === 0,
    30_000,
    200,
  );
  admin = new Admin(loadClientConfig(cfg));
  caPem = loadClientConfig(cfg).ca;
  const vn =
    'apiVersion: tether.dev/v1\nkind: VirtualNetwork\nmetadata:\n  name: red\nspec:\n  subnets: [10.1.0.0/16]\n  sites: [site-a]\n';
  await token('site-a'); // creates the site
  const r = await runTether(['apply', '-f', '-', '--config', cfg], { input: vn });
  expect(r.code, r.stderr).toBe(0);
  // A node of the site that only listens: its disk shows what the controller reflected.
  await enrolled('watcher');
  observer('watcher');
}, 60_000);

afterAll(async () => {
  for (const d of daemons) await d.stop();
  for (const p of processes) await p.stop();
  admin?.close();
  await controller?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('endpoint reports', () => {
  it('stores only what a node may claim, tells the node what it refused, and reflects nothing else', {
    timeout: 120_000,
  }, async () => {
    for (const n of ['victim', 'attacker', 'copycat']) await enrolled(n);
    const victim = await nodeDaemon('victim', '127.0.0.12');
    const attacker = await nodeDaemon('attacker', '127.0.0.11');
    const v = await share('victim');
    const a = await share('attacker');
    const real = ep('victim', 'w1', { ip: v(2), mac: '02:00:00:00:0a:02', vtep: '127.0.0.12' });
    victim.reportEndpoints([real]);
    await waitFor('watcher to get the victim endpoint', () =>
      cachedEndpoints('watcher').some((e) => e.metadata.name === 'victim.w1'),
    );
    attacker.reportEndpoints([
      ep('attacker', 'w1', { ip: a(2), mac: '02:00:00:00:0b:02', vtep: '127.0.0.11' }),
      ep('attacker', 'copy', { ip: v(2), mac: '02:00:00:00:0a:02', vtep: '127.0.0.11' }),
      ep('attacker', 'mac', { ip: a(3), mac: '02:00:00:00:0a:02', vtep: '127.0.0.11' }),
      ep('attacker', 'vtep', { ip: a(4), mac: '02:00:00:00:0b:04', vtep: '127.0.0.12' }),
      ep(
        'attacker',
        'status',
        { ip: a(5), mac: '02:00:00:00:0b:05', vtep: '127.0.0.11' },
        { status: { x: 1 } },
      ),
      ep('victim', 'forged', { ip: a(6), mac: '02:00:00:00:0b:06', vtep: '127.0.0.11' }),
    ]);
    const result = await waitFor(
      'the controller to answer the attacker',
      () => statusOf('attacker')?.session.endpoints,
    );
    expect(result.accepted).toBe(1);
    expect(Object.fromEntries(result.refused.map((r) => [r.name, [r.code, r.field]]))).toEqual({
      'attacker.copy': ['TETHER_E_CLAIM', 'spec.ip'],
      'attacker.mac': ['TETHER_E_CLAIM', 'spec.mac'],
      'attacker.vtep': ['TETHER_E_CLAIM', 'spec.vtep'],
      'attacker.status': ['TETHER_E_CLAIM', 'status'],
      'victim.forged': ['TETHER_E_CLAIM', 'spec.node'],
    });
    // The technician sees it on the node.
    const st = await runTether(['status', '--state-dir', nodeDir('attacker')]);
    expect(st.stdout).toContain('refused endpoint');
    expect(st.stdout).toMatch(
      /attacker\.vtep: VTEP 127\.0\.0\.12 is not node "attacker"'s recorded underlay address 127\.0\.0\.11.*TETHER_E_CLAIM/,
    );
    // What the other nodes get: the victim's endpoint as it was, and the attacker's good one.
    await waitFor('watcher to get the attacker endpoint', () =>
      cachedEndpoints('watcher').some((e) => e.metadata.name === 'attacker.w1'),
    );
    const seen = cachedEndpoints('watcher');
    expect(seen.map((e) => e.metadata.name).sort()).toEqual(['attacker.w1', 'victim.w1']);
    expect(seen.find((e) => e.metadata.name === 'victim.w1')!.spec).toMatchObject({
      vtep: '127.0.0.12',
      ip: v(2),
    });
    expect((await admin.list('Endpoint')).items.map((e) => e.metadata.name).sort()).toEqual([
      'attacker.w1',
      'victim.w1',
    ]);
    // The controller counts and logs it.
    const node = await admin.get('Node', 'attacker');
    expect(node.status).toMatchObject({
      vtep: '127.0.0.11',
      endpointReports: { byCode: { TETHER_E_CLAIM: 5 } },
    });
    expect(controller!.log()).toContain('endpoint_refused');
    // A hello declaring the victim's underlay address is refused, and nothing is recorded.
    await nodeDaemon('copycat', '127.0.0.12');
    const hello = await waitFor('the copycat refusal', () => statusOf('copycat')?.session.endpoints);
    expect(hello.refused[0]).toMatchObject({ name: 'hello', code: 'TETHER_E_CLAIM' });
    expect(hello.refused[0]!.message).toContain('"victim"');
    expect((await admin.get('Node', 'copycat')).status).not.toHaveProperty('vtep');
  });
});

describe('a refused endpoint', () => {
  it('is reported again by the node once it may be claimable, and then stored', {
    timeout: 120_000,
  }, async () => {
    for (const n of ['holder', 'late']) await enrolled(n);
    const holder = await nodeDaemon('holder', '127.0.0.41');
    const late = await nodeDaemon('late', '127.0.0.42');
    const h = await share('holder');
    const l = await share('late');
    holder.reportEndpoints([ep('holder', 'w1', { ip: h(2), mac: '02:00:00:00:4a:02', vtep: '127.0.0.41' })]);
    await waitFor('holder stored', () => statusOf('holder')?.session.endpoints?.accepted === 1);
    late.reportEndpoints([ep('late', 'w1', { ip: l(2), mac: '02:00:00:00:4a:02', vtep: '127.0.0.42' })]);
    const first = await waitFor('late refused', () => statusOf('late')?.session.endpoints);
    expect(first.refused).toEqual([expect.objectContaining({ name: 'late.w1', field: 'spec.mac' })]);
    // The MAC is free again once the holder's workload is gone; the late node need not change.
    holder.reportEndpoints([]);
    await waitFor('late stored', () => statusOf('late')?.session.endpoints?.accepted === 1, 30_000);
    expect(statusOf('late')!.session.endpoints!.refused).toEqual([]);
    expect((await admin.get('Endpoint', 'late.w1')).spec).toMatchObject({ mac: '02:00:00:00:4a:02' });
  });
});

describe('a node’s endpoints go with it', () => {
  it.each([
    ['revoke', ['node', 'revoke', 'gone1'], 'gone1'],
    ['delete', ['delete', 'node', 'gone2'], 'gone2'],
  ])(
    '%s removes them at the same revision, and other nodes drop them',
    { timeout: 120_000 },
    async (_w, cmd, name) => {
      await enrolled(name);
      const d = await nodeDaemon(name, name === 'gone1' ? '127.0.0.21' : '127.0.0.22');
      const s = await share(name);
      const vtep = name === 'gone1' ? '127.0.0.21' : '127.0.0.22';
      d.reportEndpoints([
        ep(name, 'a', { ip: s(2), mac: `02:00:00:00:0${name.at(-1)}:02`, vtep }),
        ep(name, 'b', { ip: s(3), mac: `02:00:00:00:0${name.at(-1)}:03`, vtep }),
      ]);
      await waitFor(
        'watcher to hold both',
        () => cachedEndpoints('watcher').filter((e) => e.metadata.name.startsWith(`${name}.`)).length === 2,
      );
      const from = (await admin.list('Site')).revision;
      const r = await runTether([...cmd, '--config', cfg]);
      expect(r.code, r.stderr).toBe(0);
      const events: Array<{ type: string; revision: number; object: TetherObject }> = [];
      const ac = new AbortController();
      const watching = admin.watch('', from, (e) => events.push(e), ac.signal);
      await waitFor(
        'the events',
        () => events.filter((e) => e.object.metadata.name.startsWith(name)).length >= 3,
      );
      ac.abort();
      await watching;
      const mine = events.filter(
        (e) => e.object.metadata.name === name || e.object.metadata.name.startsWith(`${name}.`),
      );
      expect(new Set(mine.map((e) => e.revision)).size).toBe(1);
      expect(mine.filter((e) => e.object.kind === 'Endpoint').map((e) => e.type)).toEqual([
        'delete',
        'delete',
      ]);
      await waitFor(
        'watcher to drop them',
        () => !cachedEndpoints('watcher').some((e) => e.metadata.name.startsWith(`${name}.`)),
      );
      await waitFor(`${name} told to stop`, () => statusOf(name)?.session.phase === 'revoked');
    },
  );
});

describe('enrollment', () => {
  it('refuses a token of a deleted site with TETHER_E_SITE_GONE, also after the site is back', {
    timeout: 60_000,
  }, async () => {
    const t = await token('doomed', ['--uses', '3']);
    expect((await runTether(['delete', 'site', 'doomed', '--config', cfg])).code).toBe(0);
    const r = await enrollCli('d1', t);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain('TETHER_E_SITE_GONE');
    const site = 'apiVersion: tether.dev/v1\nkind: Site\nmetadata:\n  name: doomed\n';
    expect((await runTether(['apply', '-f', '-', '--config', cfg], { input: site })).code).toBe(0);
    const again = await enrollCli('d1', t, nodeDir('d1b'));
    expect(again.code).toBe(6);
    expect(again.stderr).toContain('TETHER_E_SITE_GONE');
    expect((await runTether(['get', 'node', 'd1', '--config', cfg])).code).toBe(3);
  });

  it('refuses to enroll over an enrolled node until `tether node reset`, which is audited', {
    timeout: 120_000,
  }, async () => {
    await enrolled('tk');
    processes.push(
      startTether(['node', 'run', '--state-dir', nodeDir('tk'), '--heartbeat', '1s', '--no-vrouter']),
    );
    await waitFor('tk connected', () => statusOf('tk')?.session.phase === 'connected');
    const thief = await enrollCli('tk', await token('site-a'), nodeDir('tk-thief'));
    expect(thief.code).toBe(6);
    expect(thief.stderr).toContain('TETHER_E_NODE_EXISTS');
    expect(thief.stderr).toContain('tether node reset tk');
    expect(statusOf('tk')?.session.phase).toBe('connected');
    const reset = await runTether(['node', 'reset', 'tk', '--config', cfg]);
    expect(reset.code, reset.stderr).toBe(0);
    const node = JSON.parse(
      (await runTether(['get', 'node', 'tk', '-o', 'json', '--config', cfg])).stdout,
    ) as TetherObject;
    expect(node.status).toMatchObject({ phase: 'Reset', lastReset: { by: 'admin' } });
    expect(node.metadata.annotations?.['tether.dev/reset-by']).toBe('admin');
    expect(controller!.log()).toMatch(/node_reset.*"node":"tk"|"node":"tk".*node_reset/);
    await waitFor('the old tk told to stop', () => statusOf('tk')?.session.phase === 'revoked');
    const fresh = await enrollCli('tk', await token('site-a'), nodeDir('tk-new'));
    expect(fresh.code, fresh.stderr).toBe(0);
  });

  it('lets exactly `uses` of many concurrent enrollments with one token win', {
    timeout: 60_000,
  }, async () => {
    const tok = parseToken(await token('site-a', ['--uses', '3']));
    const csrs = await Promise.all(Array.from({ length: 8 }, (_, i) => createKeyAndCsr(`race${i}`)));
    const results = await Promise.allSettled(
      csrs.map((k, i) => enrollRpc(credentialOf(tok), `race${i}`, k.csrPem)),
    );
    expect(
      results.filter((r) => r.status === 'fulfilled' && r.value.status === 'STATUS_APPROVED'),
    ).toHaveLength(3);
    for (const r of results)
      if (r.status === 'rejected')
        expect(r.reason).toMatchObject({
          code: 'TETHER_E_TOKEN',
          message: expect.stringContaining('already used'),
        });
    const nodes = (await admin.list('Node')).items.filter((n) => n.metadata.name.startsWith('race'));
    expect(nodes).toHaveLength(3);
  });

  it.each([
    [
      'RSA-1024',
      {
        name: 'RSASSA-PKCS1-v1_5',
        modulusLength: 1024,
        publicExponent: new Uint8Array([1, 0, 1]),
        hash: 'SHA-256',
      },
      { name: 'RSASSA-PKCS1-v1_5' },
    ],
    ['P-384', { name: 'ECDSA', namedCurve: 'P-384' }, { name: 'ECDSA', hash: 'SHA-384' }],
  ])('refuses a %s CSR with TETHER_E_KEY_TYPE', { timeout: 60_000 }, async (what, alg, sign) => {
    const keys = (await webcrypto.subtle.generateKey(alg, true, [
      'sign',
      'verify',
    ])) as webcrypto.CryptoKeyPair;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=weak',
      keys: keys as unknown as Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[0]['keys'],
      signingAlgorithm: sign,
    });
    const name = `weak-${what.toLowerCase()}`;
    const tok = parseToken(await token('site-a'));
    await expect(enrollRpc(credentialOf(tok), name, csr.toString('pem'))).rejects.toMatchObject({
      code: 'TETHER_E_KEY_TYPE',
    });
    expect((await runTether(['get', 'node', name, '--config', cfg])).code).toBe(3);
  });
});

function enrollRpc(credential: string, nodeName: string, csrPem: string): Promise<EnrollResponse__Output> {
  const client = new (tetherProto().tether.v1.Enrollment)(
    addr,
    controllerCredentials(caPem),
    CHANNEL_OPTIONS,
  );
  return new Promise<EnrollResponse__Output>((resolve, reject) =>
    client.Enroll(
      { token: credential, node_name: nodeName, csr_pem: csrPem, expected_site: '' },
      { deadline: Date.now() + 20_000 },
      (err, r) => (err || !r ? reject(fromGrpcError(err)) : resolve(r)),
    ),
  ).finally(() => client.close());
}

function renewWith(creds: { keyPem: string; certPem: string }, csrPem: string): Promise<string> {
  const client = new (tetherProto().tether.v1.NodeSession)(
    addr,
    controllerCredentials(caPem, creds),
    CHANNEL_OPTIONS,
  );
  return new Promise<string>((resolve, reject) =>
    client.RenewCertificate({ csr_pem: csrPem }, { deadline: Date.now() + 20_000 }, (err, r) =>
      err || !r ? reject(fromGrpcError(err as grpc.ServiceError | null)) : resolve(r.certificate_pem),
    ),
  ).finally(() => client.close());
}

describe('certificate renewal', () => {
  it('renews only the current certificate; the previous one cannot push it out', {
    timeout: 60_000,
  }, async () => {
    await enrolled('rn');
    const c0 = JSON.parse(readFileSync(join(nodeDir('rn'), 'credentials.json'), 'utf8')) as {
      keyPem: string;
      certPem: string;
    };
    const k1 = await createKeyAndCsr('rn');
    const c1 = { keyPem: k1.keyPem, certPem: await renewWith(c0, k1.csrPem) };
    const serials = async () =>
      ((await admin.get('Node', 'rn')).status as { certSerials: string[] }).certSerials;
    const after1 = await serials();
    const err = (await renewWith(c0, (await createKeyAndCsr('rn')).csrPem).catch(
      (e: unknown) => e,
    )) as TetherError;
    expect(err).toMatchObject({
      code: 'TETHER_E_PERMISSION',
      message: expect.stringContaining('only the current one renews'),
    });
    expect(await serials()).toEqual(after1);
    const k2 = await createKeyAndCsr('rn');
    await renewWith(c1, k2.csrPem);
    // Two renewals on, the first certificate is no longer accepted at all.
    const gone = (await renewWith(c0, k2.csrPem).catch((e: unknown) => e)) as TetherError;
    expect(gone.code).toBe('TETHER_E_UNAUTHENTICATED');
  });
});
