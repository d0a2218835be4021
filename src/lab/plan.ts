import { join } from 'node:path';
import { TetherError } from '../lib/errors.js';

/**
 * The lab's topology as plain data: every namespace, interface, address and directory is
 * decided here, before anything is created, so `up`, `status`, `down` and the tests agree.
 *
 *   central (<lab>-c) ──c0── WAN router (<lab>-wan) ──sN── site router (<lab>-sN) ──lan0═r0──br0── nodes (<lab>-sNnM)
 *                                                                                        └── workloads (<lab>-sNnMwK)
 */

export const LAB_NETWORKS = ['red', 'blue'] as const;
export type LabNetwork = (typeof LAB_NETWORKS)[number];
/** Both lab networks use the same subnet on purpose (overlapping addresses). */
export const LAB_SUBNET = '10.1.0.0/24';
export const CONTROLLER_PORT = 7443;
/** Site N's nodes reach the controller through the impairment proxy on port IMPAIR_PORT_BASE + N. */
export const IMPAIR_PORT_BASE = 7450;
export const UNDERLAY_MTU = 1500;
export const MAX_SITES = 4; // a /24 network gives 4 site blocks of /26
export const MAX_NODES_PER_SITE = 4; // the controller splits a /26 site block into 4 node shares of /28

export interface LabOptions {
  /** Lab name: prefix of every namespace (`tl` → `tl-c`, `tl-wan`, `tl-s1`, …). */
  name: string;
  sites: number;
  nodesPerSite: number;
  workloadsPerNode: number;
  /** Where the lab keeps its state file, controller and node directories, logs. */
  stateDir: string;
  /** `node run --wan-heartbeat`, seconds (default 1: a test bench notices a cut in 3 s; the
   *  idle-WAN benchmark sets the production 30). */
  wanHeartbeatSeconds?: number;
  /** `node run --heartbeat` (node ↔ its upstream), seconds (default 1; production 5). */
  heartbeatSeconds?: number;
  /** `node run --proxy` (default on); off: every node holds its own WAN session. */
  proxy?: boolean;
}

export interface WorkloadPlan {
  /** `s1n1w1` */
  name: string;
  ns: string;
  node: string;
  site: string;
  network: LabNetwork;
  containerId: string;
  ifname: string;
  labels: Record<string, string>;
}

export interface NodePlan {
  /** Node name as enrolled: `s1n1`. */
  name: string;
  site: string;
  siteIndex: number;
  ns: string;
  /** `--netns-prefix` (`<lab>_<node>`; the vRouter allows letters, digits, _): networks are `<prefix>-vn<VNI>`. */
  netnsPrefix: string;
  lanIf: string;
  ip: string;
  gateway: string;
  stateDir: string;
  /** What the node boots from: `config-drive/` (its bootstrap.yaml) and `cmdline`, standing
   *  in for the drive and /proc/cmdline of a real box (first boot reads nothing else). */
  bootDir: string;
  cniSocket: string;
  log: string;
  /** Interface name of this node's port on the site router's bridge. */
  routerPort: string;
  workloads: WorkloadPlan[];
}

export interface SitePlan {
  name: string;
  index: number;
  ns: string;
  /** Site router's WAN address and the WAN router's end of that link. */
  wanIp: string;
  wanPeer: string;
  /** Port name in the WAN router namespace. */
  wanPort: string;
  lan: string;
  /** The site router's LAN address: what local breakout reaches. */
  routerIp: string;
  /**
   * The veth that holds `routerIp` in the site router namespace, and its peer, a port of the
   * LAN bridge `br0`. The address is not on `br0` itself: a VXLAN GSO packet routed into an L3
   * bridge device is segmented in software (`__skb_gso_segment` under `ip_finish_output2`), which
   * capped the overlay at a fifth of the underlay; through a veth the packet stays whole.
   */
  lanIf: string;
  lanPort: string;
  /**
   * The site's WAN impairment proxy (src/lab/impair.ts), in the central namespace on the
   * controller's address: the site's nodes are enrolled with `controllerAddress`, so all their
   * controller traffic crosses it (delay, byte counts).
   */
  impair: { port: number; control: string; log: string };
  controllerAddress: string;
  /** nft table in the WAN router namespace holding this site's cut and loss rules. */
  wanTable: string;
  nodes: NodePlan[];
}

export interface LabPlan {
  name: string;
  stateDir: string;
  central: {
    ns: string;
    ip: string;
    gateway: string;
    wanPort: string;
    dataDir: string;
    address: string;
    adminConfig: string;
    log: string;
  };
  wan: { ns: string; ip: string };
  sites: SitePlan[];
}

const NAME_RE = /^[a-z][a-z0-9]{0,5}$/;

function wanAddr(link: number, end: 1 | 2): string {
  // /30 per link from 172.31.255.0/24: link 0 is the central site, link N is site N.
  return `172.31.255.${link * 4 + end}`;
}

export function validateLabOptions(o: LabOptions): void {
  if (!NAME_RE.test(o.name)) {
    throw new TetherError('TETHER_E_INVALID', `bad lab name "${o.name}"`, {
      field: '--name',
      expected: '1–6 lower-case letters or digits, starting with a letter (it prefixes every namespace)',
    });
  }
  const int = (v: number, field: string, min: number, max: number) => {
    if (!Number.isInteger(v) || v < min || v > max) {
      throw new TetherError('TETHER_E_INVALID', `bad ${field} ${v}`, {
        field,
        expected: `an integer from ${min} to ${max}`,
      });
    }
  };
  int(o.sites, '--sites', 1, MAX_SITES);
  int(o.nodesPerSite, '--nodes-per-site', 1, MAX_NODES_PER_SITE);
  int(o.workloadsPerNode, '--workloads-per-node', 0, 20); // ≤ 10 per network: a /28 share holds 13–14
  // The controller bounds a declared heartbeat to 1–120 s (HEARTBEAT_BOUNDS_MS).
  if (o.wanHeartbeatSeconds !== undefined) int(o.wanHeartbeatSeconds, '--wan-heartbeat', 1, 120);
  if (o.heartbeatSeconds !== undefined) int(o.heartbeatSeconds, '--heartbeat', 1, 120);
}

export function planLab(o: LabOptions): LabPlan {
  validateLabOptions(o);
  const n = o.name;
  const dataDir = join(o.stateDir, 'controller');
  const central = {
    ns: `${n}-c`,
    ip: wanAddr(0, 2),
    gateway: wanAddr(0, 1),
    wanPort: 'c0',
    dataDir,
    address: `${wanAddr(0, 2)}:${CONTROLLER_PORT}`,
    adminConfig: join(dataDir, 'admin.yaml'),
    log: join(o.stateDir, 'logs', 'controller.log'),
  };
  const sites: SitePlan[] = [];
  for (let s = 1; s <= o.sites; s++) {
    const site = `s${s}`;
    const lanBase = `10.${200 + s}.0`;
    const nodes: NodePlan[] = [];
    for (let m = 1; m <= o.nodesPerSite; m++) {
      const node = `${site}n${m}`;
      const ns = `${n}-${node}`;
      const stateDir = join(o.stateDir, 'nodes', node);
      const workloads: WorkloadPlan[] = [];
      for (let k = 1; k <= o.workloadsPerNode; k++) {
        const wl = `${node}w${k}`;
        workloads.push({
          name: wl,
          ns: `${n}-${wl}`,
          node,
          site,
          network: k % 2 === 1 ? 'red' : 'blue',
          containerId: `${n}-${wl}`,
          ifname: 'eth0',
          labels: { site, node, workload: wl },
        });
      }
      nodes.push({
        name: node,
        site,
        siteIndex: s,
        ns,
        netnsPrefix: `${n}_${node}`,
        lanIf: 'lan0',
        ip: `${lanBase}.${10 + m}`,
        gateway: `${lanBase}.1`,
        stateDir,
        bootDir: join(o.stateDir, 'boot', node),
        cniSocket: join(stateDir, 'cni.sock'),
        log: join(o.stateDir, 'logs', `${node}.log`),
        routerPort: `n${m}`,
        workloads,
      });
    }
    sites.push({
      name: site,
      index: s,
      ns: `${n}-${site}`,
      wanIp: wanAddr(s, 2),
      wanPeer: wanAddr(s, 1),
      wanPort: site,
      lan: `${lanBase}.0/24`,
      routerIp: `${lanBase}.1`,
      lanIf: 'lan0',
      lanPort: 'r0',
      impair: {
        port: IMPAIR_PORT_BASE + s,
        control: join(o.stateDir, 'wan', `${site}.sock`),
        log: join(o.stateDir, 'logs', `impair-${site}.log`),
      },
      controllerAddress: `${central.ip}:${IMPAIR_PORT_BASE + s}`,
      wanTable: `tether_lab_${site}`,
      nodes,
    });
  }
  return { name: n, stateDir: o.stateDir, central, wan: { ns: `${n}-wan`, ip: wanAddr(0, 1) }, sites };
}

export function allNodes(plan: LabPlan): NodePlan[] {
  return plan.sites.flatMap((s) => s.nodes);
}

export function allWorkloads(plan: LabPlan): WorkloadPlan[] {
  return allNodes(plan).flatMap((n) => n.workloads);
}

/** Every namespace the plan creates directly (not the vRouter's per-network ones), in creation order. */
export function plannedNamespaces(plan: LabPlan): string[] {
  return [
    plan.central.ns,
    plan.wan.ns,
    ...plan.sites.flatMap((s) => [
      s.ns,
      ...s.nodes.flatMap((nd) => [nd.ns, ...nd.workloads.map((w) => w.ns)]),
    ]),
  ];
}

/** Namespaces a node's vRouter creates: `<prefix>-vn<VNI>`. */
export function vnNamespaceRe(prefix: string): RegExp {
  return new RegExp(`^${prefix.replace(/[^a-z0-9]/g, (c) => `\\${c}`)}-vn\\d+$`);
}

export function vnNamespace(node: NodePlan, vni: number): string {
  return `${node.netnsPrefix}-vn${vni}`;
}
