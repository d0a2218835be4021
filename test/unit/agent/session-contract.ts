/**
 * The session protocol as an agent sees it, written once and run against every upstream
 * that claims to speak it: the controller's SessionHub (session-hub.test.ts) and the site
 * proxy (its engineer runs the same suite). The agent is the real AgentSession with the real
 * StateCache on a temporary disk; time is a FakeClock; the upstream is in memory.
 */
import { X509Certificate } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Hello__Output } from '../../../src/api/gen/tether/v1/Hello.js';
import type { TetherObject } from '../../../src/api/resource.js';
import { FakeClock } from '../../../src/lib/clock.js';
import { silentLogger } from '../../../src/lib/log.js';
import { AgentSession, type DurableState, type SessionOptions } from '../../../src/node/agent/session.js';
import type { MemoryUpstream } from '../../../src/node/agent/upstream.js';
import { StateCache } from '../../../src/node/cache.js';
import type { LoadedIdentity } from '../../../src/node/identity.js';
import { tempDir, testIdentity } from './support.js';

/** What the suite needs of an upstream under test. */
export interface ContractUpstream {
  /** What the agent connects to. */
  upstream: MemoryUpstream;
  /** Writes objects at the source of truth (one transaction); the upstream streams them on. */
  applyResources(objs: TetherObject[]): Promise<void> | void;
  deleteResource(kind: string, name: string): Promise<void> | void;
  /** The revision an up-to-date agent of `site` should hold. */
  revision(): number;
  /** Highest revision `node` acknowledged to the upstream (0 if none). */
  ackedBy(node: string): number;
  /** Every hello the upstream received, in order. */
  hellos(): Hello__Output[];
  /** The objects the upstream holds, when it runs in the agent's process (the node's own
   *  site proxy): the agent keeps those once (AgentSession.shareObjects). */
  held?: (kind: string, name: string) => TetherObject | undefined;
  close(): Promise<void> | void;
}

export interface ContractEnv {
  clock: FakeClock;
  site: string;
  /** Nodes of `site` the agent may use (the upstream may check them against its roster). */
  nodes: string[];
  identity(name: string): LoadedIdentity;
  /** DER of that node's certificate: pass it to `new MemoryUpstream(handler, addr, der)` so
   *  a handler that authenticates its peer (the proxy) sees the agent's certificate. The
   *  suite's agent is `nodes[0]`. */
  clientCertDer(name: string): Buffer;
}

const vn = (name: string, site: string, vni: number): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind: 'VirtualNetwork',
  metadata: { name },
  spec: { subnets: [`10.${vni % 200}.0.0/24`], sites: [site] },
  status: { vni },
});

const HB = 1000;

export function sessionContract(name: string, make: (env: ContractEnv) => Promise<ContractUpstream>): void {
  describe(`session protocol against ${name}`, () => {
    const site = 'site-a';
    const nodes = ['n1', 'n2'];
    const ids = new Map<string, LoadedIdentity>();
    const cleanups: Array<() => void | Promise<void>> = [];

    beforeAll(async () => {
      for (const n of nodes) ids.set(n, await testIdentity(n, site));
    });

    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await c();
    });

    async function setup(opts: Partial<SessionOptions> = {}) {
      const clock = new FakeClock();
      const up = await make({
        clock,
        site,
        nodes,
        identity: (n) => ids.get(n)!,
        clientCertDer: (n) => new X509Certificate(ids.get(n)!.credentials.certPem).raw,
      });
      const t = tempDir('tether-contract-');
      const stateDir = join(t.dir, 'state');
      mkdirSync(stateDir);
      const cachePath = join(stateDir, 'cache.json');
      let cache = new StateCache(cachePath);
      let changes = 0;
      // The disk as the session sees it: the real StateCache, except that while `failing`
      // every write throws before anything reaches the file (a full or broken disk; the
      // journal's own behaviour on real write errors is test/integration/journal-faults).
      let failing = false;
      const guard = () => {
        if (failing) throw new Error('cannot persist: disk write failed (injected)');
      };
      const disk: DurableState = {
        get revision() {
          return cache.revision;
        },
        get snapshotRevision() {
          return cache.snapshotRevision;
        },
        list: (kind) => cache.list(kind),
        get: (kind, name) => cache.get(kind, name),
        applyDelta: (revision, put, deleted) => {
          guard();
          cache.applyDelta(revision, put, deleted);
        },
        replace: (revision, objects) => {
          guard();
          return cache.replace(revision, objects);
        },
      };
      const sessions: AgentSession[] = [];
      const startSession = (node = 'n1') => {
        const s = new AgentSession({
          identity: ids.get(node)!,
          cache: disk,
          log: silentLogger(),
          clock,
          heartbeatMs: HB,
          backoff: { baseMs: 1000, capMs: 8000 },
          random: () => 0.5,
          chooseUpstream: () => up.upstream,
          onChange: () => changes++,
          ...opts,
        });
        sessions.push(s);
        s.start();
        return s;
      };
      cleanups.push(async () => {
        for (const s of sessions) s.stop();
        await up.close();
        t.cleanup();
      });
      return {
        clock,
        up,
        stateDir,
        failWrites: (on: boolean) => {
          failing = on;
        },
        cache: () => cache,
        /** A fresh StateCache from the same file: what a restarted agent would start from. */
        reopenCache: () => {
          cache = new StateCache(cachePath);
          return cache;
        },
        changes: () => changes,
        startSession,
        /** Lets in-flight messages settle without moving time. */
        settle: () => clock.advance(0),
      };
    }

    it('hello declares the held revision, role "" (an agent) and the heartbeat interval', async () => {
      const t = await setup();
      t.startSession();
      await t.settle();
      const h = t.up.hellos()[0]!;
      expect(h.node_name).toBe('n1');
      expect(h.held_revision).toBe(0);
      expect(h.role).toBe('');
      expect(h.heartbeat_ms).toBe(HB);
      expect(h.boot_id).not.toBe('');
    });

    it('a first snapshot replaces what the disk held and is swept at SnapshotEnd, then acked', async () => {
      const t = await setup();
      await t.up.applyResources([vn('red', site, 4096), vn('blue', site, 4097)]);
      // Left over from an older life of this state dir (revision 0: the agent holds nothing).
      t.cache().applyDelta(0, [vn('stale', site, 4098)], []);
      const s = t.startSession();
      await t.settle();
      expect(s.status.phase).toBe('connected');
      expect(s.status.lastSync).toMatchObject({ kind: 'snapshot', swept: 1 });
      const names = t
        .cache()
        .list('VirtualNetwork')
        .map((o) => o.metadata.name)
        .sort();
      expect(names).toEqual(['blue', 'red']);
      expect(t.cache().revision).toBe(t.up.revision());
      expect(t.up.ackedBy('n1')).toBe(t.up.revision());
      // On disk, not only in memory.
      expect(t.reopenCache().list('VirtualNetwork').length).toBe(2);
    });

    it('keeps an object the upstream process holds once, and only when its JSON is the same', async () => {
      const t = await setup();
      const held = t.up.held;
      if (!held) return; // the controller's hub never shares a process with an agent
      await t.up.applyResources([vn('red', site, 4096)]);
      const s = t.startSession();
      s.shareObjects(held);
      await t.settle();
      // From the snapshot and from a delta: the agent's cache holds the upstream's reference.
      expect(t.cache().get('VirtualNetwork', 'red')).toBe(held('VirtualNetwork', 'red'));
      await t.up.applyResources([vn('blue', site, 4097)]);
      await t.settle();
      expect(t.cache().get('VirtualNetwork', 'blue')).toBe(held('VirtualNetwork', 'blue'));
      // A held object that differs from what arrived is never substituted.
      const other = vn('green', site, 1);
      s.shareObjects(() => other);
      await t.up.applyResources([vn('green', site, 4098)]);
      await t.settle();
      const got = t.cache().get('VirtualNetwork', 'green');
      expect(got).not.toBe(other);
      expect(got?.spec).toEqual(vn('green', site, 4098).spec);
    });

    it('streams deltas and acknowledges each one after it is on disk', async () => {
      const t = await setup();
      const s = t.startSession();
      await t.settle();
      await t.up.applyResources([vn('red', site, 4096)]);
      await t.settle();
      expect(t.cache().get('VirtualNetwork', 'red')).toBeDefined();
      expect(t.up.ackedBy('n1')).toBe(t.up.revision());
      await t.up.deleteResource('VirtualNetwork', 'red');
      await t.settle();
      expect(t.cache().get('VirtualNetwork', 'red')).toBeUndefined();
      expect(t.up.ackedBy('n1')).toBe(t.up.revision());
      expect(s.status.phase).toBe('connected');
    });

    it('resumes by delta from the held revision after a reconnect, and after a restart', async () => {
      const t = await setup();
      await t.up.applyResources([vn('red', site, 4096)]);
      const s = t.startSession();
      await t.settle();
      expect(s.status.lastSync?.kind).toBe('snapshot');
      // The link dies without a word; three silent heartbeat intervals end the session.
      t.up.upstream.partition();
      await t.up.applyResources([vn('blue', site, 4097)]);
      await t.clock.advance(3 * HB);
      expect(s.status.phase).toBe('disconnected');
      t.up.upstream.heal();
      await t.clock.advance(8000);
      expect(s.status.phase).toBe('connected');
      expect(s.status.lastSync?.kind).toBe('delta');
      expect(t.cache().get('VirtualNetwork', 'blue')).toBeDefined();
      expect(t.up.hellos().at(-1)!.held_revision).toBeGreaterThan(0);
      expect(t.up.ackedBy('n1')).toBe(t.up.revision());
      // A restarted agent starts from its disk and resumes by delta too.
      s.stop();
      await t.up.applyResources([vn('green', site, 4098)]);
      t.reopenCache();
      const again = t.startSession();
      await t.settle();
      expect(again.status.lastSync?.kind).toBe('delta');
      expect(t.cache().get('VirtualNetwork', 'green')).toBeDefined();
      expect(t.cache().get('VirtualNetwork', 'red')).toBeDefined();
    });

    it('does not acknowledge a change it could not write; drops the session and resumes once the disk works', async () => {
      const t = await setup();
      const s = t.startSession();
      await t.settle();
      await t.up.applyResources([vn('red', site, 4096)]);
      await t.settle();
      const acked = t.up.ackedBy('n1');
      expect(acked).toBe(t.up.revision());
      t.failWrites(true);
      await t.up.applyResources([vn('blue', site, 4097)]);
      await t.settle();
      expect(t.up.ackedBy('n1')).toBe(acked);
      expect(s.status.phase).toBe('disconnected');
      expect(s.status.lastError).toMatch(/cannot persist/);
      t.failWrites(false);
      await t.clock.advance(8000);
      expect(s.status.phase).toBe('connected');
      // It resumed from what is on its disk, not from what it had only in memory.
      expect(t.up.hellos().at(-1)!.held_revision).toBe(acked);
      expect(t.up.ackedBy('n1')).toBe(t.up.revision());
      expect(t.reopenCache().get('VirtualNetwork', 'blue')).toBeDefined();
    });

    it('detects a silent upstream after 3 missed heartbeat intervals, not before', async () => {
      const t = await setup();
      const s = t.startSession();
      await t.settle();
      expect(s.status.phase).toBe('connected');
      // A live upstream answers heartbeats: many intervals pass without a reconnect.
      await t.clock.advance(10 * HB);
      expect(s.status.phase).toBe('connected');
      expect(s.status.reconnects).toBe(0);
      t.up.upstream.partition();
      await t.clock.advance(2 * HB);
      expect(s.status.phase).toBe('connected');
      await t.clock.advance(HB);
      expect(s.status.phase).toBe('disconnected');
      expect(s.status.lastError).toBe('upstream heartbeat lost');
    });

    it('reconnects with exponential backoff and full jitter, and starts over after a sync', async () => {
      const t = await setup();
      const s = t.startSession();
      await t.settle();
      t.up.upstream.partition();
      const attempts: number[] = [];
      const before = t.up.upstream.calls.length;
      const t0 = t.clock.now();
      for (let i = 0; i < 200 && attempts.length < 4; i++) {
        const n = t.up.upstream.calls.length;
        await t.clock.advance(250);
        if (t.up.upstream.calls.length > n) attempts.push(t.clock.now() - t0);
      }
      expect(t.up.upstream.calls.length - before).toBe(4);
      // Each attempt is declared dead after 3 silent heartbeat intervals, then waits
      // random() · min(cap, base · 2^attempt): with random() = 0.5, 1 s, 2 s, 4 s.
      const gaps = attempts.slice(1).map((a, i) => a - attempts[i]!);
      expect(gaps).toEqual([3 * HB + 1000, 3 * HB + 2000, 3 * HB + 4000]);
      t.up.upstream.heal();
      await t.clock.advance(16_000);
      expect(s.status.phase).toBe('connected');
    });
  });
}
