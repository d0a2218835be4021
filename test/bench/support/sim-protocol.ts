// Messages between the benchmark and its simulated-node worker processes (over fork IPC).

export interface SimSetup {
  address: string;
  caPem: string;
  keyPem: string;
  /** JSON file holding Array<{ name: string; certPem: string }> for every simulated node. */
  certsFile: string;
  from: number;
  to: number;
  /** Most sessions this worker has between "connect started" and "snapshot acked". */
  inFlight: number;
  heartbeatMs: number;
}

export type ToWorker = { type: 'setup'; setup: SimSetup } | { type: 'connect' } | { type: 'stop' };

export type FromWorker =
  | { type: 'ready'; sims: number }
  | { type: 'progress'; synced: number; failed: number }
  | {
      type: 'synced';
      synced: number;
      failed: number;
      firstStart: number;
      lastAck: number;
      /** Snapshot revision acknowledged (the same for every sim when nothing changed). */
      revision: number;
      errors: string[];
    }
  | { type: 'rev'; revision: number; lastAck: number; acked: number }
  | { type: 'lost'; node: string; why: string };
