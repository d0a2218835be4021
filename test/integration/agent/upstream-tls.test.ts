// The gRPC upstreams over real TLS on loopback: the site-proxy upstream accepts only a
// server certificate naming a node of the agent's own site, the controller upstream only a
// controller; both present the agent's node certificate.
import 'reflect-metadata';
import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeSessionHandlers } from '../../../src/api/gen/tether/v1/NodeSession.js';
import { tetherProto } from '../../../src/api/grpc.js';
import { createKeyAndCsr, type Identity, identityOf, signCsr } from '../../../src/lib/pki.js';
import { controllerUpstream, siteProxyUpstream, type Upstream } from '../../../src/node/agent/upstream.js';
import type { LoadedIdentity } from '../../../src/node/identity.js';
import { testCa, testIdentity } from '../../unit/agent/support.js';

async function cert(identity: Identity) {
  const { keyPem, csrPem } = await createKeyAndCsr(identity.name);
  const c = await signCsr(await testCa(), csrPem, { identity, validitySeconds: 3600, server: true });
  return { keyPem, certPem: c.certPem };
}

/** A NodeSession server presenting `serverId`'s certificate; answers a hello with the
 *  client's identity as a goodbye reason (so the test sees who it talked to). */
async function serve(serverId: Identity): Promise<{ address: string; server: grpc.Server }> {
  const ca = await testCa();
  const { keyPem, certPem } = await cert(serverId);
  const server = new grpc.Server();
  const handlers: NodeSessionHandlers = {
    Sync: (call) => {
      const raw = call.getAuthContext().sslPeerCertificate?.raw;
      const who = raw ? identityOf(new X509Certificate(raw)) : undefined;
      call.on('data', () => {
        call.write({ goodbye: { code: 'TETHER_E_UNAVAILABLE', reason: JSON.stringify(who ?? null) } });
        call.end();
      });
    },
    RenewCertificate: (_call, cb) => cb({ code: grpc.status.UNIMPLEMENTED }),
    ReportFirstBoot: (_call, cb) => cb({ code: grpc.status.UNIMPLEMENTED }),
  };
  server.addService(
    tetherProto().tether.v1.NodeSession.service,
    handlers as grpc.UntypedServiceImplementation,
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      '127.0.0.1:0',
      grpc.ServerCredentials.createSsl(
        Buffer.from(ca.certPem),
        [{ private_key: Buffer.from(keyPem), cert_chain: Buffer.from(certPem) }],
        true,
      ),
      (err, p) => (err ? reject(err) : resolve(p)),
    ),
  );
  return { address: `127.0.0.1:${port}`, server };
}

/** Opens one call and reports the server's goodbye reason or the error code. */
function attempt(up: Upstream): Promise<{ reason?: string; error?: string }> {
  return new Promise((resolve) => {
    const call = up.open();
    call.on('data', (m) => {
      if (m.goodbye) resolve({ reason: m.goodbye.reason });
    });
    call.on('error', (e) => resolve({ error: `${e.code}: ${e.message}` }));
    call.write({ hello: { node_name: 'n1', held_revision: 0 } });
  });
}

describe('gRPC upstreams over TLS', () => {
  let me: LoadedIdentity;
  const servers: grpc.Server[] = [];
  const upstreams: Upstream[] = [];
  beforeAll(async () => {
    me = await testIdentity('n1', 'site-a');
  });
  afterAll(() => {
    for (const u of upstreams) u.close();
    for (const s of servers) s.forceShutdown();
  });

  const at = async (serverId: Identity) => {
    const s = await serve(serverId);
    servers.push(s.server);
    return s.address;
  };

  it('the site-proxy upstream talks to a node of its own site with its own node certificate', async () => {
    const up = siteProxyUpstream(me, await at({ role: 'node', name: 'n2', site: 'site-a' }));
    upstreams.push(up);
    const r = await attempt(up);
    expect(r.error).toBeUndefined();
    expect(JSON.parse(r.reason!)).toEqual({ role: 'node', name: 'n1', site: 'site-a' });
  });

  it('the site-proxy upstream refuses a node of another site and a controller', async () => {
    for (const id of [
      { role: 'node', name: 'n2', site: 'site-b' },
      { role: 'controller', name: 'ctl' },
      { role: 'admin', name: 'root' },
    ] as Identity[]) {
      const up = siteProxyUpstream(me, await at(id));
      upstreams.push(up);
      const r = await attempt(up);
      expect(r.reason, JSON.stringify(id)).toBeUndefined();
      expect(r.error).toMatch(/TETHER_E_UNAVAILABLE/);
    }
  });

  it('the controller upstream accepts a controller and refuses a node posing as one', async () => {
    const ok = controllerUpstream({ ...me, controllers: [await at({ role: 'controller', name: 'ctl' })] });
    const bad = controllerUpstream({
      ...me,
      controllers: [await at({ role: 'node', name: 'n2', site: 'site-a' })],
    });
    upstreams.push(ok, bad);
    expect((await attempt(ok)).reason).toBeDefined();
    expect((await attempt(bad)).error).toMatch(/TETHER_E_UNAVAILABLE/);
  });
});
