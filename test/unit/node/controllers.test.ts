// Controller address lists (issue 12): parsing and bounds (fuzzed: the list is
// peer-supplied), the failover set's rotation and stickiness, identity files from before
// the lists, and the session's handling of a ControllerList (only from a controller).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { ControllerMessage } from '../../../src/api/gen/tether/v1/ControllerMessage.js';
import {
  DEFAULT_CONFIG,
  loadControllerConfig,
  renderControllerConfig,
} from '../../../src/controller/config.js';
import { FakeClock } from '../../../src/lib/clock.js';
import {
  hostPortProblem,
  MAX_CONTROLLERS,
  parseControllerFlag,
  parseControllerList,
} from '../../../src/lib/controller-addresses.js';
import { isTetherError, TetherError } from '../../../src/lib/errors.js';
import { silentLogger } from '../../../src/lib/log.js';
import { AgentSession } from '../../../src/node/agent/session.js';
import { type MemoryServerCall, MemoryUpstream, type Upstream } from '../../../src/node/agent/upstream.js';
import { StateCache } from '../../../src/node/cache.js';
import { ControllerSet } from '../../../src/node/controllers.js';
import {
  type LoadedIdentity,
  loadIdentity,
  saveControllers,
  saveIdentity,
} from '../../../src/node/identity.js';
import { tempDir, testIdentity } from '../agent/support.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

describe('controller address lists', () => {
  it('accepts DNS names, IPv4 and [IPv6] with a port; drops duplicates, keeps order', () => {
    expect(
      parseControllerList(['b.example:7443', '10.0.0.1:7443', '[fd00::1]:7443', 'b.example:7443'], 'x'),
    ).toEqual(['b.example:7443', '10.0.0.1:7443', '[fd00::1]:7443']);
    expect(parseControllerFlag(' 10.0.0.1:7443, 10.0.0.2:7443 ')).toEqual(['10.0.0.1:7443', '10.0.0.2:7443']);
  });

  it('refuses empty, too many, bad syntax and bad ports, naming the entry', () => {
    const code = (f: () => unknown) => {
      try {
        f();
        return 'ok';
      } catch (e) {
        return isTetherError(e) ? `${e.code} ${String(e.details.field)}` : 'other';
      }
    };
    expect(code(() => parseControllerList([], 'controllers'))).toBe('TETHER_E_INVALID controllers');
    const nine = Array.from({ length: 9 }, (_, i) => `10.0.0.${i + 1}:7443`);
    expect(code(() => parseControllerList(nine, 'controllers'))).toBe('TETHER_E_INVALID controllers');
    expect(code(() => parseControllerList(['a:1', 'no-port'], 'controllers'))).toBe(
      'TETHER_E_INVALID controllers[1]',
    );
    expect(code(() => parseControllerList(['a:0'], 'c'))).toBe('TETHER_E_INVALID c[0]');
    expect(code(() => parseControllerList(['a:65536'], 'c'))).toBe('TETHER_E_INVALID c[0]');
    expect(code(() => parseControllerList([7443], 'c'))).toBe('TETHER_E_INVALID c[0]');
    expect(code(() => parseControllerList('a:1', 'c'))).toBe('TETHER_E_INVALID c');
    expect(code(() => parseControllerFlag(','))).toBe('TETHER_E_INVALID --controller');
    expect(hostPortProblem(`${'a'.repeat(300)}:1`)).toMatch(/longer/);
    expect(hostPortProblem('a b:1')).toBe('not HOST:PORT');
  });

  it('fuzz: any input is a bounded list of valid addresses or a TETHER_E_INVALID, never another error', () => {
    const addr = fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.tuple(fc.domain(), fc.integer({ min: -1, max: 70_000 })).map(([h, p]) => `${h}:${p}`),
      fc.ipV4().map((ip) => `${ip}:7443`),
    );
    fc.assert(
      fc.property(
        fc.oneof(fc.array(fc.oneof(addr, fc.anything()), { maxLength: 12 }), fc.anything()),
        (input) => {
          try {
            const out = parseControllerList(input, 'controllers');
            expect(out.length).toBeGreaterThan(0);
            expect(out.length).toBeLessThanOrEqual(MAX_CONTROLLERS);
            for (const a of out) expect(hostPortProblem(a)).toBeUndefined();
          } catch (e) {
            expect(e).toBeInstanceOf(TetherError);
            expect((e as TetherError).code).toBe('TETHER_E_INVALID');
          }
        },
      ),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 3000 }), (s) => {
        try {
          expect(parseControllerFlag(s).length).toBeLessThanOrEqual(MAX_CONTROLLERS);
        } catch (e) {
          expect((e as TetherError).code).toBe('TETHER_E_INVALID');
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('ControllerSet', () => {
  it('is sticky to the one that works and rotates in list order on failure, wrapping', () => {
    const s = new ControllerSet(['a:1', 'b:1', 'c:1']);
    expect(s.current).toBe('a:1');
    s.failed('a:1');
    expect(s.current).toBe('b:1');
    // A second caller reporting the same dead replica does not skip the next one.
    s.failed('a:1');
    expect(s.current).toBe('b:1');
    s.failed('b:1');
    s.failed('c:1');
    expect(s.current).toBe('a:1');
    expect(s.inOrder()).toEqual(['a:1', 'b:1', 'c:1']);
    s.worked('c:1');
    expect(s.inOrder()).toEqual(['c:1', 'a:1', 'b:1']);
  });

  it('learns an advertised list, keeps the connected replica, refuses a bad list whole', () => {
    const learned: string[][] = [];
    const s = new ControllerSet(['a:1'], (l) => learned.push([...l]));
    expect(s.learn(['a:1', 'b:1'], 'a:1')).toEqual({ changed: true });
    expect(s.addresses).toEqual(['a:1', 'b:1']);
    expect(s.learn(['a:1', 'b:1'], 'a:1')).toEqual({ changed: false });
    // A replica that does not list itself stays in the list (first) and stays current.
    s.failed('a:1');
    expect(s.current).toBe('b:1');
    expect(s.learn(['c:1', 'd:1'], 'b:1').changed).toBe(true);
    expect(s.addresses).toEqual(['b:1', 'c:1', 'd:1']);
    expect(s.current).toBe('b:1');
    // Eight advertised and not the connected one: still at most eight.
    const eight = Array.from({ length: 8 }, (_, i) => `r${i}:1`);
    s.learn(eight, 'b:1');
    expect(s.addresses.length).toBe(8);
    expect(s.addresses[0]).toBe('b:1');
    const before = [...s.addresses];
    for (const bad of [[], ['x'], Array.from({ length: 9 }, (_, i) => `q${i}:1`), [1, 2]]) {
      const r = s.learn(bad, 'b:1');
      expect(r.changed).toBe(false);
      expect(r.error).toBeTruthy();
    }
    expect(s.addresses).toEqual(before);
    expect(learned.length).toBe(3);
  });
});

describe('identity files', () => {
  let id: LoadedIdentity;
  beforeAll(async () => {
    id = await testIdentity('n1', 'site-a');
  });

  it('reads an identity from before controller lists as a list of its one address', () => {
    const t = tempDir('tether-ctl-id-');
    cleanups.push(t.cleanup);
    saveIdentity(t.dir, { ...id, controllers: ['a:7443'] }, id.caPem, id.credentials);
    const file = join(t.dir, 'identity.yaml');
    // The old layout: `controller:` only.
    writeFileSync(
      file,
      stringify({ name: 'n1', site: 'site-a', controller: '10.0.0.1:7443', caFingerprint: 'f' }),
    );
    expect(loadIdentity(t.dir).controllers).toEqual(['10.0.0.1:7443']);
    saveControllers(t.dir, ['10.0.0.1:7443', '10.0.0.2:7443']);
    const raw = parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    // Both fields: an older build still reads its one address after a downgrade.
    expect(raw.controller).toBe('10.0.0.1:7443');
    expect(raw.controllers).toEqual(['10.0.0.1:7443', '10.0.0.2:7443']);
    expect(loadIdentity(t.dir).controllers).toEqual(['10.0.0.1:7443', '10.0.0.2:7443']);
  });

  it('refuses an identity whose list is bad, naming the file and field', () => {
    const t = tempDir('tether-ctl-id-');
    cleanups.push(t.cleanup);
    saveIdentity(t.dir, { ...id, controllers: ['a:7443'] }, id.caPem, id.credentials);
    const file = join(t.dir, 'identity.yaml');
    for (const controllers of [[], ['nope'], 'a:1']) {
      writeFileSync(file, stringify({ name: 'n1', site: 's', controllers, caFingerprint: 'f' }));
      try {
        loadIdentity(t.dir);
        expect.unreachable();
      } catch (e) {
        expect((e as TetherError).code).toBe('TETHER_E_STATE');
        expect((e as TetherError).details.file).toBe(file);
      }
    }
    writeFileSync(file, stringify({ name: 'n1', site: 's', caFingerprint: 'f' }));
    expect(() => loadIdentity(t.dir)).toThrow(/incomplete/);
  });
});

describe('controller.yaml replicas', () => {
  it('defaults to none, accepts a list of addresses and refuses a bad one', () => {
    const t = tempDir('tether-ctl-cfg-');
    cleanups.push(t.cleanup);
    const f = join(t.dir, 'controller.yaml');
    writeFileSync(f, renderControllerConfig(DEFAULT_CONFIG));
    expect(loadControllerConfig(f).replicas).toEqual([]);
    writeFileSync(
      f,
      renderControllerConfig({ ...DEFAULT_CONFIG, replicas: ['10.0.0.1:7443', '10.0.0.2:7443'] }),
    );
    expect(loadControllerConfig(f).replicas).toEqual(['10.0.0.1:7443', '10.0.0.2:7443']);
    for (const replicas of ['a:1', ['bad'], null, Array.from({ length: 9 }, (_, i) => `h${i}:1`)]) {
      writeFileSync(f, stringify({ ...DEFAULT_CONFIG, replicas }));
      expect(() => loadControllerConfig(f)).toThrow(TetherError);
    }
  });
});

describe('AgentSession and controller replicas', () => {
  let id: LoadedIdentity;
  beforeAll(async () => {
    id = await testIdentity('n1', 'site-a');
  });

  function setup(kind: 'controller' | 'proxy') {
    const clock = new FakeClock();
    const t = tempDir('tether-ctl-session-');
    const calls: MemoryServerCall[] = [];
    const mem = new MemoryUpstream((call) => calls.push(call));
    let failures = 0;
    const upstream: Upstream = {
      kind,
      address: 'a:1',
      open: () => mem.open(),
      close: () => {},
      failed: () => {
        failures++;
      },
    };
    const learned: Array<{ list: readonly string[]; from: string }> = [];
    const s = new AgentSession({
      identity: id,
      cache: new StateCache(join(t.dir, 'cache.json')),
      log: silentLogger(),
      clock,
      heartbeatMs: 1000,
      random: () => 0,
      chooseUpstream: () => upstream,
      learnControllers: (list, from) => learned.push({ list, from }),
    });
    cleanups.push(() => {
      s.stop();
      t.cleanup();
    });
    s.start();
    const send = async (m: ControllerMessage) => {
      calls.at(-1)!.write(m);
      await clock.advance(0);
    };
    return { s, clock, calls, send, learned, failures: () => failures };
  }

  it('takes a ControllerList from a controller, never from a site proxy', async () => {
    for (const kind of ['controller', 'proxy'] as const) {
      const t = setup(kind);
      await t.clock.advance(0);
      await t.send({ controllers: { addresses: ['a:1', 'b:1'] } });
      expect(t.learned.length, kind).toBe(kind === 'controller' ? 1 : 0);
      if (kind === 'controller') expect(t.learned[0]).toEqual({ list: ['a:1', 'b:1'], from: 'a:1' });
    }
  });

  it('tells the upstream when a session fails (the next replica is tried), not on a deliberate reconnect', async () => {
    const t = setup('controller');
    await t.clock.advance(0);
    t.s.reconnect('site proxy moved');
    await t.clock.advance(0);
    expect(t.failures()).toBe(0);
    t.calls.at(-1)!.destroy();
    await t.clock.advance(0);
    expect(t.failures()).toBe(1);
    // Silence for 3 heartbeats is a failure too.
    await t.clock.advance(1000);
    expect(t.calls.length).toBe(3);
    await t.clock.advance(3500);
    expect(t.failures()).toBe(2);
  });
});
