// A worker process holding many simulated nodes that know every controller replica (issue
// 12): each is a real grpc-js client with its own channel, credentials and channel options of
// the real node, speaks Sync, acknowledges without touching disk, and on a lost session does
// what the real node does (src/node/controllers.ts + src/lib/backoff.ts): moves to the next
// replica and reconnects after an exponential backoff with full jitter, resuming from the
// revision it acknowledged (Hello.held_revision). Counts how each resync happened.
import { readFileSync } from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import type { ControllerMessage__Output } from '../../../src/api/gen/tether/v1/ControllerMessage.js';
import type { NodeMessage } from '../../../src/api/gen/tether/v1/NodeMessage.js';
import type { NodeSessionClient } from '../../../src/api/gen/tether/v1/NodeSession.js';
import { tetherProto } from '../../../src/api/grpc.js';
import { fullJitterDelay } from '../../../src/lib/backoff.js';
import { CHANNEL_OPTIONS, controllerCredentials } from '../../../src/node/connect.js';
import type { ReplicaFromWorker, ReplicaSimSetup, ReplicaToWorker } from './replica-sim-protocol.js';

interface Sim {
  name: string;
  certPem: string;
  /** Index into setup.addresses of the replica in use (sticky until a failure). */
  at: number;
  held: number;
  attempt: number;
  client?: NodeSessionClient;
  call?: grpc.ClientDuplexStream<NodeMessage, ControllerMessage__Output>;
  /** In sync in the current epoch (initial sync or the resync after a restart). */
  synced: boolean;
  /** Synced at least once (the paced first connect counts it out). */
  once: boolean;
}

const send = (m: ReplicaFromWorker) => process.send?.(m);
const nowMs = () => performance.timeOrigin + performance.now();
const bootId = `bench-${process.pid}`;

let setup: ReplicaSimSetup;
let sims: Sim[] = [];
let epoch = 0;
let synced = 0;
let lastSync = 0;
let snapshots = 0;
let deltas = 0;
let attempts = 0;
let stopping = false;
const errors = new Map<string, number>();
const revs = new Map<number, { acked: number; lastAck: number; reported: boolean }>();
let seq = 0;
let loggedDrops = 0;

function noteError(msg: string): void {
  errors.set(msg, (errors.get(msg) ?? 0) + 1);
}

function checkRevs(): void {
  for (const [revision, r] of revs) {
    if (!r.reported && r.acked >= sims.length) {
      r.reported = true;
      send({ type: 'rev', revision, lastAck: r.lastAck });
    }
  }
}

// A node whose session dropped while a revision was in flight gets it in its resync, not as a
// counted delta: without this sweep such a revision would never complete (seen at N=10,000 on
// a loaded machine). It completes when every node holds it, at the moment the sweep sees that
// (at most SWEEP_MS late), and the worker's log says how often that happened.
const SWEEP_MS = 20;
let sweptLate = 0;
function sweepRevs(): void {
  let minHeld = Number.POSITIVE_INFINITY;
  for (const s of sims) minHeld = Math.min(minHeld, s.synced ? s.held : -1);
  for (const [revision, r] of revs) {
    if (r.reported || revision > minHeld) continue;
    r.reported = true;
    sweptLate++;
    process.stderr.write(
      `revision ${revision}: ${sims.length - r.acked} node(s) took it by resync (${sweptLate} so far)\n`,
    );
    send({ type: 'rev', revision, lastAck: Math.max(r.lastAck, nowMs()) });
  }
}

function inSync(sim: Sim, how: 'snapshot' | 'delta'): void {
  if (sim.synced) return;
  sim.synced = true;
  sim.attempt = 0;
  synced++;
  lastSync = Math.max(lastSync, nowMs());
  if (how === 'snapshot') snapshots++;
  else deltas++;
  if (!sim.once) {
    sim.once = true;
    initialInFlight--;
    setImmediate(pump);
  }
  if (synced === sims.length)
    send({
      type: 'synced',
      epoch,
      at: lastSync,
      snapshots,
      deltas,
      attempts,
      perReplica: setup.addresses.map((_, i) => sims.filter((s) => s.at === i).length),
      errors: [...errors].slice(0, 3).map(([m, n]) => `${n}× ${m}`),
    });
}

function open(sim: Sim): void {
  if (stopping) return;
  attempts++;
  const proto = tetherProto();
  const client = new proto.tether.v1.NodeSession(
    setup.addresses[sim.at]!,
    controllerCredentials(setup.caPem, { keyPem: setup.keyPem, certPem: sim.certPem }),
    { ...CHANNEL_OPTIONS, 'grpc.use_local_subchannel_pool': 1 },
  );
  sim.client = client;
  const call = client.Sync();
  sim.call = call;
  let ended = false;
  let staging = false;
  const fail = (why: string) => {
    if (ended || stopping) return;
    ended = true;
    noteError(why.slice(0, 80));
    if (sim.synced && loggedDrops++ < 20) process.stderr.write(`${sim.name} dropped: ${why.slice(0, 160)}\n`);
    call.cancel();
    client.close();
    if (sim.synced) {
      sim.synced = false;
      synced--;
    }
    // The real node's rotation: the next attempt goes to the next replica.
    sim.at = (sim.at + 1) % setup.addresses.length;
    const delay = fullJitterDelay(sim.attempt++, setup.backoff);
    setTimeout(() => open(sim), delay);
  };
  call.on('data', (m: ControllerMessage__Output) => {
    switch (m.msg) {
      case 'snapshot_begin':
        staging = true;
        return;
      case 'snapshot_end': {
        const rev = Number(m.snapshot_end?.revision ?? 0);
        call.write({ ack: { revision: rev } });
        sim.held = rev;
        if (staging) inSync(sim, 'snapshot');
        staging = false;
        return;
      }
      case 'delta': {
        const rev = Number(m.delta?.revision ?? 0);
        call.write({ ack: { revision: rev } });
        sim.held = Math.max(sim.held, rev);
        if (!sim.synced) {
          inSync(sim, 'delta');
          return;
        }
        let r = revs.get(rev);
        if (!r) {
          r = { acked: 0, lastAck: 0, reported: false };
          revs.set(rev, r);
        }
        r.acked++;
        r.lastAck = Math.max(r.lastAck, nowMs());
        if (r.acked >= sims.length) checkRevs();
        return;
      }
      case 'goodbye':
        fail(`goodbye ${m.goodbye?.code ?? ''}`);
        return;
      default:
        return;
    }
  });
  call.on('error', (e: grpc.ServiceError) => fail(`error ${e.code}: ${e.details || e.message}`));
  call.on('end', () => fail('controller ended the session'));
  call.write({
    hello: {
      node_name: sim.name,
      held_revision: sim.held,
      version: 'bench',
      boot_id: `${bootId}-${sim.name}`,
      heartbeat_ms: setup.heartbeatMs,
    },
  });
}

function connectAll(): void {
  setInterval(() => {
    const msg: NodeMessage = { heartbeat: { seq: ++seq, unix_ms: Date.now() } };
    for (const s of sims) s.call?.write(msg);
  }, setup.heartbeatMs).unref();
  setInterval(sweepRevs, SWEEP_MS).unref();
  // The first connect is paced (a fleet enrolls over time); reconnects are not: they are the
  // storm the jitter has to spread.
  pump();
}

let next = 0;
let initialInFlight = 0;
function pump(): void {
  while (next < sims.length && initialInFlight < setup.inFlight) {
    initialInFlight++;
    open(sims[next++]!);
  }
}

process.on('message', (m: ReplicaToWorker) => {
  switch (m.type) {
    case 'setup': {
      setup = m.setup;
      const all = JSON.parse(readFileSync(setup.certsFile, 'utf8')) as Array<{
        name: string;
        certPem: string;
      }>;
      sims = all.slice(setup.from, setup.to).map((c, i) => ({
        ...c,
        // Sessions spread over the replicas from the start, as an operator's list order would.
        at: (setup.from + i) % setup.addresses.length,
        held: 0,
        attempt: 0,
        synced: false,
        once: false,
      }));
      tetherProto();
      send({ type: 'ready', sims: sims.length });
      return;
    }
    case 'connect':
      connectAll();
      return;
    case 'epoch':
      // A restart is coming: count the next resync from zero.
      epoch = m.epoch;
      snapshots = 0;
      deltas = 0;
      attempts = 0;
      lastSync = 0;
      return;
    case 'stop':
      stopping = true;
      for (const s of sims) {
        try {
          s.call?.cancel();
          s.client?.close();
        } catch {
          /* already gone */
        }
      }
      setTimeout(() => process.exit(0), 200).unref();
      process.disconnect?.();
      return;
  }
});
process.on('disconnect', () => process.exit(0));
