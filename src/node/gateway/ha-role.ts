import type { GatewaySpec } from '../../api/gateway-kinds.js';
import type { TetherObject } from '../../api/resource.js';
import type { BirdDaemon } from '../../bgp/daemon.js';
import type { Logger } from '../../lib/log.js';
import { gatewayFor } from './consumer.js';
import {
  type GatewayRole,
  type HaDecision,
  type HaGatewayView,
  HaMonitor,
  type HaMonitorOptions,
  type HeartbeatCounters,
  haKeysOf,
  haPeers,
} from './ha.js';

/**
 * Gateway HA as `tether node run` runs it (docs/gateway.md "Gateway HA"): the HA monitor of
 * src/node/gateway/ha.ts fed from the node's own slice and its own BIRD. It decides only when
 * the site's Gateway lists this node and at least one other; otherwise the node is active,
 * as a single gateway node always is. A role change asks the reconcile loop for a pass, which
 * renders the role into BIRD's config (a standby prepends its AS) and reports it.
 */

/** The HA view of the node's Gateway: undefined when there is nothing to decide. */
export function haGateway(
  node: string,
  site: string,
  slice: readonly TetherObject[],
): HaGatewayView | undefined {
  const gw = gatewayFor(node, site, slice);
  const spec = gw?.spec as unknown as GatewaySpec | undefined;
  const ranked = spec?.nodes ?? [];
  if (!gw || ranked.length < 2 || !ranked.includes(node)) return undefined;
  return {
    name: gw.metadata.name,
    ranked,
    peers: haPeers(node, gw, slice),
    keys: haKeysOf(gw),
    bfd: (spec?.peers ?? []).some((p) => p.bfd?.enabled === true),
  };
}

/**
 * `haGateway` once per slice revision: the monitor asks every round (10 times a second) and
 * on every datagram, and the slice changes only when the agent applies a delta.
 */
export function memoHaGateway(
  node: string,
  site: string,
  slice: () => readonly TetherObject[],
  revision: () => number,
): () => HaGatewayView | undefined {
  let memo: { revision: number; view: HaGatewayView | undefined } | undefined;
  return () => {
    const r = revision();
    if (memo?.revision !== r) memo = { revision: r, view: haGateway(node, site, slice()) };
    return memo.view;
  };
}

/** Is any BGP session of this node's BIRD established? (With BFD, a BFD failure ends it.) */
export function birdUplinkUp(bird: BirdDaemon): Promise<boolean> {
  return bird.sessionsUp();
}

export interface GatewayHaOptions {
  node: string;
  site: string;
  slice: () => readonly TetherObject[];
  /** The slice's revision (the agent's cache revision): the view is recomputed when it moves. */
  revision: () => number;
  bird: BirdDaemon;
  /** The node's underlay address: heartbeats are received there. */
  bindAddress: string;
  /** A role change: the caller re-runs the gateway consumer. */
  onChange: (d: HaDecision) => void;
  log: Logger;
  /** Timers (tests); defaults of HaMonitor otherwise (100 ms, dead after 1 s, hold 5 s). */
  timers?: Pick<
    HaMonitorOptions,
    'intervalMs' | 'deadAfterMs' | 'preemptHoldMs' | 'port' | 'slowUplinkMs' | 'replayWindowMs'
  >;
}

export class GatewayHa {
  readonly monitor: HaMonitor;
  private readonly view: () => HaGatewayView | undefined;

  constructor(o: GatewayHaOptions) {
    this.view = memoHaGateway(o.node, o.site, o.slice, o.revision);
    this.monitor = new HaMonitor({
      node: o.node,
      gateway: this.view,
      uplinkUp: () => birdUplinkUp(o.bird),
      bindAddress: o.bindAddress,
      onChange: o.onChange,
      log: o.log,
      ...(o.timers ?? {}),
    });
  }

  /** The role the gateway consumer renders: `active` when there is no HA to decide. */
  role(): GatewayRole {
    return this.monitor.role;
  }

  /** Why (node status): undefined without HA. */
  reason(): string | undefined {
    return this.view() ? this.monitor.decision.reason : undefined;
  }

  /** Heartbeats taken and dropped (node status, metrics): undefined without HA. */
  heartbeats(): HeartbeatCounters | undefined {
    return this.view() ? this.monitor.heartbeats : undefined;
  }

  start(): Promise<void> {
    return this.monitor.start();
  }

  stop(): void {
    this.monitor.stop();
  }
}
