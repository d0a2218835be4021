// Messages between the site-proxy benchmarks and their simulated-proxy worker processes.

export interface ProxySpec {
  /** The node hosting the proxy: its certificate opens the WAN session. */
  host: string;
  site: string;
  certPem: string;
  /** The site's agents this proxy speaks for (host included). */
  agents: string[];
}

export interface ProxySetup {
  address: string;
  caPem: string;
  keyPem: string;
  /** JSON file holding ProxySpec[] for every simulated proxy. */
  proxiesFile: string;
  from: number;
  to: number;
  /** Sessions between "connect started" and "snapshot acked" at once. */
  inFlight: number;
  /** Hello.heartbeat_ms the proxies declare and send at. */
  heartbeatMs: number;
  /** Where each proxy writes what it receives before acknowledging (the simulated disk). */
  diskDir: string;
  /** Reconnect after a lost session (full-jitter exponential backoff). */
  reconnect: { baseMs: number; capMs: number } | undefined;
}

export type ToProxyWorker = { type: 'setup'; setup: ProxySetup } | { type: 'connect' } | { type: 'stop' };

export type FromProxyWorker =
  | { type: 'ready'; proxies: number }
  | { type: 'progress'; synced: number; failed: number }
  | { type: 'synced'; synced: number; failed: number; lastAck: number; revision: number; errors: string[] }
  /** Every live proxy of this worker wrote `revision` and acked it for all its agents. */
  | { type: 'rev'; revision: number; lastAck: number; acked: number }
  | { type: 'lost'; at: number; live: number }
  /** After losses: every proxy of this worker is back in sync (acked a fresh sync). */
  | { type: 'resynced'; at: number; attempts: number; errors: string[] };
