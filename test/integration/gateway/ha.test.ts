/**
 * Gateway HA inside the site on the real kernel: two gateway nodes (Tether's BIRD and the HA
 * monitor each, src/node/gateway/ha.ts) peer with a site router in namespaces — BIRD 2, and
 * FRR 8.4 with bfdd — BFD 300 ms × 3. A ping every 10 ms from the router's side to the
 * floating IP while the active goes silent (link up, nothing sent: a dead node behind a
 * switch), its BIRD is SIGSTOPped, or its daemon and BIRD are killed with -9; then the old
 * active comes back and takes the role back after the preempt hold (docs/gateway.md).
 * Times are reported, not asserted; BENCHMARKS.md "gateway-failover" has the numbers.
 */
import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { failover, HaLab, type RouterKind } from '../../bench/support/ha-lab.js';

const isRoot = process.getuid?.() === 0;
const has = (bin: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`]);
    return true;
  } catch {
    return false;
  }
};

describe.skipIf(!isRoot || !has('bird') || !has('vtysh'))('gateway HA with BFD failover', () => {
  let lab: HaLab | undefined;
  afterEach(async () => {
    await lab?.destroy();
    lab = undefined;
  });

  for (const router of ['bird', 'frr'] as RouterKind[]) {
    it(`${router}: the router prefers the active, the standby's route is there with a longer AS path`, async () => {
      lab = new HaLab(router);
      await lab.build();
      await lab.settle();
      const { until } = await import('../../bench/support/ha-lab.js');
      await until('gw-a active', () => lab!.role('a') === 'active' && lab!.nextHop() === lab!.up.a, 60_000);
      // Both announcements at the router: the active's path (65001) and the standby's prepended
      // one. The standby's re-announcement with the prepend follows its role decision by one
      // BIRD reconfigure, so wait for it rather than sample once.
      const prepended = /65001 65001 65001 65001/;
      await until(
        'standby path prepended at the router',
        async () => prepended.test(await lab!.pathsSeen()),
        60_000,
      );
      expect(await lab.pathsSeen()).toMatch(prepended);
      expect(lab.role('b')).toBe('standby');
    }, 120_000);

    for (const fault of ['silence', 'sigstop-bird'] as const)
      it(`${router}: ${fault} of the active: BFD moves the floating IP to the standby, pings resume, the old active takes it back`, async () => {
        lab = new HaLab(router);
        await lab.build();
        const r = await failover(lab, fault);
        console.log(JSON.stringify(r));
        expect(r.routeMovedMs).toBeDefined();
        expect(r.standbyRole).toBe('active');
        // Pings flow again after the failover: most of them were answered.
        expect(r.failover.received).toBeGreaterThan(r.failover.sent / 2);
        expect(r.preemptedBack).toBe(true);
        expect(r.recovery.received).toBeGreaterThan(0);
      }, 180_000);
  }

  // The same faults against the product's composition (ha-node.ts: GatewayConsumer + GatewayHa
  // as src/node/run.ts wires them, the slice naming both nodes): the role rendered by the
  // consumer into BIRD's config, the old active back as standby first, then preempting.
  for (const fault of ['silence', 'kill9'] as const)
    it(`node wiring, bird: ${fault} of the active gateway node: the floating IP moves, pings resume, the old active comes back standby then preempts`, async () => {
      lab = new HaLab('bird', 'node');
      await lab.build();
      const r = await failover(lab, fault);
      console.log(JSON.stringify({ wiring: 'node', ...r }));
      if (fault === 'silence') {
        expect(r.routeMovedMs).toBeDefined();
        expect(r.standbyRole).toBe('active');
      }
      expect(r.failover.received).toBeGreaterThan(r.failover.sent / 2);
      // The restarted (or unsilenced) node was standby before it took the role back.
      const a = lab.events.filter((e) => e.node === 'gw-a');
      const firstActive = a.findIndex((e) => e.role === 'active');
      const lastActive = a.findLastIndex((e) => e.role === 'active');
      const standbyBetween = a.findIndex(
        (e, i) => i > firstActive && i < lastActive && (e.role === 'standby' || e.applied === 'standby'),
      );
      expect(firstActive).toBeGreaterThanOrEqual(0);
      expect(standbyBetween).toBeGreaterThan(firstActive);
      expect(r.preemptedBack).toBe(true);
      expect(r.recovery.received).toBeGreaterThan(0);
    }, 180_000);

  // Heartbeat authentication (docs/gateway.md "Heartbeat authentication"): an enrolled node
  // of the site that takes the dead active's address and port and claims to be it, signing
  // with its own valid node key, does not hold the standby back: only the keys of the nodes
  // the Gateway lists count. The control (the same forger with gw-a's own key does hold it
  // back) shows the forger is heard at all.
  it("node wiring, bird: a site node not listed in the Gateway, signing with its own valid key from the dead active's address, does not hold the standby back", async () => {
    lab = new HaLab('bird', 'node');
    await lab.build();
    await lab.settle();
    const { until } = await import('../../bench/support/ha-lab.js');
    await until(
      'gw-a active, gw-b standby',
      () => lab!.role('a') === 'active' && lab!.role('b') === 'standby',
      60_000,
    );
    // gw-a dies (daemon and BIRD): its heartbeats stop and its port is free.
    const birdA = lab.birdPid('a');
    process.kill(lab.gatewayPid('a')!, 'SIGKILL');
    process.kill(birdA, 'SIGKILL');
    // site-c: an enrolled node of the same site, in the roster with a valid key of its own,
    // that the Gateway does not list. Its heartbeats as gw-a, from gw-a's address, are unknown-key.
    const stopWrong = await lab.spoof('a', 'site-c');
    try {
      await until('gw-b active despite the forger', () => lab!.role('b') === 'active', 30_000);
      const before = lab.heartbeats('b')?.dropped['unknown-key'] ?? 0;
      // It stays active while the forger keeps sending, and every forged datagram is counted.
      await until(
        'forged heartbeats counted',
        () => (lab!.heartbeats('b')?.dropped['unknown-key'] ?? 0) >= before + 20,
        30_000,
      );
      expect(lab.role('b')).toBe('active');
    } finally {
      await stopWrong();
    }
    // Control: the same forger holding gw-a's own key is taken as gw-a, and gw-b yields.
    const stopRight = await lab.spoof('a', 'gw-a');
    try {
      await until(
        'gw-b standby behind a forger that has the key',
        () => lab!.role('b') === 'standby',
        30_000,
      );
    } finally {
      await stopRight();
    }
    console.log(JSON.stringify({ spoof: lab.heartbeats('b') }));
  }, 180_000);

  it('bird: kill -9 of the active daemon and its BIRD: graceful restart keeps the route on it (its dataplane still forwards), the restart takes over', async () => {
    lab = new HaLab('bird');
    await lab.build();
    const r = await failover(lab, 'kill9');
    console.log(JSON.stringify(r));
    expect(r.failover.received).toBeGreaterThan(r.failover.sent / 2);
    expect(r.preemptedBack).toBe(true);
  }, 180_000);
});
