import type { TetherObject } from '../../api/resource.js';
import { writeFileAtomic } from '../../lib/atomic.js';
import type { BackoffPolicy } from '../../lib/backoff.js';
import { type Clock, systemClock, type TimerHandle } from '../../lib/clock.js';
import type { TetherError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { DurableSequence } from '../../lib/sequence.js';
import { StateCache } from '../cache.js';
import { ControllerSet } from '../controllers.js';
import {
  type LoadedIdentity,
  loadIdentity,
  nodePaths,
  saveControllers,
  saveCredentials,
} from '../identity.js';
import { ShellHost } from '../shell.js';
import { type LoopHealth, ReconcileLoop, type StateConsumer } from './reconcile.js';
import { AgentSession, type DurableState, type SessionStatus } from './session.js';
import { SiteLocalSet } from './site-local.js';
import { controllerRenewer, controllerUpstream, type Upstream, type UpstreamChooser } from './upstream.js';

/** What the daemon tells systemd; src/lib/sdnotify.ts implements it, tests pass a fake. */
export interface Notifier {
  ready(): void;
  status(text: string): void;
  stopping(): void;
  startWatchdog(healthy: () => boolean): void;
  stop(): void;
}

/** Written to status.json on every change: `tether status` reads it, even when the daemon
 *  is down (then it shows the last known state and says the daemon is not running). */
export interface NodeStatusFile {
  pid: number;
  node: string;
  site: string;
  /** The controller replica the node uses now (or tries next). */
  controller: string;
  /** Every replica it knows, in failover order (issue 12). */
  controllers: readonly string[];
  startedAt: string;
  updatedAt: string;
  session: SessionStatus;
  cache: { revision: number; snapshotRevision: number; objects: number };
  certNotAfter: string;
  health: LoopHealth;
  reconcile: { passes: number };
}

export interface NodeAgentOptions {
  stateDir: string;
  log: Logger;
  notifier?: Notifier;
  clock?: Clock;
  /** Default: the state directory's identity. */
  identity?: LoadedIdentity;
  /** Default: StateCache in the state directory. */
  cache?: DurableState;
  heartbeatMs?: number;
  backoff?: BackoffPolicy;
  random?: () => number;
  consumers?: StateConsumer[];
  version?: string;
  /** The node's underlay (VTEP) address, declared upstream in every hello. */
  underlayIp?: string;
  /** The controller replicas (shared with the site proxy's WAN session); default: the
   *  identity's, persisted to identity.yaml when a controller advertises others. */
  controllers?: ControllerSet;
  /** Default: always the controller (no proxy known). */
  chooseUpstream?: UpstreamChooser;
  /** The controller as an upstream: the only one that may revoke this node. */
  controllerUpstream?: Upstream;
  /** Default: renewal with the controller over gRPC. */
  renew?: (csrPem: string) => Promise<string>;
  /** Reconcile loop tuning (drift-check interval, wedge threshold, debounce). */
  reconcile?: { intervalMs?: number; wedgedIntervals?: number; debounceMs?: number; retry?: BackoffPolicy };
  /** The upstream revoked this node: the daemon must not keep running (nor be restarted). */
  onRevoked?: (err: TetherError) => void;
  /** Remote shells (docs/shell.md): the user they run as (default root), or false: none. */
  shell?: { user: string } | false;
}

/**
 * The node agent: starts from the state on disk (with or without an upstream), feeds it to
 * the local consumers through the reconcile loop, and keeps the upstream session going.
 */
export class NodeAgent {
  readonly identity: LoadedIdentity;
  readonly cache: DurableState;
  readonly siteLocal: SiteLocalSet;
  readonly session: AgentSession;
  readonly loop: ReconcileLoop;
  readonly shell: ShellHost | undefined;
  readonly controllers: ControllerSet;
  private readonly clock: Clock;
  private readonly startedAt: string;
  private statusTimer: TimerHandle | undefined;

  constructor(private readonly opts: NodeAgentOptions) {
    const { stateDir, log } = opts;
    this.clock = opts.clock ?? systemClock;
    this.startedAt = new Date(this.clock.now()).toISOString();
    const identity = opts.identity ?? loadIdentity(stateDir);
    this.identity = identity;
    this.cache = opts.cache ?? new StateCache(nodePaths(stateDir).cache);
    this.siteLocal = new SiteLocalSet(nodePaths(stateDir).siteLocal);
    this.loop = new ReconcileLoop({
      clock: this.clock,
      log: log.child({ component: 'reconcile' }),
      consumers: opts.consumers ?? [],
      state: this.cache,
      ...opts.reconcile,
      onPass: () => this.writeStatus(),
    });
    this.controllers =
      opts.controllers ??
      new ControllerSet(identity.controllers, (list) => persistControllers(stateDir, identity, list, log));
    const controllers = this.controllers;
    const controller = controllerUpstream(identity, controllers);
    const reportSeq = new DurableSequence(nodePaths(stateDir).reportSeq, {
      now: () => this.clock.now(),
      onDamaged: (file, why) =>
        log.warn({ file, err: why }, 'report sequence file unreadable; continuing above the clock'),
    });
    this.shell =
      opts.shell === false
        ? undefined
        : new ShellHost({
            node: identity.name,
            site: identity.site,
            caPem: () => identity.caPem,
            log: log.child({ component: 'shell' }),
            user: opts.shell?.user ?? 'root',
          });
    this.session = new AgentSession({
      ...(this.shell ? { shell: this.shell } : {}),
      identity,
      cache: this.cache,
      clock: this.clock,
      log: log.child({ component: 'session' }),
      chooseUpstream: opts.chooseUpstream ?? (() => controller),
      controllerUpstream: opts.controllerUpstream ?? controller,
      renew: opts.renew ?? controllerRenewer(identity, controllers),
      learnControllers: (list, from) => {
        const r = controllers.learn(list, from);
        if (r.error) log.warn({ from, err: r.error }, 'controller advertised a bad replica list; ignored');
        else if (r.changed)
          log.info({ from, controllers: controllers.addresses }, 'controller replicas learned');
      },
      saveCredentials: (c) => saveCredentials(stateDir, c),
      siteLocal: this.siteLocal,
      reportSeq: () => reportSeq.next(),
      ...(opts.heartbeatMs !== undefined ? { heartbeatMs: opts.heartbeatMs } : {}),
      ...(opts.backoff ? { backoff: opts.backoff } : {}),
      ...(opts.random ? { random: opts.random } : {}),
      ...(opts.version !== undefined ? { version: opts.version } : {}),
      ...(opts.underlayIp ? { underlayIp: opts.underlayIp } : {}),
      onChange: () => void this.loop.kick(),
      onStatus: () => this.writeStatus(),
      onRevoked: (err) => this.opts.onRevoked?.(err),
    });
  }

  async start(): Promise<void> {
    const { log } = this.opts;
    log.info(
      { node: this.identity.name, site: this.identity.site, revision: this.cache.revision },
      'node starting from disk state',
    );
    for (const c of this.opts.consumers ?? []) await c.start?.(this.cache);
    // Converge local state from disk first: the site keeps working with no upstream.
    this.loop.start();
    this.session.start();
    this.writeStatus();
    this.statusTimer = this.clock.setInterval(() => this.writeStatus(), 10_000);
    this.opts.notifier?.ready();
    // Fed while the loop makes progress, also while a consumer keeps failing (degraded:
    // restarting would not fix a kernel that refuses us); starved only when wedged.
    this.opts.notifier?.startWatchdog(() => this.loop.health().state !== 'wedged');
  }

  async stop(): Promise<void> {
    this.opts.notifier?.stopping();
    this.clock.clear(this.statusTimer);
    this.session.stop();
    await this.loop.stop();
    for (const c of this.opts.consumers ?? []) await c.stop?.();
    this.writeStatus();
    this.opts.notifier?.stop();
  }

  health(): LoopHealth {
    return this.loop.health();
  }

  /** Re-runs the consumers at once (a local endpoint appeared); resolves after that pass. */
  refresh(): Promise<void> {
    return this.loop.kick({ immediate: true });
  }

  /** Hands the node's local endpoints to the session, which reports them upstream. */
  reportEndpoints(eps: TetherObject[]): void {
    this.session.reportEndpoints(eps);
  }

  /** The status file's content (also what a local control API serves). */
  statusSnapshot(): NodeStatusFile {
    const s = this.session.status;
    const cache = this.cache;
    const health = this.health();
    return {
      pid: process.pid,
      node: this.identity.name,
      site: this.identity.site,
      controller: this.controllers.current,
      controllers: this.controllers.addresses,
      startedAt: this.startedAt,
      updatedAt: new Date(this.clock.now()).toISOString(),
      session: s,
      cache: {
        revision: cache.revision,
        snapshotRevision: cache.snapshotRevision,
        objects: cache.list().length,
      },
      // The session keeps this current across renewals.
      certNotAfter: s.certNotAfter,
      health,
      reconcile: { passes: this.loop.passes },
    };
  }

  private writeStatus(): void {
    const file = this.statusSnapshot();
    try {
      writeFileAtomic(nodePaths(this.opts.stateDir).status, JSON.stringify(file, null, 2), 0o644);
    } catch (e) {
      this.opts.log.warn({ err: (e as Error).message }, 'cannot write status file');
    }
    const h = file.health;
    this.opts.notifier?.status(
      `${file.session.phase}, revision ${file.cache.revision}${h.ok ? '' : `, ${h.state}: ${h.reasons[0] ?? ''}`}`,
    );
  }
}

/** Stores a learned replica list (identity.yaml) and keeps the identity in memory current. */
export function persistControllers(
  stateDir: string,
  identity: LoadedIdentity,
  list: readonly string[],
  log: Logger,
): void {
  identity.controllers = [...list];
  try {
    saveControllers(stateDir, list);
  } catch (e) {
    // Not fatal: the node keeps using the list in memory and learns it again next session.
    log.warn({ err: (e as Error).message }, 'cannot store the learned controller list');
  }
}
