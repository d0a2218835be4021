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
  type HaInput,
  HaMonitor,
  haPeers,
  type PeerView,
  parseHeartbeat,
  STANDBY_PREPEND,
} from '../../../src/node/gateway/ha.js';
import { haGateway } from '../../../src/node/gateway/ha-role.js';
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

describe('heartbeat', () => {
  it('round-trips', () => {
    const h = {
      gateway: 'gw',
      node: 'gw-a',
      seq: 7,
      eligible: true,
      eligibleForMs: 12,
      role: 'active' as const,
    };
    expect(parseHeartbeat(encodeHeartbeat(h))).toEqual(h);
  });
  it('rejects anything else without throwing (fuzzed)', () => {
    expect(parseHeartbeat(Buffer.alloc(513, 0x20))).toBeUndefined();
    expect(parseHeartbeat(Buffer.from('{"v":1,"gateway":"GW"}'))).toBeUndefined();
    expect(
      parseHeartbeat(
        Buffer.from(
          '{"v":1,"gateway":"gw","node":"a","seq":1,"eligible":true,"eligibleForMs":-1,"role":"active"}',
        ),
      ),
    ).toBeUndefined();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 700 }), (b) => {
        const r = parseHeartbeat(b);
        return r === undefined || typeof r.node === 'string';
      }),
    );
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const r = parseHeartbeat(Buffer.from(JSON.stringify(v) ?? ''));
        return r === undefined || r.role === 'active' || r.role === 'standby';
      }),
    );
  });
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

describe('HaMonitor over real UDP on loopback', () => {
  it('two monitors agree; the first going silent hands the role over; a spoofed name from the wrong address is ignored', async () => {
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
      for (let i = 0; i < 200 && !f(); i++) await new Promise((r) => setTimeout(r, 10));
      return f();
    };
    try {
      await a.start();
      await b.start();
      expect(await until(() => a.role === 'active' && b.role === 'standby')).toBe(true);
      a.stop(); // gw-a dies: silent
      expect(await until(() => b.role === 'active')).toBe(true);
      // Someone else on the LAN claims to be gw-a: not from gw-a's address, so not heard.
      const spoof = createSocket('udp4');
      await new Promise<void>((r) => spoof.bind(0, '127.0.0.63', () => r()));
      const fake = encodeHeartbeat({
        gateway: 'gw',
        node: 'gw-a',
        seq: 1,
        eligible: true,
        eligibleForMs: 60_000,
        role: 'active',
      });
      for (let i = 0; i < 10; i++) {
        spoof.send(fake, port, '127.0.0.62');
        await new Promise((r) => setTimeout(r, 20));
      }
      spoof.close();
      expect(b.role).toBe('active');
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
