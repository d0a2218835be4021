// What the node's control API answers (src/node/control-api.ts serves it, control-client.ts
// reads it): types only, so that the client loads nothing of the server.
import type { RttSnapshot } from '../lib/rtt.js';
import type { GatewayNodeStatus } from './gateway/consumer.js';
import type { ShellDropCounts } from './proxy/shell-relay.js';

/** What the composition root reports about the running node (a snapshot, taken per request). */
export interface NodeLiveStatus {
  node: string;
  site: string;
  /** The controller address the node was enrolled with. */
  controller: string;
  /** Every controller replica the node knows, in failover order (issue 12). */
  controllers?: readonly string[];
  pid: number;
  startedAt: string;
  version?: string;
  session: {
    /** e.g. `connecting`, `connected`, `disconnected` (the session's own phases). */
    phase: string;
    since?: string;
    lastError?: string;
    /** What the agent syncs from: the controller directly or its site proxy. */
    upstream?: { kind: 'controller' | 'proxy'; address: string; node?: string };
    /** Round trip and clock offset to that upstream, from heartbeat echoes. */
    rtt?: RttSnapshot;
  };
  /**
   * The WAN path to the controller as this node measures it: its own session when that goes
   * to the controller, the site proxy's WAN session when this node is the active proxy;
   * absent when the node reaches the controller through another node's proxy.
   */
  wan?: { via: 'session' | 'proxy'; rtt: RttSnapshot };
  proxy: {
    /** `active`: this node runs its site's proxy; `standby`: it could; `off`: `--proxy off`. */
    role: 'active' | 'standby' | 'off';
    /** The site's active proxy as this node sees it (node name), when known. */
    activeNode?: string;
    since?: string;
    /** Agents attached to this proxy (role `active` only). */
    agents?: number;
    /** The WAN session of the proxy (role `active` only). */
    wan?: { phase: string; since?: string; revision?: number; rtt?: RttSnapshot };
    /** Remote shells this node relays as its site's proxy now (0 unless active), and the
     *  frames the relay dropped since the daemon started (absent with `--proxy off`). */
    shells?: { open: number; dropped: ShellDropCounts };
  };
  revision: number;
  snapshotRevision: number;
  networks: Array<{ name: string; vni?: number; localEndpoints: number; remoteEndpoints: number }>;
  endpoints: Array<{
    name: string;
    network: string;
    ip: string;
    mac: string;
    node: string;
    /** `local`: this node's own; `slice`: from the controller; `site-local`: from the proxy, not yet confirmed. */
    origin: 'local' | 'slice' | 'site-local';
  }>;
  counters: Record<string, number>;
  health: { ok: boolean; degraded?: boolean; reasons: string[] };
  certNotAfter?: string;
  refusedEndpoints?: Array<{ name: string; code: string; message: string; field?: string }>;
  /** The local gateway (docs/gateway.md), on a node its site's Gateway names. */
  gateway?: GatewayNodeStatus;
  /** What the vRouter programs (absent with --no-vrouter or before its first pass). */
  vtep?: VtepStatus;
}

/** This node's VTEP and the peer VTEPs its vRouter sends VXLAN to (`tether diag` probes them). */
export interface VtepStatus {
  ip: string;
  ifname: string;
  /** Underlay MTU the vRouter assumes; the overlay gets `mtu − 50`. */
  mtu: number;
  /** The namespace holding the VTEP (undefined: the daemon's own). */
  netns?: string;
  vxlanPort: number;
  peers: Array<{ vtep: string; node?: string; site?: string; networks: string[] }>;
}

/** Kernel counters of the node's networks (src/node/traffic.ts), for the dashboard. */
export interface NodeTraffic {
  at: string;
  links: Array<{
    network: string;
    link: 'vxlan' | 'bridge';
    rxBytes: number;
    rxPackets: number;
    txBytes: number;
    txPackets: number;
  }>;
  /** Per policy rule; `rule: '(default)'` counts the network's default-deny drops. */
  policy: Array<{ network: string; policy: string; rule: string; packets: number; bytes: number }>;
}

/** Entries of each list in a traffic answer (the slice limits keep real nodes far below). */
export const MAX_TRAFFIC_ENTRIES = 2048;

export interface NodeEvent {
  /** Monotonic per daemon run, from 1. */
  seq: number;
  time: string;
  type: string;
  message: string;
  fields?: Record<string, string | number | boolean>;
}
