import { generateKeyPairSync, sign } from 'node:crypto';
import { createSocket } from 'node:dgram';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import { type BirdConfig, renderBirdConfig } from '../../../src/bgp/render.js';
import { silentLogger } from '../../../src/lib/log.js';
import {
  birdConfigFor,
  decideRole,
  desiredFor,
  encodeHeartbeat,
  type HaDecision,
  type HaGatewayView,
  type HaInput,
  HaMonitor,
  type HaSigner,
  type HaVerifyKey,
  type Heartbeat,
  haPeers,
  haPublicKeyOf,
  haSignerOf,
  openHeartbeat,
  type PeerView,
  parseHeartbeatBody,
  STANDBY_PREPEND,
} from '../../../src/node/gateway/ha.js';
import {
  haGateway,
  memoHaGateway,
  NodeHaSigners,
  PREVIOUS_KEY_MS,
} from '../../../src/node/gateway/ha-role.js';
import { fipTable } from '../../../src/node/gateway/model.js';

const input = (over: Partial<HaInput> = {}): HaInput => ({
  self: 'gw-a',
  ranked: ['gw-a', 'gw-b'],
  uplinkUpSinceMs: 0,
  peers: new Map(),
  nowMs: 60_000,
  deadAfterMs: 1000,
  preemptHoldMs: 5000,
  previous: 'active',
  ...over,
});
const peer = (over: Partial<PeerView> = {}): PeerView => ({
  lastSeenMs: 60_000,
  eligible: true,
  eligibleForMs: 60_000,
  role: 'active',
  ...over,
});

describe('gateway HA decision (pure)', () => {
  it('the first-ranked node with its session up is active, the second standby while the first is up', () => {
    expect(decideRole(input()).role).toBe('active');
    const b = input({ self: 'gw-b', previous: 'standby', peers: new Map([['gw-a', peer()]]) });
    expect(decideRole(b)).toEqual({ role: 'standby', reason: 'gw-a ranks above and is up' });
  });

  it('the second takes over when the first is silent past deadAfter, or reports its session down', () => {
    const silent = input({ self: 'gw-b', peers: new Map([['gw-a', peer({ lastSeenMs: 58_999 })]]) });
    expect(decideRole(silent).role).toBe('active');
    const down = input({
      self: 'gw-b',
      peers: new Map([['gw-a', peer({ eligible: false, role: 'standby' })]]),
    });
    expect(decideRole(down).role).toBe('active');
  });

  it('a node without its own session is standby, whatever the others say', () => {
    expect(decideRole(input({ uplinkUpSinceMs: undefined }))).toEqual({
      role: 'standby',
      reason: 'no session to the site router',
    });
    expect(decideRole(input({ self: 'gw-c' })).role).toBe('standby');
  });

  it('preempt hold: a returning first node waits out the hold while the second is active, then takes the role back', () => {
    // gw-a came back 2 s ago; gw-b is active.
    const back = input({ uplinkUpSinceMs: 58_000, previous: 'standby', peers: new Map([['gw-b', peer()]]) });
    expect(decideRole(back).role).toBe('standby');
    // gw-b does not step down for a first node that is up for less than the hold…
    const b = input({
      self: 'gw-b',
      peers: new Map([['gw-a', peer({ eligibleForMs: 2000, role: 'standby' })]]),
    });
    expect(decideRole(b).role).toBe('active');
    // …and does once it passed; then gw-a, up 5 s, is active.
    expect(
      decideRole({ ...b, peers: new Map([['gw-a', peer({ eligibleForMs: 5000, role: 'standby' })]]) }).role,
    ).toBe('standby');
    expect(decideRole({ ...back, uplinkUpSinceMs: 55_000 }).role).toBe('active');
  });

  it('a returning node with nobody active takes the role at once, but not while still listening', () => {
    expect(decideRole(input({ uplinkUpSinceMs: 59_900, previous: 'standby' })).role).toBe('active');
    expect(decideRole(input({ listening: true })).role).toBe('standby');
  });

  it('two nodes converge on exactly one active from any start, and stay there (simulated rounds, fuzzed)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('active', 'standby'),
        fc.constantFrom('active', 'standby'),
        fc.integer({ min: 0, max: 20_000 }),
        fc.integer({ min: 0, max: 20_000 }),
        (ra, rb, ageA, ageB) => {
          let now = 60_000;
          const role: Record<string, 'active' | 'standby'> = { 'gw-a': ra, 'gw-b': rb };
          const since: Record<string, number> = { 'gw-a': now - ageA, 'gw-b': now - ageB };
          const view = (n: string): PeerView => ({
            lastSeenMs: now,
            eligible: true,
            eligibleForMs: now - since[n]!,
            role: role[n]!,
          });
          const history: string[] = [];
          for (let round = 0; round < 80; round++) {
            const next: Record<string, 'active' | 'standby'> = {};
            for (const [self, other] of [
              ['gw-a', 'gw-b'],
              ['gw-b', 'gw-a'],
            ] as const)
              next[self] = decideRole(
                input({
                  self,
                  nowMs: now,
                  uplinkUpSinceMs: since[self],
                  previous: role[self]!,
                  peers: new Map([[other, view(other)]]),
                }),
              ).role;
            Object.assign(role, next);
            history.push(`${role['gw-a']}/${role['gw-b']}`);
            now += 100;
          }
          // 8 s of rounds: past the hold, gw-a is active, gw-b standby, and it no longer moves.
          return history.slice(-20).every((h) => h === 'active/standby');
        },
      ),
    );
  });

  it('split brain (no heartbeat either way): both active', () => {
    const alone = (self: string) => decideRole(input({ self, peers: new Map() })).role;
    expect([alone('gw-a'), alone('gw-b')]).toEqual(['active', 'active']);
  });
});

describe('the standby announcement', () => {
  const bird: BirdConfig = {
    routerId: '10.0.0.2',
    localAsn: 65001,
    peers: [{ name: 'r', address: '10.0.0.1', asn: 65000, holdSeconds: 9, keepaliveSeconds: 3 }],
    announce: ['203.0.113.5/32'],
    acceptDefaultRoute: false,
    gracefulRestartSeconds: 120,
    llgrStaleSeconds: 0,
  };
  it('active renders exactly as without HA; standby prepends its AS to every exported route', () => {
    expect(renderBirdConfig(birdConfigFor(bird, 'active'))).toBe(renderBirdConfig(bird));
    const text = renderBirdConfig(birdConfigFor(bird, 'standby'));
    expect(text.match(/bgp_path\.prepend\(65001\);/g)).toHaveLength(STANDBY_PREPEND);
    expect(text).toContain('if proto != "tether_announce" then reject;');
    // Only the export line differs: BIRD takes it in place (a re-export, no session reset).
    const diff = text.split('\n').filter((l) => !renderBirdConfig(bird).split('\n').includes(l));
    expect(diff).toHaveLength(1);
  });
  it('both roles keep the same floating IP dataplane: a failover installs nothing, only the preference moves', () => {
    const d = {
      bird,
      bindings: [
        {
          name: 'r',
          address: '203.0.113.5',
          network: 'red',
          vni: 510,
          endpoint: 'e',
          ip: '10.1.0.50',
          endpointNode: 'n1',
        },
      ],
      unbound: [{ name: 'x', reason: 'no matching endpoint on this node' }],
    };
    const s = desiredFor(d, 'standby');
    const a = desiredFor(d, 'active');
    expect(s.bindings).toEqual(a.bindings);
    expect(s.unbound).toEqual(a.unbound);
    expect(fipTable(s.bindings)).toEqual(fipTable(a.bindings));
    expect({ ...s.bird, prepend: undefined }).toEqual({ ...a.bird, prepend: undefined });
    expect(s.bird.prepend).toBe(STANDBY_PREPEND);
  });
  it('refuses an absurd prepend count', () => {
    expect(() => renderBirdConfig({ ...bird, prepend: 9 })).toThrow(/prepend/);
  });
});

interface Ident {
  node: string;
  pem: string;
  signer: HaSigner;
  spki: string;
  verify: HaVerifyKey;
}
/** A node's key pair as enrolment makes it (ECDSA P-256) and what the roster says of it. */
const ident = (node: string): Ident => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const spki = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  const pub = haPublicKeyOf(nodeObj(node, { publicKey: spki }));
  if (!pub) throw new Error('test key not accepted');
  return { node, pem, signer: haSignerOf(pem), spki, verify: { ...pub, node } };
};
function nodeObj(name: string, status: Record<string, unknown>): TetherObject {
  return { apiVersion: 'tether.dev/v1', kind: 'Node', metadata: { name }, spec: { site: 's' }, status };
}
const hb = (over: Partial<Heartbeat> = {}): Heartbeat => ({
  gateway: 'gw',
  node: 'gw-a',
  seq: 7,
  ts: 1_700_000_000_000,
  eligible: true,
  eligibleForMs: 12,
  role: 'active',
  ...over,
});
const A = ident('gw-a');
const B = ident('gw-b');
/** An enrolled node of the same site that the Gateway does not list: a valid key of its own. */
const C = ident('site-c');

describe("heartbeat datagrams (version 3, signed with the sender's own node key)", () => {
  it("round-trips with the sender's public key; the signer is the key's node", () => {
    expect(openHeartbeat(encodeHeartbeat(hb(), [A.signer]), [A.verify, B.verify])).toEqual({
      ok: true,
      heartbeat: hb(),
      signer: 'gw-a',
    });
    // After a renewal the node signs with new and previous key: a receiver that knows either hears it.
    const A2 = ident('gw-a');
    const both = encodeHeartbeat(hb(), [A2.signer, A.signer]);
    expect(openHeartbeat(both, [A.verify]).ok).toBe(true);
    expect(openHeartbeat(both, [A2.verify]).ok).toBe(true);
  });
  it('a key the receiver does not know is unknown-key (a renewal not in the slice yet), not a crash', () => {
    const A2 = ident('gw-a');
    expect(openHeartbeat(encodeHeartbeat(hb(), [A2.signer]), [A.verify])).toEqual({
      ok: false,
      drop: 'unknown-key',
    });
    expect(openHeartbeat(encodeHeartbeat(hb(), [A.signer]), [])).toEqual({ ok: false, drop: 'no-key' });
    expect(() => encodeHeartbeat(hb(), [])).toThrow(/needs a key/);
  });
  it('a site node NOT listed in the Gateway, holding its own valid key, cannot pass as gw-a', () => {
    // Its key is not among the listed nodes' keys: unknown-key, whatever name the body claims.
    expect(openHeartbeat(encodeHeartbeat(hb(), [C.signer]), [A.verify])).toEqual({
      ok: false,
      drop: 'unknown-key',
    });
    // Claiming gw-a's key id with its own signature: the signature does not verify.
    const forged = encodeHeartbeat(hb(), [C.signer]);
    A.verify.keyId.copy(forged, 4);
    expect(openHeartbeat(forged, [A.verify])).toEqual({ ok: false, drop: 'bad-signature' });
    // A listed node speaking for another listed node: wrong-signer.
    expect(openHeartbeat(encodeHeartbeat(hb({ node: 'gw-a' }), [B.signer]), [A.verify, B.verify])).toEqual({
      ok: false,
      drop: 'wrong-signer',
    });
  });
  it('the HMAC version 2, the unsigned version 1, oversized, empty: malformed', () => {
    const v1 = Buffer.from(JSON.stringify({ v: 1, ...hb() }));
    expect(openHeartbeat(v1, [A.verify])).toEqual({ ok: false, drop: 'malformed' });
    const v2 = encodeHeartbeat(hb(), [A.signer]);
    v2[2] = 2;
    expect(openHeartbeat(v2, [A.verify])).toEqual({ ok: false, drop: 'malformed' });
    expect(openHeartbeat(Buffer.alloc(513, 0x20), [A.verify])).toEqual({ ok: false, drop: 'malformed' });
    expect(openHeartbeat(Buffer.alloc(0), [A.verify])).toEqual({ ok: false, drop: 'malformed' });
    const big = encodeHeartbeat(
      hb({ gateway: 'g'.repeat(63), node: 'n'.repeat(63), seq: 2 ** 53 - 1, ts: 2 ** 53 - 1 }),
      [A.signer, B.signer],
    );
    expect(big.byteLength).toBeLessThan(512);
    const padded = Buffer.concat([big, Buffer.alloc(512 - big.byteLength + 1, 0x20)]);
    expect(openHeartbeat(padded, [A.verify]).ok).toBe(false);
  });
  it('a listed node signing a body that is not a heartbeat: malformed, not a crash', () => {
    for (const body of ['not json', '[]', '{"gateway":"GW"}', JSON.stringify({ ...hb(), ts: -1 })]) {
      const b = Buffer.from(body);
      const sig = sign('sha256', Buffer.concat([Buffer.from('tether gateway-ha heartbeat v3\0'), b]), {
        key: A.signer.key,
        dsaEncoding: 'ieee-p1363',
      });
      const forged = Buffer.concat([Buffer.from([0x54, 0x48, 3, 1]), A.signer.keyId, sig, b]);
      expect(openHeartbeat(forged, [A.verify])).toEqual({ ok: false, drop: 'malformed' });
    }
  });
  it('every truncation and every single-byte change of a valid datagram is refused (fuzzed)', () => {
    const good = encodeHeartbeat(hb(), [A.signer]);
    for (let n = 0; n < good.byteLength; n++)
      expect(openHeartbeat(good.subarray(0, n), [A.verify]).ok).toBe(false);
    // Every byte, every one of a few flips (the property below covers the rest at random).
    for (let at = 0; at < good.byteLength; at++)
      for (const x of [0x01, 0x80, 0xff]) {
        const b = Buffer.from(good);
        b[at] = b[at]! ^ x;
        expect(openHeartbeat(b, [A.verify]).ok).toBe(false);
      }
    fc.assert(
      fc.property(fc.nat({ max: good.byteLength - 1 }), fc.integer({ min: 1, max: 255 }), (at, x) => {
        const b = Buffer.from(good);
        b[at] = b[at]! ^ x;
        return !openHeartbeat(b, [A.verify]).ok;
      }),
      { numRuns: 300 },
    );
  });
  it('random bytes and random JSON never throw and never pass (fuzzed)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 700 }), (b) => !openHeartbeat(b, [A.verify, B.verify]).ok),
    );
    // Random bytes behind a valid-looking header, some with a listed key id in front.
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 600 }),
        fc.constantFrom(0, 1, 2, 3, 255),
        fc.boolean(),
        (b, n, id) => {
          const d = Buffer.concat([
            Buffer.from([0x54, 0x48, 3, n]),
            id ? A.verify.keyId : Buffer.alloc(0),
            b,
          ]);
          return !openHeartbeat(d, [A.verify, B.verify]).ok;
        },
      ),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const r = parseHeartbeatBody(Buffer.from(JSON.stringify(v) ?? ''));
        return r === undefined || r.role === 'active' || r.role === 'standby';
      }),
    );
  });
  it('public keys from the roster: only a P-256 SPKI of bounded size; the rest left out (fuzzed)', () => {
    expect(haPublicKeyOf(nodeObj('n', { publicKey: A.spki }))?.keyId.equals(A.signer.keyId)).toBe(true);
    expect(haPublicKeyOf(nodeObj('n', {}))).toBeUndefined();
    expect(haPublicKeyOf(undefined)).toBeUndefined();
    expect(haPublicKeyOf(nodeObj('n', { publicKey: 'c2hvcnQ=' }))).toBeUndefined();
    expect(haPublicKeyOf(nodeObj('n', { publicKey: `${A.spki}AAAA` }))).toBeUndefined();
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey;
    const rsaSpki = rsa.export({ type: 'spki', format: 'der' }).toString('base64');
    expect(haPublicKeyOf(nodeObj('n', { publicKey: rsaSpki }))).toBeUndefined();
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).publicKey;
    const p384Spki = p384.export({ type: 'spki', format: 'der' }).toString('base64');
    expect(haPublicKeyOf(nodeObj('n', { publicKey: p384Spki }))).toBeUndefined();
    fc.assert(
      fc.property(fc.jsonValue(), (v) => haPublicKeyOf(nodeObj('n', { publicKey: v })) === undefined),
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (b) => {
        const k = haPublicKeyOf(nodeObj('n', { publicKey: Buffer.from(b).toString('base64') }));
        return k === undefined || k.key.asymmetricKeyType === 'ec';
      }),
    );
    expect(() => haSignerOf('not a key')).toThrow(/unreadable/);
  });
});

describe('heartbeat peers', () => {
  it("peers and keys come from the slice: only the Gateway's other nodes, at their recorded underlay address", () => {
    const gw: TetherObject = {
      apiVersion: 'tether.dev/v1',
      kind: 'Gateway',
      metadata: { name: 'gw' },
      spec: { site: 's', nodes: ['gw-a', 'gw-b'] },
    };
    const slice = [
      gw,
      nodeObj('gw-a', { vtep: '10.0.0.1', publicKey: A.spki }),
      nodeObj('gw-b', { vtep: '10.0.0.2', publicKey: B.spki }),
      nodeObj('site-c', { vtep: '10.0.0.3', publicKey: C.spki }),
    ];
    const r = haPeers('gw-a', gw, slice);
    expect(r.peers).toEqual([{ node: 'gw-b', address: '10.0.0.2' }]);
    expect(r.keys.map((k) => k.node)).toEqual(['gw-b']);
    expect(haPeers('gw-a', gw, [gw, nodeObj('gw-b', {})])).toEqual({ peers: [], keys: [] });
  });
});

describe('NodeHaSigners: the node key, and the previous one for a while after a renewal', () => {
  it('signs with the current key; after a change with both for PREVIOUS_KEY_MS; an unreadable key signs nothing', () => {
    let now = 0;
    let pem = A.pem;
    const s = new NodeHaSigners(
      () => pem,
      silentLogger(),
      () => now,
    );
    expect(s.signers().map((k) => k.keyId)).toEqual([A.signer.keyId]);
    const A2 = ident('gw-a');
    pem = A2.pem;
    expect(s.signers().map((k) => k.keyId)).toEqual([A2.signer.keyId, A.signer.keyId]);
    now += PREVIOUS_KEY_MS + 1;
    expect(s.signers().map((k) => k.keyId)).toEqual([A2.signer.keyId]);
    pem = 'garbage';
    expect(s.signers()).toEqual([]);
  });
});

describe('HaMonitor.receive: what it takes and what it counts', () => {
  const mk = (view: Partial<HaGatewayView> = {}, now = () => 1_700_000_000_000) =>
    new HaMonitor({
      node: 'gw-b',
      gateway: () => ({
        name: 'gw',
        ranked: ['gw-a', 'gw-b'],
        peers: [{ node: 'gw-a', address: '10.0.0.1' }],
        keys: [A.verify],
        bfd: true,
        ...view,
      }),
      uplinkUp: async () => true,
      bindAddress: '127.0.0.1',
      signers: () => [B.signer],
      onChange: () => {},
      log: silentLogger(),
      now,
      replayWindowMs: 10_000,
    });
  it('takes a fresh signed heartbeat once; the same datagram again is a replay, an older one too', () => {
    const m = mk();
    const d = encodeHeartbeat(hb(), [A.signer]);
    m.receive(d, '10.0.0.1');
    m.receive(d, '10.0.0.1');
    m.receive(encodeHeartbeat(hb({ ts: hb().ts - 1 }), [A.signer]), '10.0.0.1');
    m.receive(encodeHeartbeat(hb({ ts: hb().ts + 100 }), [A.signer]), '10.0.0.1');
    expect(m.heartbeats.accepted).toBe(2);
    expect(m.heartbeats.dropped.replay).toBe(2);
  });
  it('outside the window is stale; from another address wrong-source; another Gateway other-gateway', () => {
    const m = mk();
    m.receive(encodeHeartbeat(hb({ ts: hb().ts - 10_001 }), [A.signer]), '10.0.0.1');
    m.receive(encodeHeartbeat(hb({ ts: hb().ts + 10_001 }), [A.signer]), '10.0.0.1');
    m.receive(encodeHeartbeat(hb(), [A.signer]), '10.0.0.9');
    m.receive(encodeHeartbeat(hb({ node: 'gw-c' }), [A.signer]), '10.0.0.1');
    m.receive(encodeHeartbeat(hb({ gateway: 'other' }), [A.signer]), '10.0.0.1');
    m.receive(encodeHeartbeat(hb(), [C.signer]), '10.0.0.1');
    m.receive(Buffer.from('hello'), '10.0.0.1');
    const { accepted, dropped } = m.heartbeats;
    expect(accepted).toBe(0);
    expect(dropped).toMatchObject({
      stale: 2,
      'wrong-source': 1,
      'wrong-signer': 1,
      'other-gateway': 1,
      'unknown-key': 1,
      malformed: 1,
    });
  });
  it('a node silent for two windows is forgotten: after its clock stepped back it is heard again', () => {
    let now = 1_700_000_000_000;
    const m = mk({}, () => now);
    m.receive(encodeHeartbeat(hb({ ts: now }), [A.signer]), '10.0.0.1');
    now += 5000;
    // Its clock went back 2 s: refused while the mark is fresh…
    m.receive(encodeHeartbeat(hb({ ts: now - 7000 }), [A.signer]), '10.0.0.1');
    expect(m.heartbeats.dropped.replay).toBe(1);
    // …heard again once it was silent for two windows (what it sent before is stale by then).
    now += 20_001;
    m.receive(encodeHeartbeat(hb({ ts: now - 2000 }), [A.signer]), '10.0.0.1');
    expect(m.heartbeats.accepted).toBe(2);
  });
  it('random datagrams from the peer address never throw and are never taken (fuzzed)', () => {
    const m = mk();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 700 }), (b) => {
        m.receive(Buffer.from(b), '10.0.0.1');
        return m.heartbeats.accepted === 0;
      }),
    );
  });
  it('rollover: gw-a renews; its peer, still on the old key, keeps hearing it (both keys sign); then the new key alone', () => {
    let now = 1_700_000_000_000;
    let view: readonly HaVerifyKey[] = [A.verify];
    const monitor = new HaMonitor({
      node: 'gw-b',
      gateway: () => ({
        name: 'gw',
        ranked: ['gw-a', 'gw-b'],
        peers: [{ node: 'gw-a', address: '10.0.0.1' }],
        keys: view,
        bfd: true,
      }),
      uplinkUp: async () => true,
      bindAddress: '127.0.0.1',
      signers: () => [B.signer],
      onChange: () => {},
      log: silentLogger(),
      now: () => now,
    });
    let pem = A.pem;
    const senderKeys = new NodeHaSigners(
      () => pem,
      silentLogger(),
      () => now,
    );
    const send = () => monitor.receive(encodeHeartbeat(hb({ ts: now }), senderKeys.signers()), '10.0.0.1');
    send();
    const A2 = ident('gw-a');
    pem = A2.pem; // renewed: credentials replaced
    now += 100;
    send(); // signed with new and previous: the old key in the view verifies it
    expect(monitor.heartbeats.accepted).toBe(2);
    view = [A2.verify]; // the roster delta with the new key arrives
    now += 100;
    send();
    expect(monitor.heartbeats.accepted).toBe(3);
    // A sender that restarted right after renewing signs with the new key only: a receiver
    // whose slice is behind counts it as unknown-key, and nothing throws.
    view = [A.verify];
    now += 100;
    monitor.receive(encodeHeartbeat(hb({ ts: now }), [A2.signer]), '10.0.0.1');
    expect(monitor.heartbeats.dropped['unknown-key']).toBe(1);
  });
  it('without peer keys nothing is taken, and the node judges alone (says so)', async () => {
    const m = mk({ keys: [] });
    m.receive(encodeHeartbeat(hb(), [A.signer]), '10.0.0.1');
    expect(m.heartbeats.dropped['no-key']).toBe(1);
    await m.tick();
    expect(m.decision.role).toBe('active');
    expect(m.decision.reason).toMatch(/no peer HA key/);
  });
});

describe('HaMonitor over real UDP on loopback', () => {
  it("two monitors agree; the first going silent hands the role over; a site node not listed in the Gateway, with its own valid key and gw-a's address, cannot make the standby stand back", async () => {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const up = { a: true, b: true };
    const changes: Record<string, HaDecision[]> = { a: [], b: [] };
    const mk = (self: 'a' | 'b', addr: string, other: string) =>
      new HaMonitor({
        node: `gw-${self}`,
        gateway: () => ({
          name: 'gw',
          ranked: ['gw-a', 'gw-b'],
          peers: [{ node: self === 'a' ? 'gw-b' : 'gw-a', address: other }],
          keys: [self === 'a' ? B.verify : A.verify],
          bfd: true,
        }),
        uplinkUp: async () => up[self],
        bindAddress: addr,
        port,
        intervalMs: 20,
        deadAfterMs: 200,
        preemptHoldMs: 300,
        signers: () => [(self === 'a' ? A : B).signer],
        onChange: (d) => changes[self]!.push(d),
        log: silentLogger(),
      });
    const a = mk('a', '127.0.0.61', '127.0.0.62');
    const b = mk('b', '127.0.0.62', '127.0.0.61');
    const until = async (f: () => boolean) => {
      for (let i = 0; i < 3000 && !f(); i++) await new Promise((r) => setTimeout(r, 10));
      return f();
    };
    const spoof = async (sign: HaSigner[], n: number) => {
      // From gw-a's own address (gw-a is gone, its port free): only the key tells them apart.
      const s = createSocket('udp4');
      await new Promise<void>((r) => s.bind(port, '127.0.0.61', () => r()));
      for (let i = 0; i < n; i++) {
        s.send(
          encodeHeartbeat(hb({ seq: i, ts: Date.now(), eligibleForMs: 60_000 }), sign),
          port,
          '127.0.0.62',
        );
        await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise<void>((r) => s.close(() => r()));
    };
    try {
      await a.start();
      await b.start();
      expect(await until(() => a.role === 'active' && b.role === 'standby')).toBe(true);
      expect(b.heartbeats.accepted).toBeGreaterThan(0);
      a.stop(); // gw-a dies: silent
      expect(await until(() => b.role === 'active')).toBe(true);
      // Control: a forger holding gw-a's own key (and its address) does hold gw-b back…
      const held = spoof([A.signer], 40);
      expect(await until(() => b.role === 'standby')).toBe(true);
      await held;
      expect(await until(() => b.role === 'active')).toBe(true);
      // …an enrolled node of the site the Gateway does not list, signing with its own valid
      // key, does not: dropped and counted as unknown-key.
      const unknown = b.heartbeats.dropped['unknown-key'];
      await spoof([C.signer], 20);
      expect(b.role).toBe('active');
      expect(b.heartbeats.dropped['unknown-key']).toBeGreaterThanOrEqual(unknown + 15);
      // gw-a returns: it waits out the hold while gw-b is active, then takes the role back.
      const a2 = mk('a', '127.0.0.61', '127.0.0.62');
      await a2.start();
      expect(await until(() => a2.role === 'standby' && b.role === 'active')).toBe(true);
      expect(await until(() => a2.role === 'active' && b.role === 'standby')).toBe(true);
      // gw-a's session goes down: gw-b takes over though gw-a is still heard.
      up.a = false;
      expect(await until(() => a2.role === 'standby' && b.role === 'active')).toBe(true);
      a2.stop();
    } finally {
      a.stop();
      b.stop();
    }
  });
  it('without BFD the uplink is read at most once a second; with BFD every round', async () => {
    const reads = { bfd: 0, none: 0 };
    const mk = (bfd: boolean) =>
      new HaMonitor({
        node: 'gw-a',
        gateway: () => ({ name: 'gw', ranked: ['gw-a', 'gw-b'], peers: [], keys: [B.verify], bfd }),
        signers: () => [A.signer],
        uplinkUp: async () => {
          reads[bfd ? 'bfd' : 'none']++;
          return true;
        },
        bindAddress: '127.0.0.1',
        port: 0,
        onChange: () => {},
        log: silentLogger(),
        slowUplinkMs: 60_000,
      });
    const with_ = mk(true);
    const without = mk(false);
    for (let i = 0; i < 10; i++) {
      await with_.tick();
      await without.tick();
    }
    expect(reads).toEqual({ bfd: 10, none: 1 });
    expect(without.uplinkChecks).toBe(1);
  });
});

describe('the HA wiring of tether node run (haGateway)', () => {
  const o = (kind: string, name: string, spec: Record<string, unknown>, status?: Record<string, unknown>) =>
    ({
      apiVersion: 'tether.dev/v1',
      kind,
      metadata: { name },
      spec,
      ...(status ? { status } : {}),
    }) as TetherObject;
  const gw = (nodes?: string[]) =>
    o('Gateway', 'gw', {
      site: 's1',
      localAsn: 65001,
      pool: ['203.0.113.0/28'],
      peers: [],
      announce: { prefixes: [], floatingIps: true, acceptDefaultRoute: false },
      gracefulRestartSeconds: 120,
      ...(nodes ? { nodes } : {}),
    });
  const nodes = [
    o('Node', 'gw-a', { site: 's1' }, { vtep: '10.0.0.1' }),
    o('Node', 'gw-b', { site: 's1' }, { vtep: '10.0.0.2' }),
    o('Node', 'gw-c', { site: 's1' }),
  ];
  it('decides only for a Gateway listing this node and another; peers by their VTEP from the slice', () => {
    expect(haGateway('gw-a', 's1', [gw(['gw-a', 'gw-b']), ...nodes])).toEqual({
      name: 'gw',
      ranked: ['gw-a', 'gw-b'],
      peers: [{ node: 'gw-b', address: '10.0.0.2' }],
      keys: [],
      bfd: false,
    });
    // One gateway node, none listed (every node serves, no HA), another site's: nothing to decide.
    expect(haGateway('gw-a', 's1', [gw(['gw-a']), ...nodes])).toBeUndefined();
    expect(haGateway('gw-a', 's1', [gw(), ...nodes])).toBeUndefined();
    expect(haGateway('gw-a', 's2', [gw(['gw-a', 'gw-b']), ...nodes])).toBeUndefined();
    // A listed peer without a known VTEP gets no heartbeat (and none is accepted from it).
    expect(haGateway('gw-a', 's1', [gw(['gw-a', 'gw-c']), ...nodes])?.peers).toEqual([]);
  });
  it('without HA to decide the monitor says active; with HA it starts standby (it has not listened yet)', () => {
    let view: ReturnType<typeof haGateway>;
    const m = new HaMonitor({
      node: 'gw-a',
      gateway: () => view,
      uplinkUp: async () => true,
      bindAddress: '127.0.0.1',
      signers: () => [A.signer],
      onChange: () => {},
      log: silentLogger(),
    });
    expect(m.role).toBe('active');
    view = haGateway('gw-a', 's1', [gw(['gw-a', 'gw-b']), ...nodes]);
    expect(m.role).toBe('standby');
  });
});

describe('memoHaGateway', () => {
  it('recomputes the view only when the slice revision moves', () => {
    const gw: TetherObject = {
      apiVersion: 'tether.dev/v1',
      kind: 'Gateway',
      metadata: { name: 'gw' },
      spec: { site: 's1', nodes: ['gw-a', 'gw-b'], peers: [{ bfd: { enabled: true } }] },
    };
    let revision = 1;
    let lists = 0;
    let slice: TetherObject[] = [gw];
    const view = memoHaGateway(
      'gw-a',
      's1',
      () => {
        lists++;
        return slice;
      },
      () => revision,
    );
    expect(view()?.bfd).toBe(true);
    for (let i = 0; i < 100; i++) view();
    expect(lists).toBe(1);
    slice = [];
    expect(view()?.name).toBe('gw');
    revision = 2;
    expect(view()).toBeUndefined();
    expect(lists).toBe(2);
  });
});
