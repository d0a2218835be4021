import type { TetherObject } from '../api/resource.js';
import { writeFileAtomic } from '../lib/atomic.js';
import { asTetherError, type TetherError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { StateCache } from './cache.js';
import { type LoadedIdentity, loadIdentity, nodePaths } from './identity.js';
import { ControllerSession, type SessionStatus } from './session.js';

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
  controller: string;
  startedAt: string;
  updatedAt: string;
  session: SessionStatus;
  cache: { revision: number; snapshotRevision: number; objects: number };
  certNotAfter: string;
  health: { ok: boolean; reasons: string[] };
}

/** Something that turns the cached desired state into local effects (the vRouter agent). */
export interface StateConsumer {
  name: string;
  apply(cache: StateCache): Promise<void>;
  start?(cache: StateCache): Promise<void>;
  stop?(): Promise<void>;
}

export interface NodeDaemonOptions {
  stateDir: string;
  log: Logger;
  notifier?: Notifier;
  heartbeatMs?: number;
  consumers?: StateConsumer[];
  version?: string;
  /** The node's underlay (VTEP) address, declared to the controller in every hello. */
  underlayIp?: string;
  /** The controller revoked this node: the daemon must not keep running (nor be restarted). */
  onRevoked?: (err: TetherError) => void;
}

/**
 * `tether node run`: starts from the state on disk (with or without a controller), feeds it
 * to the local consumers, and keeps the controller session going in the background.
 */
export class NodeDaemon {
  private session: ControllerSession | undefined;
  private cache: StateCache | undefined;
  private readonly startedAt = new Date().toISOString();
  private readonly failures = new Map<string, string>();
  private applying: Promise<void> = Promise.resolve();
  private statusTimer: NodeJS.Timeout | undefined;
  private pendingEndpoints: TetherObject[] | undefined;
  private identity: LoadedIdentity | undefined;

  constructor(private readonly opts: NodeDaemonOptions) {}

  async start(): Promise<void> {
    const { stateDir, log } = this.opts;
    const identity = loadIdentity(stateDir);
    this.identity = identity;
    const cache = new StateCache(nodePaths(stateDir).cache);
    this.cache = cache;
    log.info(
      { node: identity.name, site: identity.site, revision: cache.revision },
      'node starting from disk state',
    );
    this.session = new ControllerSession({
      identity,
      stateDir,
      cache,
      log: log.child({ component: 'session' }),
      heartbeatMs: this.opts.heartbeatMs,
      version: this.opts.version,
      ...(this.opts.underlayIp ? { underlayIp: this.opts.underlayIp } : {}),
      onChange: () => this.scheduleApply(),
      onStatus: () => this.writeStatus(),
      onRevoked: (err) => this.opts.onRevoked?.(err),
    });
    if (this.pendingEndpoints) this.session.reportEndpoints(this.pendingEndpoints);
    for (const c of this.opts.consumers ?? []) await c.start?.(cache);
    // Converge local state from disk first: the site keeps working with no controller.
    this.scheduleApply();
    this.session.start();
    this.writeStatus();
    this.statusTimer = setInterval(() => this.writeStatus(), 10_000);
    this.statusTimer.unref();
    this.opts.notifier?.ready();
    this.opts.notifier?.startWatchdog(() => this.health().ok);
  }

  async stop(): Promise<void> {
    this.opts.notifier?.stopping();
    clearInterval(this.statusTimer);
    this.session?.stop();
    await this.applying;
    for (const c of this.opts.consumers ?? []) await c.stop?.();
    this.writeStatus();
    this.opts.notifier?.stop();
  }

  health(): { ok: boolean; reasons: string[] } {
    const reasons = [...this.failures.entries()].map(([k, v]) => `${k}: ${v}`);
    return { ok: reasons.length === 0, reasons };
  }

  /** Re-runs the consumers (e.g. after a local endpoint appeared). */
  refresh(): Promise<void> {
    this.scheduleApply();
    return this.applying;
  }

  /** Hands the node's local endpoints to the session, which reports them upstream. */
  reportEndpoints(eps: TetherObject[]): void {
    this.pendingEndpoints = eps;
    this.session?.reportEndpoints(eps);
  }

  private scheduleApply(): void {
    const cache = this.cache;
    if (!cache) return;
    this.applying = this.applying.then(async () => {
      for (const c of this.opts.consumers ?? []) {
        try {
          await c.apply(cache);
          this.failures.delete(c.name);
        } catch (e) {
          const msg = asTetherError(e).message;
          this.failures.set(c.name, msg);
          this.opts.log.error({ consumer: c.name, err: msg }, 'applying desired state failed');
        }
      }
      this.writeStatus();
    });
  }

  private writeStatus(): void {
    const s = this.session?.status;
    const cache = this.cache;
    if (!s || !cache) return;
    const identity = this.identity;
    if (!identity) return;
    const file: NodeStatusFile = {
      pid: process.pid,
      node: identity.name,
      site: identity.site,
      controller: identity.controller,
      startedAt: this.startedAt,
      updatedAt: new Date().toISOString(),
      session: s,
      cache: {
        revision: cache.revision,
        snapshotRevision: cache.snapshotRevision,
        objects: cache.list().length,
      },
      // The session keeps this current across renewals.
      certNotAfter: s.certNotAfter,
      health: this.health(),
    };
    try {
      writeFileAtomic(nodePaths(this.opts.stateDir).status, JSON.stringify(file, null, 2), 0o644);
    } catch (e) {
      this.opts.log.warn({ err: (e as Error).message }, 'cannot write status file');
    }
    this.opts.notifier?.status(
      `${s.phase}, revision ${cache.revision}${this.health().ok ? '' : ', unhealthy'}`,
    );
  }
}
