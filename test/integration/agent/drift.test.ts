// Drift repair on the real kernel: the reconcile loop re-plans unchanged desired state
// against kernel read-back, so a Tether route or FDB entry deleted by hand is back within
// seconds, with a `drift_repaired` log event naming it. Per-run namespaces only.
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/lib/clock.js';
import { silentLogger } from '../../../src/lib/log.js';
import { ReconcileLoop, type StateConsumer } from '../../../src/node/agent/reconcile.js';
import type { DurableState } from '../../../src/node/agent/session.js';
import { VRouter } from '../../../src/node/vrouter/agent.js';
import { names } from '../../../src/node/vrouter/model.js';
import { waitFor } from '../support/proc.js';
import { isRoot, local, network, nodeDesired, Topo, type Workload } from '../vrouter/topo.js';

if (!isRoot) console.warn('skipping drift-repair integration test: it needs root (network namespaces)');

const noState: DurableState = {
  revision: 0,
  snapshotRevision: 0,
  list: () => [],
  get: () => undefined,
  applyDelta: () => {},
  replace: () => ({ swept: 0 }),
};

describe.skipIf(!isRoot)('reconcile loop on the real kernel', () => {
  const topo = new Topo('dr');
  let w: Workload;
  let loop: ReconcileLoop | undefined;
  const lines: Array<Record<string, unknown>> = [];
  const remoteMac = '02:00:00:0d:0e:0f';

  beforeAll(async () => {
    await topo.build();
    w = await topo.addWorkload('a', 'w', '10.1.0.11', '10.1.0.1');
  });

  afterAll(async () => {
    await loop?.stop();
    const d = nodeDesired(topo, 'a', []);
    await new VRouter(topo.runner, silentLogger()).teardown(d).catch(() => undefined);
    await topo.destroyPrefixed([d.netnsPrefix]);
    await topo.destroy();
  });

  it('puts back a Tether route and a VXLAN FDB entry deleted by hand, and says what it fixed', {
    timeout: 60_000,
  }, async () => {
    const net = network('red', 4711);
    // A second subnet: the vRouter routes it to the bridge with Tether's route protocol.
    net.subnets.push('10.2.0.0/24');
    net.localEndpoints = [local(w)];
    net.remoteEndpoints = [{ id: 'far', mac: remoteMac, ip: '10.1.0.99', vtep: topo.vtepB, labels: {} }];
    const desired = nodeDesired(topo, 'a', [net]);
    const vrouter = new VRouter(topo.runner, silentLogger());
    const consumer: StateConsumer = {
      name: 'vrouter',
      apply: async () => {
        const r = await vrouter.sync(desired);
        if (!r.ok) throw new Error(r.failures[0]?.message ?? 'did not converge');
        return { changes: r.changes };
      },
    };
    const log = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l)) });
    loop = new ReconcileLoop({
      clock: systemClock,
      log,
      consumers: [consumer],
      state: noState,
      intervalMs: 500,
    });
    loop.start();
    const ns = names.vnNetns(desired.netnsPrefix, 4711);
    const vx = names.vxlan(4711);
    const hasRoute = async () =>
      (await topo.sh('ip', ['-n', ns, 'route', 'show', '10.2.0.0/24', 'proto', '183'])).includes(
        '10.2.0.0/24',
      );
    const hasFdb = async () =>
      (await topo.sh('bridge', ['-n', ns, 'fdb', 'show', 'dev', vx])).includes(
        `${remoteMac} dst ${topo.vtepB}`,
      );
    await waitFor('first convergence', async () => (await hasRoute()) && (await hasFdb()), 30_000);

    await topo.sh('ip', ['-n', ns, 'route', 'del', '10.2.0.0/24', 'dev', names.bridge, 'proto', '183']);
    await topo.sh('bridge', ['-n', ns, 'fdb', 'del', remoteMac, 'dev', vx, 'dst', topo.vtepB]);
    expect(await hasRoute()).toBe(false);
    expect(await hasFdb()).toBe(false);
    const cut = Date.now();
    await waitFor('route and FDB entry back', async () => (await hasRoute()) && (await hasFdb()), 10_000, 50);
    const backMs = Date.now() - cut;
    const events = lines.filter((l) => l.event === 'drift_repaired');
    const fixed = events.flatMap((e) => e.changes as string[]).join('\n');
    expect(fixed).toContain('route-replace 10.2.0.0/24');
    expect(fixed).toContain(`fdb-replace ${remoteMac}`);
    console.log(`drift repaired in ${backMs} ms (interval 500 ms)`);
  });
});
