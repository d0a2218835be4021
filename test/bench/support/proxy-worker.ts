// A worker process holding many simulated site proxies. Each is a real grpc-js client with
// its own channel (own TCP + TLS connection) and the hosting node's certificate, speaking
// what a site proxy speaks on its WAN session: Hello role "proxy" with its heartbeat
// interval, acks after writing what it received to disk, and SiteAgents acking for each of
// its site's agents. It never opens agent sessions: what is measured is the controller.

import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type { ControllerMessage__Output } from '../../../src/api/gen/tether/v1/ControllerMessage.js';
import type { NodeMessage } from '../../../src/api/gen/tether/v1/NodeMessage.js';
import type { NodeSessionClient } from '../../../src/api/gen/tether/v1/NodeSession.js';
import { tetherProto } from '../../../src/api/grpc.js';
import { fullJitterDelay } from '../../../src/lib/backoff.js';
import { CHANNEL_OPTIONS, controllerCredentials } from '../../../src/node/connect.js';
import type { FromProxyWorker, ProxySetup, ProxySpec, ToProxyWorker } from './proxy-protocol.js';

interface Proxy extends ProxySpec {
  client?: NodeSessionClient;
  call?: grpc.ClientDuplexStream<NodeMessage, ControllerMessage__Output>;
  /** Highest revision on "disk". */
  held: number;
  synced: boolean;
  /** The current session failed (or was never opened). */
  down: boolean;
  attempt: number;
  everSynced: boolean;
  chunks: Buffer[];
}

const send = (m: FromProxyWorker) => process.send?.(m);
const nowMs = () => performance.timeOrigin + performance.now();
const bootId = `bench-proxy-${process.pid}`;

let setup: ProxySetup;
let proxies: Proxy[] = [];
let synced = 0;
let failed = 0;
let lastAck = 0;
let snapshotRevision = 0;
let attempts = 0;
let stopping = false;
/** Set while some proxy that had synced is out of sync after a loss. */
let recovering = false;
const errors = new Map<string, number>();
const revs = new Map<number, { acked: number; lastAck: number; reported: boolean }>();
let hbTimer: NodeJS.Timeout | undefined;
let seq = 0;

const noteError = (msg: string) => errors.set(msg, (errors.get(msg) ?? 0) + 1);
const live = () => proxies.filter((p) => p.synced).length;

function checkRevs(): void {
  const n = live();
  for (const [revision, r] of revs) {
    if (!r.reported && r.acked >= n) {
      r.reported = true;
      send({ type: 'rev', revision, lastAck: r.lastAck, acked: r.acked });
    }
  }
}

/** Writes what came to "disk", then acks for the proxy and for each of its agents. */
async function persistAndAck(p: Proxy, revision: number, bytes: Buffer[], complete: boolean): Promise<void> {
  await writeFile(join(setup.diskDir, `${p.site}.bin`), Buffer.concat(bytes));
  if (p.down || !p.call) return;
  p.held = Math.max(p.held, revision);
  p.call.write({ ack: { revision } });
  p.call.write({
    site_agents: {
      complete,
      agents: p.agents.map((node) => ({
        node,
        acked: revision,
        connected: true,
        boot_id: `${bootId}-${node}`,
        underlay_ip: '',
      })),
    },
  });
}

function open(p: Proxy, done: () => void): void {
  attempts++;
  const proto = tetherProto();
  const options: grpc.ChannelOptions = {
    ...CHANNEL_OPTIONS,
    'grpc.use_local_subchannel_pool': 1,
    // The WAN session's heartbeats are its liveness check (docs/proxy.md): no pings.
    'grpc.keepalive_time_ms': 2 * 3600_000,
    'grpc.keepalive_permit_without_calls': 0,
  };
  const client = new proto.tether.v1.NodeSession(
    setup.address,
    controllerCredentials(setup.caPem, { keyPem: setup.keyPem, certPem: p.certPem }),
    options,
  );
  p.client = client;
  const call = client.Sync();
  p.call = call;
  p.down = false;
  p.chunks = [];
  let released = false;
  const release = () => {
    if (!released) {
      released = true;
      done();
    }
  };
  const fail = (why: string) => {
    if (p.down) return;
    p.down = true;
    noteError(why);
    client.close();
    if (p.synced) {
      p.synced = false;
      if (!recovering) {
        recovering = true;
        send({ type: 'lost', at: nowMs(), live: live() });
      }
      checkRevs();
    } else if (!p.everSynced) failed++;
    release();
    if (setup.reconnect && !stopping) {
      const delay = fullJitterDelay(p.attempt++, setup.reconnect);
      setTimeout(() => open(p, () => {}), delay);
    }
  };
  call.on('data', (m: ControllerMessage__Output) => {
    switch (m.msg) {
      case 'snapshot_chunk':
        for (const r of m.snapshot_chunk?.put ?? []) p.chunks.push(r.json);
        return;
      case 'snapshot_end':
      case 'delta': {
        const rev = Number(m.snapshot_end?.revision ?? m.delta?.revision ?? 0);
        const bytes = m.delta ? (m.delta.put ?? []).map((r) => r.json) : p.chunks;
        p.chunks = [];
        const first = !p.synced;
        void persistAndAck(p, rev, bytes, first).then(() => {
          const t = nowMs();
          if (first) {
            if (p.down) return;
            p.synced = true;
            p.attempt = 0;
            if (!p.everSynced) {
              p.everSynced = true;
              synced++;
              snapshotRevision = Math.max(snapshotRevision, rev);
            }
            lastAck = Math.max(lastAck, t);
            release();
            if (recovering && proxies.every((x) => x.synced)) {
              recovering = false;
              send({ type: 'resynced', at: t, attempts, errors: [...errors].map(([e, n]) => `${n}× ${e}`) });
            }
            return;
          }
          let r = revs.get(rev);
          if (!r) {
            r = { acked: 0, lastAck: 0, reported: false };
            revs.set(rev, r);
          }
          r.acked++;
          r.lastAck = Math.max(r.lastAck, t);
          checkRevs();
        });
        return;
      }
      case 'goodbye':
        fail(`goodbye ${m.goodbye?.code ?? ''}: ${m.goodbye?.reason ?? ''}`);
        return;
      default:
        return;
    }
  });
  call.on('error', (e: grpc.ServiceError) =>
    fail(`error ${e.code}: ${(e.details || e.message).slice(0, 80)}`),
  );
  call.on('end', () => fail('controller ended the session'));
  call.write({
    hello: {
      node_name: p.host,
      held_revision: p.held,
      version: 'bench',
      boot_id: `${bootId}-${p.host}`,
      role: 'proxy',
      heartbeat_ms: setup.heartbeatMs,
    },
  });
}

async function connectAll(): Promise<void> {
  hbTimer = setInterval(() => {
    const msg: NodeMessage = { heartbeat: { seq: ++seq, unix_ms: Date.now() } };
    for (const p of proxies) if (p.call && !p.down) p.call.write(msg);
  }, setup.heartbeatMs);
  let next = 0;
  let inFlight = 0;
  const progress = setInterval(() => send({ type: 'progress', synced, failed }), 2000);
  await new Promise<void>((resolve) => {
    const pump = () => {
      while (inFlight < setup.inFlight && next < proxies.length) {
        const p = proxies[next++]!;
        inFlight++;
        open(p, () => {
          inFlight--;
          if (synced + failed >= proxies.length) resolve();
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
    lastAck,
    revision: snapshotRevision,
    errors: [...errors].map(([m, n]) => `${n}× ${m}`),
  });
}

function stop(): void {
  if (stopping) return;
  stopping = true;
  clearInterval(hbTimer);
  for (const p of proxies) {
    p.down = true;
    try {
      p.call?.cancel();
      p.client?.close();
    } catch {
      /* already gone */
    }
  }
  setTimeout(() => process.exit(0), 200).unref();
  process.disconnect?.();
}

process.on('message', (m: ToProxyWorker) => {
  switch (m.type) {
    case 'setup': {
      setup = m.setup;
      const all = JSON.parse(readFileSync(setup.proxiesFile, 'utf8')) as ProxySpec[];
      proxies = all.slice(setup.from, setup.to).map((s) => ({
        ...s,
        held: 0,
        synced: false,
        down: true,
        attempt: 0,
        everSynced: false,
        chunks: [],
      }));
      tetherProto();
      send({ type: 'ready', proxies: proxies.length });
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
