import { createHmac, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import { type BirdConfig, renderBirdConfig } from '../../../src/bgp/render.js';
import { gatewayHaKeys } from '../../../src/controller/ha-keys.js';
import { silentLogger } from '../../../src/lib/log.js';
import {
  birdConfigFor,
  decideRole,
  desiredFor,
  encodeHeartbeat,
  type HaDecision,
  type HaGatewayView,
  type HaInput,
  type HaKey,
  HaMonitor,
  type Heartbeat,
  haKeysOf,
  haPeers,
  openHeartbeat,
  type PeerView,
  parseHeartbeatBody,
  STANDBY_PREPEND,
} from '../../../src/node/gateway/ha.js';
import { haGateway, memoHaGateway } from '../../../src/node/gateway/ha-role.js';
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

const key = (generation: number, fill?: number): HaKey => ({
  generation,
  key: fill === undefined ? randomBytes(32) : Buffer.alloc(32, fill),
});
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

describe('heartbeat datagrams (HMAC-SHA256)', () => {
  const k0 = key(0, 1);
  const k1 = key(1, 2);
  it('round-trips with the key it was signed with, current or previous', () => {
    expect(openHeartbeat(encodeHeartbeat(hb(), [k0]), [k0])).toEqual({ ok: true, heartbeat: hb() });
    // Signed with both (a node holding current and previous): a node that holds either hears it.
    const both = encodeHeartbeat(hb(), [k1, k0]);
    expect(openHeartbeat(both, [k0]).ok).toBe(true);
    expect(openHeartbeat(both, [k1]).ok).toBe(true);
    expect(openHeartbeat(both, [key(2), k1]).ok).toBe(true);
    // A node with the new slice (k1, k0) signs with both; one still on k0 hears it, and back.
    expect(openHeartbeat(encodeHeartbeat(hb(), [k0]), [k1, k0]).ok).toBe(true);
  });
  it('a wrong key is bad-mac, a generation not held unknown-key, no key no-key', () => {
    expect(openHeartbeat(encodeHeartbeat(hb(), [key(0, 9)]), [k0])).toEqual({ ok: false, drop: 'bad-mac' });
    expect(openHeartbeat(encodeHeartbeat(hb(), [k1]), [k0])).toEqual({ ok: false, drop: 'unknown-key' });
    expect(openHeartbeat(encodeHeartbeat(hb(), [k0]), [])).toEqual({ ok: false, drop: 'no-key' });
    expect(() => encodeHeartbeat(hb(), [])).toThrow(/needs a key/);
  });
  it('the old unsigned JSON (version 1), oversized, empty: malformed', () => {
    const v1 = Buffer.from(JSON.stringify({ v: 1, ...hb() }));
    expect(openHeartbeat(v1, [k0])).toEqual({ ok: false, drop: 'malformed' });
    expect(openHeartbeat(Buffer.alloc(513, 0x20), [k0])).toEqual({ ok: false, drop: 'malformed' });
    expect(openHeartbeat(Buffer.alloc(0), [k0])).toEqual({ ok: false, drop: 'malformed' });
    const big = encodeHeartbeat(hb({ gateway: 'g'.repeat(63), node: 'n'.repeat(63) }), [k0, k1]);
    expect(big.byteLength).toBeLessThan(512);
    expect(openHeartbeat(Buffer.concat([big, Buffer.alloc(512 - big.byteLength + 1, 0x20)]), [k0]).ok).toBe(
      false,
    );
  });
  it('a key holder signing a body that is not a heartbeat: malformed, not a crash', () => {
    const good = encodeHeartbeat(hb(), [k0]);
    const headLen = 4 + 36;
    for (const body of ['not json', '[]', '{"gateway":"GW"}', JSON.stringify({ ...hb(), ts: -1 })]) {
      const b = Buffer.from(body);
      const dg = encodeHeartbeat(hb(), [k0]);
      // Re-sign the odd body with k0 by building the datagram the same way.
      const forged = Buffer.concat([dg.subarray(0, headLen), b]);
      createHmacInto(forged, k0, headLen);
      expect(openHeartbeat(forged, [k0])).toEqual({ ok: false, drop: 'malformed' });
    }
    expect(openHeartbeat(good, [k0]).ok).toBe(true);
  });
  it('every truncation and every single-byte change of a valid datagram is refused (fuzzed)', () => {
    const good = encodeHeartbeat(hb(), [k0]);
    for (let n = 0; n < good.byteLength; n++) expect(openHeartbeat(good.subarray(0, n), [k0]).ok).toBe(false);
    fc.assert(
      fc.property(fc.nat({ max: good.byteLength - 1 }), fc.integer({ min: 1, max: 255 }), (at, x) => {
        const b = Buffer.from(good);
        b[at] = b[at]! ^ x;
        return !openHeartbeat(b, [k0]).ok;
      }),
    );
  });
  it('random bytes and random JSON never throw and never pass (fuzzed)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 700 }), (b) => !openHeartbeat(b, [k0, k1]).ok));
    // Random bytes behind a valid-looking header.
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.constantFrom(0, 1, 2, 3, 255), (b, n) => {
        const d = Buffer.concat([Buffer.from([0x54, 0x48, 2, n]), b]);
        return !openHeartbeat(d, [k0, k1]).ok;
      }),
    );
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const r = parseHeartbeatBody(Buffer.from(JSON.stringify(v) ?? ''));
        return r === undefined || r.role === 'active' || r.role === 'standby';
      }),
    );
  });
  it('keys from the slice: at most two, u32 generations, 32 bytes of base64; the rest left out (fuzzed)', () => {
    const gw = (haKeys: unknown): TetherObject => ({
      apiVersion: 'tether.dev/v1',
      kind: 'Gateway',
      metadata: { name: 'gw' },
      spec: { site: 's' },
      status: { haKeys },
    });
    const derived = gatewayHaKeys(randomBytes(32), {
      ...gw(undefined),
      spec: { site: 's', haKeyGeneration: 4 },
    });
    expect(haKeysOf(gw(derived)).map((k) => k.generation)).toEqual([4, 3]);
    expect(haKeysOf(gw(derived))[0]!.key.byteLength).toBe(32);
    expect(haKeysOf(gw(undefined))).toEqual([]);
    expect(haKeysOf(gw([{ generation: -1, secret: derived[0]!.secret }]))).toEqual([]);
    expect(haKeysOf(gw([{ generation: 2 ** 32, secret: derived[0]!.secret }]))).toEqual([]);
    expect(haKeysOf(gw([{ generation: 1, secret: 'c2hvcnQ=' }]))).toEqual([]);
    expect(haKeysOf(gw([...derived, { generation: 9, secret: derived[0]!.secret }]))).toHaveLength(2);
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const ks = haKeysOf(gw(v));
        return ks.length <= 2 && ks.every((k) => k.key.byteLength === 32);
      }),
    );
  });
});

describe('heartbeat peers', () => {
  it("peers come from the slice: the Gateway's other nodes at their recorded underlay address", () => {
    const gw: TetherObject = {
      apiVersion: 'tether.dev/v1',
      kind: 'Gateway',
      metadata: { name: 'gw' },
      spec: { site: 's', nodes: ['gw-a', 'gw-b'] },
    };
    const node = (name: string, vtep?: string): TetherObject => ({
      apiVersion: 'tether.dev/v1',
      kind: 'Node',
      metadata: { name },
      spec: { site: 's' },
      status: vtep ? { vtep } : {},
    });
    expect(haPeers('gw-a', gw, [gw, node('gw-a', '10.0.0.1'), node('gw-b', '10.0.0.2')])).toEqual([
      { node: 'gw-b', address: '10.0.0.2' },
    ]);
    expect(haPeers('gw-a', gw, [gw, node('gw-b')])).toEqual([]);
  });
});

/** Re-computes the first MAC of a datagram (tests only: a key holder sending junk). */
function createHmacInto(d: Buffer, k: HaKey, bodyAt: number): void {
  createHmac('sha256', k.key)
    .update(Buffer.from('tether gateway-ha heartbeat v2\0'))
    .update(d.subarray(bodyAt))
    .digest()
    .copy(d, 8);
}

describe('HaMonitor.receive: what it takes and what it counts', () => {
  const k0 = key(0);
  const mk = (view: Partial<HaGatewayView> = {}, now = () => 1_700_000_000_000) =>
    new HaMonitor({
      node: 'gw-b',
      gateway: () => ({
        name: 'gw',
        ranked: ['gw-a', 'gw-b'],
        peers: [{ node: 'gw-a', address: '10.0.0.1' }],
        keys: [k0],
        bfd: true,
        ...view,
      }),
      uplinkUp: async () => true,
      bindAddress: '127.0.0.1',
      onChange: () => {},
      log: silentLogger(),
      now,
      replayWindowMs: 10_000,
    });
  it('takes a fresh signed heartbeat once; the same datagram again is a replay, an older one too', () => {
    const m = mk();
    const d = encodeHeartbeat(hb(), [k0]);
    m.receive(d, '10.0.0.1');
    m.receive(d, '10.0.0.1');
    m.receive(encodeHeartbeat(hb({ ts: hb().ts - 1 }), [k0]), '10.0.0.1');
    m.receive(encodeHeartbeat(hb({ ts: hb().ts + 100 }), [k0]), '10.0.0.1');
    expect(m.heartbeats.accepted).toBe(2);
    expect(m.heartbeats.dropped.replay).toBe(2);
  });
  it('outside the window is stale; from another address wrong-source; another Gateway other-gateway', () => {
    const m = mk();
    m.receive(encodeHeartbeat(hb({ ts: hb().ts - 10_001 }), [k0]), '10.0.0.1');
    m.receive(encodeHeartbeat(hb({ ts: hb().ts + 10_001 }), [k0]), '10.0.0.1');
    m.receive(encodeHeartbeat(hb(), [k0]), '10.0.0.9');
    m.receive(encodeHeartbeat(hb({ node: 'gw-c' }), [k0]), '10.0.0.1');
    m.receive(encodeHeartbeat(hb({ gateway: 'other' }), [k0]), '10.0.0.1');
    m.receive(encodeHeartbeat(hb(), [key(0)]), '10.0.0.1');
    m.receive(Buffer.from('hello'), '10.0.0.1');
    const { accepted, dropped } = m.heartbeats;
    expect(accepted).toBe(0);
    expect(dropped).toMatchObject({
      stale: 2,
      'wrong-source': 2,
      'other-gateway': 1,
      'bad-mac': 1,
      malformed: 1,
    });
  });
  it('a node silent for two windows is forgotten: after its clock stepped back it is heard again', () => {
    let now = 1_700_000_000_000;
    const m = mk({}, () => now);
    m.receive(encodeHeartbeat(hb({ ts: now }), [k0]), '10.0.0.1');
    now += 5000;
    // Its clock went back 2 s: refused while the mark is fresh…
    m.receive(encodeHeartbeat(hb({ ts: now - 7000 }), [k0]), '10.0.0.1');
    expect(m.heartbeats.dropped.replay).toBe(1);
    // …heard again once it was silent for two windows (what it sent before is stale by then).
    now += 20_001;
    m.receive(encodeHeartbeat(hb({ ts: now - 2000 }), [k0]), '10.0.0.1');
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
  it('without keys nothing is sent or taken, and the node judges alone (says so)', async () => {
    const m = mk({ keys: [] });
    m.receive(encodeHeartbeat(hb(), [k0]), '10.0.0.1');
    expect(m.heartbeats.dropped['no-key']).toBe(1);
    await m.tick();
    expect(m.decision.role).toBe('active');
    expect(m.decision.reason).toMatch(/no HA key/);
  });
});

describe('HaMonitor over real UDP on loopback', () => {
  it('two monitors agree; the first going silent hands the role over; a spoofed heartbeat (right address, wrong key) is dropped', async () => {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const up = { a: true, b: true };
    const changes: Record<string, HaDecision[]> = { a: [], b: [] };
    const keys = [key(1), key(0)];
    const mk = (self: 'a' | 'b', addr: string, other: string) =>
      new HaMonitor({
        node: `gw-${self}`,
        gateway: () => ({
          name: 'gw',
          ranked: ['gw-a', 'gw-b'],
          peers: [{ node: self === 'a' ? 'gw-b' : 'gw-a', address: other }],
          keys,
          bfd: true,
        }),
        uplinkUp: async () => up[self],
        bindAddress: addr,
        port,
        intervalMs: 20,
        deadAfterMs: 200,
        preemptHoldMs: 300,
        onChange: (d) => changes[self]!.push(d),
        log: silentLogger(),
      });
    const a = mk('a', '127.0.0.61', '127.0.0.62');
    const b = mk('b', '127.0.0.62', '127.0.0.61');
    const until = async (f: () => boolean) => {
      for (let i = 0; i < 300 && !f(); i++) await new Promise((r) => setTimeout(r, 10));
      return f();
    };
    const spoof = async (sign: HaKey[], n: number) => {
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
      // Control: a forger holding the key (and gw-a's address) does hold gw-b back…
      const held = spoof(keys, 40);
      expect(await until(() => b.role === 'standby')).toBe(true);
      await held;
      expect(await until(() => b.role === 'active')).toBe(true);
      // …one without it (right address, wrong key) does not: dropped and counted.
      const bad = b.heartbeats.dropped['bad-mac'];
      await spoof([key(1)], 20);
      expect(b.role).toBe('active');
      expect(b.heartbeats.dropped['bad-mac']).toBeGreaterThanOrEqual(bad + 15);
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
        gateway: () => ({ name: 'gw', ranked: ['gw-a', 'gw-b'], peers: [], keys: [key(0)], bfd }),
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
