import { Counter, Histogram, Registry } from 'prom-client';
import { asTetherError } from '../lib/errors.js';
import { lazyCounter, lazyGauge } from '../lib/prom.js';
import type { Leadership } from './leader.js';
import type { ControllerStore } from './mirror.js';
import type { NodeStatus } from './registry.js';
import type { ControllerServer } from './server.js';

/**
 * The controller's `tether_controller_*` families (docs/observability.md). Label values are
 * fixed sets (roles, results that are TetherError codes, node phases), never something a
 * peer sends: a node cannot grow the scrape.
 */

/** Commit times of recent revisions, for apply→ack latency; older revisions are not timed. */
const RECENT_REVISIONS = 4096;

const NODE_PHASES = ['Pending', 'Approved', 'Revoked', 'Reset'] as const;

export class ControllerMetrics {
  readonly registry = new Registry();
  private readonly applies: Counter<'result'>;
  private readonly enrollments: Counter<'result'>;
  private readonly txnSeconds: Histogram<'result'>;
  private readonly ackSeconds: Histogram;
  private readonly reconcileRuns: Counter;
  private readonly reconcileErrors: Counter;
  private readonly committedAt = new Map<number, number>();
  private unsubscribe: (() => void) | undefined;

  constructor() {
    const r = [this.registry];
    this.applies = new Counter({
      name: 'tether_controller_applies_total',
      help: 'Admin.Apply calls by result (ok or a TETHER_E_ code)',
      labelNames: ['result'],
      registers: r,
    });
    this.enrollments = new Counter({
      name: 'tether_controller_enrollments_total',
      help: 'Enrollment requests by result (approved, pending or a TETHER_E_ code)',
      labelNames: ['result'],
      registers: r,
    });
    this.txnSeconds = new Histogram({
      name: 'tether_controller_store_txn_duration_seconds',
      help: 'Store transaction latency (durable write included), by result',
      labelNames: ['result'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: r,
    });
    this.ackSeconds = new Histogram({
      name: 'tether_controller_apply_ack_duration_seconds',
      help: "Time from a revision's commit to a session's acknowledgement that it is on the peer's disk",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: r,
    });
    this.reconcileRuns = new Counter({
      name: 'tether_controller_reconcile_runs_total',
      help: 'Network reconciler runs (VNI and address-block assignment)',
      registers: r,
    });
    this.reconcileErrors = new Counter({
      name: 'tether_controller_reconcile_errors_total',
      help: 'Network reconciler runs that failed',
      registers: r,
    });
  }

  /** For ControllerServerDeps.onApply. */
  readonly onApply = (result: string): void => {
    this.applies.inc({ result });
  };

  /**
   * Times the store's transactions and follows commits. The Store port has no hooks, so the
   * instance's `txn` is wrapped here rather than every store implementation growing one.
   */
  instrumentStore(store: ControllerStore): void {
    const txn = store.txn.bind(store);
    store.txn = async (ops, extras, opts) => {
      const end = this.txnSeconds.startTimer();
      try {
        const res = await txn(ops, extras, opts);
        end({ result: 'ok' });
        return res;
      } catch (e) {
        end({ result: asTetherError(e).code });
        throw e;
      }
    };
    this.unsubscribe = store.subscribe((events) => {
      const now = performance.now();
      for (const e of events) if (!this.committedAt.has(e.revision)) this.committedAt.set(e.revision, now);
      // Maps iterate in insertion order: the first keys are the oldest revisions.
      for (const k of this.committedAt.keys()) {
        if (this.committedAt.size <= RECENT_REVISIONS) break;
        this.committedAt.delete(k);
      }
    });
    lazyGauge(this.registry, 'tether_controller_store_revision', 'Current store revision', [], () => [
      [{}, store.revision()],
    ]);

    lazyGauge(this.registry, 'tether_controller_nodes', 'Node records by phase', ['phase'], () => {
      const counts = new Map<string, number>(NODE_PHASES.map((p) => [p, 0]));
      for (const n of store.list('Node').items) {
        const phase = (n.object.status as NodeStatus | undefined)?.phase;
        if (phase && counts.has(phase)) counts.set(phase, (counts.get(phase) ?? 0) + 1);
      }
      return [...counts].map(([phase, v]) => [{ phase }, v] as const);
    });
  }

  /** tether_controller_leader: 1 on the replica that runs the single writers. */
  instrumentLeadership(leadership: Leadership): void {
    lazyGauge(
      this.registry,
      'tether_controller_leader',
      'Whether this replica is the leader (runs VNI/block allocation, compaction): 1 or 0',
      [],
      () => [[{}, leadership.isLeader() ? 1 : 0]],
    );
    lazyGauge(
      this.registry,
      'tether_controller_leader_term',
      'The election term this replica holds (etcd revision at which it began); 0 when not the leader or on SQLite',
      [],
      () => [[{}, leadership.term()]],
    );
    lazyGauge(
      this.registry,
      'tether_controller_datastore_reachable',
      'Whether this replica hears from its datastore (an etcd lease call answered within the lease TTL); always 1 on SQLite',
      [],
      () => [[{}, leadership.reachable() ? 1 : 0]],
    );
  }

  /** Reads sessions, shells and connections at scrape time; times acks and enrollments. */
  attach(server: ControllerServer): void {
    const { hub } = server;
    lazyGauge(
      this.registry,
      'tether_controller_sessions',
      'Connected sessions by role (node: a node of its own; proxy: a site proxy for its site)',
      ['role'],
      () => [
        [{ role: 'node' }, hub.count()],
        [{ role: 'proxy' }, hub.proxyCount()],
      ],
    );
    lazyCounter(
      this.registry,
      'tether_controller_session_syncs_total',
      'Sessions brought up to date when they opened, by how: delta (resumed from the revision the peer held) or snapshot',
      ['kind'],
      () => [
        [{ kind: 'delta' }, hub.initialSyncs.delta],
        [{ kind: 'snapshot' }, hub.initialSyncs.snapshot],
      ],
    );
    lazyGauge(this.registry, 'tether_controller_shell_sessions', 'Remote shells open now', [], () => [
      [{}, server.shell?.count() ?? 0],
    ]);
    lazyGauge(
      this.registry,
      'tether_controller_connections',
      'TCP connections open on the gRPC port',
      ['state'],
      () => {
        const s = server.connectionStats();
        return [
          [{ state: 'open' }, s.open],
          [{ state: 'authenticated' }, s.authenticated],
        ];
      },
    );
    lazyCounter(
      this.registry,
      'tether_controller_connections_refused_total',
      'Connections closed by the listener, by reason',
      ['reason'],
      () => {
        const s = server.connectionStats();
        return [
          [{ reason: 'over_cap' }, s.refusedOverCap],
          [{ reason: 'handshake_timeout' }, s.handshakeTimeouts],
          [{ reason: 'tls_error' }, s.tlsErrors],
          [{ reason: 'idle' }, s.idleClosed],
          [{ reason: 'age' }, s.ageClosed],
        ];
      },
    );

    // Same reasoning as instrumentStore: the hub and registry are wrapped, not edited.
    const onMessage = hub.onMessage.bind(hub);
    hub.onMessage = (s, msg) => {
      const before = s.acked;
      onMessage(s, msg);
      if (s.acked > before) {
        const at = this.committedAt.get(s.acked);
        if (at !== undefined) this.ackSeconds.observe((performance.now() - at) / 1000);
      }
    };
    const enroll = server.registry.enroll.bind(server.registry);
    server.registry.enroll = async (input) => {
      try {
        const o = await enroll(input);
        this.enrollments.inc({ result: o.status });
        return o;
      } catch (e) {
        this.enrollments.inc({ result: asTetherError(e).code });
        throw e;
      }
    };
    const reconcile = server.networks.reconcile.bind(server.networks);
    // reconcile() is async: a failure is a rejection, not a throw.
    server.networks.reconcile = async () => {
      this.reconcileRuns.inc();
      try {
        return await reconcile();
      } catch (e) {
        this.reconcileErrors.inc();
        throw e;
      }
    };
  }

  close(): void {
    this.unsubscribe?.();
  }
}
