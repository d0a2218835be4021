/**
 * Gateway failover through a REAL cross-node floating IP, on the real kernel: the HA lab's
 * real mode (test/bench/support/ha-lab.ts, `fip: 'real'`): two gateway nodes running
 * GatewayConsumer + GatewayHa as `tether node run` composes them, a BIRD 2 site router with
 * BFD 300 ms x 3, and a third node E whose workload is the FloatingIP's endpoint; both
 * gateways bind it (DNAT over VXLAN to E). A ping every 10 ms from the router's side to the
 * floating IP, answered by the workload, while the active is silenced (link up, everything
 * it sends dropped) or its daemon and BIRD are killed with -9. Asserted: the pings recover,
 * a request after the failover reaches the workload through the other gateway with the
 * router's real address as its source, and the old active takes the role back. Times are
 * reported, not asserted (BENCHMARKS.md "gateway-failover").
 */
import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { failover, HaLab, until } from '../../bench/support/ha-lab.js';

const isRoot = process.getuid?.() === 0;
const has = (bin: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`]);
    return true;
  } catch {
    return false;
  }
};

describe.skipIf(!isRoot || !has('bird') || !has('socat'))(
  'gateway failover through a real cross-node floating IP',
  () => {
    let lab: HaLab | undefined;
    afterEach(async () => {
      await lab?.destroy();
      lab = undefined;
    });

    it('silenced active: the router moves to the standby, the workload answers through it and sees the real client', async () => {
      lab = new HaLab('bird', 'node', true, 'real');
      await lab.build();
      await lab.settle();
      await until(
        'gw-a active with the router on it',
        () => lab!.role('a') === 'active' && lab!.nextHop() === lab!.up.a,
        60_000,
      );
      // Before: through A, and the workload sees the router's own address on A's link.
      expect(lab.clientSeen()).toBe(lab.rtrIp.a);
      const r = await failover(lab, 'silence');
      console.log(JSON.stringify(r));
      expect(r.routeMovedMs).toBeDefined();
      expect(r.standbyRole).toBe('active');
      // The silence cut the forwarded path too (the echo replies are forwarded on A, not
      // sent by it): some pings died with A before BFD moved the route.
      expect(r.failover.lost).toBeGreaterThan(0);
      // The ping (answered by the workload on E, never by a gateway) recovered.
      expect(r.failover.received).toBeGreaterThan(r.failover.sent / 2);
      // After the failover: through B (the router's address on B's link), not SNATed.
      expect(r.seenDuring).toBe(lab.rtrIp.b);
      expect(r.preemptedBack).toBe(true);
      expect(r.recovery.received).toBeGreaterThan(0);
      expect(lab.clientSeen()).toBe(lab.rtrIp.a);
    }, 240_000);

    it('kill -9 of the active daemon and its BIRD: the workload stays reachable with the real client address, the restarted node takes the role back', async () => {
      lab = new HaLab('bird', 'node', true, 'real');
      await lab.build();
      const r = await failover(lab, 'kill9');
      console.log(JSON.stringify(r));
      expect(r.failover.received).toBeGreaterThan(r.failover.sent / 2);
      // Whichever gateway carries it (the router may keep A's routes as stale under graceful
      // restart while A's kernel still forwards), the workload sees the router's address on
      // that gateway's link: never a gateway's own address.
      const via = r.routeMovedMs === undefined ? lab.rtrIp.a : lab.rtrIp.b;
      expect(r.seenDuring).toBe(via);
      expect(r.preemptedBack).toBe(true);
      expect(r.recovery.received).toBeGreaterThan(0);
      expect(lab.clientSeen()).toBe(lab.rtrIp.a);
    }, 240_000);
  },
);
