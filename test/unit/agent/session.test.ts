// Agent-side behaviour a scripted upstream drives: a snapshot sweeps only at its end marker,
// SiteLocal is persisted and restored, results for other nodes are ignored, every endpoint
// report is signed with a fresh sequence number.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ControllerMessage } from '../../../src/api/gen/tether/v1/ControllerMessage.js';
import type { NodeMessage__Output } from '../../../src/api/gen/tether/v1/NodeMessage.js';
import type { TetherObject } from '../../../src/api/resource.js';
import { verifyReport } from '../../../src/api/signed-report.js';
import { FakeClock } from '../../../src/lib/clock.js';
import { isTetherError } from '../../../src/lib/errors.js';
import { silentLogger } from '../../../src/lib/log.js';
import { AgentSession } from '../../../src/node/agent/session.js';
import { SiteLocalSet } from '../../../src/node/agent/site-local.js';
import { type MemoryServerCall, MemoryUpstream } from '../../../src/node/agent/upstream.js';
import { StateCache } from '../../../src/node/cache.js';
import type { LoadedIdentity } from '../../../src/node/identity.js';
import { tempDir, testIdentity } from './support.js';

const res = (o: TetherObject) => ({
  kind: o.kind,
  name: o.metadata.name,
  json: Buffer.from(JSON.stringify(o)),
  revision: 0,
});
const vn = (name: string): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind: 'VirtualNetwork',
  metadata: { name },
  spec: { subnets: ['10.1.0.0/24'] },
});
const ep = (name: string, node: string): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind: 'Endpoint',
  metadata: { name },
  spec: { network: 'red', node, site: 'site-a', ip: '10.1.0.9', mac: '02:00:00:00:00:09', vtep: '192.0.2.9' },
});

let id: LoadedIdentity;
const cleanups: Array<() => void> = [];
beforeAll(async () => {
  id = await testIdentity('n1', 'site-a');
});
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

function setup() {
  const clock = new FakeClock();
  const t = tempDir('tether-session-');
  const calls: MemoryServerCall[] = [];
  const received: NodeMessage__Output[] = [];
  const upstream = new MemoryUpstream((call) => {
    calls.push(call);
    call.on('data', (m: NodeMessage__Output) => received.push(m));
  });
  const cache = new StateCache(join(t.dir, 'cache.json'));
  const siteLocal = new SiteLocalSet(join(t.dir, 'site-local.json'));
  let changes = 0;
  const s = new AgentSession({
    identity: id,
    cache,
    siteLocal,
    log: silentLogger(),
    clock,
    heartbeatMs: 1000,
    random: () => 0,
    chooseUpstream: () => upstream,
    onChange: () => changes++,
  });
  cleanups.push(() => {
    s.stop();
    t.cleanup();
  });
  s.start();
  const send = async (...ms: ControllerMessage[]) => {
    for (const m of ms) calls.at(-1)!.write(m);
    await clock.advance(0);
  };
  return { clock, s, cache, siteLocal, calls, received, send, dir: t.dir, changes: () => changes };
}

describe('AgentSession', () => {
  it('sweeps only at SnapshotEnd: a snapshot cut short changes nothing, however long one waits', async () => {
    const t = setup();
    await t.clock.advance(0);
    await t.send(
      { snapshot_begin: { revision: 5, reason: 'first' } },
      { snapshot_chunk: { revision: 5, put: [res(vn('red')), res(vn('blue'))], deleted: [] } },
      { snapshot_end: { revision: 5, count: 2 } },
    );
    expect(t.cache.revision).toBe(5);
    // A second snapshot is cut off after its first chunk: nothing is swept, nothing acked.
    await t.send(
      { snapshot_begin: { revision: 9, reason: 'again' } },
      { snapshot_chunk: { revision: 9, put: [res(vn('red'))], deleted: [] } },
    );
    await t.clock.advance(60_000);
    expect(
      t.cache
        .list('VirtualNetwork')
        .map((o) => o.metadata.name)
        .sort(),
    ).toEqual(['blue', 'red']);
    expect(t.cache.revision).toBe(5);
    const acks = t.received.filter((m) => m.ack).map((m) => m.ack!.revision);
    expect(acks).toEqual([5]);
    // A complete snapshot (its end marker arrives): now blue is swept.
    await t.send(
      { snapshot_begin: { revision: 9, reason: 'again' } },
      { snapshot_chunk: { revision: 9, put: [res(vn('red'))], deleted: [] } },
      { snapshot_end: { revision: 9, count: 1 } },
    );
    expect(t.cache.list('VirtualNetwork').map((o) => o.metadata.name)).toEqual(['red']);
    expect(t.s.status.lastSync).toMatchObject({ kind: 'snapshot', revision: 9, swept: 1 });
  });

  it('a SnapshotEnd without its SnapshotBegin sweeps nothing and drops the session', async () => {
    const t = setup();
    await t.clock.advance(0);
    await t.send(
      { snapshot_begin: { revision: 5, reason: 'first' } },
      { snapshot_chunk: { revision: 5, put: [res(vn('red'))], deleted: [] } },
      { snapshot_end: { revision: 5, count: 1 } },
    );
    const calls = t.calls.length;
    await t.send({ snapshot_end: { revision: 6, count: 0 } });
    expect(t.cache.list('VirtualNetwork').map((o) => o.metadata.name)).toEqual(['red']);
    expect(t.cache.revision).toBe(5);
    expect(t.s.status.lastError).toMatch(/snapshot end without a snapshot begin/);
    expect(t.s.status.reconnects).toBe(1);
    expect(t.received.filter((m) => m.ack).map((m) => m.ack!.revision)).toEqual([5]);
    await t.clock.advance(1000);
    expect(t.calls.length).toBe(calls + 1);
  });

  it('persists the SiteLocal set before using it, drops non-endpoints, and restores it after a restart', async () => {
    const t = setup();
    await t.clock.advance(0);
    const before = t.changes();
    await t.send({ site_local: { seq: 3, endpoints: [res(ep('n2.w1', 'n2')), res(vn('not-an-endpoint'))] } });
    expect(t.changes()).toBe(before + 1);
    expect(t.siteLocal.list().map((o) => o.metadata.name)).toEqual(['n2.w1']);
    expect(t.s.status.siteLocal).toEqual({ seq: 3, endpoints: 1 });
    // The same set again is no change.
    await t.send({ site_local: { seq: 3, endpoints: [res(ep('n2.w1', 'n2'))] } });
    expect(t.changes()).toBe(before + 1);
    const restored = new SiteLocalSet(join(t.dir, 'site-local.json'));
    expect(restored.seq).toBe(3);
    expect(restored.list().map((o) => o.metadata.name)).toEqual(['n2.w1']);
    await t.send({ site_local: { seq: 4, endpoints: [] } });
    expect(new SiteLocalSet(join(t.dir, 'site-local.json')).list()).toEqual([]);
  });

  it('refuses a corrupt SiteLocal file with an error naming it', () => {
    const t = tempDir('tether-sitelocal-');
    cleanups.push(t.cleanup);
    mkdirSync(join(t.dir, 'x'));
    for (const bad of [
      '{',
      '{"version":2,"seq":1,"endpoints":[]}',
      '{"version":1,"seq":1,"endpoints":[{"kind":"VirtualNetwork"}]}',
    ]) {
      const p = join(t.dir, 'x', 'site-local.json');
      writeFileSync(p, bad);
      let err: unknown;
      try {
        new SiteLocalSet(p);
      } catch (e) {
        err = e;
      }
      expect(isTetherError(err, 'TETHER_E_STATE')).toBe(true);
      expect((err as { details: { file: string } }).details.file).toBe(p);
    }
  });

  it('shows endpoint results for this node (or unnamed), ignores those for other nodes', async () => {
    const t = setup();
    await t.clock.advance(0);
    const refusal = { name: 'x', code: 'TETHER_E_CLAIM', message: 'not yours', field: 'spec.ip' };
    await t.send({ endpoint_result: { revision: 7, accepted: 0, refused: [refusal], node: 'n2' } });
    expect(t.s.status.endpoints).toBeUndefined();
    await t.send({ endpoint_result: { revision: 8, accepted: 1, refused: [], node: 'n1' } });
    expect(t.s.status.endpoints).toMatchObject({ revision: 8, accepted: 1 });
    await t.send({ endpoint_result: { revision: 9, accepted: 0, refused: [refusal], node: '' } });
    expect(t.s.status.endpoints).toMatchObject({ revision: 9, refused: [refusal] });
  });

  it('signs every endpoint report with its own key, one boot id and increasing sequence numbers', async () => {
    const t = setup();
    await t.clock.advance(0);
    await t.send(
      { snapshot_begin: { revision: 1, reason: '' } },
      { snapshot_end: { revision: 1, count: 0 } },
    );
    t.s.reportEndpoints([ep('n1.a', 'n1')]);
    t.s.reportEndpoints([ep('n1.a', 'n1'), ep('n1.b', 'n1')]);
    await t.clock.advance(0);
    // A reconnect re-sends the last report, signed anew.
    t.calls.at(-1)!.end();
    await t.clock.advance(1000);
    const reports = t.received.filter((m) => m.endpoints);
    expect(reports.length).toBe(3);
    const bodies = reports.map((m) =>
      verifyReport(m.endpoints!.signed!, id.credentials.certPem, { node: 'n1', site: 'site-a' }),
    );
    expect(new Set(bodies.map((b) => b.bootId)).size).toBe(1);
    const seqs = bodies.map((b) => b.seq);
    expect(seqs[1]! > seqs[0]! && seqs[2]! > seqs[1]!).toBe(true);
    expect(bodies[2]!.endpoints.map((o) => o.metadata.name)).toEqual(['n1.a', 'n1.b']);
    expect(reports[2]!.endpoints!.endpoints.map((r) => r.name)).toEqual(['n1.a', 'n1.b']);
  });
});

describe('AgentSession upstream choice', () => {
  it('asks the chooser before every attempt and retries with backoff when opening fails', async () => {
    const clock = new FakeClock();
    const t = tempDir('tether-choose-');
    cleanups.push(t.cleanup);
    const seen: number[] = [];
    const good = new MemoryUpstream((call) => {
      call.on('data', (m: NodeMessage__Output) => {
        if (m.hello) {
          call.write({ snapshot_begin: { revision: 1, reason: '' } });
          call.write({ snapshot_end: { revision: 1, count: 0 } });
        }
      });
    });
    const s = new AgentSession({
      identity: id,
      cache: new StateCache(join(t.dir, 'cache.json')),
      log: silentLogger(),
      clock,
      random: () => 0.5,
      backoff: { baseMs: 1000, capMs: 8000 },
      chooseUpstream: ({ attempt }) => {
        seen.push(attempt);
        if (attempt < 2) throw new Error('no route to proxy');
        return good;
      },
    });
    cleanups.push(() => s.stop());
    s.start();
    expect(s.status.phase).toBe('disconnected');
    expect(s.status.lastError).toContain('no route to proxy');
    await clock.advance(500);
    expect(seen).toEqual([0, 1]);
    await clock.advance(1000);
    expect(seen).toEqual([0, 1, 2]);
    expect(s.status.phase).toBe('connected');
    expect(s.status.upstream).toBe('memory memory');
  });
});

describe('AgentSession without a shell host (--no-shell)', () => {
  it('refuses a shell open at once instead of leaving the operator waiting', async () => {
    const t = setup();
    await t.clock.advance(0);
    const sid = '0f8e2b1c-1111-4222-8333-944455556666';
    await t.send({
      shell: {
        session_id: sid,
        node: 'n1',
        open: { payload: Buffer.from('{}'), signature: Buffer.alloc(0), cert_pem: '' },
      },
    });
    const end = t.received.find((m) => m.shell)?.shell;
    expect(end).toMatchObject({
      session_id: sid,
      node: 'n1',
      op: 'end',
      end: { ending: 'refused', code: 'TETHER_E_PERMISSION' },
    });
    // Other shell frames for no session are ignored, not answered.
    const before = t.received.length;
    await t.send({ shell: { session_id: sid, node: 'n1', data: Buffer.from('x') } });
    expect(t.received.length).toBe(before);
  });
});
