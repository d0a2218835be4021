import { stringify } from 'yaml';
import { MAX_CONTROLLERS, parseControllerList } from '../lib/controller-addresses.js';
import { TetherError } from '../lib/errors.js';
import { parseYaml, readInputFile } from '../lib/input.js';
import { DEFAULT_CONNECTION_LIMITS } from '../lib/listener.js';

export interface ControllerConfig {
  /** host:port the gRPC server binds. */
  listen: string;
  /** host:port nodes and the CLI should dial (written into admin.yaml and join instructions). */
  advertise: string;
  /** Node certificate lifetime; nodes renew at 75% of it. */
  nodeCertSeconds: number;
  /** Seconds between controller→node heartbeats; a node gives up after 3 missed. */
  heartbeatSeconds: number;
  /** How many revisions of history to keep for resuming nodes without a snapshot. */
  historyRevisions: number;
  /** Largest accepted gRPC message. */
  maxMessageBytes: number;
  /** A connection must finish its TLS handshake within this long. */
  handshakeTimeoutMs: number;
  /** A connection without a client certificate from our CA is closed after this long with no call in progress. */
  unauthenticatedIdleMs: number;
  /** …and after this long in total. */
  unauthenticatedMaxAgeMs: number;
  /** Connections from one peer address, in any state. */
  maxConnectionsPerPeer: number;
  /** Connections from one peer address still handshaking or without a valid client certificate. */
  maxUnauthenticatedPerPeer: number;
  /** On shutdown, calls get this long to finish before every connection is destroyed. */
  shutdownGraceMs: number;
  /** The systemd watchdog is fed only while event-loop lag stays under this. */
  watchdogMaxLagMs: number;
  /** A node's endpoint reports are handled at most once per this long; a newer one replaces a waiting one. */
  endpointReportIntervalMs: number;
  /** Bytes a session may have written but not yet taken by the transport; past it, deltas are
   *  dropped for that session and it gets a fresh snapshot once it drains. */
  sendQueueBytes: number;
  /** A remote shell without operator input for this long ends (docs/shell.md). */
  shellIdleSeconds: number;
  /** A remote shell ends after this long whatever happens. */
  shellMaxSeconds: number;
  /** `off` or IPv4:PORT of /metrics, /livez and /readyz (docs/observability.md). */
  metricsListen: string;
  /** Where resources live: '' (the default) is SQLite in the data directory; else a
   *  `--datastore` URL: sqlite:PATH or etcd[s]://host:port,...[/prefix/] (docs/controller.md). */
  datastore: string;
  /** host:port of every controller replica on this datastore, in the failover order nodes
   *  should use (issue 12): sent to every session after its initial sync, so nodes and site
   *  proxies learn new replicas. Empty (the default): nothing is advertised. At most 8. */
  replicas: string[];
  /** TTL (s) of the leader election's etcd lease: a dead leader is replaced within about
   *  this long (docs/controller.md, "Replicas"). Unused on SQLite. */
  leaseTtlSeconds: number;
}

export const DEFAULT_CONFIG: ControllerConfig = {
  listen: '0.0.0.0:7443',
  advertise: '127.0.0.1:7443',
  nodeCertSeconds: 30 * 86_400,
  heartbeatSeconds: 5,
  historyRevisions: 100_000,
  maxMessageBytes: 4 * 1024 * 1024,
  handshakeTimeoutMs: DEFAULT_CONNECTION_LIMITS.handshakeTimeoutMs,
  unauthenticatedIdleMs: DEFAULT_CONNECTION_LIMITS.unauthenticatedIdleMs,
  unauthenticatedMaxAgeMs: DEFAULT_CONNECTION_LIMITS.unauthenticatedMaxAgeMs,
  maxConnectionsPerPeer: DEFAULT_CONNECTION_LIMITS.maxConnectionsPerPeer,
  maxUnauthenticatedPerPeer: DEFAULT_CONNECTION_LIMITS.maxUnauthenticatedPerPeer,
  shutdownGraceMs: 2000,
  watchdogMaxLagMs: 5000,
  endpointReportIntervalMs: 500,
  sendQueueBytes: 8 * 1024 * 1024,
  shellIdleSeconds: 900,
  shellMaxSeconds: 4 * 3600,
  metricsListen: 'off',
  datastore: '',
  replicas: [],
  leaseTtlSeconds: 5,
};

export function loadControllerConfig(path: string): ControllerConfig {
  let raw: unknown;
  try {
    raw = parseYaml(readInputFile(path), { source: path });
  } catch (e) {
    throw new TetherError('TETHER_E_STATE', `cannot read controller config: ${(e as Error).message}`, {
      file: path,
    });
  }
  const cfg = { ...DEFAULT_CONFIG, ...(raw as Partial<ControllerConfig>) };
  for (const [k, v] of Object.entries(DEFAULT_CONFIG)) {
    const got = (cfg as Record<string, unknown>)[k];
    if (typeof got !== typeof v) {
      throw new TetherError('TETHER_E_INVALID', `wrong type for ${k}`, {
        file: path,
        field: k,
        expected: typeof v,
      });
    }
    if (Array.isArray(v)) {
      // The only list: controller addresses, checked like a node checks them.
      if (!Array.isArray(got))
        throw new TetherError('TETHER_E_INVALID', `wrong type for ${k}`, {
          file: path,
          field: k,
          expected: 'a list',
        });
      try {
        if (got.length > 0) parseControllerList(got, k);
      } catch (e) {
        throw new TetherError('TETHER_E_INVALID', (e as Error).message, {
          file: path,
          field: k,
          expected: `0 to ${MAX_CONTROLLERS} controller addresses HOST:PORT`,
        });
      }
    }
    if (typeof got === 'number' && !(Number.isFinite(got) && got >= 0)) {
      throw new TetherError('TETHER_E_INVALID', `${k} is ${got}`, {
        file: path,
        field: k,
        expected: 'a finite number, 0 or more',
      });
    }
  }
  return cfg;
}

export function renderControllerConfig(cfg: ControllerConfig): string {
  return stringify(cfg);
}
