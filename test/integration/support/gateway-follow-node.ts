// One node of test/integration/gateway/fip-ha.test.ts's outbound test, run inside its node
// namespace (`ip netns exec`) so its heartbeat socket is that namespace's: the product's HA
// wiring (GatewayHa: the view from the slice, signed heartbeats, the observer mode on a node
// the Gateway does not list) and, on the endpoint's node, the gateway consumer whose pass is
// re-run when the active gateway heard changes, as src/node/run.ts wires them. The uplink
// check is replaced (the lab has no BGP router: both gateway nodes count as up). Prints JSON
// lines on stdout: {started}, {role}, {active}, {applied, active, changes}.
//   argv[2]: JSON of FollowNodeArgs

import { readFileSync } from 'node:fs';
import type { TetherObject } from '../../../src/api/resource.js';
import { BirdDaemon } from '../../../src/bgp/daemon.js';
import { IprouteKernel } from '../../../src/kernel/iproute2.js';
import { ProcessRunner } from '../../../src/lib/exec.js';
import { silentLogger } from '../../../src/lib/log.js';
import type { DurableState } from '../../../src/node/agent/session.js';
import { GatewayConsumer } from '../../../src/node/gateway/consumer.js';
import { GatewayHa } from '../../../src/node/gateway/ha-role.js';
import type { FipReturn } from '../../../src/node/gateway/model.js';
import type { DesiredNodeNetwork } from '../../../src/node/vrouter/model.js';

export interface FollowNodeArgs {
  node: string;
  site: string;
  slice: TetherObject[];
  /** The node's underlay address (heartbeats are received there). */
  bind: string;
  keyFile: string;
  stateDir: string;
  timers: { intervalMs: number; deadAfterMs: number; preemptHoldMs: number };
  /** The endpoint's node: its gateway consumer (the vRouter's plan of the test). */
  consumer?: {
    vtep: string;
    nodeNetns: string;
    network: DesiredNodeNetwork;
    returns: FipReturn[];
  };
}

const a = JSON.parse(process.argv[2] ?? '{}') as FollowNodeArgs;
const out = (o: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(o)}\n`);
};
const state: DurableState = {
  revision: 1,
  snapshotRevision: 1,
  list: (kind?: string) => (kind ? a.slice.filter((o) => o.kind === kind) : a.slice),
  get: (kind: string, name: string) => a.slice.find((o) => o.kind === kind && o.metadata.name === name),
  applyDelta: () => {},
  replace: () => ({ swept: 0 }),
};
const keyPem = readFileSync(a.keyFile, 'utf8');
let ha: GatewayHa | undefined;
/** The active gateway the last pass planned with (what it read, not what is heard after). */
let usedActive: string | undefined;
const c = a.consumer;
const gw = c
  ? new GatewayConsumer({
      node: a.node,
      site: a.site,
      vtep: c.vtep,
      stateDir: a.stateDir,
      kernel: new IprouteKernel(new ProcessRunner()),
      log: silentLogger(),
      nodeNetns: c.nodeNetns,
      network: () => c.network,
      localEndpoints: () =>
        a.slice.filter((o) => o.kind === 'Endpoint' && (o.spec as { node?: string }).node === a.node),
      fipReturns: () => c.returns,
      activeGateway: () => {
        usedActive = ha?.active();
        return usedActive;
      },
    })
  : undefined;
// The reconcile loop's part: one pass at a time, one per change of the active gateway.
let chain = Promise.resolve();
const pass = () => {
  if (!gw) return chain;
  chain = chain
    .then(() => gw.apply(state))
    .then(
      (r) => out({ applied: true, active: usedActive ?? null, changes: r.changes }),
      (e: unknown) => out({ error: (e as Error).message }),
    );
  return chain;
};
ha = new GatewayHa({
  node: a.node,
  site: a.site,
  slice: () => a.slice,
  revision: () => 1,
  bird: gw?.bird ?? new BirdDaemon({ stateDir: a.stateDir }),
  uplinkUp: async () => true,
  keyPem: () => keyPem,
  bindAddress: a.bind,
  onChange: (d) => out({ role: d.role, reason: d.reason }),
  onActiveChange: (x) => {
    out({ active: x ?? null });
    void pass();
  },
  log: silentLogger(),
  timers: a.timers,
});
await ha.start();
await pass();
out({ started: a.node, pid: process.pid });
process.on('SIGTERM', () => {
  ha?.stop();
  process.exit(0);
});
