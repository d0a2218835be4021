/**
 * The endpoint's node of a cross-node floating IP follows the active gateway (docs/gateway.md
 * "Floating IPs on another node"): which node is active as heard from the gateway nodes'
 * signed heartbeats (`activeGateway`, the monitor in observer mode), who sends them to it
 * (`haGateway().followers`), and that nothing but a listed node's own signed, fresh heartbeat
 * from its own address can move it (fuzzed).
 */
import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import { silentLogger } from '../../../src/lib/log.js';
import {
  activeGateway,
  encodeHeartbeat,
  type HaGatewayView,
  HaMonitor,
  type HaSigner,
  type Heartbeat,
  haSignerOf,
  type PeerView,
} from '../../../src/node/gateway/ha.js';
import { haGateway, haObserver, memoHaGateway } from '../../../src/node/gateway/ha-role.js';
import { fipEndpointNodes } from '../../../src/node/gateway/model.js';

const o = (kind: string, name: string, spec: Record<string, unknown>, status?: Record<string, unknown>) =>
  ({
    apiVersion: 'tether.dev/v1',
    kind,
    metadata: { name },
    spec,
    ...(status ? { status } : {}),
  }) as TetherObject;

interface Ident {
  signer: HaSigner;
  spki: string;
}
const ident = (): Ident => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    signer: haSignerOf(privateKey.export({ type: 'pkcs8', format: 'pem' }) as string),
    spki: publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
  };
};
const A = ident();
const B = ident();
/** An enrolled node of the site the Gateway does not list (the endpoint's node itself, say). */
const E = ident();

const slice = (): TetherObject[] => [
  o('Gateway', 'gw', {
    site: 's1',
    nodes: ['gw-a', 'gw-b'],
    localAsn: 65001,
    pool: ['203.0.113.0/28'],
    peers: [],
    announce: { prefixes: [], floatingIps: true, acceptDefaultRoute: false },
    gracefulRestartSeconds: 120,
  }),
  o('Node', 'gw-a', { site: 's1' }, { vtep: '127.0.0.71', publicKey: A.spki }),
  o('Node', 'gw-b', { site: 's1' }, { vtep: '127.0.0.72', publicKey: B.spki }),
  o('Node', 'e1', { site: 's1' }, { vtep: '127.0.0.73', publicKey: E.spki }),
  o('Node', 'e2', { site: 's1' }, { vtep: '127.0.0.74' }),
  o('Endpoint', 'w', { network: 'red', node: 'e1', site: 's1', mac: '02:00:00:00:00:01', ip: '10.1.0.5' }),
  o('Endpoint', 'x', { network: 'red', node: 'e2', site: 's1', mac: '02:00:00:00:00:02', ip: '10.1.0.6' }),
  o('FloatingIP', 'f', { gateway: 'gw', address: '203.0.113.5', network: 'red', target: { endpoint: 'w' } }),
];

const peer = (over: Partial<PeerView> = {}): PeerView => ({
  lastSeenMs: 10_000,
  eligible: true,
  eligibleForMs: 60_000,
  role: 'active',
  ...over,
});

describe('activeGateway (pure): the best-ranked live node that says it is active', () => {
  const at = (peers: [string, PeerView][], nowMs = 10_000) =>
    activeGateway({ ranked: ['gw-a', 'gw-b'], peers: new Map(peers), nowMs, deadAfterMs: 1000 });
  it('follows what the gateways decided', () => {
    expect(at([])).toBeUndefined();
    expect(
      at([
        ['gw-a', peer()],
        ['gw-b', peer({ role: 'standby' })],
      ]),
    ).toBe('gw-a');
    // gw-a silent past the dead interval, or its session down: gw-b, which has taken over.
    expect(
      at([
        ['gw-a', peer({ lastSeenMs: 8_999 })],
        ['gw-b', peer()],
      ]),
    ).toBe('gw-b');
    expect(
      at([
        ['gw-a', peer({ eligible: false })],
        ['gw-b', peer()],
      ]),
    ).toBe('gw-b');
    // The preempt hold: gw-a is back and up but still standby; the router still prefers gw-b.
    expect(
      at([
        ['gw-a', peer({ role: 'standby', eligibleForMs: 100 })],
        ['gw-b', peer()],
      ]),
    ).toBe('gw-b');
    // A split: both say active; the best-ranked is taken.
    expect(
      at([
        ['gw-a', peer()],
        ['gw-b', peer()],
      ]),
    ).toBe('gw-a');
    // A node the Gateway does not rank never counts.
    expect(at([['gw-x', peer()]])).toBeUndefined();
  });
});

describe('who hears the heartbeats', () => {
  it('the gateway nodes send them to the endpoint nodes of their floating IPs too; only those listen', () => {
    expect(fipEndpointNodes(slice()[0]!, slice())).toEqual(['e1']);
    expect(haGateway('gw-a', 's1', slice())?.followers).toEqual([{ node: 'e1', address: '127.0.0.73' }]);
    const v = haObserver('e1', 's1', slice());
    expect(v).toMatchObject({
      name: 'gw',
      ranked: ['gw-a', 'gw-b'],
      observer: true,
      peers: [
        { node: 'gw-a', address: '127.0.0.71' },
        { node: 'gw-b', address: '127.0.0.72' },
      ],
    });
    // Only the listed nodes' keys: e1's own key (also in the roster) is not among them.
    expect(v?.keys.map((k) => k.node)).toEqual(['gw-a', 'gw-b']);
    // A node that hosts no endpoint of a floating IP, a gateway node, another site: no view.
    expect(haObserver('e2', 's1', slice())).toBeUndefined();
    expect(haObserver('gw-a', 's1', slice())).toBeUndefined();
    expect(haObserver('e1', 's2', slice())).toBeUndefined();
    expect(memoHaGateway('e1', 's1', slice, () => 1)()?.observer).toBe(true);
    expect(memoHaGateway('gw-b', 's1', slice, () => 1)()?.observer).toBeUndefined();
  });
});

const hb = (over: Partial<Heartbeat> = {}): Heartbeat => ({
  gateway: 'gw',
  node: 'gw-a',
  seq: 1,
  ts: 1_700_000_000_000,
  eligible: true,
  eligibleForMs: 60_000,
  role: 'active',
  ...over,
});

describe('an observer (the endpoint node e1): what moves its view of the active gateway', () => {
  const mk = (now: () => number, view: HaGatewayView | undefined = haObserver('e1', 's1', slice())) => {
    const seen: (string | undefined)[] = [];
    let uplinkReads = 0;
    const m = new HaMonitor({
      node: 'e1',
      gateway: () => view,
      uplinkUp: async () => {
        uplinkReads++;
        return true;
      },
      bindAddress: '127.0.0.1',
      signers: () => [E.signer],
      onChange: () => {},
      onActiveChange: (a) => seen.push(a),
      log: silentLogger(),
      now,
    });
    return { m, seen, reads: () => uplinkReads };
  };
  it('hears gw-a active, then gw-b once gw-a falls silent; it decides and reads nothing itself', async () => {
    let now = 1_700_000_000_000;
    const { m, seen, reads } = mk(() => now);
    expect(m.active()).toBeUndefined();
    m.receive(encodeHeartbeat(hb({ ts: now }), [A.signer]), '127.0.0.71');
    m.receive(encodeHeartbeat(hb({ node: 'gw-b', ts: now, role: 'standby' }), [B.signer]), '127.0.0.72');
    expect(m.active()).toBe('gw-a');
    expect(m.role).toBe('active'); // not a gateway node: no role of its own to render
    now += 1500; // gw-a silent: gw-b decides it is active and says so
    await m.tick();
    expect(seen).toEqual(['gw-a', undefined]);
    m.receive(encodeHeartbeat(hb({ node: 'gw-b', ts: now, seq: 2 }), [B.signer]), '127.0.0.72');
    expect(m.active()).toBe('gw-b');
    expect(seen).toEqual(['gw-a', undefined, 'gw-b']);
    expect(reads()).toBe(0);
    expect(m.heartbeats.accepted).toBe(3);
  });
  it('forged, unsigned, misaddressed, replayed or foreign heartbeats never move it (and never throw)', async () => {
    let now = 1_700_000_000_000;
    const { m, seen } = mk(() => now);
    m.receive(encodeHeartbeat(hb({ ts: now }), [A.signer]), '127.0.0.71');
    const standbyB = encodeHeartbeat(hb({ node: 'gw-b', ts: now, role: 'standby' }), [B.signer]);
    m.receive(standbyB, '127.0.0.72');
    expect(m.active()).toBe('gw-a');
    now += 1500; // gw-a is gone, gw-b has not spoken since: nobody known to be active
    await m.tick();
    const claimA = hb({ ts: now, seq: 9 });
    // gw-a "alive and active" from anyone but gw-a at its address with its key:
    m.receive(encodeHeartbeat(claimA, [E.signer]), '127.0.0.71'); // e1's own valid key
    m.receive(encodeHeartbeat(claimA, [B.signer]), '127.0.0.72'); // gw-b speaking for gw-a
    m.receive(encodeHeartbeat(claimA, [A.signer]), '127.0.0.99'); // another address
    m.receive(Buffer.from(JSON.stringify(claimA)), '127.0.0.71'); // unsigned (version 1)
    m.receive(encodeHeartbeat(hb({ ts: now - 1500 }), [A.signer]), '127.0.0.71'); // replayed
    m.receive(encodeHeartbeat(hb({ ts: now - 60_000, seq: 10 }), [A.signer]), '127.0.0.71'); // stale
    m.receive(encodeHeartbeat({ ...claimA, gateway: 'other' }, [A.signer]), '127.0.0.71');
    expect(m.active()).toBeUndefined();
    expect(m.heartbeats.dropped).toMatchObject({
      'unknown-key': 1,
      'wrong-signer': 1,
      'wrong-source': 1,
      malformed: 1,
      replay: 1,
      stale: 1,
      'other-gateway': 1,
    });
    // Fuzz: random bytes, and every kind of change to gw-a's valid datagram, from gw-a's address.
    const good = encodeHeartbeat(claimA, [A.signer]);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 700 }).map((b) => Buffer.from(b)),
          fc.tuple(fc.nat({ max: good.byteLength - 1 }), fc.integer({ min: 1, max: 255 })).map(([i, x]) => {
            const b = Buffer.from(good);
            b[i] = b[i]! ^ x;
            return b;
          }),
          fc.nat({ max: good.byteLength - 1 }).map((n) => good.subarray(0, n)),
        ),
        (b) => {
          m.receive(b, '127.0.0.71');
          return m.active() === undefined;
        },
      ),
    );
    expect(seen).toEqual(['gw-a', undefined]);
    // The real one is heard.
    m.receive(good, '127.0.0.71');
    expect(m.active()).toBe('gw-a');
  });
  it('without the listed nodes\u2019 keys in the slice nothing is taken: the first-ranked fallback stays', () => {
    const now = 1_700_000_000_000;
    const v = haObserver('e1', 's1', slice());
    const { m } = mk(() => now, { ...v!, keys: [] });
    m.receive(encodeHeartbeat(hb({ ts: now, node: 'gw-b' }), [B.signer]), '127.0.0.72');
    expect(m.active()).toBeUndefined();
    expect(m.heartbeats.dropped['no-key']).toBe(1);
  });
});

describe('the active gateway over real UDP on loopback: gateway nodes and an endpoint node', () => {
  it('e1 follows gw-a, then gw-b when gw-a dies, then gw-a again after its preempt hold', async () => {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const s = slice();
    const timers = { port, intervalMs: 20, deadAfterMs: 200, preemptHoldMs: 300 };
    const mk = (node: string, addr: string, signer: HaSigner | undefined) =>
      new HaMonitor({
        node,
        gateway: memoHaGateway(
          node,
          's1',
          () => s,
          () => 1,
        ),
        uplinkUp: async () => true,
        bindAddress: addr,
        signers: () => (signer ? [signer] : []),
        onChange: () => {},
        log: silentLogger(),
        ...timers,
      });
    const until = async (f: () => boolean) => {
      for (let i = 0; i < 3000 && !f(); i++) await new Promise((r) => setTimeout(r, 10));
      return f();
    };
    const a = mk('gw-a', '127.0.0.71', A.signer);
    const b = mk('gw-b', '127.0.0.72', B.signer);
    const e = mk('e1', '127.0.0.73', E.signer);
    let a2: HaMonitor | undefined;
    try {
      await e.start();
      await a.start();
      await b.start();
      expect(await until(() => e.active() === 'gw-a' && a.role === 'active')).toBe(true);
      // A gateway node sees the same (its own decision counts for itself).
      expect(b.active()).toBe('gw-a');
      a.stop();
      expect(await until(() => e.active() === 'gw-b')).toBe(true);
      expect(b.active()).toBe('gw-b');
      a2 = mk('gw-a', '127.0.0.71', A.signer);
      await a2.start();
      // Back and standby while it waits out the hold: e1 stays with gw-b, then moves.
      expect(await until(() => a2!.role === 'standby')).toBe(true);
      expect(e.active()).toBe('gw-b');
      expect(await until(() => e.active() === 'gw-a')).toBe(true);
      // e1 sent nothing: the gateways heard only each other.
      expect(b.heartbeats.dropped['wrong-source'] + b.heartbeats.dropped['unknown-key']).toBe(0);
    } finally {
      a.stop();
      a2?.stop();
      b.stop();
      e.stop();
    }
  });
});
