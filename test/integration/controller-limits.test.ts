// Connections that never authenticate cannot pile up on the controller: real controller
// processes on loopback, hundreds of half-open TCP connections and certificate-less TLS
// connections, the handshake bound, the idle bound, the per-address cap, while an admin
// call keeps working.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Admin, loadClientConfig } from '../../src/cli/admin.js';
import type { ControllerConfig } from '../../src/controller/config.js';
import { initTestController, startTestController, type TestController } from './support/controller.js';
import { enrollArgs, runTether, waitFor } from './support/proc.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-limits-'));
let running: TestController[] = [];
let sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets) s.destroy();
  sockets = [];
  for (const c of running) await c.daemon.stop();
  running = [];
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function controller(name: string, overrides: Partial<ControllerConfig>): Promise<TestController> {
  const dataDir = join(dir, name);
  const c = await startTestController(dataDir, await initTestController(dataDir, overrides));
  running.push(c);
  return c;
}

interface Tracked {
  socket: Socket;
  closed: boolean;
  secure: boolean;
}

function track(socket: Socket, secureEvent?: 'secureConnect'): Tracked {
  const t: Tracked = { socket, closed: false, secure: false };
  sockets.push(socket);
  socket.on('error', () => {});
  // Flowing, so the server's close is seen even with its SETTINGS frame unread.
  socket.resume();
  socket.once('close', () => {
    t.closed = true;
  });
  if (secureEvent) socket.once(secureEvent, () => (t.secure = true));
  return t;
}

/** A TCP connection that never sends a byte (no ClientHello). */
function halfOpen(port: number, localAddress = '127.0.0.1'): Tracked {
  const t = track(netConnect({ host: '127.0.0.1', port, localAddress }));
  t.socket.once('connect', () => (t.secure = true));
  return t;
}

/** A TLS connection that completes the handshake without a client certificate, then idles. */
function certless(port: number, localAddress = '127.0.0.1'): Tracked {
  return track(
    tlsConnect({
      socket: netConnect({ host: '127.0.0.1', port, localAddress }),
      rejectUnauthorized: false,
      ALPNProtocols: ['h2'],
      servername: 'tether-controller',
    }) as TLSSocket,
    'secureConnect',
  );
}

/** A TLS connection with the admin certificate (authenticated), then idle. */
function withAdminCert(port: number, cfgPath: string, localAddress = '127.0.0.1'): Tracked {
  const cfg = loadClientConfig(cfgPath);
  return track(
    tlsConnect({
      socket: netConnect({ host: '127.0.0.1', port, localAddress }),
      ca: cfg.ca,
      cert: cfg.cert,
      key: cfg.key,
      rejectUnauthorized: false,
      ALPNProtocols: ['h2'],
      servername: 'tether-controller',
    }),
    'secureConnect',
  );
}

async function timedList(cfgPath: string): Promise<number> {
  const admin = new Admin(loadClientConfig(cfgPath), 30_000);
  try {
    const t0 = performance.now();
    await admin.list('Site');
    return performance.now() - t0;
  } finally {
    admin.close();
  }
}

describe('connections without a client certificate', () => {
  it('bounds the handshake and closes idle certificate-less connections while admin calls stay fast', {
    timeout: 120_000,
  }, async () => {
    const handshakeTimeoutMs = 1500;
    const unauthenticatedIdleMs = 1500;
    const c = await controller('idle', {
      handshakeTimeoutMs,
      unauthenticatedIdleMs,
      // Everything here comes from 127.0.0.1: the cap must not be what closes them.
      maxUnauthenticatedPerPeer: 5000,
    });
    const N = 300;
    const plain: Tracked[] = [];
    const tlsOnly: Tracked[] = [];
    for (let i = 0; i < N; i++) plain.push(halfOpen(c.port));
    for (let i = 0; i < N; i++) tlsOnly.push(certless(c.port));
    const authed = withAdminCert(c.port, c.cfg);
    await waitFor('all TCP connections to be up', () => plain.every((t) => t.secure || t.closed));
    await waitFor('certificate-less handshakes to finish', () => tlsOnly.every((t) => t.secure || t.closed));
    const handshaken = tlsOnly.filter((t) => t.secure).length;
    // They may already be closing; what matters is that they existed at the same time.
    expect(handshaken).toBeGreaterThan(N / 2);
    const ms = await timedList(c.cfg);
    console.log(`admin List with ${2 * N} idle connections open: ${ms.toFixed(1)} ms`);
    // The server closes them all: half-open ones at the handshake bound, certificate-less
    // ones at the idle bound (the wait's limit is those bounds plus slack for 2 cores).
    const bound = Math.max(handshakeTimeoutMs, unauthenticatedIdleMs) + 15_000;
    await waitFor(
      'half-open connections to be closed by the server',
      () => plain.every((t) => t.closed),
      bound,
    );
    await waitFor(
      'certificate-less connections to be closed by the server',
      () => tlsOnly.every((t) => t.closed),
      bound,
    );
    // A connection with a valid client certificate is not subject to the idle close.
    await waitFor('the authenticated connection to be up', () => authed.secure);
    expect(authed.closed).toBe(false);
    expect(await timedList(c.cfg)).toBeGreaterThan(0);
  });

  it('caps connections per peer address; other addresses are unaffected', { timeout: 120_000 }, async () => {
    const cap = 40;
    const c = await controller('cap', {
      maxUnauthenticatedPerPeer: cap,
      // Long bounds: only the cap may close anything in this test.
      handshakeTimeoutMs: 120_000,
      unauthenticatedIdleMs: 120_000,
    });
    const extra = 25;
    // 127.0.0.2 is loopback too: the attacker's address, distinct from the admin's.
    const conns: Tracked[] = [];
    for (let i = 0; i < cap + extra; i++) conns.push(halfOpen(c.port, '127.0.0.2'));
    await waitFor(
      'the connections over the cap to be refused',
      () => conns.filter((t) => t.closed).length >= extra,
    );
    // Certificate-less TLS from the same address is refused too while the cap is full.
    const more = certless(c.port, '127.0.0.2');
    await waitFor('a further connection from the capped address to be refused', () => more.closed);
    expect(more.secure).toBe(false);
    // The admin, from 127.0.0.1, is not affected by 127.0.0.2's cap.
    expect(await timedList(c.cfg)).toBeGreaterThan(0);
    expect(conns.filter((t) => t.closed)).toHaveLength(extra);
    // Freeing slots lets the address connect again.
    // The server learns of the closes asynchronously, so a connection opened at once may still
    // meet the full cap: try again (each try is refused or accepted, never left hanging).
    for (const t of conns.filter((x) => !x.closed).slice(0, 5)) t.socket.destroy();
    let again = certless(c.port, '127.0.0.2');
    await waitFor('a connection after slots were freed', () => {
      if (again.closed && !again.secure) again = certless(c.port, '127.0.0.2');
      return again.secure;
    });
    expect(again.secure).toBe(true);
  });
});

describe('connections with a client certificate', () => {
  it('count against the per-address total cap too', { timeout: 120_000 }, async () => {
    const cap = 12;
    const c = await controller('total-cap', { maxConnectionsPerPeer: cap, maxUnauthenticatedPerPeer: 100 });
    const held: Tracked[] = [];
    for (let i = 0; i < cap; i++) held.push(withAdminCert(c.port, c.cfg, '127.0.0.3'));
    await waitFor('authenticated connections to be up', () => held.every((t) => t.secure || t.closed));
    expect(held.filter((t) => t.closed)).toHaveLength(0);
    const over = withAdminCert(c.port, c.cfg, '127.0.0.3');
    await waitFor('the connection over the total cap to be refused', () => over.closed);
    expect(over.secure).toBe(false);
    // The held ones are authenticated: the idle close does not touch them, and 127.0.0.1 is free.
    expect(await timedList(c.cfg)).toBeGreaterThan(0);
    expect(held.filter((t) => t.closed)).toHaveLength(0);
  });
});

/** A TLS connection with a node's own certificate (from its state directory), then idle. */
function withNodeCert(port: number, stateDir: string, caPem: string): Tracked {
  const creds = JSON.parse(readFileSync(join(stateDir, 'credentials.json'), 'utf8')) as {
    keyPem: string;
    certPem: string;
  };
  return track(
    tlsConnect({
      socket: netConnect({ host: '127.0.0.1', port }),
      ca: caPem,
      cert: creds.certPem,
      key: creds.keyPem,
      rejectUnauthorized: false,
      ALPNProtocols: ['h2'],
      servername: 'tether-controller',
    }),
    'secureConnect',
  );
}

describe('connections with a certificate the controller no longer accepts', () => {
  it('fall under the idle bound once the node is revoked, new ones at once', {
    timeout: 120_000,
  }, async () => {
    const unauthenticatedIdleMs = 1500;
    const c = await controller('revoked', { unauthenticatedIdleMs });
    const site = 'apiVersion: tether.dev/v1\nkind: Site\nmetadata:\n  name: s1\n';
    expect((await runTether(['apply', '-f', '-', '--config', c.cfg], { input: site })).code).toBe(0);
    const tok = await runTether(['token', 'create', '--site', 's1', '--config', c.cfg]);
    expect(tok.code, tok.stderr).toBe(0);
    const stateDir = join(dir, 'revoked-node');
    const addr = `127.0.0.1:${c.port}`;
    const en = await runTether(enrollArgs(addr, tok.stdout.trim(), 'n1', stateDir));
    expect(en.code, en.stderr).toBe(0);
    const caPem = loadClientConfig(c.cfg).ca;
    const held = withNodeCert(c.port, stateDir, caPem);
    await waitFor('the node connection to be up', () => held.secure || held.closed);
    expect(held.closed).toBe(false);
    // Approved: it outlives a certificate-less connection opened after it (closed at the idle bound).
    const before = withAdminCert(c.port, c.cfg);
    await waitFor('the admin connection to be up', () => before.secure);
    const probe = certless(c.port);
    await waitFor(
      'the certificate-less probe to be closed',
      () => probe.closed,
      unauthenticatedIdleMs + 15_000,
    );
    expect(held.closed).toBe(false);
    expect((await runTether(['node', 'revoke', 'n1', '--config', c.cfg])).code).toBe(0);
    await waitFor(
      'the revoked node connection to be closed',
      () => held.closed,
      unauthenticatedIdleMs + 15_000,
    );
    const again = withNodeCert(c.port, stateDir, caPem);
    await waitFor(
      'a new connection with the revoked certificate to be closed',
      () => again.closed,
      unauthenticatedIdleMs + 15_000,
    );
    // Other authenticated connections are untouched.
    expect(before.closed).toBe(false);
  });
});

describe('admin API input', () => {
  it('refuses List, Get, Delete and Watch of an unknown kind with INVALID_ARGUMENT', async () => {
    const c = await controller('kinds', {});
    const admin = new Admin(loadClientConfig(c.cfg), 15_000);
    try {
      for (const call of [
        () => admin.list('Nope'),
        () => admin.get('virtualnetwork', 'x'),
        () => admin.delete('Sites', 'x'),
        () => admin.watch('Nope', 0, () => {}),
      ]) {
        await expect(call()).rejects.toMatchObject({
          code: 'TETHER_E_INVALID',
          cause: { code: 3 /* INVALID_ARGUMENT */ },
        });
      }
      // The empty kind still means "every kind".
      await expect(admin.list('')).resolves.toMatchObject({ items: expect.any(Array) });
    } finally {
      admin.close();
    }
  });
});
