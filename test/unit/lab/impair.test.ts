// The lab's TCP impairment proxy over loopback: delay with order kept, byte counters, close
// propagation both ways, backpressure from a slow reader, and its control socket.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ImpairProxy, impairControl, serveImpairControl } from '../../../src/lab/impair.js';
import { waitFor } from '../../integration/support/proc.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function target(onConn: (s: Socket) => void): Promise<{ server: Server; port: number }> {
  const open = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    open.add(s);
    s.once('close', () => open.delete(s));
    onConn(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => {
    for (const s of open) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const a = server.address();
  return { server, port: typeof a === 'object' && a ? a.port : 0 };
}

async function proxyTo(port: number, opts: { delayMs?: number; maxBufferedBytes?: number } = {}) {
  const proxy = new ImpairProxy({
    listen: { host: '127.0.0.1', port: 0 },
    target: { host: '127.0.0.1', port },
    ...opts,
  });
  const listen = await proxy.start();
  cleanups.push(() => proxy.close());
  return { proxy, listen };
}

async function dial(port: number): Promise<Socket> {
  const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => {
    s.once('connect', () => resolve());
    s.once('error', reject);
  });
  cleanups.push(() => {
    s.destroy();
  });
  return s;
}

const echo = (s: Socket) => {
  s.on('data', (b) => s.write(b));
  s.on('end', () => s.end());
};

describe('ImpairProxy', () => {
  it('adds the delay to each direction: a round trip takes at least twice the delay', async () => {
    const t = await target(echo);
    const { listen } = await proxyTo(t.port, { delayMs: 150 });
    const s = await dial(listen);
    const t0 = performance.now();
    const got = new Promise<Buffer>((r) => s.once('data', r));
    s.write('ping');
    expect((await got).toString()).toBe('ping');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(2 * 150 - 2);
  });

  it('keeps the byte order under delay, also when the delay changes mid-stream, and counts bytes each way', async () => {
    const t = await target(echo);
    const { proxy, listen } = await proxyTo(t.port, { delayMs: 80 });
    const s = await dial(listen);
    const chunks: Buffer[] = [];
    s.on('data', (b: Buffer) => chunks.push(b));
    const sent: Buffer[] = [];
    for (let i = 0; i < 400; i++) {
      const b = Buffer.from(`${i.toString().padStart(5, '0')};`);
      sent.push(b);
      s.write(b);
      if (i === 200) proxy.setDelay(0); // later chunks are due earlier than queued ones
      if (i % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    const all = Buffer.concat(sent);
    await waitFor('every byte back', () => Buffer.concat(chunks).length >= all.length, 10_000, 10);
    expect(Buffer.concat(chunks).toString()).toBe(all.toString());
    const c = proxy.counters();
    expect(c.bytesToTarget).toBe(all.length);
    expect(c.bytesFromTarget).toBe(all.length);
    expect(c.connectionsAccepted).toBe(1);
  });

  it('propagates a half-close to the target and the target closing back to the client', async () => {
    let serverSide: Socket | undefined;
    let serverSawEnd = false;
    const t = await target((s) => {
      serverSide = s;
      s.on('data', () => {});
      s.on('end', () => {
        serverSawEnd = true;
        // Half-closed, the other direction still works: answer, then close.
        s.end('bye');
      });
    });
    const { proxy, listen } = await proxyTo(t.port, { delayMs: 20 });
    const s = await dial(listen);
    let got = '';
    s.on('data', (b) => {
      got += b.toString();
    });
    const clientClosed = new Promise<void>((r) => s.once('close', () => r()));
    s.write('hello');
    s.end();
    await clientClosed;
    expect(serverSawEnd).toBe(true);
    expect(got).toBe('bye');
    expect(serverSide).toBeDefined();
    await waitFor(
      'the proxy to forget the connection',
      () => proxy.counters().connectionsOpen === 0,
      5000,
      10,
    );
  });

  it('a target that resets or closes makes the client see the connection end', async () => {
    for (const how of ['reset', 'close'] as const) {
      const t = await target((s) => {
        s.on('data', () => (how === 'reset' ? s.resetAndDestroy() : s.destroy()));
      });
      const { proxy, listen } = await proxyTo(t.port, { delayMs: 10 });
      const s = await dial(listen);
      s.on('error', () => {});
      s.write('x');
      // As with a direct connection: after the peer is gone, the client's next writes fail and
      // its socket closes (a proxy that kept its side open would leave the client hanging).
      await waitFor(
        `the client to see the ${how}`,
        () => {
          if (!s.destroyed) s.write('y');
          return s.destroyed;
        },
        5000,
        20,
      );
      await waitFor(
        'the proxy to forget the connection',
        () => proxy.counters().connectionsOpen === 0,
        5000,
        10,
      );
    }
  });

  it('a target that is not listening closes the client', async () => {
    const t = await target(() => {});
    const port = t.port;
    await new Promise<void>((r) => t.server.close(() => r()));
    const { proxy, listen } = await proxyTo(port);
    const s = await dial(listen);
    s.on('error', () => {});
    await new Promise<void>((r) => s.once('close', () => r()));
    await waitFor(
      'the proxy to forget the connection',
      () => proxy.counters().connectionsOpen === 0,
      5000,
      10,
    );
    expect(proxy.counters().bytesToTarget).toBe(0);
  });

  it('a slow reader makes it stop reading the writer instead of buffering without bound', async () => {
    let serverSide: Socket | undefined;
    const hash = createHash('sha256');
    let received = 0;
    const t = await target((s) => {
      serverSide = s;
      s.pause(); // the reader does not read at first
      s.on('data', (b: Buffer) => {
        hash.update(b);
        received += b.length;
      });
    });
    const max = 256 * 1024;
    const { proxy, listen } = await proxyTo(t.port, { maxBufferedBytes: max });
    const s = await dial(listen);
    const payload = randomBytes(48 * 1024 * 1024);
    const sentHash = createHash('sha256').update(payload).digest('hex');
    s.write(payload);
    // The proxy reaches its bound and stops reading the writer...
    await waitFor('the proxy to push back', () => proxy.counters().pausedDirections === 1, 20_000, 10);
    const c = proxy.counters();
    // ...holding at most its bound plus the one chunk that crossed it, while most of the
    // payload still waits in the writer (a relay that kept reading would hold all 48 MiB).
    expect(c.bufferedBytes).toBeLessThanOrEqual(max + 128 * 1024);
    expect(c.bytesToTarget).toBeLessThan(payload.length / 2);
    expect(s.writableLength).toBeGreaterThan(0);
    // It stays bounded while the reader is stalled: sample a few times as the event loop turns.
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 5));
      expect(proxy.counters().bufferedBytes).toBeLessThanOrEqual(max + 128 * 1024);
    }
    // Once the reader reads, everything arrives intact.
    serverSide?.resume();
    await waitFor('the whole payload', () => received === payload.length, 60_000, 20);
    expect(hash.digest('hex')).toBe(sentHash);
    expect(proxy.counters().bytesToTarget).toBe(payload.length);
  }, 90_000);

  it('serves its counters and takes a new delay over a 0600 control socket', async () => {
    const t = await target(echo);
    const { proxy } = await proxyTo(t.port);
    const dir = mkdtempSync(join(tmpdir(), 'impair-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const sock = join(dir, 'ctl.sock');
    const srv = await serveImpairControl(proxy, sock);
    cleanups.push(() => new Promise<void>((r) => srv.close(() => r())));
    expect(statSync(sock).mode & 0o777).toBe(0o600);
    expect((await impairControl(sock, 'PUT', '/v1/delay', { delayMs: 42 })).delayMs).toBe(42);
    expect(proxy.delayMs).toBe(42);
    expect((await impairControl(sock, 'GET', '/v1/counters')).delayMs).toBe(42);
    for (const bad of [-1, 1.5, '10', 60_001, null]) {
      await expect(impairControl(sock, 'PUT', '/v1/delay', { delayMs: bad })).rejects.toThrow(/bad delay/);
    }
    expect(proxy.delayMs).toBe(42);
    await expect(impairControl(sock, 'PUT', '/v1/counters')).rejects.toThrow(/not served/);
  });
});
