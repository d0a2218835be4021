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
  type HaPeer,
  type HaSigner,
  type HeartbeatCounters,
  haPeers,
  haSignerOf,
} from './ha.js';
import { fipEndpointNodes, siteGateway } from './model.js';

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
  const { peers, keys } = haPeers(node, gw, slice);
  const followers = vtepsOf(
    fipEndpointNodes(gw, slice).filter((n) => !ranked.includes(n)),
    slice,
  );
  return {
    name: gw.metadata.name,
    ranked,
    peers,
    keys,
    bfd: (spec?.peers ?? []).some((p) => p.bfd?.enabled === true),
    ...(followers.length ? { followers } : {}),
  };
}

/** The nodes' underlay addresses (`Node.status.vtep` in the slice); a node without one is left out. */
function vtepsOf(nodes: readonly string[], slice: readonly TetherObject[]): HaPeer[] {
  const out: HaPeer[] = [];
  for (const n of nodes) {
    const vtep = (slice.find((o) => o.kind === 'Node' && o.metadata.name === n)?.status as { vtep?: unknown })
      ?.vtep;
    if (typeof vtep === 'string') out.push({ node: n, address: vtep });
  }
  return out;
}

/**
 * The listening view of a node the site's Gateway does not list but whose endpoint some
 * listed node maps a floating IP to (`fipEndpointNodes`): it hears the gateway nodes'
 * heartbeats, to send its workloads' own new outbound flows through the active one. The same
 * checks as between the gateway nodes (`HaMonitor.receive`): signed by a listed node's key
 * from the roster, from that node's address, this Gateway's name, fresh and in order.
 * Undefined when there is nothing to follow (fewer than two listed nodes: no HA).
 */
export function haObserver(
  node: string,
  site: string,
  slice: readonly TetherObject[],
): HaGatewayView | undefined {
  const gw = siteGateway(site, slice);
  const ranked = (gw?.spec as unknown as GatewaySpec | undefined)?.nodes ?? [];
  if (!gw || ranked.length < 2 || ranked.includes(node)) return undefined;
  if (!fipEndpointNodes(gw, slice).includes(node)) return undefined;
  const { peers, keys } = haPeers(node, gw, slice);
  return { name: gw.metadata.name, ranked, peers, keys, bfd: false, observer: true };
}

/**
 * `haGateway` (or, on a node the Gateway does not list, `haObserver`) once per slice revision: the monitor asks every round (10 times a second) and
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
    if (memo?.revision !== r) {
      const s = slice();
      memo = { revision: r, view: haGateway(node, site, s) ?? haObserver(node, site, s) };
    }
    return memo.view;
  };
}

/** How long a node keeps signing with its previous key after its certificate was renewed:
 *  the other gateway node gets the new key with the next slice delta, normally within
 *  seconds; ten minutes also cover a WAN cut or a controller restart in between. */
export const PREVIOUS_KEY_MS = 10 * 60_000;

/**
 * The node's signing keys from its credentials (`keyPem()` is read every round: the session
 * replaces the credentials on renewal). After a change the previous key signs too, for
 * `PREVIOUS_KEY_MS`, so a peer whose slice still has the old public key keeps hearing this
 * node. An unreadable key signs nothing (the node then judges alone on the peer's side).
 */
export class NodeHaSigners {
  private pem: string | undefined;
  private current: HaSigner | undefined;
  private previous: { signer: HaSigner; untilMs: number } | undefined;

  constructor(
    private readonly keyPem: () => string,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  signers(): HaSigner[] {
    const pem = this.keyPem();
    if (pem !== this.pem) {
      const old = this.current;
      this.pem = pem;
      try {
        this.current = haSignerOf(pem);
      } catch (e) {
        this.current = undefined;
        this.log.error({ err: (e as Error).message }, 'gateway HA: cannot sign heartbeats');
      }
      if (old && this.current && !old.keyId.equals(this.current.keyId))
        this.previous = { signer: old, untilMs: this.now() + PREVIOUS_KEY_MS };
    }
    if (this.previous && this.now() > this.previous.untilMs) this.previous = undefined;
    const out: HaSigner[] = [];
    if (this.current) out.push(this.current);
    if (this.previous) out.push(this.previous.signer);
    return out;
  }
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
  /** The node's private key (PEM; its node certificate's): heartbeats are signed with it. */
  keyPem: () => string;
  /** The node's underlay address: heartbeats are received there. */
  bindAddress: string;
  /** A role change: the caller re-runs the gateway consumer. */
  onChange: (d: HaDecision) => void;
  /** The active gateway heard changed: the caller re-runs the gateway consumer (the
   *  outbound mark of the floating IP workloads here follows it). */
  onActiveChange?: (active: string | undefined) => void;
  /** Replaces the read of BIRD's sessions (tests and labs without a site router). */
  uplinkUp?: () => Promise<boolean>;
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
    const signers = new NodeHaSigners(o.keyPem, o.log);
    this.monitor = new HaMonitor({
      signers: () => signers.signers(),
      node: o.node,
      gateway: this.view,
      uplinkUp: o.uplinkUp ?? (() => birdUplinkUp(o.bird)),
      bindAddress: o.bindAddress,
      onChange: o.onChange,
      ...(o.onActiveChange ? { onActiveChange: o.onActiveChange } : {}),
      log: o.log,
      ...(o.timers ?? {}),
    });
  }

  /** The role the gateway consumer renders: `active` when there is no HA to decide. */
  role(): GatewayRole {
    return this.monitor.role;
  }

  /** Why (node status): undefined without HA (or on a node that only listens). */
  reason(): string | undefined {
    const v = this.view();
    return v && !v.observer ? this.monitor.decision.reason : undefined;
  }

  /** Heartbeats taken and dropped (node status, metrics): undefined without HA. */
  heartbeats(): HeartbeatCounters | undefined {
    return this.view() ? this.monitor.heartbeats : undefined;
  }

  /** The gateway node heard to be active (`HaMonitor.active`): undefined when nothing is
   *  heard, or there is no Gateway with HA to follow. */
  active(): string | undefined {
    return this.monitor.active();
  }

  start(): Promise<void> {
    return this.monitor.start();
  }

  stop(): void {
    this.monitor.stop();
  }
}
