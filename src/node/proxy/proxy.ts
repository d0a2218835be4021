import { join } from 'node:path';
import type { ProbeResponse } from '../../api/gen/tether/v1/ProbeResponse.js';
import type { TetherObject } from '../../api/resource.js';
import type { BackoffPolicy } from '../../lib/backoff.js';
import type { ConnectionLimits, ListenerStats } from '../../lib/listener.js';
import type { Logger } from '../../lib/log.js';
import { StateCache } from '../cache.js';
import type { ControllerSet } from '../controllers.js';
import { ProxyCore } from './core.js';
import { Election, type Leader } from './election.js';
import { type RosterEntry, rosterOf } from './roster.js';
import { ProxyServer } from './server.js';
import { addShellDrops, noShellDrops, type ShellDropCounts } from './shell-relay.js';
import { DEFAULT_PROXY_PORT } from './tls.js';
import { WanSession, type WanStatus } from './wan.js';

export interface SiteProxyOptions {
  /** The node daemon's state directory; the proxy keeps its own under `proxy/`. */
  stateDir: string;
  node: string;
  site: string;
  /** The controller replicas (the WAN session's peers), shared with the node's agent. */
  controllers: ControllerSet;
  caPem: string;
  credentials: { keyPem: string; certPem: string };
  /** This node's underlay address: where the proxy port listens. */
  vtep: string;
  /** Where the port listens when that is not the VTEP (tests: VTEPs the host does not have). */
  listenHost?: string;
  /** `--proxy-port` (default 7444). */
  port?: number;
  log: Logger;
  /** The Node summaries this node's own agent holds: the roster while standby. */
  agentNodes?: () => readonly TetherObject[];
  /** The slice this node's own agent holds: the seed at takeover. */
  agentSlice?: () => { revision: number; objects: readonly TetherObject[] } | undefined;
  /** One object of this node's own agent cache: the proxy's slice shares equal objects. */
  agentObject?: (kind: string, name: string) => TetherObject | undefined;
  probeMs?: number;
  probeTimeoutMs?: number;
  wanHeartbeatMs?: number;
  agentHeartbeatMs?: number;
  backoff?: BackoffPolicy;
  version?: string;
  /** The site's active proxy changed: the agent should reconnect to the new choice. */
  onLeader?: (leader: Leader | undefined) => void;
  /** Tests: the proxy port of a candidate (several nodes on one host). */
  addressOf?: (c: RosterEntry) => string;
  /** Bounds of the proxy port's connections (default PROXY_CONNECTION_LIMITS). */
  connectionLimits?: Partial<ConnectionLimits>;
}

/** What an agent syncs from (docs/proxy.md "Roles"). */
export type UpstreamChoice =
  | { kind: 'proxy'; node: string; address: string }
  | { kind: 'controller'; address: string };

export interface SiteProxyStatus {
  active: boolean;
  activeSince?: string;
  leader?: Leader;
  revision: number;
  agents: number;
  wan?: WanStatus;
  siteLocal: number;
  /** Remote shells relayed now (0 unless active), and the relay's dropped frames since the
   *  daemon started, over every spell as the active proxy (docs/shell.md). */
  shells: { open: number; dropped: ShellDropCounts };
}

/**
 * The site proxy component of a node daemon: the proxy port (Probe always, NodeSession
 * while active), the election, and — while this node is the site's active proxy — the
 * durable core and the site's WAN session.
 */
export class SiteProxy {
  private readonly server: ProxyServer;
  private readonly election: Election;
  private core: ProxyCore | undefined;
  private wan: WanSession | undefined;
  private activeSince = 0;
  private lastRoster: ReadonlyMap<string, RosterEntry> | undefined;
  private boundPort = 0;
  /** Dropped shell frames of the cores of earlier active spells: the counts stay monotonic. */
  private shellDropsBefore: ShellDropCounts = noShellDrops();

  constructor(private readonly opts: SiteProxyOptions) {
    this.server = new ProxyServer({
      site: opts.site,
      caPem: opts.caPem,
      credentials: opts.credentials,
      log: opts.log,
      core: () => this.core,
      probe: () => this.probeAnswer(),
      roster: () => this.roster(),
      ...(opts.connectionLimits ? { limits: opts.connectionLimits } : {}),
    });
    this.election = new Election({
      node: opts.node,
      site: opts.site,
      caPem: opts.caPem,
      credentials: opts.credentials,
      port: opts.port ?? DEFAULT_PROXY_PORT,
      roster: () => this.roster(),
      log: opts.log,
      probeMs: opts.probeMs,
      probeTimeoutMs: opts.probeTimeoutMs,
      addressOf: opts.addressOf,
      onLeader: opts.onLeader,
      onActive: (a) => (a ? this.activate() : this.deactivate()),
    });
  }

  get port(): number {
    return this.boundPort;
  }

  get dir(): string {
    return join(this.opts.stateDir, 'proxy');
  }

  async start(): Promise<void> {
    this.boundPort = await this.server.listen(
      this.opts.listenHost ?? this.opts.vtep,
      this.opts.port ?? DEFAULT_PROXY_PORT,
    );
    this.election.start();
  }

  async stop(): Promise<void> {
    this.election.stop();
    this.deactivate();
    await this.server.close();
  }

  /** The upstream chooser: the site's active proxy, else the controller directly. */
  /** An object of the active proxy's slice (the agent on this node shares it). */
  sharedObject(kind: string, name: string): TetherObject | undefined {
    return this.core?.cache.get(kind, name);
  }

  upstream(): UpstreamChoice {
    const l = this.election.leader;
    if (l?.address) return { kind: 'proxy', node: l.node, address: l.address };
    return { kind: 'controller', address: this.opts.controllers.current };
  }

  /** The proxy port's connection counters (refused over a cap, handshakes cut, open). */
  connectionStats(): ListenerStats {
    return this.server.connectionStats();
  }

  /** Serves one Sync call from an in-process transport (tests; see ProxyServer.handleSync). */
  handleSync(call: Parameters<ProxyServer['handleSync']>[0]): void {
    this.server.handleSync(call);
  }

  /** The active core, for in-process agents and tests. */
  activeCore(): ProxyCore | undefined {
    return this.core;
  }

  status(): SiteProxyStatus {
    return {
      active: this.election.active,
      ...(this.activeSince ? { activeSince: new Date(this.activeSince).toISOString() } : {}),
      ...(this.election.leader ? { leader: this.election.leader } : {}),
      revision: this.core?.revision ?? 0,
      agents: this.core?.agentCount() ?? 0,
      ...(this.wan ? { wan: { ...this.wan.status } } : {}),
      siteLocal: this.core?.local.set.endpoints.length ?? 0,
      shells: {
        open: this.core?.shells.count() ?? 0,
        dropped: this.core
          ? addShellDrops(this.shellDropsBefore, this.core.shells.dropped)
          : { ...this.shellDropsBefore },
      },
    };
  }

  private probeAnswer(): ProbeResponse {
    return {
      node: this.opts.node,
      active: this.core !== undefined,
      active_since: this.activeSince,
      revision: this.core?.revision ?? 0,
      wan_up: this.wan?.up ?? false,
    };
  }

  /** The roster: the active core's slice, else the local agent's, else the proxy's last. */
  private roster(): ReadonlyMap<string, RosterEntry> {
    if (this.core) return this.core.siteRoster();
    const nodes = this.opts.agentNodes?.() ?? this.opts.agentSlice?.()?.objects;
    if (nodes && nodes.length > 0) {
      this.lastRoster = rosterOf(nodes, this.opts.site);
      return this.lastRoster;
    }
    if (!this.lastRoster) {
      // The proxy's own slice from an earlier active spell (read once; standbys hold nothing).
      const c = new StateCache(join(this.dir, 'slice.json'));
      this.lastRoster = rosterOf(c.list('Node'), this.opts.site);
    }
    return this.lastRoster;
  }

  private activate(): void {
    if (this.core) return;
    const core = new ProxyCore({
      dir: this.dir,
      node: this.opts.node,
      site: this.opts.site,
      log: this.opts.log.child({ component: 'proxy' }),
      heartbeatMs: this.opts.agentHeartbeatMs,
      onRosterChange: (prev, next) => this.server.dropRevoked(prev, next),
      encode: this.server.encode,
    });
    try {
      const seed = this.opts.agentSlice?.();
      if (seed) core.seed(seed.revision, seed.objects);
      // Both slices were loaded from disk (or the seed already shares): one copy of each object.
      if (this.opts.agentObject) core.cache.share(this.opts.agentObject);
    } catch (e) {
      // The election stays standby and retries; nothing of this attempt stays open.
      core.stop('site proxy failed to start');
      throw e;
    }
    core.start();
    this.core = core;
    this.activeSince = Date.now();
    this.wan = new WanSession({
      controllers: this.opts.controllers,
      caPem: this.opts.caPem,
      credentials: this.opts.credentials,
      node: this.opts.node,
      underlayIp: this.opts.vtep,
      core,
      log: this.opts.log.child({ component: 'proxy-wan' }),
      heartbeatMs: this.opts.wanHeartbeatMs,
      backoff: this.opts.backoff,
      version: this.opts.version,
    });
    this.wan.start();
  }

  private deactivate(): void {
    this.wan?.stop();
    this.wan = undefined;
    this.server.endSessions();
    const core = this.core;
    this.core = undefined;
    this.activeSince = 0;
    if (core) {
      this.lastRoster = core.siteRoster();
      core.stop('this node is no longer the site proxy');
      // After stop: whatever its last frames dropped is counted too.
      this.shellDropsBefore = addShellDrops(this.shellDropsBefore, core.shells.dropped);
    }
  }
}
