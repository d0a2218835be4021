// One gateway node of the HA lab (test/bench/support/ha-lab.ts), run inside that node's
// network namespace: Tether's BIRD (BirdDaemon) and the HA monitor (src/node/gateway/ha.ts),
// the monitor's role rendered into BIRD's config exactly as the node daemon's gateway
// consumer does it (birdConfigFor). Role changes are printed as JSON lines on stdout.
//   argv[2]: JSON of HaGatewayArgs

import { readFileSync } from 'node:fs';
import { BirdDaemon } from '../../../src/bgp/daemon.js';
import type { BirdConfig } from '../../../src/bgp/render.js';
import { renderBirdConfig } from '../../../src/bgp/render.js';
import { silentLogger } from '../../../src/lib/log.js';
import {
  birdConfigFor,
  HaMonitor,
  type HaPeer,
  type HaVerifyKey,
  haPublicKeyOf,
  haSignerOf,
} from '../../../src/node/gateway/ha.js';

export interface HaGatewayArgs {
  node: string;
  gateway: string;
  ranked: string[];
  peers: HaPeer[];
  bind: string;
  port: number;
  stateDir: string;
  bird: BirdConfig;
  /** This node's private key (PEM file): it signs its heartbeats. */
  keyFile: string;
  /** The peers' public keys as the roster carries them (`Node.status.publicKey`). */
  peerKeys: Array<{ node: string; spki: string }>;
  intervalMs: number;
  deadAfterMs: number;
  preemptHoldMs: number;
}

const a = JSON.parse(process.argv[2] ?? '{}') as HaGatewayArgs;
const bird = new BirdDaemon({ stateDir: a.stateDir, backoff: { baseMs: 200, capMs: 1000 } });
const out = (o: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify({ t: Date.now(), ...o })}\n`);
};
const view = {
  name: a.gateway,
  ranked: a.ranked,
  peers: a.peers,
  keys: a.peerKeys.flatMap((p): HaVerifyKey[] => {
    const k = haPublicKeyOf({
      apiVersion: 'tether.dev/v1',
      kind: 'Node',
      metadata: { name: p.node },
      spec: {},
      status: { publicKey: p.spki },
    });
    return k ? [{ ...k, node: p.node }] : [];
  }),
  bfd: a.bird.peers.some((p) => p.bfd !== undefined),
};
let chain = Promise.resolve();
const render = (role: 'active' | 'standby') => {
  chain = chain
    .then(() => bird.apply(renderBirdConfig(birdConfigFor(a.bird, role))))
    .then(
      () => out({ applied: role }),
      (e: unknown) => out({ error: (e as Error).message }),
    );
  return chain;
};
const signers = [haSignerOf(readFileSync(a.keyFile, 'utf8'))];
const ha = new HaMonitor({
  node: a.node,
  signers: () => signers,
  gateway: () => view,
  uplinkUp: () => bird.sessionsUp(),
  bindAddress: a.bind,
  port: a.port,
  intervalMs: a.intervalMs,
  deadAfterMs: a.deadAfterMs,
  preemptHoldMs: a.preemptHoldMs,
  onChange: (d) => {
    out({ role: d.role, reason: d.reason });
    void render(d.role);
  },
  log: silentLogger(),
});
await render('standby');
await ha.start();
out({ started: a.node, pid: process.pid });
const stop = async () => {
  ha.stop();
  await bird.stop();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
