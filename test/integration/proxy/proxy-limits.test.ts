// The site proxy port (7444) bounds connections before they are agents: a real SiteProxy on
// loopback, hundreds of TCP connections that never send a ClientHello, slowloris peers that
// trickle a partial ClientHello, the per-address caps, TLS without a node certificate, while
// a legitimate agent from another loopback address connects and syncs.
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ConnectionLimits } from '../../../src/lib/listener.js';
import { silentLogger } from '../../../src/lib/log.js';
import { ControllerSet } from '../../../src/node/controllers.js';
import { SiteProxy } from '../../../src/node/proxy/proxy.js';
import { freePort, waitFor } from '../support/proc.js';
import { type FakeSite, fakeSite, network, TestAgent, until } from '../support/site.js';

// n1 runs the proxy and its agent (127.0.0.1); 127.0.0.2 is the attacker's address; n2's
// certificate is used for authenticated connections from 127.0.0.3.
const VTEP = { n1: '127.0.0.1', n2: '127.0.0.3' };
let dir: string;
let site: FakeSite;
let running: Array<{ proxy: SiteProxy; agent?: TestAgent }> = [];
let sockets: Socket[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tether-proxy-limits-'));
  site = await fakeSite('s1', VTEP, {
    objects: [network('red', '10.1.0.0/24', { n1: '10.1.0.0/28', n2: '10.1.0.16/28' }, ['s1'])],
  });
});

afterEach(async () => {
  for (const s of sockets) s.destroy();
  sockets = [];
  for (const r of running) {
    r.agent?.close();
    await r.proxy.stop();
  }
  running = [];
});

afterAll(() => {
  site.ctl.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** n1's proxy, active (its only rival n2 runs none), with the WAN session up. */
async function proxy(
  name: string,
  limits: Partial<ConnectionLimits>,
): Promise<{ proxy: SiteProxy; port: number }> {
  const port = await freePort();
  const p = new SiteProxy({
    stateDir: join(dir, name),
    node: 'n1',
    site: 's1',
    controllers: new ControllerSet([`127.0.0.1:${site.ctl.port}`]),
    caPem: site.pki.ca.certPem,
    credentials: site.creds.get('n1')!,
    vtep: VTEP.n1,
    port,
    log: silentLogger(),
    agentSlice: () => ({ revision: 0, objects: site.ctl.list('Node') }),
    probeMs: 200,
    probeTimeoutMs: 300,
    backoff: { baseMs: 50, capMs: 200 },
    connectionLimits: limits,
  });
  running.push({ proxy: p });
  await p.start();
  await until('the proxy active with its WAN up', () => p.status().wan?.up === true, 30_000);
  return { proxy: p, port };
}

/** The legitimate agent of n1 (from 127.0.0.1) syncs through the proxy. */
async function agentSyncs(port: number): Promise<void> {
  const a = new TestAgent(site.creds.get('n1')!, site.pki.ca.certPem);
  running.at(-1)!.agent = a;
  a.connect(`127.0.0.1:${port}`);
  await until('the agent in sync through the proxy', () => a.revision === site.ctl.revision, 30_000);
  expect(a.error).toBeUndefined();
}

interface Tracked {
  socket: Socket;
  connected: boolean;
  secure: boolean;
  closed: boolean;
}

function track(socket: Socket, connectEvent: 'connect' | 'secureConnect'): Tracked {
  const t: Tracked = { socket, connected: false, secure: false, closed: false };
  sockets.push(socket);
  socket.on('error', () => {});
  socket.resume();
  socket.once('close', () => (t.closed = true));
  socket.once(connectEvent, () => {
    t.connected = true;
    if (connectEvent === 'secureConnect') t.secure = true;
  });
  return t;
}

/** TCP that never sends a byte. */
function silent(port: number, localAddress: string): Tracked {
  return track(netConnect({ host: '127.0.0.1', port, localAddress }), 'connect');
}

/**
 * A slowloris: the start of a ClientHello (a handshake record announcing 512 bytes), then
 * one more byte every 100 ms, so the connection is never idle and the record never complete.
 */
function slowloris(port: number, localAddress: string): Tracked {
  const socket = netConnect({ host: '127.0.0.1', port, localAddress });
  const t = track(socket, 'connect');
  socket.once('connect', () => {
    socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]));
    const drip = setInterval(() => {
      if (t.closed || socket.destroyed) clearInterval(drip);
      else socket.write(Buffer.from([0x42]));
    }, 100);
    socket.once('close', () => clearInterval(drip));
  });
  return t;
}

/** TLS that completes the handshake if the server lets it: with n2's certificate, or none. */
function tls(port: number, localAddress: string, withCert: boolean): Tracked {
  const c = site.creds.get('n2')!;
  return track(
    tlsConnect({
      socket: netConnect({ host: '127.0.0.1', port, localAddress }),
      ca: site.pki.ca.certPem,
      ...(withCert ? { cert: c.certPem, key: c.keyPem } : {}),
      rejectUnauthorized: false,
      ALPNProtocols: ['h2'],
    }),
    'secureConnect',
  );
}

describe('site proxy port: handshake deadline', () => {
  it('closes silent and slowloris connections at the deadline while an agent syncs', {
    timeout: 120_000,
  }, async () => {
    const handshakeTimeoutMs = 1500;
    // The caps are high: only the deadline may close anything here.
    const { proxy: p, port } = await proxy('deadline', {
      handshakeTimeoutMs,
      maxConnectionsPerPeer: 5000,
      maxUnauthenticatedPerPeer: 5000,
    });
    const N = 150;
    const quiet: Tracked[] = [];
    const slow: Tracked[] = [];
    for (let i = 0; i < N; i++) quiet.push(silent(port, '127.0.0.2'));
    for (let i = 0; i < 20; i++) slow.push(slowloris(port, '127.0.0.2'));
    await waitFor('all attacker connections up', () =>
      [...quiet, ...slow].every((t) => t.connected || t.closed),
    );
    // The agent is served while they are held open.
    await agentSyncs(port);
    const bound = handshakeTimeoutMs + 15_000;
    await waitFor('silent connections closed by the server', () => quiet.every((t) => t.closed), bound);
    await waitFor('slowloris connections closed by the server', () => slow.every((t) => t.closed), bound);
    expect(slow.some((t) => t.secure)).toBe(false);
    const stats = p.connectionStats();
    expect(stats.refusedOverCap).toBe(0);
    expect(stats.handshakeTimeouts).toBeGreaterThanOrEqual(N + slow.length);
    // The agent's own connection finished its handshake and is untouched by the deadline.
    expect(running.at(-1)!.agent!.ended).toBe(false);
  });

  it('refuses TLS without a node certificate in the handshake', { timeout: 60_000 }, async () => {
    const { proxy: p, port } = await proxy('certless', {});
    const bare = tls(port, '127.0.0.2', false);
    await waitFor('the certificate-less connection to be closed', () => bare.closed);
    expect(p.connectionStats().open).toBe(0);
    await agentSyncs(port);
  });
});

describe('site proxy port: per-address caps', () => {
  it('caps handshaking connections per address; other addresses still connect', {
    timeout: 120_000,
  }, async () => {
    const cap = 30;
    // A long deadline: only the cap may close anything here (the default total cap, 64, is
    // above cap + extra).
    const { proxy: p, port } = await proxy('cap', {
      maxUnauthenticatedPerPeer: cap,
      handshakeTimeoutMs: 120_000,
    });
    const extra = 20;
    const held: Tracked[] = [];
    for (let i = 0; i < cap + extra; i++)
      held.push(i % 2 ? silent(port, '127.0.0.2') : slowloris(port, '127.0.0.2'));
    await waitFor(
      'the connections over the cap to be refused',
      () => held.filter((t) => t.closed).length >= extra,
    );
    // A legitimate peer from the same address is refused too while the cap is full…
    const more = tls(port, '127.0.0.2', true);
    await waitFor('a further connection from the capped address to be refused', () => more.closed);
    expect(more.secure).toBe(false);
    // …but the agent, from 127.0.0.1, connects and syncs.
    await agentSyncs(port);
    expect(held.filter((t) => t.closed)).toHaveLength(extra);
    expect(p.connectionStats().refusedOverCap).toBeGreaterThanOrEqual(extra + 1);
    // Freed slots let the address connect again (the server learns of closes asynchronously:
    // a try may still meet the full cap, so try until one is accepted).
    for (const t of held.filter((x) => !x.closed).slice(0, 5)) t.socket.destroy();
    let again = tls(port, '127.0.0.2', true);
    await waitFor('a connection after slots were freed', () => {
      if (again.closed && !again.secure) again = tls(port, '127.0.0.2', true);
      return again.secure;
    });
  });

  it('counts connections with a node certificate against the total cap', { timeout: 120_000 }, async () => {
    const cap = 8;
    const { port } = await proxy('total', { maxConnectionsPerPeer: cap, maxUnauthenticatedPerPeer: 100 });
    const held: Tracked[] = [];
    for (let i = 0; i < cap; i++) held.push(tls(port, '127.0.0.3', true));
    await waitFor('authenticated connections up', () => held.every((t) => t.secure || t.closed));
    expect(held.filter((t) => t.closed)).toHaveLength(0);
    const over = tls(port, '127.0.0.3', true);
    await waitFor('the connection over the total cap to be refused', () => over.closed);
    expect(over.secure).toBe(false);
    await agentSyncs(port);
    expect(held.filter((t) => t.closed)).toHaveLength(0);
  });
});
