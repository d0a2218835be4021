// The site proxy's core in one process: revisions, history, no rollback, snapshot sweeps as
// one delta, durability across a restart (what it acknowledged is on disk), journal damage.
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ControllerMessage } from '../../../src/api/gen/tether/v1/ControllerMessage.js';
import type { TetherObject } from '../../../src/api/resource.js';
import { signReport } from '../../../src/api/signed-report.js';
import { silentLogger } from '../../../src/lib/log.js';
import { desiredObjects } from '../../../src/node/networking.js';
import { type AgentPeer, ProxyCore } from '../../../src/node/proxy/core.js';
import { DeltaHistory } from '../../../src/node/proxy/history.js';
import { field, LineLog } from '../../../src/node/proxy/line-log.js';
import { endpoint, type NodeCreds, network, nodeSummary, sitePki } from '../../integration/support/site.js';

let n1: NodeCreds;
let n2: NodeCreds;
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'tether-proxy-core-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

beforeAll(async () => {
  const pki = await sitePki('s1');
  n1 = await pki.node('n1');
  n2 = await pki.node('n2');
});

const peer = (c: NodeCreds): AgentPeer => ({
  node: c.name,
  site: c.site,
  serial: c.serial,
  certPem: c.certPem,
});

class Link {
  msgs: ControllerMessage[] = [];
  ended = false;
  write(m: ControllerMessage, written?: () => void) {
    this.msgs.push(m);
    written?.();
  }
  end() {
    this.ended = true;
  }
  kinds() {
    return this.msgs.map((m) => m.msg);
  }
  take() {
    const m = this.msgs;
    this.msgs = [];
    return m;
  }
}

const hello = (node: string, held: number) => ({
  node_name: node,
  held_revision: held,
  version: '',
  boot_id: 'b',
  underlay_ip: '',
  role: '',
  heartbeat_ms: 0,
});

function base(): TetherObject[] {
  return [
    nodeSummary(n1, '192.0.2.1'),
    nodeSummary(n2, '192.0.2.2'),
    network('red', '10.1.0.0/24', { n1: '10.1.0.0/28', n2: '10.1.0.16/28' }, ['s1']),
  ];
}

function core(dir: string, extra: Partial<ConstructorParameters<typeof ProxyCore>[0]> = {}) {
  return new ProxyCore({
    dir,
    node: 'n1',
    site: 's1',
    log: silentLogger(),
    siteAgentsDelayMs: 0,
    reportIntervalMs: 0,
    ...extra,
  });
}

const ep = (i: number) =>
  endpoint(
    'far',
    `e${i}`,
    'red',
    `10.1.0.${100 + i}`,
    `02:00:00:00:00:${(16 + i).toString(16)}`,
    '192.0.2.9',
    's2',
  );

describe('ProxyCore', () => {
  it("relays an agent's gateway report as that agent's, and its latest again when the WAN comes back", () => {
    const c = core(tmp());
    c.applySnapshot(10, base());
    const s2 = c.open(new Link(), peer(n2), hello('n2', 10));
    const report = (role: string) => ({
      gateway: 'gw',
      role,
      running: true,
      config_hash: 'h',
      error: '',
      peers: [],
      bound: [],
      announced: 1,
    });
    const relayed: Array<[string, string]> = [];
    const uplink = {
      up: false,
      siteAgents: () => {},
      relay: () => {},
      relayGateway: (node: string, r: { role: string }) => relayed.push([node, r.role]),
      relayShell: () => true,
    };
    c.uplink = uplink;
    // WAN down: kept, not sent.
    c.message(s2, { msg: 'gateway', gateway: report('standby') });
    c.message(s2, { msg: 'gateway', gateway: report('active') });
    expect(relayed).toEqual([]);
    uplink.up = true;
    c.onUplinkUp();
    expect(relayed).toEqual([['n2', 'active']]);
    c.message(s2, { msg: 'gateway', gateway: report('standby') });
    expect(relayed).toEqual([
      ['n2', 'active'],
      ['n2', 'standby'],
    ]);
    c.stop();
  });

  it('answers a held revision with the merged deltas since, and an older one with a snapshot', () => {
    const c = core(tmp(), { history: { maxEntries: 3, maxObjects: 100 } });
    c.applySnapshot(10, base());
    for (let i = 1; i <= 5; i++)
      c.applyDelta(10 + i, [ep(i)], i > 1 ? [{ kind: 'Endpoint', name: `far.e${i - 1}` }] : []);
    // history keeps 3 deltas (13..15): base 12
    const a = new Link();
    c.open(a, peer(n1), hello('n1', 12));
    expect(a.kinds()).toEqual(['delta', 'site_local']);
    const d = a.msgs[0]!.delta!;
    expect(d.revision).toBe(15);
    expect(d.put!.map((r) => r!.name)).toEqual(['far.e5']);
    expect(d.deleted!.map((x) => x!.name).sort()).toEqual(['far.e2', 'far.e3', 'far.e4']);
    const b = new Link();
    c.open(b, peer(n2), hello('n2', 11));
    expect(b.kinds()[0]).toBe('snapshot_begin');
    expect(b.kinds()).toContain('snapshot_end');
    c.stop();
  });

  it('sends an agent ahead of it nothing at or below the agent revision (no rollback)', () => {
    const c = core(tmp());
    c.applySnapshot(10, base());
    const a = new Link();
    c.open(a, peer(n1), hello('n1', 12));
    expect(a.kinds()).toEqual(['site_local']);
    c.applyDelta(11, [ep(1)], []);
    c.applyDelta(12, [ep(2)], []);
    expect(a.kinds()).toEqual(['site_local']);
    c.applyDelta(13, [ep(3)], []);
    expect(a.msgs.at(-1)?.delta?.revision).toBe(13);
    c.stop();
  });

  it('turns a snapshot from upstream into exactly its difference for the agents', () => {
    const c = core(tmp());
    c.applySnapshot(10, [...base(), ep(1), ep(2)]);
    const a = new Link();
    c.open(a, peer(n1), hello('n1', 10));
    a.take();
    const changed = { ...ep(2), spec: { ...(ep(2).spec as object), ip: '10.1.0.150' } };
    const { swept } = c.applySnapshot(20, [...base(), changed, ep(3)]);
    expect(swept).toBe(1);
    const [m] = a.take();
    expect(m!.delta!.revision).toBe(20);
    expect(m!.delta!.put!.map((r) => r!.name).sort()).toEqual(['far.e2', 'far.e3']);
    expect(m!.delta!.deleted).toEqual([{ kind: 'Endpoint', name: 'far.e1' }]);
    // And a later agent at 10 gets the same difference from the history.
    const b = new Link();
    c.open(b, peer(n2), hello('n2', 10));
    expect(b.msgs[0]!.delta!.deleted).toEqual([{ kind: 'Endpoint', name: 'far.e1' }]);
    c.stop();
  });

  it('closes an agent whose roster entry is revoked or whose serial is no longer current', () => {
    const c = core(tmp());
    c.applySnapshot(10, base());
    const a = new Link();
    c.open(a, peer(n2), hello('n2', 10));
    c.applyDelta(11, [nodeSummary(n2, '192.0.2.2', 'Revoked')], []);
    expect(a.ended).toBe(true);
    expect(a.msgs.at(-1)?.goodbye?.code).toBe('TETHER_E_REVOKED');
    expect(() => c.open(new Link(), peer(n2), hello('n2', 11))).toThrow(/revoked/);
    expect(() => c.open(new Link(), { ...peer(n1), serial: 'abc' }, hello('n1', 11))).toThrow(
      /not a current certificate/,
    );
    c.stop();
  });

  it('keeps everything it acknowledged across a restart: slice, history, accepted reports, replay order', () => {
    const dir = tmp();
    let c = core(dir);
    c.applySnapshot(10, base());
    c.applyDelta(11, [ep(1)], []);
    const a1 = new Link();
    const a2 = new Link();
    const s1 = c.open(a1, peer(n1), hello('n1', 11));
    const s2 = c.open(a2, peer(n2), hello('n2', 11));
    const body = (c0: NodeCreds, eps: TetherObject[], seq: number) =>
      signReport(
        { node: c0.name, site: 's1', bootId: 'b', seq, at: seq, endpoints: eps },
        c0.keyPem,
        c0.certPem,
      );
    c.message(s2, {
      msg: 'endpoints',
      endpoints: {
        endpoints: [],
        signed: body(n2, [endpoint('n2', 'x', 'red', '10.1.0.18', '02:00:00:00:02:18', '192.0.2.2')], 1),
      },
    });
    c.message(s1, {
      msg: 'endpoints',
      endpoints: {
        endpoints: [],
        signed: body(n1, [endpoint('n1', 'x', 'red', '10.1.0.5', '02:00:00:00:01:05', '192.0.2.1')], 1),
      },
    });
    // Answered: on disk. The process dies here (no stop(): nothing flushed at exit).
    expect(a1.msgs.filter((m) => m.endpoint_result).at(-1)?.endpoint_result?.accepted).toBe(1);
    c = core(dir);
    expect(c.revision).toBe(11);
    expect(c.local.set.endpoints.map((e) => e.metadata.name)).toEqual(['n1.x', 'n2.x']);
    expect(c.local.pending().map((p) => p.node)).toEqual(['n2', 'n1']);
    const b = new Link();
    c.open(b, peer(n1), hello('n1', 10));
    expect(b.msgs[0]!.delta!.put!.map((r) => r!.name)).toEqual(['far.e1']);
    // A replayed report is relayed, in journal order, once the WAN is up.
    const relayed: string[] = [];
    c.uplink = {
      up: true,
      siteAgents: () => {},
      relay: (node) => relayed.push(node),
      relayGateway: () => {},
      relayShell: () => true,
    };
    c.onUplinkUp();
    expect(relayed).toEqual(['n2', 'n1']);
    c.onResult({
      node: 'n2',
      revision: 12,
      accepted: 0,
      refused: [{ name: 'n2.x', code: 'TETHER_E_CLAIM', message: '', field: '' }],
    });
    expect(c.local.set.endpoints.map((e) => e.metadata.name)).toEqual(['n1.x']);
    c.stop();
    c = core(dir);
    expect(c.local.pending().map((p) => p.node)).toEqual(['n1']);
    expect(c.local.set.endpoints.map((e) => e.metadata.name)).toEqual(['n1.x']);
    c.stop();
  });

  it("speaks for a node whose latest report is unanswered: its re-addressed endpoint replaces the slice's copy until the controller answers", () => {
    const c = core(tmp());
    c.applySnapshot(10, base());
    const n2ep = (ip: string, mac: string) => endpoint('n2', 'x', 'red', ip, mac, '192.0.2.2');
    // The controller holds n2.x at .18 (confirmed earlier).
    c.applyDelta(11, [n2ep('10.1.0.18', '02:00:00:00:02:18')], []);
    const a2 = new Link();
    const s2 = c.open(a2, peer(n2), hello('n2', 11));
    const signed = (eps: TetherObject[], seq: number) =>
      signReport(
        { node: 'n2', site: 's1', bootId: 'b', seq, at: seq, endpoints: eps },
        n2.keyPem,
        n2.certPem,
      );
    c.message(s2, {
      msg: 'endpoints',
      endpoints: { endpoints: [], signed: signed([n2ep('10.1.0.19', '02:00:00:00:02:18')], 1) },
    });
    expect(c.local.set.nodes).toEqual(['n2']);
    expect(c.local.set.endpoints.map((e) => (e.spec as { ip: string }).ip)).toEqual(['10.1.0.19']);
    const a1 = new Link();
    c.open(a1, peer(n1), hello('n1', 11));
    const sl = a1.msgs.find((m) => m.site_local)!.site_local!;
    expect(sl.nodes).toEqual(['n2']);
    // Deleted at the site: the node still speaks for itself, with nothing.
    c.message(s2, { msg: 'endpoints', endpoints: { endpoints: [], signed: signed([], 2) } });
    expect(c.local.set).toMatchObject({ nodes: ['n2'], endpoints: [] });
    // The controller answers (the WAN is back): the slice is the truth again.
    const order = c.local.pending().find((p) => p.node === 'n2')!.order;
    c.local.answered('n2', order, []);
    expect(c.local.set).toMatchObject({ nodes: [], endpoints: [] });
    c.stop();
  });

  it('sends agents only entries they keep: an answered entry whose IP a slice copy holds goes', () => {
    const c = core(tmp());
    c.applySnapshot(10, base());
    const n2ep = (name: string, ip: string, mac: string) => endpoint('n2', name, 'red', ip, mac, '192.0.2.2');
    c.applyDelta(11, [n2ep('x', '10.1.0.18', '02:00:00:00:02:18')], []);
    const s2 = c.open(new Link(), peer(n2), hello('n2', 11));
    for (const [seq, eps] of [
      [1, [n2ep('y', '10.1.0.18', '02:00:00:00:02:19')]], // renamed, same IP as the slice's n2.x
      [2, [n2ep('y', '10.1.0.20', '02:00:00:00:02:18')]], // same MAC as n2.x
    ] as const) {
      c.message(s2, {
        msg: 'endpoints',
        endpoints: {
          endpoints: [],
          signed: signReport(
            { node: 'n2', site: 's1', bootId: 'b', seq, at: seq, endpoints: [...eps] },
            n2.keyPem,
            n2.certPem,
          ),
        },
      });
      // Unanswered: n2 speaks for itself, its slice copy is ignored.
      expect(c.local.set.endpoints.map((e) => e.metadata.name)).toEqual(['n2.y']);
      // Answered, but the slice still holds n2.x there: the slice wins, at the proxy as at
      // every agent (src/api/site-local.ts).
      c.local.answered('n2', c.local.pending().find((p) => p.node === 'n2')!.order, []);
      const { endpoints, nodes } = c.local.set;
      expect(nodes).toEqual([]);
      const kept = desiredObjects({
        node: 'n1',
        slice: c.cache.list(),
        siteLocal: endpoints,
        siteLocalNodes: nodes,
        local: [],
      });
      expect(endpoints.filter((e) => kept.includes(e))).toEqual(endpoints);
      expect(endpoints).toEqual([]);
    }
    c.stop();
  });

  it('refuses a replayed (not newer) report and an unsigned one, keeping nothing', () => {
    const c = core(tmp());
    c.applySnapshot(10, base());
    const a = new Link();
    const s = c.open(a, peer(n1), hello('n1', 10));
    const w = signReport(
      { node: 'n1', site: 's1', bootId: 'b', seq: 5, at: 5, endpoints: [] },
      n1.keyPem,
      n1.certPem,
    );
    c.message(s, { msg: 'endpoints', endpoints: { endpoints: [], signed: w } });
    c.message(s, { msg: 'endpoints', endpoints: { endpoints: [], signed: w } });
    c.message(s, { msg: 'endpoints', endpoints: { endpoints: [], signed: null } });
    const res = a.msgs.filter((m) => m.endpoint_result).map((m) => m.endpoint_result!.refused![0]?.code);
    expect(res).toEqual([undefined, 'TETHER_E_CONFLICT', 'TETHER_E_INVALID']);
    c.stop();
  });
});

/** An agent that stopped reading: nothing written is taken until `drain()`. */
class StalledLink extends Link {
  private waiting: Array<() => void> = [];
  override write(m: ControllerMessage, written?: () => void) {
    this.msgs.push(m);
    if (written) this.waiting.push(written);
  }
  drain() {
    for (const f of this.waiting.splice(0)) f();
  }
}

describe('agent send queue', () => {
  it('stops writing to an agent that does not read, and resyncs it with a snapshot once drained', async () => {
    const c = core(tmp(), { sendQueueBytes: 4096 });
    c.applySnapshot(10, base());
    const slow = new StalledLink();
    const fast = new Link();
    c.open(slow, peer(n1), hello('n1', 10));
    c.open(fast, peer(n2), hello('n2', 10));
    const big = (i: number) => ({ ...ep(i), spec: { ...(ep(i).spec as object), note: 'x'.repeat(1500) } });
    for (let i = 1; i <= 40; i++) c.applyDelta(10 + i, [big(i)], []);
    // The stalled agent got a few deltas and then nothing; the other one got every delta.
    const deltasSlow = slow.msgs.filter((m) => m.delta).length;
    expect(deltasSlow).toBeGreaterThan(0);
    expect(deltasSlow).toBeLessThan(10);
    expect(fast.msgs.filter((m) => m.delta).length).toBe(41); // the initial (empty) one too
    expect(c.overflows).toBe(1);
    slow.take();
    slow.drain();
    await vi.waitFor(() => expect(slow.kinds()).toContain('snapshot_end'));
    expect(slow.kinds()[0]).toBe('snapshot_begin');
    expect(slow.msgs[0]!.snapshot_begin!.revision).toBe(50);
    expect(slow.kinds()).toContain('site_local');
    // Resynced: deltas flow again.
    slow.drain();
    slow.take();
    c.applyDelta(51, [ep(99)], []);
    expect(slow.msgs.at(-1)?.delta?.revision).toBe(51);
    c.stop();
  });
});

describe('end of a snapshot burst', () => {
  it('collects garbage once every agent took its snapshot, never while one is still being written', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      let collected = 0;
      const c = core(tmp(), { collectGarbage: () => collected++ });
      c.applySnapshot(10, base());
      vi.advanceTimersByTime(5000);
      expect(collected).toBe(1); // the slice's own snapshot was a burst
      const slow = new StalledLink();
      const fast = new Link();
      c.open(slow, peer(n1), hello('n1', 0));
      c.open(fast, peer(n2), hello('n2', 0));
      expect(fast.kinds()).toContain('snapshot_end');
      vi.advanceTimersByTime(30_000);
      expect(collected).toBe(1); // n1 has not taken its snapshot: the burst goes on
      slow.drain();
      vi.advanceTimersByTime(4999);
      expect(collected).toBe(1);
      vi.advanceTimersByTime(1);
      expect(collected).toBe(2);
      vi.advanceTimersByTime(60_000);
      expect(collected).toBe(2); // once per burst, not on a timer
      c.stop();
    } finally {
      vi.useRealTimers();
    }
  });
});

const n1ep = (i: number) =>
  endpoint('n1', `w${i}`, 'red', `10.1.0.${2 + i}`, `02:00:00:00:01:${(16 + i).toString(16)}`, '192.0.2.1');
const n1report = (seq: number, eps: TetherObject[]) => ({
  msg: 'endpoints' as const,
  endpoints: {
    endpoints: [],
    signed: signReport(
      { node: 'n1', site: 's1', bootId: 'b', seq, at: seq, endpoints: eps },
      n1.keyPem,
      n1.certPem,
    ),
  },
});
const seqOf = (w: { payload: Buffer | Uint8Array }) =>
  (JSON.parse(Buffer.from(w.payload).toString()) as { seq: number }).seq;

describe('agent reports', () => {
  it('are paced per agent: in a burst only the newest is checked and journaled', async () => {
    const dir = tmp();
    const c = core(dir, { reportIntervalMs: 150 });
    c.applySnapshot(10, base());
    const a = new Link();
    const s = c.open(a, peer(n1), hello('n1', 10));
    for (let seq = 1; seq <= 20; seq++) c.message(s, n1report(seq, [n1ep(seq % 5)]));
    const results = () => a.msgs.filter((m) => m.endpoint_result);
    expect(results()).toHaveLength(1);
    await vi.waitFor(() => expect(results()).toHaveLength(2));
    expect(results().every((m) => m.endpoint_result!.refused!.length === 0)).toBe(true);
    c.stop();
    const again = core(dir);
    expect(again.local.pending().map((p) => seqOf(p.wire))).toEqual([20]);
    expect(again.local.set.endpoints.map((e) => e.metadata.name)).toEqual(['n1.w0']);
    again.stop();
  });

  it('with more endpoints than the claim limit are refused whole and not journaled', () => {
    const dir = tmp();
    const c = core(dir, { maxReportEndpoints: 3 });
    c.applySnapshot(10, base());
    const a = new Link();
    const s = c.open(a, peer(n1), hello('n1', 10));
    c.message(s, n1report(1, [n1ep(1), n1ep(2), n1ep(3), n1ep(4)]));
    c.message(s, n1report(2, [n1ep(1), n1ep(2), n1ep(3)]));
    const res = a.msgs.filter((m) => m.endpoint_result).map((m) => m.endpoint_result!);
    expect(res[0]!.refused!.map((r) => [r!.name, r!.code])).toEqual([['*', 'TETHER_E_TOO_LARGE']]);
    expect(res[1]!.accepted).toBe(3);
    c.stop();
    const again = core(dir);
    expect(again.local.pending().map((p) => seqOf(p.wire))).toEqual([2]);
    again.stop();
    // The default is the controller's limit.
    const d = core(tmp());
    d.applySnapshot(10, base());
    const b = new Link();
    const t = d.open(b, peer(n1), hello('n1', 10));
    const many = Array.from({ length: 1025 }, (_, i) => ({ ...n1ep(1), metadata: { name: `n1.m${i}` } }));
    d.message(t, n1report(1, many as TetherObject[]));
    expect(b.msgs.filter((m) => m.endpoint_result).at(-1)?.endpoint_result?.refused?.[0]?.code).toBe(
      'TETHER_E_TOO_LARGE',
    );
    expect(d.local.pending()).toHaveLength(0);
    d.stop();
  });
});

describe('relayed reports', () => {
  it('keep one report per node in flight and relay only the newest after the answer', () => {
    const c = core(tmp());
    c.applySnapshot(10, base());
    const relayed: Array<[string, number]> = [];
    c.uplink = {
      up: true,
      siteAgents: () => {},
      relay: (node, w) => relayed.push([node, seqOf(w)]),
      relayGateway: () => {},
      relayShell: () => true,
    };
    const a = new Link();
    const s = c.open(a, peer(n1), hello('n1', 10));
    c.message(s, n1report(1, [n1ep(1)]));
    c.message(s, n1report(2, [n1ep(2)]));
    c.message(s, n1report(3, [n1ep(3)]));
    expect(relayed).toEqual([['n1', 1]]);
    // The answer to report 1 must not be taken as the answer to report 3.
    c.onResult({ node: 'n1', revision: 11, accepted: 1, refused: [] });
    expect(relayed).toEqual([
      ['n1', 1],
      ['n1', 3],
    ]);
    expect(c.local.pending().map((p) => seqOf(p.wire))).toEqual([3]);
    c.onResult({
      node: 'n1',
      revision: 12,
      accepted: 0,
      refused: [{ name: 'n1.w3', code: 'TETHER_E_CLAIM', message: '', field: '' }],
    });
    expect(c.local.pending()).toHaveLength(0);
    expect(c.local.set.endpoints).toHaveLength(0);
    expect(relayed).toHaveLength(2);
    // A new WAN session relays what is unanswered, whatever was in flight on the old one.
    c.message(s, n1report(4, [n1ep(4)]));
    c.message(s, n1report(5, [n1ep(4)]));
    c.onUplinkUp();
    expect(relayed.slice(2)).toEqual([
      ['n1', 4],
      ['n1', 5],
    ]);
    c.stop();
  });
});

describe('SiteLocal bound', () => {
  it('keeps entries in journal order up to the bound and refuses the rest to their node', () => {
    const c = core(tmp(), { siteLocalMaxBytes: 900 });
    c.applySnapshot(10, base());
    const a1 = new Link();
    const a2 = new Link();
    const s1 = c.open(a1, peer(n1), hello('n1', 10));
    const s2 = c.open(a2, peer(n2), hello('n2', 10));
    const n2ep = (i: number) =>
      endpoint(
        'n2',
        `v${i}`,
        'red',
        `10.1.0.${18 + i}`,
        `02:00:00:00:02:${(16 + i).toString(16)}`,
        '192.0.2.2',
      );
    // n2 reports first: its entries are older in the journal than n1's, although n1's names sort first.
    c.message(s2, {
      msg: 'endpoints',
      endpoints: {
        endpoints: [],
        signed: signReport(
          { node: 'n2', site: 's1', bootId: 'b', seq: 1, at: 1, endpoints: [n2ep(1), n2ep(2), n2ep(3)] },
          n2.keyPem,
          n2.certPem,
        ),
      },
    });
    c.message(s1, n1report(1, [n1ep(1), n1ep(2), n1ep(3)]));
    const last = a1.msgs.filter((m) => m.site_local).at(-1)!.site_local!;
    const names = last.endpoints!.map((r) => r!.name);
    const bytes = last.endpoints!.reduce((n, r) => n + (r!.json as Buffer).length, 0);
    expect(bytes).toBeLessThanOrEqual(900);
    expect(names.filter((n) => n!.startsWith('n2.'))).toEqual(['n2.v1', 'n2.v2', 'n2.v3']);
    expect(names.length).toBeLessThan(6);
    const refused = a1.msgs
      .filter((m) => m.endpoint_result?.refused?.some((r) => r!.code === 'TETHER_E_TOO_LARGE'))
      .flatMap((m) => m.endpoint_result!.refused!.map((r) => r!.name));
    expect(new Set([...names, ...refused]).size).toBe(6);
    expect(refused.every((n) => n!.startsWith('n1.'))).toBe(true);
    expect(
      a2.msgs.some((m) => m.endpoint_result?.refused?.some((r) => r!.code === 'TETHER_E_TOO_LARGE')),
    ).toBe(false);
    c.stop();
  });
});

describe('history write failure', () => {
  it('still forwards the delta or snapshot difference, and answers older revisions with a snapshot', () => {
    const dir = tmp();
    const c = core(dir);
    c.applySnapshot(10, base());
    const a = new Link();
    c.open(a, peer(n1), hello('n1', 10));
    a.take();
    // The history's disk fails from here on (ENOSPC, EIO): its journal's own behaviour on real
    // write errors is test/integration/journal-faults; this is what the core does about it.
    const fail = vi.spyOn(DeltaHistory.prototype, 'append').mockImplementation(() => {
      throw new Error('EIO: i/o error, write');
    });
    c.applyDelta(11, [ep(1)], []);
    expect(a.take().map((m) => m.delta?.revision)).toEqual([11]);
    c.applyDelta(12, [ep(2)], [{ kind: 'Endpoint', name: 'far.e1' }]);
    expect(a.take().map((m) => m.delta?.revision)).toEqual([12]);
    expect(c.revision).toBe(12);
    const { swept } = c.applySnapshot(20, [...base(), ep(3)]);
    expect(swept).toBe(1);
    const [m] = a.take();
    expect(m?.delta?.revision).toBe(20);
    expect(m?.delta?.put?.map((r) => r!.name)).toEqual(['far.e3']);
    // The history holds nothing it could not write: an agent at 11 gets a snapshot, not a
    // merged delta that would miss the changes of 12 and 20.
    const b = new Link();
    c.open(b, peer(n2), hello('n2', 11));
    expect(b.kinds()[0]).toBe('snapshot_begin');
    fail.mockRestore();
    c.stop();
  });
});

describe('journals', () => {
  it('drop a torn last record (never acknowledged) and refuse damage elsewhere', () => {
    const dir = tmp();
    const p = join(dir, 'j');
    type L = { t: 'a'; a: number };
    const check = (v: Record<string, unknown>, where: string): L => ({
      t: 'a',
      a: field<number>(v, 'a', 'number', where),
    });
    const j = new LineLog<L>(p, check);
    const held: L[] = [];
    for (const a of [1, 2]) {
      j.append({ t: 'a', a }, () => [...held]);
      held.push({ t: 'a', a });
    }
    j.close();
    // A crash in the middle of the next append: half a frame at the end of the log.
    appendFileSync(`${p}.journal`, Buffer.from([40, 0, 0, 0, 1, 2, 3]));
    const k = new LineLog<L>(p, check);
    expect(k.loaded).toEqual(held);
    k.append({ t: 'a', a: 4 }, () => [...held]);
    k.close();
    expect(new LineLog<L>(p, check).loaded).toEqual([...held, { t: 'a', a: 4 }]);
    // Compaction: the checkpoint holds what was rewritten, the log starts empty.
    const c = new LineLog<L>(p, check);
    c.rewrite([{ t: 'a', a: 9 }]);
    expect(c.lines).toBe(1);
    c.append({ t: 'a', a: 10 }, () => [{ t: 'a', a: 9 }]);
    c.close();
    expect(new LineLog<L>(p, check).loaded).toEqual([
      { t: 'a', a: 9 },
      { t: 'a', a: 10 },
    ]);
    // A record that is not what the owner wrote, or a damaged checkpoint: TETHER_E_STATE.
    const bad = join(dir, 'bad');
    const b = new LineLog<{ t: string }>(bad, (v) => v as { t: string });
    b.rewrite([{ t: 'a' }]);
    b.close();
    expect(() => new LineLog<L>(bad, check)).toThrow(/bad "a"/);
    writeFileSync(`${p}.checkpoint`, 'TTHRCKP1garbage');
    expect(() => new LineLog<L>(p, check)).toThrow(expect.objectContaining({ code: 'TETHER_E_STATE' }));
  });

  it('history is bounded in entries and objects and survives compaction', () => {
    const dir = tmp();
    const h = new DeltaHistory(join(dir, 'h'), { maxEntries: 5, maxObjects: 8 });
    h.reset(1);
    for (let r = 2; r < 60; r++) h.append({ revision: r, put: [ep(r % 7), ep((r + 1) % 7)], deleted: [] });
    expect(h.size).toBe(4);
    expect(h.base).toBe(55);
    const again = new DeltaHistory(join(dir, 'h'), { maxEntries: 5, maxObjects: 8 });
    expect(again.base).toBe(55);
    expect(again.head).toBe(59);
    expect(again.since(54)).toBeUndefined();
    expect(again.since(57)!.put.length).toBe(2 + 2 - 1);
  });
});
