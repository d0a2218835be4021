// The proxy port's Sync handler before a session exists: who gets a call at all, and how long
// a call may stay without a hello. Driven through an in-memory transport with the real
// serializers and real node certificates.
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { tetherProto } from '../../../src/api/grpc.js';
import type { TetherError } from '../../../src/lib/errors.js';
import { silentLogger } from '../../../src/lib/log.js';
import { MemoryUpstream, type UpstreamCall } from '../../../src/node/agent/upstream.js';
import { siteNodeCredentials } from '../../../src/node/connect.js';
import { ProxyCore } from '../../../src/node/proxy/core.js';
import { PROXY_MAX_CONCURRENT_STREAMS, ProxyServer } from '../../../src/node/proxy/server.js';
import { SITE_CHANNEL_OPTIONS } from '../../../src/node/proxy/tls.js';
import { type NodeCreds, nodeSummary, type SitePki, sitePki, until } from '../../integration/support/site.js';

let pki: SitePki;
let n1: NodeCreds;
let n2: NodeCreds;
let n3: NodeCreds;
let other: NodeCreds;
const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

beforeAll(async () => {
  pki = await sitePki('s1');
  n1 = await pki.node('n1');
  n2 = await pki.node('n2');
  n3 = await pki.node('n3');
  other = await pki.node('n4');
});

function setup(helloTimeoutMs?: number) {
  const dir = mkdtempSync(join(tmpdir(), 'tether-proxy-server-'));
  const core = new ProxyCore({ dir, node: 'n1', site: 's1', log: silentLogger(), siteAgentsDelayMs: 0 });
  // n2 is revoked; n3 is listed with another serial (its certificate was replaced); n4 unknown.
  const n3old = { ...nodeSummary(n3, '192.0.2.3') };
  (n3old.status as { certSerials: string[] }).certSerials = ['00ff'];
  core.applySnapshot(10, [nodeSummary(n1, '192.0.2.1'), nodeSummary(n2, '192.0.2.2', 'Revoked'), n3old]);
  const server = new ProxyServer({
    site: 's1',
    caPem: pki.ca.certPem,
    credentials: { keyPem: n1.keyPem, certPem: n1.certPem },
    log: silentLogger(),
    core: () => core,
    probe: () => ({ node: 'n1', active: true, active_since: 0, revision: 0, wan_up: false }),
    ...(helloTimeoutMs ? { helloTimeoutMs } : {}),
  });
  cleanup.push(() => {
    core.stop();
    void server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { core, server };
}

function open(server: ProxyServer, who: NodeCreds) {
  const up = new MemoryUpstream(
    (call) => server.handleSync(call as never),
    'proxy',
    new X509Certificate(who.certPem).raw,
  );
  const call: UpstreamCall = up.open();
  const got = { error: undefined as TetherError | undefined, data: 0 };
  call.on('error', (e: TetherError) => {
    got.error = e;
  });
  call.on('data', () => got.data++);
  return { call, got };
}

describe('ProxyServer on real TLS', () => {
  it('lets one connection hold at most PROXY_MAX_CONCURRENT_STREAMS calls at once', async () => {
    const { server } = setup(60_000);
    const port = await server.listen('127.0.0.1', 0);
    const proto = tetherProto();
    const client = new proto.tether.v1.NodeSession(
      `127.0.0.1:${port}`,
      siteNodeCredentials(pki.ca.certPem, { keyPem: n1.keyPem, certPem: n1.certPem }, 's1'),
      SITE_CHANNEL_OPTIONS,
    );
    cleanup.unshift(() => client.close());
    const calls = Array.from({ length: PROXY_MAX_CONCURRENT_STREAMS + 2 }, () => {
      const c = client.Sync();
      c.on('error', () => {});
      return c;
    });
    await until('the first streams are served', () => server.openCalls === PROXY_MAX_CONCURRENT_STREAMS);
    // The others wait for a free stream: ending one lets exactly one more in.
    calls[0]!.cancel();
    await until(
      'a waiting stream took the freed slot',
      () => server.openCalls === PROXY_MAX_CONCURRENT_STREAMS,
    );
    expect(server.openCalls).toBe(PROXY_MAX_CONCURRENT_STREAMS);
    for (const c of calls) c.cancel();
  });
});

describe('ProxyServer.handleSync', () => {
  it('refuses a certificate the roster does not list as current before any hello', async () => {
    const { server } = setup(60_000);
    const cases: Array<[NodeCreds, string]> = [
      [n2, 'TETHER_E_REVOKED'],
      [n3, 'TETHER_E_PERMISSION'],
      [other, 'TETHER_E_PERMISSION'],
    ];
    const opened = cases.map(([who]) => open(server, who));
    // None of them sends anything: the refusal must not wait for a hello.
    await until('every call refused', () => opened.every((o) => o.got.error !== undefined));
    expect(opened.map((o) => o.got.error?.code)).toEqual(cases.map(([, code]) => code));
    expect(opened.every((o) => o.got.data === 0)).toBe(true);
  });

  it('ends a call that sends no hello within the deadline with TETHER_E_TIMEOUT', async () => {
    const { server, core } = setup(100);
    const silent = open(server, n1);
    await until('the silent call ended', () => silent.got.error !== undefined);
    expect(silent.got.error?.code).toBe('TETHER_E_TIMEOUT');
    expect(core.agentCount()).toBe(0);
    // A call that says hello in time keeps its session past the deadline.
    const ok = open(server, n1);
    ok.call.write({
      msg: 'hello',
      hello: {
        node_name: 'n1',
        held_revision: 0,
        version: '',
        boot_id: 'b',
        underlay_ip: '',
        role: '',
        heartbeat_ms: 0,
      },
    });
    await until('session opened', () => core.agentCount() === 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(ok.got.error).toBeUndefined();
    expect(core.agentCount()).toBe(1);
  });
});
