// The node's local control API over a real unix socket: status and events, bounds, errors,
// permissions, stale and live sockets; and `tether status` reading it (live, then the file).
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/lib/log.js';
import {
  boundedStatusJson,
  type ControlApi,
  controlSocketPath,
  EventRing,
  MAX_STATUS_BYTES,
  MAX_TRAFFIC_ENTRIES,
  type NodeLiveStatus,
  readEvents,
  readLiveStatus,
  readTraffic,
  startControlApi,
} from '../../../src/node/control-api.js';
import { saveIdentity } from '../../../src/node/identity.js';
import { runProcess, runTether } from '../../integration/support/proc.js';

const dirs: string[] = [];
const apis: ControlApi[] = [];
afterEach(async () => {
  for (const a of apis.splice(0)) await a.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'ctlapi-'));
  dirs.push(d);
  return d;
}

function liveStatus(over: Partial<NodeLiveStatus> = {}): NodeLiveStatus {
  return {
    node: 'n1',
    site: 's1',
    controller: '127.0.0.1:7443',
    pid: process.pid,
    startedAt: '2026-12-01T00:00:00.000Z',
    session: {
      phase: 'connected',
      since: '2026-12-01T00:00:01.000Z',
      upstream: { kind: 'proxy', address: '10.0.0.2:7444', node: 'n2' },
    },
    proxy: { role: 'standby', activeNode: 'n2' },
    revision: 42,
    snapshotRevision: 40,
    networks: [{ name: 'red', vni: 4097, localEndpoints: 1, remoteEndpoints: 2 }],
    endpoints: [
      { name: 'n1.a', network: 'red', ip: '10.1.0.2', mac: '02:00:00:00:00:01', node: 'n1', origin: 'local' },
    ],
    counters: { reconciles: 7, kernelErrors: 0 },
    health: { ok: true, reasons: [] },
    ...over,
  };
}

/** A raw HTTP request over the socket (method, path) → status code, headers, parsed body. */
function raw(
  socketPath: string,
  method: string,
  path: string,
): Promise<{ code: number; allow?: string; body: { error: { code: string; message: string } } }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path }, (res) => {
      let t = '';
      res.on('data', (b) => {
        t += b;
      });
      res.on('end', () =>
        resolve({
          code: res.statusCode ?? 0,
          allow: res.headers.allow as string | undefined,
          body: t ? JSON.parse(t) : undefined,
        }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

async function serve(status: () => NodeLiveStatus, events = new EventRing(), at?: string) {
  const dir = tmp();
  const socketPath = at ?? controlSocketPath(dir);
  const api = await startControlApi({ socketPath, status, events, log: silentLogger() });
  apis.push(api);
  return { dir, socketPath, events, api };
}

describe('EventRing', () => {
  it('keeps the newest `capacity` events, answers since=N in order and counts what a late reader missed', () => {
    const r = new EventRing(5);
    for (let i = 1; i <= 12; i++) r.push('t', `e${i}`);
    expect(r.latest).toBe(12);
    const all = r.since(0, 100);
    expect(all.events.map((e) => e.seq)).toEqual([8, 9, 10, 11, 12]);
    expect(all.missed).toBe(7);
    expect(r.since(9, 100).events.map((e) => e.seq)).toEqual([10, 11, 12]);
    expect(r.since(9, 100).missed).toBe(0);
    expect(r.since(8, 2).events.map((e) => e.seq)).toEqual([9, 10]);
    expect(r.since(12).events).toEqual([]);
    expect(r.since(500).events).toEqual([]);
  });

  it('bounds what one event may carry', () => {
    const r = new EventRing(2);
    const fields = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, 'v'.repeat(5000)]));
    const e = r.push('x'.repeat(5000), 'm'.repeat(100_000), fields);
    expect(JSON.stringify(e).length).toBeLessThan(40_000);
  });
});

describe('control API over a unix socket', () => {
  it('serves the live status and the events, with the socket at mode 0600', async () => {
    let rev = 42;
    const { socketPath, events } = await serve(() => liveStatus({ revision: rev }));
    expect(statSync(socketPath).mode & 0o777).toBe(0o600);
    expect((await readLiveStatus(socketPath)).revision).toBe(42);
    rev = 43; // a provider, not a copy: every request sees the node as it is now
    expect((await readLiveStatus(socketPath)).revision).toBe(43);
    for (let i = 0; i < 1500; i++) events.push('reconcile', `pass ${i}`, { n: i });
    const first = await readEvents(socketPath, 0, 1000);
    expect(first.events).toHaveLength(1000);
    expect(first.events[0]?.seq).toBe(501);
    expect(first.missed).toBe(500);
    const later = await readEvents(socketPath, 1490);
    expect(later.events.map((e) => e.seq)).toEqual([
      1491, 1492, 1493, 1494, 1495, 1496, 1497, 1498, 1499, 1500,
    ]);
    expect(later.latest).toBe(1500);
  });

  it('answers unknown paths 404, other methods 405 and bad queries 400, all as JSON errors', async () => {
    const { socketPath } = await serve(() => liveStatus());
    for (const p of ['/', '/v1', '/v1/statusx', '/v2/status', '/v1/events/1', '/../etc/passwd']) {
      const r = await raw(socketPath, 'GET', p);
      expect([p, r.code, r.body.error.code]).toEqual([p, 404, 'TETHER_E_NOT_FOUND']);
    }
    for (const m of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      for (const p of ['/v1/status', '/v1/events']) {
        const r = await raw(socketPath, m, p);
        expect([m, p, r.code, r.allow, r.body.error.code]).toEqual([
          m,
          p,
          405,
          'GET, HEAD',
          'TETHER_E_INVALID',
        ]);
      }
    }
    for (const q of [
      'since=-1',
      'since=abc',
      'since=1e3',
      'limit=0',
      'limit=1001',
      'since=99999999999999999999',
    ]) {
      const r = await raw(socketPath, 'GET', `/v1/events?${q}`);
      expect([q, r.code, r.body.error.code]).toEqual([q, 400, 'TETHER_E_INVALID']);
    }
  });

  it('a failing status provider is a 500 JSON error, and the server keeps serving', async () => {
    let fail = true;
    const { socketPath } = await serve(() => {
      if (fail) throw new Error('cache not loaded');
      return liveStatus();
    });
    const r = await raw(socketPath, 'GET', '/v1/status');
    expect(r.code).toBe(500);
    expect(r.body.error.message).toMatch(/cache not loaded/);
    await expect(readLiveStatus(socketPath)).rejects.toThrow(/500/);
    fail = false;
    expect((await readLiveStatus(socketPath)).node).toBe('n1');
  });

  it('serves traffic counters when a provider is given: 404 without, 500 when it fails, lists bounded', async () => {
    const { socketPath } = await serve(() => liveStatus());
    const none = await raw(socketPath, 'GET', '/v1/traffic');
    expect(none.code).toBe(404);
    expect(none.body.error.message).toMatch(/no vRouter/);
    let fail = false;
    const dir = tmp();
    const sock = controlSocketPath(dir);
    const link = {
      network: 'red',
      link: 'vxlan' as const,
      rxBytes: 1,
      rxPackets: 1,
      txBytes: 2,
      txPackets: 2,
    };
    const api = await startControlApi({
      socketPath: sock,
      status: () => liveStatus(),
      events: new EventRing(),
      log: silentLogger(),
      traffic: async () => {
        if (fail) throw new Error('nft not answering');
        return {
          at: 't',
          links: Array.from({ length: MAX_TRAFFIC_ENTRIES + 5 }, () => link),
          policy: [{ network: 'red', policy: '(all)', rule: '(default)', packets: 3, bytes: 300 }],
        };
      },
    });
    apis.push(api);
    const t = await readTraffic(sock);
    expect(t.links).toHaveLength(MAX_TRAFFIC_ENTRIES);
    expect(t.policy).toEqual([
      { network: 'red', policy: '(all)', rule: '(default)', packets: 3, bytes: 300 },
    ]);
    fail = true;
    const r = await raw(sock, 'GET', '/v1/traffic');
    expect(r.code).toBe(500);
    expect(r.body.error.message).toMatch(/nft not answering/);
    fail = false;
    expect((await readTraffic(sock)).at).toBe('t');
  });

  it('bounds the status answer: a huge endpoint list is cut and says so', async () => {
    const many = Array.from({ length: 60_000 }, (_, i) => ({
      name: `n9.ep-${i}-${'x'.repeat(40)}`,
      network: 'red',
      ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
      mac: '02:00:00:00:00:01',
      node: 'n9',
      origin: 'slice' as const,
    }));
    const { socketPath } = await serve(() => liveStatus({ endpoints: many }));
    const r = (await readLiveStatus(socketPath)) as NodeLiveStatus & {
      endpointsTruncated?: { total: number; shown: number };
    };
    expect(Buffer.byteLength(JSON.stringify(r))).toBeLessThanOrEqual(MAX_STATUS_BYTES);
    expect(r.endpointsTruncated?.total).toBe(60_000);
    expect(r.endpoints.length).toBe(r.endpointsTruncated?.shown);
    expect(r.endpoints.length).toBeGreaterThan(0);
    // Anything else that is huge is refused in a bounded answer too.
    const huge = boundedStatusJson(liveStatus({ counters: { ['c'.repeat(MAX_STATUS_BYTES)]: 1 } })) as {
      error: { code: string };
    };
    expect(huge.error.code).toBe('TETHER_E_TOO_LARGE');
  });

  it('replaces a stale socket, refuses to start over a live one or over a non-socket file', async () => {
    const { socketPath, api } = await serve(() => liveStatus());
    await expect(
      startControlApi({
        socketPath,
        status: () => liveStatus(),
        events: new EventRing(),
        log: silentLogger(),
      }),
    ).rejects.toMatchObject({ code: 'TETHER_E_PRECONDITION' });
    expect((await readLiveStatus(socketPath)).node).toBe('n1'); // the first one still serves
    await api.close();
    apis.splice(apis.indexOf(api), 1);
    // A daemon killed with -9 leaves its socket file behind, with nobody listening.
    const killed = await runProcess(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => process.kill(process.pid, 'SIGKILL'))`,
    ]);
    expect(killed.code).not.toBe(0);
    expect(statSync(socketPath).isSocket()).toBe(true);
    const again = await serve(() => liveStatus({ node: 'n2' }), new EventRing(), socketPath);
    expect((await readLiveStatus(again.socketPath)).node).toBe('n2');
    const dir = tmp();
    const notSock = join(dir, 'control.sock');
    writeFileSync(notSock, 'x');
    await expect(
      startControlApi({
        socketPath: notSock,
        status: () => liveStatus(),
        events: new EventRing(),
        log: silentLogger(),
      }),
    ).rejects.toMatchObject({ code: 'TETHER_E_PRECONDITION' });
  });

  it('the client says the API is unavailable when nothing listens', async () => {
    const dir = tmp();
    await expect(readLiveStatus(join(dir, 'control.sock'))).rejects.toMatchObject({
      code: 'TETHER_E_UNAVAILABLE',
    });
  });
});

describe('tether status', () => {
  function enrolledDir(): string {
    const dir = tmp();
    saveIdentity(
      dir,
      { name: 'n1', site: 's1', controllers: ['127.0.0.1:7443'], caFingerprint: 'ab' },
      'ca',
      {
        keyPem: 'k',
        certPem: 'c',
      },
    );
    return dir;
  }

  it('reads the live API when the daemon serves it, and says so', async () => {
    const dir = enrolledDir();
    const events = new EventRing();
    events.push('proxy', 'became standby; following n2');
    const api = await startControlApi({
      socketPath: controlSocketPath(dir),
      status: () => liveStatus({ revision: 77 }),
      events,
      log: silentLogger(),
    });
    apis.push(api);
    const r = await runTether(['status', '--state-dir', dir, '-o', 'json']);
    expect(r.code).toBe(0);
    const v = JSON.parse(r.stdout);
    expect(v).toMatchObject({
      source: 'live',
      node: 'n1',
      daemon: 'running',
      session: 'connected',
      revision: 77,
      proxy: { role: 'standby', activeNode: 'n2' },
      networks: [{ name: 'red', vni: 4097 }],
      endpoints: 1,
      counters: { reconciles: 7 },
    });
    expect(v.recentEvents.map((e: { message: string }) => e.message)).toEqual([
      'became standby; following n2',
    ]);
    const text = await runTether(['status', '--state-dir', dir]);
    expect(text.stdout).toMatch(/source\s+live \(control API /);
    expect(text.stdout).toMatch(/proxy role\s+standby, active: n2/);
    const yaml = await runTether(['status', '--state-dir', dir, '-o', 'yaml']);
    expect(yaml.stdout).toMatch(/^source: live$/m);
  });

  it('falls back to the status file when nothing serves the socket, and says which it used', async () => {
    const dir = enrolledDir();
    writeFileSync(
      join(dir, 'status.json'),
      JSON.stringify({
        pid: 2 ** 22 + 17, // no such process
        node: 'n1',
        site: 's1',
        controller: '127.0.0.1:7443',
        startedAt: 'x',
        updatedAt: '2026-12-01T00:00:00.000Z',
        session: { phase: 'connected' },
        cache: { revision: 5, snapshotRevision: 5, objects: 3 },
        certNotAfter: '2027-01-01T00:00:00.000Z',
        health: { ok: true, reasons: [] },
      }),
    );
    const r = await runTether(['status', '--state-dir', dir, '-o', 'json']);
    expect(r.code).toBe(1);
    const v = JSON.parse(r.stdout);
    expect(v).toMatchObject({ source: 'file', daemon: 'not running', revision: 5, objects: 3 });
    expect(v.sourceDetail).toMatch(/status\.json \(live API not reachable/);
    const text = await runTether(['status', '--state-dir', dir]);
    expect(text.stdout).toMatch(/source\s+status file .*live API not reachable/);
    const bad = await runTether(['status', '--state-dir', dir, '-o', 'xml']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--output/);
  });
});
