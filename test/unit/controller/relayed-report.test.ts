// Reports a site proxy relays for its site's nodes: only a report the node itself signed,
// with the certificate the controller issued to it and still accepts, for an Approved node
// of the proxy's own site, newer than the last one accepted from that node.
import { syncControllerStore } from '../../support/sync-store.js';
import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type {
  ControllerMessage,
  ControllerMessage__Output,
} from '../../../src/api/gen/tether/v1/ControllerMessage.js';
import type { NodeMessage__Output } from '../../../src/api/gen/tether/v1/NodeMessage.js';
import { tetherProto } from '../../../src/api/grpc.js';
import type { TetherObject } from '../../../src/api/resource.js';
import { type EndpointReportBody, signReport } from '../../../src/api/signed-report.js';
import { DEFAULT_CONFIG } from '../../../src/controller/config.js';
import type { Session } from '../../../src/controller/hub.js';
import { ControllerServer } from '../../../src/controller/server.js';
import { MemoryStore } from '../../../src/controller/store/memory.js';
import { SqliteStore } from '../../../src/controller/store/sqlite.js';
import type { Store } from '../../../src/controller/store/store.js';
import { FakeClock } from '../../../src/lib/clock.js';
import { silentLogger } from '../../../src/lib/log.js';
import {
  type CaMaterial,
  createCA,
  createKeyAndCsr,
  normalizeSerial,
  signCsr,
} from '../../../src/lib/pki.js';
import { DurableSequence } from '../../../src/lib/sequence.js';
import { AgentSession } from '../../../src/node/agent/session.js';
import { MemoryUpstream } from '../../../src/node/agent/upstream.js';
import { StateCache } from '../../../src/node/cache.js';

interface NodeKeys {
  keyPem: string;
  certPem: string;
  serial: string;
}

let ca: CaMaterial;
let otherCa: CaMaterial;
let server: { keyPem: string; certPem: string };
const keys = new Map<string, NodeKeys>();

async function issue(c: CaMaterial, name: string, site: string): Promise<NodeKeys> {
  const { keyPem, csrPem } = await createKeyAndCsr(name);
  const cert = await signCsr(c, csrPem, { identity: { role: 'node', name, site }, validitySeconds: 3600 });
  return { keyPem, certPem: cert.certPem, serial: normalizeSerial(cert.serial) };
}

beforeAll(async () => {
  ca = await createCA('relay-ca');
  otherCa = await createCA('other-ca');
  const s = await createKeyAndCsr('controller');
  const sc = await signCsr(ca, s.csrPem, {
    identity: { role: 'controller', name: 'controller' },
    validitySeconds: 3600,
    server: true,
  });
  server = { keyPem: s.keyPem, certPem: sc.certPem };
  for (const [n, site] of [
    ['a1', 'site-a'],
    ['a2', 'site-a'],
    ['b1', 'site-b'],
  ] as const)
    keys.set(n, await issue(ca, n, site));
});

function nodeObj(name: string, site: string, phase = 'Approved'): TetherObject {
  const k = keys.get(name)!;
  return {
    apiVersion: 'tether.dev/v1',
    kind: 'Node',
    metadata: { name },
    spec: { site },
    status: { phase, certSerials: [k.serial], issuedCertPem: k.certPem, vtep: '192.0.2.1' },
  };
}

const tmp = mkdtempSync(join(tmpdir(), 'tether-relayed-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function seed(store: Store): void {
  store.txn([
    {
      op: 'put',
      object: { apiVersion: 'tether.dev/v1', kind: 'Site', metadata: { name: 'site-a' }, spec: {} },
    },
    { op: 'put', object: nodeObj('a1', 'site-a') },
    { op: 'put', object: nodeObj('a2', 'site-a') },
    { op: 'put', object: nodeObj('b1', 'site-b') },
  ]);
}

/** Lets the endpoint claims' commit (a promise) finish and its answer go out. */
const settle = () => new Promise<void>((r) => setImmediate(r));

function serve(store: Store): ControllerServer {
  return new ControllerServer({
    store: syncControllerStore(store),
    ca,
    serverCertPem: server.certPem,
    serverKeyPem: server.keyPem,
    config: DEFAULT_CONFIG,
    log: silentLogger(),
  });
}

function setup() {
  const store = new MemoryStore();
  seed(store);
  const srv = serve(store);
  // The proxy of site-a runs on a1.
  const session = { node: 'a1', site: 'site-a', role: 'proxy' } as Session;
  return { store, srv, session };
}

/** A proxy session whose answers are recorded (as the hub writes them to the call). */
function proxySession(): { session: Session; answers: ControllerMessage[] } {
  const answers: ControllerMessage[] = [];
  const call = {
    write: (m: ControllerMessage, cb?: () => void) => {
      answers.push(m);
      cb?.();
      return true;
    },
  };
  const session = {
    node: 'a1',
    site: 'site-a',
    role: 'proxy',
    call,
    queued: 0,
    overflowed: false,
  } as unknown as Session;
  return { session, answers };
}

const body = (
  node: string,
  site: string,
  seq: number,
  extra: Partial<EndpointReportBody> = {},
): EndpointReportBody => ({
  node,
  site,
  bootId: 'boot-1',
  seq,
  at: 1_000 + seq,
  endpoints: [],
  ...extra,
});

function signed(b: EndpointReportBody, by: NodeKeys = keys.get(b.node)!) {
  return signReport(b, by.keyPem, by.certPem);
}

function refusal(r: ReturnType<ControllerServer['checkRelayed']>) {
  return 'refusal' in r ? r.refusal.refused[0] : undefined;
}

describe('relayed endpoint reports', () => {
  it("accepts a report signed by the node's current certificate for a node of the proxy's site", async () => {
    const { srv, session } = setup();
    const r = srv.checkRelayed(session, { node: 'a2', signed: signed(body('a2', 'site-a', 1)) });
    expect('body' in r && r.body.seq).toBe(1);
  });

  it('refuses a forged report: signed by another key, tampered after signing, or by a foreign CA', async () => {
    const { srv, session } = setup();
    // The proxy's own node signs for its neighbour (with the neighbour's serial).
    const byProxy = signReport(body('a2', 'site-a', 1), keys.get('a1')!.keyPem, keys.get('a2')!.certPem);
    expect(refusal(srv.checkRelayed(session, { node: 'a2', signed: byProxy }))?.field).toBe(
      'signed.signature',
    );
    // A genuine signature over a changed payload.
    const good = signed(body('a2', 'site-a', 2));
    const tampered = { ...good, payload: Buffer.from(good.payload.toString().replace('"seq":2', '"seq":3')) };
    expect(refusal(srv.checkRelayed(session, { node: 'a2', signed: tampered }))?.code).toBe(
      'TETHER_E_PERMISSION',
    );
    // A certificate for the same name from another CA: its serial is not the node's.
    const foreign = await issue(otherCa, 'a2', 'site-a');
    const r = srv.checkRelayed(session, { node: 'a2', signed: signed(body('a2', 'site-a', 4), foreign) });
    expect(refusal(r)?.field).toBe('relayed_report.signed.cert_serial');
    // No signature at all.
    expect(refusal(srv.checkRelayed(session, { node: 'a2', signed: null }))?.code).toBe('TETHER_E_INVALID');
    // Each refusal is counted under the named node.
    expect(srv.endpoints.stats('a2')?.refused).toBe(4);
  });

  it("refuses another site's node, even with that node's genuine signature, and an unknown name", async () => {
    const { srv, session } = setup();
    const r = srv.checkRelayed(session, { node: 'b1', signed: signed(body('b1', 'site-b', 1)) });
    expect(refusal(r)?.code).toBe('TETHER_E_PERMISSION');
    // A report naming the proxy's site for b1 is still b1's, and b1 is not a node of site-a.
    const r2 = srv.checkRelayed(session, { node: 'b1', signed: signed(body('b1', 'site-a', 2)) });
    expect(refusal(r2)?.code).toBe('TETHER_E_PERMISSION');
    // A name that is no node at all is counted under the proxy's node, not remembered.
    const r3 = srv.checkRelayed(session, { node: 'ghost', signed: signed(body('a2', 'site-a', 1)) });
    expect(refusal(r3)?.code).toBe('TETHER_E_PERMISSION');
    expect(srv.endpoints.stats('ghost')).toBeUndefined();
    expect(srv.endpoints.stats('a1')?.refused).toBe(1);
    // The payload must name the relayed node.
    const r4 = srv.checkRelayed(session, { node: 'a2', signed: signed(body('a2', 'site-b', 1)) });
    expect(refusal(r4)?.field).toBe('signed.payload.site');
  });

  it('refuses a replay: the same or a lower seq, of the same boot or another', async () => {
    const { srv, session } = setup();
    const r5 = signed(body('a2', 'site-a', 5));
    expect('body' in srv.checkRelayed(session, { node: 'a2', signed: r5 })).toBe(true);
    expect(refusal(srv.checkRelayed(session, { node: 'a2', signed: r5 }))?.code).toBe('TETHER_E_CONFLICT');
    const r4 = signed(body('a2', 'site-a', 4));
    expect(refusal(srv.checkRelayed(session, { node: 'a2', signed: r4 }))?.code).toBe('TETHER_E_CONFLICT');
    // Another boot is judged by seq too (the node keeps it on disk), never by time: a lower
    // seq is a replay even with a later time, a higher one is accepted even with an earlier
    // time (the node's clock stepped back across its reboot).
    const old = signed(body('a2', 'site-a', 3, { bootId: 'boot-0', at: 1e12 }));
    expect(refusal(srv.checkRelayed(session, { node: 'a2', signed: old }))?.code).toBe('TETHER_E_CONFLICT');
    const next = signed(body('a2', 'site-a', 1005, { bootId: 'boot-2', at: 1 }));
    expect('body' in srv.checkRelayed(session, { node: 'a2', signed: next })).toBe(true);
    expect(srv.endpoints.stats('a2')?.byCode.TETHER_E_CONFLICT).toBe(3);
  });

  it('refuses a revoked, reset or pending node', async () => {
    for (const phase of ['Revoked', 'Reset', 'Pending']) {
      const { store, srv, session } = setup();
      store.txn([{ op: 'put', object: nodeObj('a2', 'site-a', phase) }]);
      const r = srv.checkRelayed(session, { node: 'a2', signed: signed(body('a2', 'site-a', 1)) });
      expect(refusal(r)?.code, phase).toBe(phase === 'Pending' ? 'TETHER_E_PERMISSION' : 'TETHER_E_REVOKED');
    }
  });

  it('refuses a report signed with a certificate the node no longer holds (renewed since)', async () => {
    const { store, srv, session } = setup();
    const before = keys.get('a2')!;
    const renewed = await issue(ca, 'a2', 'site-a');
    const n = nodeObj('a2', 'site-a');
    store.txn([
      {
        op: 'put',
        object: {
          ...n,
          status: { ...n.status, certSerials: [renewed.serial], issuedCertPem: renewed.certPem },
        },
      },
    ]);
    const r = srv.checkRelayed(session, { node: 'a2', signed: signed(body('a2', 'site-a', 1), before) });
    expect(refusal(r)?.field).toBe('relayed_report.signed.cert_serial');
    const ok = srv.checkRelayed(session, { node: 'a2', signed: signed(body('a2', 'site-a', 2), renewed) });
    expect('body' in ok).toBe(true);
  });

  it('refuses a replay of an older report after the controller restarted on the same store', async () => {
    const dataDir = join(tmp, 'restart');
    let store = new SqliteStore(dataDir);
    seed(store);
    let srv = serve(store);
    let { session } = proxySession();
    // Three reports of a2 stored through the pacer (one per interval: a new session each).
    for (const seq of [5, 6, 7]) {
      ({ session } = proxySession());
      srv.relayedReport(session, { node: 'a2', signed: signed(body('a2', 'site-a', seq)) }, new Map());
      await settle();
    }
    expect(store.reportMark('a2')).toMatchObject({
      seq: 7,
      bootId: 'boot-1',
      serial: keys.get('a2')!.serial,
    });
    await srv.close();
    store.close();

    // A new controller process on the same data directory: nothing in memory.
    store = new SqliteStore(dataDir);
    srv = serve(store);
    ({ session } = proxySession());
    // What the proxy's hello does before its session opens: the site's stored marks.
    await srv.loadMarks(['a2']);
    for (const seq of [7, 6, 1]) {
      const r = srv.checkRelayed(session, { node: 'a2', signed: signed(body('a2', 'site-a', seq)) });
      expect(refusal(r)?.code, `seq ${seq}`).toBe('TETHER_E_CONFLICT');
    }
    // Also under a made-up boot id with a later time: the seq decides.
    const otherBoot = signed(body('a2', 'site-a', 6, { bootId: 'boot-9', at: 9e12 }));
    expect(refusal(srv.checkRelayed(session, { node: 'a2', signed: otherBoot }))?.code).toBe(
      'TETHER_E_CONFLICT',
    );
    // The node's next report goes through and moves the stored mark.
    srv.relayedReport(session, { node: 'a2', signed: signed(body('a2', 'site-a', 8)) }, new Map());
    await settle();
    expect(store.reportMark('a2')?.seq).toBe(8);
    await srv.close();
    store.close();
  });

  it("accepts a node's reports after a reboot with its clock stepped back (seq on disk, not time)", async () => {
    const { srv, session } = setup();
    const k = keys.get('a2')!;
    const identity = {
      name: 'a2',
      site: 'site-a',
      controllers: ['memory:1'],
      caFingerprint: 'test',
      caPem: ca.certPem,
      credentials: { keyPem: k.keyPem, certPem: k.certPem },
    };
    const dir = mkdtempSync(join(tmp, 'node-'));
    const clock = new FakeClock(Date.UTC(2026, 5, 1));
    /** One run of the node daemon: its session signs one report with the on-disk sequence. */
    const boot = async () => {
      const got: NodeMessage__Output[] = [];
      const upstream = new MemoryUpstream((call) => {
        call.on('data', (m: NodeMessage__Output) => {
          got.push(m);
          if (m.hello) {
            call.write({ snapshot_begin: { revision: 1, reason: '' } });
            call.write({ snapshot_end: { revision: 1, count: 0 } });
          }
        });
      });
      const seq = new DurableSequence(join(dir, 'report-seq.json'), { now: () => clock.now() });
      const s = new AgentSession({
        identity,
        cache: new StateCache(join(dir, 'cache.json')),
        log: silentLogger(),
        clock,
        chooseUpstream: () => upstream,
        reportSeq: () => seq.next(),
      });
      s.start();
      await clock.advance(0);
      s.reportEndpoints([]);
      await clock.advance(0);
      s.stop();
      const signedReport = got.find((m) => m.endpoints?.signed)?.endpoints?.signed;
      expect(signedReport).toBeTruthy();
      return signedReport!;
    };
    const first = await boot();
    expect('body' in srv.checkRelayed(session, { node: 'a2', signed: first })).toBe(true);
    // The node reboots and its clock comes up a day behind (a lost RTC, an NTP step back).
    for (const back of [86_400_000, 3_600_000, 1]) {
      clock.step(clock.now() - back);
      const again = await boot();
      const r = srv.checkRelayed(session, { node: 'a2', signed: again });
      expect(refusal(r)).toBeUndefined();
    }
    // And its earlier report is still a replay.
    expect(refusal(srv.checkRelayed(session, { node: 'a2', signed: first }))?.code).toBe('TETHER_E_CONFLICT');
  });

  it('made-up node names do not grow the answers held for an overflowed proxy session, and are refused', async () => {
    const { srv } = setup();
    const { session } = proxySession();
    // The proxy's WAN link stalled: answers are held (one per node) until it drains.
    session.overflowed = true;
    const names = [
      ...Array.from({ length: 2000 }, (_, i) => `ghost-${i}`),
      'x'.repeat(10_000),
      '',
      'b1', // a real node, of another site: not the proxy's to name either
    ];
    // With a genuine signature of a neighbour, or none.
    const genuine = signed(body('a2', 'site-a', 1));
    for (const [i, node] of names.entries())
      srv.relayedReport(session, { node, signed: i % 2 ? genuine : null }, new Map());
    // Every made-up name shares one slot: the proxy's own node.
    expect([...(session.held?.keys() ?? [])]).toEqual(['a1']);
    // A real node of the site keeps its own slot: its answer is not lost among the others.
    srv.relayedReport(session, { node: 'a2', signed: signed(body('a2', 'site-a', 1)) }, new Map());
    await settle();
    expect([...(session.held?.keys() ?? [])].sort()).toEqual(['a1', 'a2']);
    // Each name was refused with a clear code, counted under the proxy's node, and the held
    // answer says which name and why (the name cut to 64 characters).
    expect(srv.endpoints.stats('a1')!.byCode.TETHER_E_PERMISSION).toBe(names.length - 1);
    expect(srv.endpoints.stats('b1')!.byCode.TETHER_E_PERMISSION).toBe(1);
    expect(srv.endpoints.stats('ghost-1')).toBeUndefined();
    const held = decode(session.held!.get('a1')!).endpoint_result!;
    expect(held.node).toBe('b1');
    expect(held.refused).toEqual([
      expect.objectContaining({
        name: '*',
        code: 'TETHER_E_PERMISSION',
        message: expect.stringMatching(/is not a node of site "site-a"/),
      }),
    ]);
    srv.relayedReport(session, { node: 'y'.repeat(500), signed: null }, new Map());
    expect(decode(session.held!.get('a1')!).endpoint_result!.node).toBe('y'.repeat(64));
    expect(session.held!.size).toBe(2);
  });
});

/** A message as the hub wrote it (pre-encoded by the server) back as an object. */
function decode(m: ControllerMessage): ControllerMessage__Output {
  const bytes = (m as unknown as { bytes: Buffer }).bytes;
  return tetherProto().tether.v1.NodeSession.service.Sync.responseDeserialize(
    bytes,
  ) as ControllerMessage__Output;
}

describe('relayed gateway reports', () => {
  const report = {
    gateway: 'gw-a',
    role: 'active',
    running: true,
    config_hash: 'h',
    error: '',
    peers: [],
    bound: [],
    announced: 1,
  };
  const gateway: TetherObject = {
    apiVersion: 'tether.dev/v1',
    kind: 'Gateway',
    metadata: { name: 'gw-a' },
    spec: {
      site: 'site-a',
      nodes: ['a1', 'a2'],
      localAsn: 65001,
      pool: [],
      peers: [{ name: 'r', address: '10.0.0.1', asn: 65000 }],
    },
  };
  it("takes a report for an approved node of the proxy's site, with the node's own checks", () => {
    const { store, srv, session } = setup();
    store.txn([{ op: 'put', object: gateway }]);
    expect(srv.relayedGateway(session, { node: 'a2', report })).toBeUndefined();
    // As the node's own report would be: a role from a node the Gateway does not list is not.
    store.txn([{ op: 'put', object: { ...gateway, spec: { ...gateway.spec, nodes: ['a1'] } } }]);
    expect(srv.relayedGateway(session, { node: 'a2', report })).toMatch(/not a gateway node/);
  });
  it("refuses another site's node, an unknown or unapproved name, and an empty relay", () => {
    const { store, srv, session } = setup();
    store.txn([
      { op: 'put', object: gateway },
      { op: 'put', object: nodeObj('a2', 'site-a', 'Pending') },
    ]);
    expect(srv.relayedGateway(session, { node: 'b1', report })).toMatch(
      /not an approved node of site site-a/,
    );
    expect(srv.relayedGateway(session, { node: 'nobody', report })).toMatch(/not an approved node/);
    expect(srv.relayedGateway(session, { node: 'a2', report })).toMatch(/not an approved node/);
    store.txn([{ op: 'put', object: nodeObj('a2', 'site-a') }]);
    expect(srv.relayedGateway(session, { node: 'a2', report: null })).toBe('no report');
  });
});
