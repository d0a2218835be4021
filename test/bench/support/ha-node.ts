// One gateway node of the HA lab (test/bench/support/ha-lab.ts) composed as `tether node run`
// composes it (src/node/run.ts): the gateway reconcile consumer (GatewayConsumer: BIRD
// supervised from the slice, state dir, restart from the config on disk) and the product's
// HA wiring (GatewayHa: monitor fed from the slice's Gateway `nodes` and Node `status.vtep`,
// uplink = its own BIRD's sessions), a role change re-running the consumer. What it does not
// have is the agent's session to a controller: the slice is given as JSON (what the agent's
// durable cache would hold). Role changes and applies are printed as JSON lines on stdout.
//   argv[2]: JSON of HaNodeArgs

import { readFileSync } from 'node:fs';
import type { TetherObject } from '../../../src/api/resource.js';
import { IprouteKernel } from '../../../src/kernel/iproute2.js';
import { ProcessRunner } from '../../../src/lib/exec.js';
import { silentLogger } from '../../../src/lib/log.js';
import type { DurableState } from '../../../src/node/agent/session.js';
import { GatewayConsumer } from '../../../src/node/gateway/consumer.js';
import { GatewayHa } from '../../../src/node/gateway/ha-role.js';
import type { DesiredNodeNetwork } from '../../../src/node/vrouter/model.js';

export interface HaNodeArgs {
  node: string;
  site: string;
  slice: TetherObject[];
  bind: string;
  port: number;
  stateDir: string;
  /** The node's private key (PEM file), as credentials.json would hold it. */
  keyFile: string;
  intervalMs: number;
  deadAfterMs: number;
  preemptHoldMs: number;
  /** The vRouter's plan of this node (the lab synced it): with it the consumer binds the
   *  slice's FloatingIPs (HaLab's real mode); without, the lab's floating IP is an address. */
  network?: DesiredNodeNetwork;
}

const a = JSON.parse(process.argv[2] ?? '{}') as HaNodeArgs;
const out = (o: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify({ t: Date.now(), ...o })}\n`);
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
const gw = new GatewayConsumer({
  node: a.node,
  site: a.site,
  vtep: a.bind,
  stateDir: a.stateDir,
  kernel: new IprouteKernel(new ProcessRunner()),
  log: silentLogger(),
  birdBackoff: { baseMs: 200, capMs: 1000 },
  // As run.ts: standby until the monitor runs, then the monitor's role.
  role: () => ha?.role() ?? 'standby',
  roleReason: () => ha?.reason(),
  ...(a.network ? { network: () => a.network } : {}),
});
// The reconcile loop's part: one pass at a time, a pass per role change.
let chain = Promise.resolve();
const pass = () => {
  chain = chain
    .then(() => gw.apply(state))
    .then(
      async () => out({ applied: (await gw.status())?.role }),
      (e: unknown) => out({ error: (e as Error).message }),
    );
  return chain;
};
await gw.start();
await pass();
ha = new GatewayHa({
  node: a.node,
  site: a.site,
  slice: () => a.slice,
  // The slice is fixed for the process's life: one revision.
  revision: () => 1,
  bird: gw.bird,
  keyPem: () => keyPem,
  bindAddress: a.bind,
  onChange: (d) => {
    out({ role: d.role, reason: d.reason });
    void pass();
  },
  log: silentLogger(),
  timers: {
    port: a.port,
    intervalMs: a.intervalMs,
    deadAfterMs: a.deadAfterMs,
    preemptHoldMs: a.preemptHoldMs,
  },
});
await ha.start();
out({ started: a.node, pid: process.pid });
// Heartbeat counters and uplink reads once a second: the spoof test reads the drops, the
// failover bench the number of BIRD reads.
setInterval(
  () => out({ heartbeats: ha?.heartbeats(), uplinkChecks: ha?.monitor.uplinkChecks }),
  1000,
).unref();
const stop = async () => {
  ha?.stop();
  await gw.stop();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
