// Revocation at a real site proxy on loopback: when the controller revokes a node (its Node
// summary in the site slice turns Revoked, certSerials emptied), the proxy ends the node's
// session with a goodbye AND closes every connection the revoked certificate holds on the
// proxy port (the agent's HTTP/2 connection, an idle TLS connection that never opened a call),
// not only refuses new sessions; a new connection with that certificate no longer counts as
// authenticated, so the port's idle bound closes it. Other agents are untouched.
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/lib/log.js';
import { ControllerSet } from '../../../src/node/controllers.js';
import { SiteProxy } from '../../../src/node/proxy/proxy.js';
import { freePort, waitFor } from '../support/proc.js';
import { type FakeSite, fakeSite, network, nodeSummary, TestAgent, until } from '../support/site.js';

// n1 runs the proxy; n2 (revoked during the test) and n3 connect from other loopback addresses.
const VTEP = { n1: '127.0.0.1', n2: '127.0.0.5', n3: '127.0.0.6' };
/** The idle bound of connections that are not (or no longer) authenticated, in this test. */
const IDLE_MS = 1500;

let dir: string;
let site: FakeSite;
let proxy: SiteProxy;
let port: number;
const agents: TestAgent[] = [];
const sockets: Array<{ destroy(): void }> = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tether-proxy-revoke-'));
  site = await fakeSite('s1', VTEP, {
    objects: [
      network('red', '10.1.0.0/24', { n1: '10.1.0.0/28', n2: '10.1.0.16/28', n3: '10.1.0.32/28' }, ['s1']),
    ],
  });
  port = await freePort();
  proxy = new SiteProxy({
    stateDir: join(dir, 'n1'),
    node: 'n1',
    site: 's1',
    controllers: new ControllerSet([`127.0.0.1:${site.ctl.port}`]),
    caPem: site.pki.ca.certPem,
    credentials: site.creds.get('n1')!,
    vtep: VTEP.n1,
    port,
    log: silentLogger(),
    // n2 and n3 run no proxy here: n1 is the only candidate that answers, so it is active.
    agentSlice: () => ({ revision: 0, objects: site.ctl.list('Node') }),
    probeMs: 200,
    probeTimeoutMs: 300,
    backoff: { baseMs: 50, capMs: 200 },
    // Only the idle bound is short; the age bound (120 s) stays out of the test's way.
    connectionLimits: { unauthenticatedIdleMs: IDLE_MS },
  });
  await proxy.start();
  await until('the proxy active with its WAN up', () => proxy.status().wan?.up === true, 30_000);
}, 60_000);

afterAll(async () => {
  for (const s of sockets) s.destroy();
  for (const a of agents) a.close();
  await proxy?.stop();
  site?.ctl.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A TLS connection with the node's certificate that completes its handshake and then idles. */
function idleTls(node: string, localAddress: string): { secure: boolean; closed: boolean } {
  const c = site.creds.get(node)!;
  const t = { secure: false, closed: false };
  const socket = tlsConnect({
    socket: netConnect({ host: '127.0.0.1', port, localAddress }),
    ca: site.pki.ca.certPem,
    cert: c.certPem,
    key: c.keyPem,
    rejectUnauthorized: false,
    ALPNProtocols: ['h2'],
  });
  sockets.push(socket);
  socket.on('error', () => {});
  socket.resume();
  socket.once('secureConnect', () => (t.secure = true));
  socket.once('close', () => (t.closed = true));
  return t;
}

function agent(node: string): TestAgent {
  const a = new TestAgent(site.creds.get(node)!, site.pki.ca.certPem);
  agents.push(a);
  a.connect(`127.0.0.1:${port}`);
  return a;
}

describe('site proxy: a revoked certificate holds nothing open', () => {
  it('closes the revoked node’s session and connections at once; others keep syncing', {
    timeout: 90_000,
  }, async () => {
    const a2 = agent('n2');
    const a3 = agent('n3');
    await until(
      'both agents in sync',
      () => a2.revision === site.ctl.revision && a3.revision === site.ctl.revision,
    );
    // n2 also holds a bare connection: TLS done, no HTTP/2 call, nothing sent ever again.
    const held = idleTls('n2', VTEP.n2);
    await waitFor('the idle connection up', () => held.secure || held.closed);
    expect(held.closed).toBe(false);
    // Authenticated, so no idle bound applies to it: it outlives the bound by far.
    await new Promise((r) => setTimeout(r, IDLE_MS * 2));
    expect(held.closed).toBe(false);
    const before = proxy.connectionStats();
    expect(before.open).toBe(3);
    expect(before.authenticated).toBe(3);

    // The controller revokes n2 (what registry.revoke writes: Revoked, no current serials).
    const n2 = site.creds.get('n2')!;
    const revoked = nodeSummary(n2, VTEP.n2, 'Revoked');
    site.ctl.apply([{ ...revoked, status: { phase: 'Revoked', vtep: VTEP.n2, certSerials: [] } }]);

    // The session ends with the goodbye that tells the agent why…
    await until('n2 told it is revoked', () =>
      a2.received.some((m) => m.msg === 'goodbye' && m.goodbye?.code === 'TETHER_E_REVOKED'),
    );
    // …and every connection of the certificate is closed by the proxy, well within the idle
    // bound an unauthenticated connection would get (and an authenticated one never gets).
    await until('the idle connection of the revoked certificate closed', () => held.closed, IDLE_MS);
    await until('only n3’s connection left at the proxy', () => proxy.connectionStats().open === 1, IDLE_MS);
    expect(proxy.connectionStats().authenticated).toBe(1);

    // A new connection with the revoked certificate is not authenticated: the idle bound ends it.
    const again = idleTls('n2', VTEP.n2);
    await waitFor('the new connection of the revoked certificate closed', () => again.closed, IDLE_MS * 4);
    expect(proxy.connectionStats().idleClosed).toBeGreaterThanOrEqual(1);

    // n3 is untouched and keeps receiving deltas.
    const rev = site.ctl.apply([
      network('blue', '10.2.0.0/24', { n1: '10.2.0.0/28', n3: '10.2.0.32/28' }, ['s1']),
    ]);
    await until('n3 receives the next delta', () => a3.revision === rev);
    expect(a3.ended).toBe(false);
    expect(a3.objects.has('VirtualNetwork/blue')).toBe(true);
  });
});
