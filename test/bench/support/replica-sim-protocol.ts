// Messages between the replica benchmark (test/bench/controller-replicas.ts) and its
// simulated-node workers (replica-sim-worker.ts), over fork IPC.
import type { BackoffPolicy } from '../../../src/lib/backoff.js';

export interface ReplicaSimSetup {
  /** Every controller replica, in the nodes' failover order. */
  addresses: string[];
  caPem: string;
  keyPem: string;
  /** JSON file holding Array<{ name: string; certPem: string }> for every simulated node. */
  certsFile: string;
  from: number;
  to: number;
  /** Most first connects in progress at once. */
  inFlight: number;
  heartbeatMs: number;
  /** Reconnect backoff (full jitter), like the real node's. */
  backoff: BackoffPolicy;
}

export type ReplicaToWorker =
  | { type: 'setup'; setup: ReplicaSimSetup }
  | { type: 'connect' }
  | { type: 'epoch'; epoch: number }
  | { type: 'stop' };

export type ReplicaFromWorker =
  | { type: 'ready'; sims: number }
  | {
      /** Every sim of this worker is in sync (again). */
      type: 'synced';
      epoch: number;
      at: number;
      snapshots: number;
      deltas: number;
      attempts: number;
      perReplica: number[];
      errors: string[];
    }
  | { type: 'rev'; revision: number; lastAck: number };
