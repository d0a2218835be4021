import { join } from 'node:path';
import { detectUplink, l3BridgeUplinkAdvice } from '../kernel/detect.js';
import { IprouteKernel } from '../kernel/iproute2.js';
import { type Clock, systemClock } from '../lib/clock.js';
import type { TetherError } from '../lib/errors.js';
import { type CommandRunner, ProcessRunner } from '../lib/exec.js';
import type { Logger } from '../lib/log.js';
import { type MetricsListen, type MetricsServer, startMetricsServer } from '../lib/metrics-server.js';
import { NodeAgent, type Notifier, persistControllers } from './agent/daemon.js';
import type { StateConsumer } from './agent/reconcile.js';
import { controllerUpstream, type Upstream, type UpstreamChooser } from './agent/upstream.js';
import { type ControlApi, controlSocketPath, EventRing, startControlApi } from './control-api.js';
import { ControllerSet } from './controllers.js';
import { GatewayConsumer, type GatewayRole, toReport } from './gateway/consumer.js';
import { GatewayHa, haGateway } from './gateway/ha-role.js';
import { loadIdentity } from './identity.js';
import { liveStatus } from './live-status.js';
import { nodeMetrics } from './metrics.js';
import { NodeNetworking } from './networking.js';
import { siteProxyRole } from './proxy/role.js';
import { trafficReader } from './traffic.js';

/** The vRouter side of `tether node run` (absent with --no-vrouter). */
export interface VRouterRunOptions {
  underlayIf?: string;
  vtepIp?: string;
  underlayMtu?: number;
  breakoutIf?: string;
  netnsPrefix: string;
  cniSocket: string;
  sweepMs: number;
}

export interface NodeRunOptions {
  stateDir: string;
  log: Logger;
  notifier?: Notifier;
  clock?: Clock;
  runner?: CommandRunner;
  heartbeatMs: number;
  version?: string;
  vrouter?: VRouterRunOptions;
  /** `--proxy on|off` and `--proxy-port` (docs/proxy.md). */
  proxy: {
    enabled: boolean;
    port: number;
    /** Heartbeat interval of the proxy's WAN session (ms; default 30 s, docs/proxy.md). */
    wanHeartbeatMs?: number;
    /** Where the proxy listens when there is no VTEP (`--no-vrouter`: tests, benchmarks). */
    address?: string;
  };
  /** Drift-check interval of the reconcile loop (ms). */
  reconcileIntervalMs?: number;
  /** The local control API's socket (default `<state-dir>/control.sock`; docs/node.md). */
  controlSocket?: string;
  /** Recent events the control API serves (the CLI tees warnings and `event` lines in). */
  events?: EventRing;
  /** Remote shells (docs/shell.md): the user they run as, or false: refused. Default root. */
  shell?: { user: string } | false;
  /** `--metrics-listen`: /metrics, /livez, /readyz (docs/observability.md); default off. */
  metricsListen?: MetricsListen;
  /** The local gateway (docs/gateway.md): BIRD driven from the site's Gateway resource. */
  gateway?: {
    /** The bird binary (default `bird` on PATH). */
    birdBin?: string;
    /** The HA decision (src/node/gateway/ha.ts); without one this node is always active. */
    role?: () => GatewayRole;
    /** HA timers (tests): heartbeat interval, dead-after, preempt hold (ms). */
    haTimers?: { intervalMs?: number; deadAfterMs?: number; preemptHoldMs?: number };
  };
}

/** Context a role gets: the running agent and what the daemon was started with. */
export interface RoleContext {
  agent: NodeAgent;
  options: NodeRunOptions;
  log: Logger;
  /** The node's underlay (VTEP) address, when it runs a vRouter. */
  underlayIp?: string;
  /** Replaces how the agent picks its upstream (takes effect at the next connect; call
   *  `agent.session.reconnect()` to apply it now). */
  setUpstreamChooser(c: UpstreamChooser): void;
  /** The controller as an upstream (what a chooser falls back to). */
  controller: Upstream;
}

/**
 * Something that runs beside the agent in this daemon: started after the agent, stopped
 * before it (the site proxy of src/node/proxy/ is one, docs/proxy.md).
 */
export interface NodeRole {
  name: string;
  start(ctx: RoleContext): Promise<void>;
  stop(): Promise<void>;
}

export interface RunningNode {
  agent: NodeAgent;
  networking: NodeNetworking | undefined;
  roles: readonly NodeRole[];
  /** Resolves when the daemon has stopped on its own: the upstream revoked the node. */
  revoked: Promise<TetherError>;
  /** Stops roles, then the agent (session, loop, consumers). */
  stop(): Promise<void>;
  /** Port of /metrics when metrics are on. */
  metricsPort?: number | undefined;
}

/**
 * The node daemon's composition root (`tether node run`), like src/controller/run.ts for the
 * controller: wires the agent (session, durable cache, reconcile loop) to its ports (clock,
 * upstream, kernel) and starts the roles.
 */
export async function startNode(opts: NodeRunOptions): Promise<RunningNode> {
  const { log } = opts;
  const clock = opts.clock ?? systemClock;
  const identity = loadIdentity(opts.stateDir);
  const consumers: StateConsumer[] = [];
  let networking: NodeNetworking | undefined;
  let underlayIp: string | undefined;
  // The agent is made after networking (it is one of its consumers), and networking asks
  // the agent for the SiteLocal set: a late-bound reference joins them.
  let agent: NodeAgent | undefined;
  if (opts.vrouter) {
    const v = opts.vrouter;
    const runner = opts.runner ?? new ProcessRunner();
    const up = await detectUplink(runner, v.underlayIf);
    if (up.kind === 'bridge')
      log.warn(
        { uplink: up.ifname, kind: up.kind },
        `node: the underlay uplink ${up.ifname} is a Linux bridge holding the node's address: VXLAN packets routed into it are segmented in software (the overlay runs at a fraction of the underlay); ${l3BridgeUplinkAdvice(up.ifname)}`,
      );
    underlayIp = v.vtepIp ?? up.address;
    networking = new NodeNetworking({
      stateDir: opts.stateDir,
      node: identity.name,
      site: identity.site,
      underlay: { ifname: up.ifname, vtepIp: underlayIp, mtu: v.underlayMtu ?? up.mtu },
      netnsPrefix: v.netnsPrefix,
      ...(v.breakoutIf ? { breakout: { uplinkIfname: v.breakoutIf } } : {}),
      cniSocket: v.cniSocket,
      sweepMs: v.sweepMs,
      runner,
      log,
      siteLocal: () => agent?.siteLocal.list() ?? [],
      siteLocalNodes: () => agent?.siteLocal.nodes() ?? [],
    });
    consumers.push(networking);
  }

  let ha: GatewayHa | undefined;
  // The monitor could not start (its port taken): the node judges alone, as in a split.
  let haFailed = false;
  // ── Local gateway ──────────────────────────────────────────────────────────────────────
  // After the vRouter in the same pass: floating IPs bind to the networks it just planned.
  // Idle (no BIRD) until the slice holds a Gateway naming this node's site.
  const gateway = new GatewayConsumer({
    node: identity.name,
    site: identity.site,
    ...(underlayIp ? { vtep: underlayIp } : {}),
    stateDir: join(opts.stateDir, 'gateway'),
    kernel: new IprouteKernel(opts.runner ?? new ProcessRunner()),
    log: log.child({ component: 'gateway' }),
    ...(opts.gateway?.birdBin ? { birdBin: opts.gateway.birdBin } : {}),
    // Gateway HA (below, once the agent's cache exists): its role unless the caller decides.
    // Before the monitor runs (the first pass of a restart), an HA gateway node is standby:
    // it must not claim the role before hearing whether the other node holds it.
    role:
      opts.gateway?.role ??
      (() =>
        ha
          ? ha.role()
          : underlayIp && !haFailed && agent && haGateway(identity.name, identity.site, agent.cache.list())
            ? 'standby'
            : 'active'),
    roleReason: () => ha?.reason(),
    // Which gateway node is active, from the heartbeats this node hears (also as the
    // endpoint's node of another node's floating IP): its workloads' new outbound flows
    // leave through it (docs/gateway.md "Floating IPs on another node").
    activeGateway: () => ha?.active(),
    heartbeats: () => ha?.heartbeats(),
    network: () => networking?.planned(),
    localEndpoints: () => networking?.localEndpointObjects() ?? [],
    fipReturns: () => networking?.fipReturns() ?? [],
    // No Gateway any more: an empty report clears this node from the controller's view.
    onStatus: (s) =>
      agent?.session.reportGateway(
        s
          ? toReport(s)
          : {
              gateway: '',
              role: '',
              running: false,
              config_hash: '',
              error: '',
              peers: [],
              bound: [],
              announced: 0,
            },
      ),
  });
  consumers.push(gateway);

  // ── Upstream selection ─────────────────────────────────────────────────────────────────
  // With no proxy known (or --proxy off) the agent syncs from the controller directly. The
  // site proxy role replaces `chooseUpstream` with its election-based chooser ("the active
  // proxy of my site at <vtep>:<proxy port>, else the controller"), reading the site roster
  // from the cache (siteRoster, src/node/agent/roster.ts).
  // One set of controller replicas for the session, renewal and the site proxy's WAN: a
  // replica one of them finds dead moves all of them on (docs/node.md "Controller addresses").
  const controllers = new ControllerSet(identity.controllers, (list) =>
    persistControllers(opts.stateDir, identity, list, log),
  );
  const controller = controllerUpstream(identity, controllers);
  let chooseUpstream: UpstreamChooser = () => controller;
  const chooser: UpstreamChooser = (ctx) => chooseUpstream(ctx);

  let revoke: (err: TetherError) => void = () => {};
  const revoked = new Promise<TetherError>((resolve) => {
    revoke = resolve;
  });
  // --proxy off: no proxy role, the agent syncs from the controller directly.
  const proxyRole = opts.proxy.enabled ? siteProxyRole() : undefined;
  const roles: NodeRole[] = proxyRole ? [proxyRole] : [];
  let control: ControlApi | undefined;
  let metricsServer: MetricsServer | undefined;
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await metricsServer?.close();
      await control?.close();
      ha?.stop();
      for (const r of [...roles].reverse()) {
        try {
          await r.stop();
        } catch (e) {
          log.warn({ role: r.name, err: (e as Error).message }, 'role did not stop cleanly');
        }
      }
      await agent?.stop();
    })();
    return stopping;
  };

  agent = new NodeAgent({
    stateDir: opts.stateDir,
    log,
    clock,
    identity,
    heartbeatMs: opts.heartbeatMs,
    consumers,
    chooseUpstream: chooser,
    controllerUpstream: controller,
    controllers,
    ...(opts.notifier ? { notifier: opts.notifier } : {}),
    ...(opts.version !== undefined ? { version: opts.version } : {}),
    // Without a vRouter, a proxy candidate declares its --proxy-address as its underlay: the
    // site's election ranks only nodes with a recorded VTEP (docs/proxy.md).
    ...(underlayIp
      ? { underlayIp }
      : opts.proxy.enabled && opts.proxy.address
        ? { underlayIp: opts.proxy.address }
        : {}),
    ...(opts.reconcileIntervalMs ? { reconcile: { intervalMs: opts.reconcileIntervalMs } } : {}),
    ...(opts.shell !== undefined ? { shell: opts.shell } : {}),
    onRevoked: (err) => {
      log.error({ err: err.message }, 'node revoked; stopping');
      stop().then(
        () => revoke(err),
        () => revoke(err),
      );
    },
  });
  const running = agent;
  if (networking) {
    networking.onEndpoints = (eps) => running.reportEndpoints(eps);
    networking.onLocalChange = () => running.refresh();
  }
  await agent.start();

  // ── Roles ──────────────────────────────────────────────────────────────────────────────
  // Things with start/stop that run beside the agent, started in order after it and stopped
  // in reverse before it. The site proxy (src/node/proxy/, docs/proxy.md) is pushed onto
  // `roles` here when `opts.proxy.enabled`, listening on `opts.proxy.port`; it installs its
  // chooser with `ctx.setUpstreamChooser`.
  const ctx: RoleContext = {
    agent,
    options: opts,
    log,
    ...(underlayIp ? { underlayIp } : {}),
    setUpstreamChooser: (c) => {
      chooseUpstream = c;
    },
    controller,
  };
  for (const r of roles) await r.start(ctx);

  // ── Gateway HA (docs/gateway.md "Gateway HA") ─────────────────────────────────────────
  // Decides only while the site's Gateway lists this node and another, and listens (decides
  // nothing) on a node that hosts an endpoint of their floating IPs; heartbeats on the
  // underlay address, so not with --no-vrouter. A role change re-runs the consumers: BIRD
  // gets the (un)prepended config and the new role is reported upstream.
  if (underlayIp && !opts.gateway?.role) {
    const h = new GatewayHa({
      node: identity.name,
      site: identity.site,
      slice: () => running.cache.list(),
      revision: () => running.cache.revision,
      bird: gateway.bird,
      // The session replaces identity.credentials on renewal: read it every round.
      keyPem: () => identity.credentials.keyPem,
      bindAddress: underlayIp,
      onChange: () => void running.refresh(),
      onActiveChange: () => void running.refresh(),
      log: log.child({ component: 'gateway-ha' }),
      ...(opts.gateway?.haTimers ? { timers: opts.gateway.haTimers } : {}),
    });
    try {
      await h.start();
      ha = h;
    } catch (e) {
      haFailed = true;
      log.error({ err: (e as Error).message }, 'gateway HA not started: this node stays active');
      void running.refresh();
    }
  }

  // The local control API last: what it reports exists by now. `tether status` and the field
  // tools read it instead of polling the status file.
  const events = opts.events ?? new EventRing();
  // One kernel read shared by the control API (dashboard) and /metrics.
  const traffic = trafficReader(networking, opts.runner ?? new ProcessRunner());
  // Forwarding does not depend on it: a socket that cannot be bound is logged, not fatal.
  control = await startControlApi({
    socketPath: opts.controlSocket ?? controlSocketPath(opts.stateDir),
    events,
    log: log.child({ component: 'control-api' }),
    ...(networking
      ? {
          traffic: async () => ({
            at: new Date().toISOString(),
            links: (await traffic.links()).map(({ network, link, c }) => ({
              network,
              link,
              rxBytes: c.rxBytes,
              rxPackets: c.rxPackets,
              txBytes: c.txBytes,
              txPackets: c.txPackets,
            })),
            policy: await traffic.policy(),
          }),
        }
      : {}),
    status: () =>
      liveStatus({
        agent: running.statusSnapshot(),
        ...(opts.version ? { version: opts.version } : {}),
        proxy: proxyRole?.status(),
        slice: running.cache.list(),
        siteLocal: running.siteLocal.list(),
        local: networking?.localEndpointObjects() ?? [],
        counters: {},
        ...(gateway.lastStatus ? { gateway: gateway.lastStatus } : {}),
        ...(networking?.planned() ? { planned: networking.planned() } : {}),
      }),
  }).catch((e: unknown) => {
    log.error(
      { err: (e as Error).message },
      'local control API not started; tether status reads the status file',
    );
    return undefined;
  });

  // ── Metrics ────────────────────────────────────────────────────────────────────────────
  // Unlike the control API, a port asked for and not bound is fatal: the operator asked.
  if (opts.metricsListen && opts.metricsListen !== 'off') {
    const registry = nodeMetrics({
      agent: running,
      networking,
      runner: opts.runner ?? new ProcessRunner(),
      gateway: () => gateway.lastStatus,
      proxy: proxyRole ? () => proxyRole.status() : undefined,
      traffic,
      ...(opts.version ? { version: opts.version } : {}),
    });
    try {
      metricsServer = await startMetricsServer({
        listen: opts.metricsListen,
        registry,
        livez: () => {
          const h = running.health();
          return { ok: h.state !== 'wedged', reasons: h.reasons };
        },
        // Ready: the slice on disk was synced with an upstream at least once (a node that
        // has lost its WAN keeps forwarding on it) and the loop applies it without failing.
        readyz: () => {
          const h = running.health();
          const reasons = [...h.reasons];
          if (running.cache.revision === 0) reasons.unshift('no slice synced yet');
          return { ok: reasons.length === 0, reasons };
        },
      });
    } catch (e) {
      await stop();
      throw e;
    }
    log.info({ metricsPort: metricsServer.port }, 'node metrics serving');
  }

  return { agent, networking, roles, revoked, stop, metricsPort: metricsServer?.port };
}
