// A site's PKI and an upstream the test controls (a real gRPC TLS server speaking
// NodeSession.Sync like the controller, over loopback), plus a minimal agent client: enough
// to drive the site proxy over real TLS before the controller's proxy support is merged.
import { randomUUID, X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type {
  ControllerMessage,
  ControllerMessage__Output,
} from '../../../src/api/gen/tether/v1/ControllerMessage.js';
import type { NodeMessage, NodeMessage__Output } from '../../../src/api/gen/tether/v1/NodeMessage.js';
import type { NodeSessionClient } from '../../../src/api/gen/tether/v1/NodeSession.js';
import type { SiteAgents__Output } from '../../../src/api/gen/tether/v1/SiteAgents.js';
import { tetherProto } from '../../../src/api/grpc.js';
import type { TetherObject } from '../../../src/api/resource.js';
import { type EndpointReportBody, signReport, verifyReport } from '../../../src/api/signed-report.js';
import { type CaMaterial, createCA, createKeyAndCsr, serialOf, signCsr } from '../../../src/lib/pki.js';
import { siteNodeCredentials } from '../../../src/node/connect.js';
import { SITE_CHANNEL_OPTIONS } from '../../../src/node/proxy/tls.js';

const V = 'tether.dev/v1';

export interface NodeCreds {
  name: string;
  site: string;
  keyPem: string;
  certPem: string;
  serial: string;
}

export interface SitePki {
  ca: CaMaterial;
  controller: { keyPem: string; certPem: string };
  node(name: string, site?: string): Promise<NodeCreds>;
}

export async function sitePki(site: string): Promise<SitePki> {
  const ca = await createCA('test-ca');
  const ck = await createKeyAndCsr('controller');
  const cc = await signCsr(ca, ck.csrPem, {
    identity: { role: 'controller', name: 'controller' },
    validitySeconds: 3600,
    server: true,
  });
  return {
    ca,
    controller: { keyPem: ck.keyPem, certPem: cc.certPem },
    async node(name, s = site) {
      const k = await createKeyAndCsr(name);
      const c = await signCsr(ca, k.csrPem, {
        identity: { role: 'node', name, site: s },
        validitySeconds: 3600,
        server: true,
      });
      return {
        name,
        site: s,
        keyPem: k.keyPem,
        certPem: c.certPem,
        serial: serialOf(new X509Certificate(c.certPem)),
      };
    },
  };
}

export function nodeSummary(n: NodeCreds, vtep: string, phase = 'Approved'): TetherObject {
  return {
    apiVersion: V,
    kind: 'Node',
    metadata: { name: n.name },
    spec: { site: n.site },
    status: { phase, vtep, certSerials: [n.serial] },
  };
}

export function network(
  name: string,
  subnet: string,
  nodeBlocks: Record<string, string>,
  sites?: string[],
): TetherObject {
  return {
    apiVersion: V,
    kind: 'VirtualNetwork',
    metadata: { name },
    spec: { subnets: [subnet], ...(sites ? { sites } : {}) },
    status: { vni: 5000, nodeBlocks },
  };
}

export function endpoint(
  node: string,
  name: string,
  net: string,
  ip: string,
  mac: string,
  vtep: string,
  site = 's1',
): TetherObject {
  return {
    apiVersion: V,
    kind: 'Endpoint',
    metadata: { name: `${node}.${name}` },
    spec: { network: net, node, site, ip, mac, vtep },
  };
}

type Call = grpc.ServerDuplexStream<NodeMessage__Output, ControllerMessage>;

/** The controller as far as a site proxy's WAN session sees it, under the test's control. */
export class FakeController {
  private server: grpc.Server | undefined;
  private readonly objects = new Map<string, TetherObject>();
  private readonly history: Array<{
    revision: number;
    put: TetherObject[];
    deleted: Array<{ kind: string; name: string }>;
  }> = [];
  private rev = 0;
  private historyFloor = 0;
  readonly calls = new Set<Call>();
  readonly hellos: NodeMessage__Output['hello'][] = [];
  readonly siteAgents: SiteAgents__Output[] = [];
  readonly relayed: EndpointReportBody[] = [];
  readonly acks: number[] = [];
  /** Names refused in the answer to the next relayed reports. */
  refuse = new Set<string>();
  port = 0;
  /** Bytes of the Resource JSON sent in deltas and snapshots (the resync benchmark). */
  sentBytes = 0;

  constructor(
    private readonly pki: SitePki,
    private readonly certs: Map<string, NodeCreds>,
  ) {}

  get revision(): number {
    return this.rev;
  }

  async start(port = 0): Promise<void> {
    const server = new grpc.Server();
    server.addService(tetherProto().tether.v1.NodeSession.service, {
      Sync: (call: Call) => this.sync(call),
      RenewCertificate: (_c: unknown, cb: grpc.sendUnaryData<unknown>) =>
        cb({ code: grpc.status.UNIMPLEMENTED }),
    });
    const creds = grpc.ServerCredentials.createSsl(
      Buffer.from(this.pki.ca.certPem),
      [
        {
          private_key: Buffer.from(this.pki.controller.keyPem),
          cert_chain: Buffer.from(this.pki.controller.certPem),
        },
      ],
      true,
    );
    this.port = await new Promise<number>((res, rej) =>
      server.bindAsync(`127.0.0.1:${port}`, creds, (e, p) => (e ? rej(e) : res(p))),
    );
    this.server = server;
  }

  /** The WAN is cut: every session dies, nothing is served until restore(). */
  cut(): void {
    for (const c of this.calls) c.destroy();
    this.calls.clear();
    this.server?.forceShutdown();
    this.server = undefined;
  }

  restore(): Promise<void> {
    return this.start(this.port);
  }

  /** One write: a new revision, and a delta to every session. */
  apply(put: TetherObject[], deleted: Array<{ kind: string; name: string }> = []): number {
    const revision = ++this.rev;
    const stamped = put.map((o) => ({ ...o, metadata: { ...o.metadata, revision } }));
    for (const o of stamped) this.objects.set(`${o.kind}/${o.metadata.name}`, o);
    for (const d of deleted) this.objects.delete(`${d.kind}/${d.name}`);
    this.history.push({ revision, put: stamped, deleted });
    const msg: ControllerMessage = { delta: { revision, put: stamped.map(res), deleted } };
    for (const c of this.calls) c.write(msg);
    return revision;
  }

  /** Forgets history: the next hello gets a snapshot. */
  compact(): void {
    this.history.length = 0;
    this.historyFloor = this.rev;
  }

  list(kind: string): TetherObject[] {
    return [...this.objects.values()].filter((o) => o.kind === kind);
  }

  stop(): void {
    this.cut();
  }

  private sync(call: Call): void {
    this.calls.add(call);
    const write = call.write.bind(call);
    call.write = ((m: ControllerMessage) => {
      const r = m.delta ?? m.snapshot_chunk;
      if (r) for (const x of r.put ?? []) this.sentBytes += (x?.json as Buffer | undefined)?.length ?? 0;
      return write(m);
    }) as typeof call.write;
    call.on('data', (m: NodeMessage__Output) => {
      if (m.hello) {
        this.hellos.push(m.hello);
        const held = m.hello.held_revision;
        if (held > 0 && held >= this.historyFloor && held <= this.rev) {
          const put = new Map<string, TetherObject>();
          const del = new Map<string, { kind: string; name: string }>();
          for (const h of this.history) {
            if (h.revision <= held) continue;
            for (const o of h.put) {
              put.set(`${o.kind}/${o.metadata.name}`, o);
              del.delete(`${o.kind}/${o.metadata.name}`);
            }
            for (const d of h.deleted) {
              put.delete(`${d.kind}/${d.name}`);
              del.set(`${d.kind}/${d.name}`, d);
            }
          }
          call.write({
            delta: { revision: this.rev, put: [...put.values()].map(res), deleted: [...del.values()] },
          });
        } else {
          const all = [...this.objects.values()];
          call.write({ snapshot_begin: { revision: this.rev, reason: 'test' } });
          for (let i = 0; i < all.length; i += 500)
            call.write({
              snapshot_chunk: { revision: this.rev, put: all.slice(i, i + 500).map(res), deleted: [] },
            });
          call.write({ snapshot_end: { revision: this.rev, count: all.length } });
        }
      }
      if (m.heartbeat) call.write({ heartbeat: { seq: m.heartbeat.seq, unix_ms: Date.now() } });
      if (m.ack) this.acks.push(m.ack.revision);
      if (m.site_agents) this.siteAgents.push(m.site_agents);
      if (m.relayed_report?.signed) this.onRelayed(call, m.relayed_report.node, m.relayed_report.signed);
    });
    const drop = () => this.calls.delete(call);
    call.on('end', () => {
      drop();
      call.end();
    });
    call.on('error', drop);
    call.on('cancelled', drop);
  }

  private onRelayed(call: Call, node: string, signed: { payload: Buffer; signature: Buffer }): void {
    const cert = this.certs.get(node);
    if (!cert) return;
    const body = verifyReport(signed, cert.certPem, { node, site: cert.site });
    this.relayed.push(body);
    const refused = body.endpoints.filter((e) => this.refuse.has(e.metadata.name));
    const ok = body.endpoints.filter((e) => !this.refuse.has(e.metadata.name));
    const revision = ok.length ? this.apply(ok) : this.rev;
    call.write({
      endpoint_result: {
        revision,
        accepted: ok.length,
        refused: refused.map((e) => ({
          name: e.metadata.name,
          code: 'TETHER_E_CLAIM',
          message: 'taken',
          field: 'spec.ip',
        })),
        node,
      },
    });
  }
}

function res(o: TetherObject) {
  return {
    kind: o.kind,
    name: o.metadata.name,
    json: Buffer.from(JSON.stringify(o)),
    revision: o.metadata.revision ?? 0,
  };
}

/** A minimal agent over real TLS: hello with its held revision, applies and acks, keeps what it got. */
export class TestAgent {
  readonly objects = new Map<string, TetherObject>();
  revision = 0;
  siteLocal: TetherObject[] = [];
  readonly received: ControllerMessage__Output[] = [];
  results: Array<NonNullable<ControllerMessage__Output['endpoint_result']>> = [];
  ended = false;
  private client: NodeSessionClient | undefined;
  private call: grpc.ClientDuplexStream<NodeMessage, ControllerMessage__Output> | undefined;
  private staging: TetherObject[] | undefined;
  private seq = 0;
  private hbSeq = 0;
  private readonly bootId = randomUUID();
  error: grpc.ServiceError | undefined;

  constructor(
    readonly creds: NodeCreds,
    private readonly caPem: string,
  ) {}

  connect(address: string): void {
    this.close();
    this.ended = false;
    this.error = undefined;
    this.received.length = 0;
    this.client = new (tetherProto().tether.v1.NodeSession)(
      address,
      siteNodeCredentials(this.caPem, this.creds, this.creds.site),
      SITE_CHANNEL_OPTIONS,
    );
    const call = this.client.Sync();
    this.call = call;
    call.on('data', (m: ControllerMessage__Output) => this.handle(m));
    call.on('error', (e: grpc.ServiceError) => {
      this.error = e;
      this.ended = true;
    });
    call.on('end', () => {
      this.ended = true;
    });
    call.write({ hello: { node_name: this.creds.name, held_revision: this.revision, boot_id: this.bootId } });
  }

  report(
    endpoints: TetherObject[],
    signer: { keyPem: string; certPem: string } = this.creds,
    site = this.creds.site,
  ): void {
    const body: EndpointReportBody = {
      node: this.creds.name,
      site,
      bootId: this.bootId,
      seq: ++this.seq,
      at: Date.now(),
      endpoints,
    };
    this.call?.write({
      endpoints: { endpoints: [], signed: signReport(body, signer.keyPem, signer.certPem) },
    });
  }

  /** A heartbeat as a real agent sends one every interval (the upstream ends a silent session). */
  heartbeat(): void {
    this.call?.write({ heartbeat: { seq: ++this.hbSeq, unix_ms: Date.now() } });
  }

  close(): void {
    this.call?.cancel();
    this.client?.close();
    this.call = undefined;
  }

  private handle(m: ControllerMessage__Output): void {
    this.received.push(m);
    const dec = (r: { json: Buffer }) => JSON.parse(r.json.toString()) as TetherObject;
    switch (m.msg) {
      case 'snapshot_begin':
        this.staging = [];
        return;
      case 'snapshot_chunk':
        this.staging?.push(...m.snapshot_chunk!.put.map(dec));
        return;
      case 'snapshot_end':
        this.objects.clear();
        for (const o of this.staging ?? []) this.objects.set(`${o.kind}/${o.metadata.name}`, o);
        this.staging = undefined;
        this.revision = m.snapshot_end!.revision;
        this.call?.write({ ack: { revision: this.revision } });
        return;
      case 'delta':
        for (const o of m.delta!.put.map(dec)) this.objects.set(`${o.kind}/${o.metadata.name}`, o);
        for (const d of m.delta!.deleted) this.objects.delete(`${d.kind}/${d.name}`);
        this.revision = Math.max(this.revision, m.delta!.revision);
        this.call?.write({ ack: { revision: this.revision } });
        return;
      case 'site_local':
        this.siteLocal = m.site_local!.endpoints.map(dec);
        return;
      case 'endpoint_result':
        this.results.push(m.endpoint_result!);
        return;
      case 'heartbeat':
        return;
      default:
        return;
    }
  }
}

/** Polls `check` until it holds (no fixed sleeps). */
export async function until(what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface FakeSite {
  pki: SitePki;
  /** Every node's credentials by name (the site's and `foreign` ones). */
  creds: Map<string, NodeCreds>;
  ctl: FakeController;
}

/**
 * A site's PKI, its nodes' credentials and a started FakeController that holds the nodes'
 * Approved summaries (VTEP from `vteps`) and `objects`, all in one revision.
 */
export async function fakeSite(
  site: string,
  vteps: Record<string, string>,
  opts: { objects?: TetherObject[]; foreign?: Record<string, string> } = {},
): Promise<FakeSite> {
  const pki = await sitePki(site);
  const creds = new Map<string, NodeCreds>();
  for (const n of Object.keys(vteps)) creds.set(n, await pki.node(n));
  for (const [n, s] of Object.entries(opts.foreign ?? {})) creds.set(n, await pki.node(n, s));
  const ctl = new FakeController(pki, creds);
  await ctl.start();
  ctl.apply([
    ...Object.entries(vteps).map(([n, vtep]) => nodeSummary(creds.get(n)!, vtep)),
    ...(opts.objects ?? []),
  ]);
  return { pki, creds, ctl };
}
