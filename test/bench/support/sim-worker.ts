// A worker process holding many simulated node sessions. Each simulated node is a real
// grpc-js client with its own channel (own TCP + TLS connection), built with the same
// credentials and channel options as the real node; it speaks the Sync protocol and
// acknowledges without touching disk, so what is measured is the controller.
import { readFileSync } from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import type { ControllerMessage__Output } from '../../../src/api/gen/tether/v1/ControllerMessage.js';
import type { NodeMessage } from '../../../src/api/gen/tether/v1/NodeMessage.js';
import type { NodeSessionClient } from '../../../src/api/gen/tether/v1/NodeSession.js';
import { tetherProto } from '../../../src/api/grpc.js';
import { CHANNEL_OPTIONS, controllerCredentials } from '../../../src/node/connect.js';
import type { FromWorker, SimSetup, ToWorker } from './sim-protocol.js';

interface Sim {
  name: string;
  certPem: string;
  client?: NodeSessionClient;
  call?: grpc.ClientDuplexStream<NodeMessage, ControllerMessage__Output>;
  synced: boolean;
  dead: boolean;
}

const send = (m: FromWorker) => process.send?.(m);
const nowMs = () => performance.timeOrigin + performance.now();
const bootId = `bench-${process.pid}`;

let setup: SimSetup;
let sims: Sim[] = [];
let synced = 0;
let failed = 0;
let lost = 0;
let firstStart = 0;
let lastAck = 0;
let snapshotRevision = 0;
const errors = new Map<string, number>();
const revs = new Map<number, { acked: number; lastAck: number; reported: boolean }>();
let hbTimer: NodeJS.Timeout | undefined;
let seq = 0;

function noteError(msg: string): void {
  errors.set(msg, (errors.get(msg) ?? 0) + 1);
}

function live(): number {
  return synced - lost;
}

function checkRevs(): void {
  for (const [revision, r] of revs) {
    if (!r.reported && r.acked >= live()) {
      r.reported = true;
      send({ type: 'rev', revision, lastAck: r.lastAck, acked: r.acked });
    }
  }
}

function ack(sim: Sim, revision: number): void {
  sim.call?.write({ ack: { revision } });
}

function open(sim: Sim, done: () => void): void {
  const proto = tetherProto();
  const options: grpc.ChannelOptions = {
    ...CHANNEL_OPTIONS,
    // One channel per simulated node, like one real node per process: no sharing of
    // subchannels (connections) between simulated nodes in the same worker.
    'grpc.use_local_subchannel_pool': 1,
  };
  const client = new proto.tether.v1.NodeSession(
    setup.address,
    controllerCredentials(setup.caPem, { keyPem: setup.keyPem, certPem: sim.certPem }),
    options,
  );
  sim.client = client;
  const call = client.Sync();
  sim.call = call;
  let released = false;
  const release = () => {
    if (!released) {
      released = true;
      done();
    }
  };
  const fail = (why: string) => {
    if (sim.dead) return;
    sim.dead = true;
    noteError(why);
    if (sim.synced) {
      lost++;
      send({ type: 'lost', node: sim.name, why });
      checkRevs();
    } else {
      failed++;
    }
    release();
  };
  call.on('data', (m: ControllerMessage__Output) => {
    switch (m.msg) {
      case 'snapshot_end': {
        const rev = m.snapshot_end?.revision ?? 0;
        ack(sim, rev);
        if (!sim.synced) {
          sim.synced = true;
          synced++;
          lastAck = Math.max(lastAck, nowMs());
          snapshotRevision = Math.max(snapshotRevision, rev);
          release();
        }
        return;
      }
      case 'delta': {
        const rev = m.delta?.revision ?? 0;
        ack(sim, rev);
        const t = nowMs();
        let r = revs.get(rev);
        if (!r) {
          r = { acked: 0, lastAck: 0, reported: false };
          revs.set(rev, r);
        }
        r.acked++;
        r.lastAck = Math.max(r.lastAck, t);
        if (r.acked >= live()) checkRevs();
        return;
      }
      case 'goodbye':
        fail(`goodbye ${m.goodbye?.code ?? ''}: ${m.goodbye?.reason ?? ''}`);
        return;
      default:
        return;
    }
  });
  call.on('error', (e: grpc.ServiceError) => fail(`error ${e.code}: ${e.details || e.message}`));
  call.on('end', () => fail('controller ended the session'));
  call.write({
    hello: { node_name: sim.name, held_revision: 0, version: 'bench', boot_id: `${bootId}-${sim.name}` },
  });
}

async function connectAll(): Promise<void> {
  firstStart = nowMs();
  // Like the real node: a heartbeat every interval, so the controller keeps the sessions.
  hbTimer = setInterval(() => {
    const msg: NodeMessage = { heartbeat: { seq: ++seq, unix_ms: Date.now() } };
    for (const s of sims) if (s.call && !s.dead) s.call?.write(msg);
  }, setup.heartbeatMs);
  let next = 0;
  let inFlight = 0;
  const progress = setInterval(() => send({ type: 'progress', synced, failed }), 2000);
  await new Promise<void>((resolve) => {
    const pump = () => {
      while (inFlight < setup.inFlight && next < sims.length) {
        const sim = sims[next++]!;
        inFlight++;
        open(sim, () => {
          inFlight--;
          if (synced + failed >= sims.length) resolve();
          else setImmediate(pump);
        });
      }
    };
    pump();
  });
  clearInterval(progress);
  send({
    type: 'synced',
    synced,
    failed,
    firstStart,
    lastAck,
    revision: snapshotRevision,
    errors: [...errors].map(([m, n]) => `${n}× ${m}`),
  });
}

let stopping = false;
function stop(): void {
  if (stopping) return;
  stopping = true;
  clearInterval(hbTimer);
  for (const s of sims) {
    s.dead = true;
    try {
      s.call?.cancel();
      s.client?.close();
    } catch {
      /* already gone */
    }
  }
  setTimeout(() => process.exit(0), 200).unref();
  process.disconnect?.();
}

process.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'setup': {
      setup = m.setup;
      const all = JSON.parse(readFileSync(setup.certsFile, 'utf8')) as Array<{
        name: string;
        certPem: string;
      }>;
      sims = all.slice(setup.from, setup.to).map((c) => ({ ...c, synced: false, dead: false }));
      tetherProto();
      send({ type: 'ready', sims: sims.length });
      return;
    }
    case 'connect':
      void connectAll();
      return;
    case 'stop':
      stop();
      return;
  }
});
process.on('disconnect', () => stop());
