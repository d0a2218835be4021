import { createHash } from 'node:crypto';
import {
  BRIDGE_NF_CALL_IPTABLES,
  BRIDGE_NF_CALLS,
  type KernelOp,
  type NetnsRef,
  type NftChain,
  type NftSet,
  type NftTable,
  type NsState,
  type ObservedLink,
} from '../../kernel/types.js';
import { cidrContains, formatCidr, parseCidr, parseIp } from '../../lib/ipv4.js';
import {
  DEFAULT_VXLAN_PORT,
  type DesiredNetwork,
  type DesiredNodeNetwork,
  type DesiredRule,
  names,
  VXLAN_OVERHEAD,
} from './model.js';
import { IP_FORWARD, type Observed } from './observe.js';
import type { PolicyMode } from './policy-mode.js';

const EMPTY: NsState = { links: [], routes: [], neighs: [], fdb: [], nft: [], sysctl: {} };

/** Why each op is in the plan, for logs and reports. */
export interface PlanStats {
  netnsCreated: number;
  netnsDeleted: number;
  entriesAdded: number;
  entriesDeleted: number;
  /** Endpoints whose host interface is in neither the node nor the network namespace. */
  missingInterfaces: string[];
}

export interface Plan {
  ops: KernelOp[];
  stats: PlanStats;
}

function sortedUnique(xs: Iterable<string>): string[] {
  return [...new Set(xs)].sort();
}

function fingerprint(t: Omit<NftTable, 'fingerprint'>): string {
  const shape = { ...t, sets: t.sets.map((s) => ({ name: s.name, type: s.type })) };
  return createHash('sha256').update(JSON.stringify(shape)).digest('hex').slice(0, 16);
}

function nftComment(s: string): string {
  return s.replace(/[^A-Za-z0-9_./: -]/g, '_');
}

function matches(labels: Record<string, string>, sel: Record<string, string>): boolean {
  return Object.entries(sel).every(([k, v]) => labels[k] === v);
}

/**
 * Protocol and destination-port matches of a rule, one per protocol. The port is the flow's
 * (`ct original proto-dst`): a reply, or a packet sent *from* an allowed port, is judged by
 * the connection it belongs to, never by its own source port.
 */
function portMatches(rule: DesiredRule): string[] {
  if (!rule.ports?.length) return [''];
  const out: string[] = [];
  for (const proto of ['tcp', 'udp', 'icmp'] as const) {
    const ps = rule.ports.filter((p) => p.protocol === proto);
    if (!ps.length) continue;
    if (proto === 'icmp' || ps.some((p) => p.port === undefined)) out.push(` meta l4proto ${proto}`);
    else {
      const ports = sortedUnique(ps.map((p) => String(p.port)))
        .map(Number)
        .sort((a, b) => a - b);
      out.push(` meta l4proto ${proto} ct original proto-dst { ${ports.join(', ')} }`);
    }
  }
  return out;
}

/** Counter name of policy `pi` rule `ri` in the network's policy table. */
export function ruleCounter(pi: number, ri: number): string {
  return `p${pi}r${ri}`;
}
export const DEFAULT_DENY_COUNTER = 'default_deny';

/** The nft family of the policy table in each mode that can enforce policy. */
export function policyFamily(mode: PolicyMode): 'inet' | 'bridge' | undefined {
  if (mode === 'inet-br-netfilter') return 'inet';
  if (mode === 'bridge-conntrack') return 'bridge';
  return undefined;
}

/**
 * The network's policy table: stateful. Every packet, in either direction, is judged by the
 * connection it belongs to, i.e. by conntrack's original tuple (`ct original ip saddr/daddr`,
 * `ct original proto-dst`), against the rules as they are now: a reply passes because its
 * connection was allowed, a new connection from the "to" side is a new tuple and meets the
 * default deny, an established connection survives a change that still allows it and stops
 * (both directions) at once when its rule goes: no conntrack flush needed. One set per
 * selector, one rule per policy rule (per protocol), a named counter per rule that counts
 * the packets of the connections it admits or drops.
 *
 * `inet-br-netfilter`: family inet, hook forward; bridged IPv4 frames arrive there through
 * br_netfilter with the bridge (`tbr0`) as both interfaces, and so does traffic routed between
 * the network's subnets through the anycast gateway. Breakout traffic (through `tbo0`) is not
 * between endpoints and passes untouched, as before. `bridge-conntrack`: family bridge, hook
 * forward, which sees only bridged frames.
 */
export function policyTable(
  net: DesiredNetwork,
  mode: PolicyMode = 'inet-br-netfilter',
): NftTable | undefined {
  const family = policyFamily(mode);
  if (!net.policies.length || !family) return undefined;
  const eps = [...net.localEndpoints, ...net.remoteEndpoints];
  const sets: NftSet[] = [];
  const counters: string[] = [];
  const rules: string[] =
    family === 'inet'
      ? [
          `iifname != "${names.bridge}" accept comment "not between endpoints (breakout)"`,
          `oifname != "${names.bridge}" accept comment "not between endpoints (breakout)"`,
          'meta nfproto != ipv4 accept comment "policy is IPv4"',
        ]
      : ['ether type != ip accept comment "policy is IPv4"'];
  rules.push(
    'ct state invalid drop comment "not part of a connection"',
    // ICMP errors about a tracked connection: the connection was admitted by some rule.
    'ct state related accept comment "ICMP errors of tracked connections"',
  );
  const defaultDeny = net.policies.some((p) => p.defaultAction === 'deny');
  net.policies.forEach((p, pi) => {
    p.rules.forEach((r, ri) => {
      const c = ruleCounter(pi, ri);
      const from = `${c}_from`;
      const to = `${c}_to`;
      counters.push(c);
      sets.push({
        name: from,
        type: 'ipv4_addr',
        elements: sortedUnique(eps.filter((e) => matches(e.labels, r.from.matchLabels)).map((e) => e.ip)),
      });
      sets.push({
        name: to,
        type: 'ipv4_addr',
        elements: sortedUnique(eps.filter((e) => matches(e.labels, r.to.matchLabels)).map((e) => e.ip)),
      });
      const verdict = r.action === 'deny' ? 'drop' : 'accept';
      const comment = nftComment(`${p.name}/${r.name}`);
      for (const pm of portMatches(r))
        rules.push(
          `ct original ip saddr @${from} ct original ip daddr @${to}${pm} counter name "${c}" ${verdict} comment "${comment}"`,
        );
    });
  });
  if (defaultDeny) {
    counters.push(DEFAULT_DENY_COUNTER);
    rules.push(`counter name "${DEFAULT_DENY_COUNTER}" drop comment "default deny"`);
  }
  const chains: NftChain[] = [
    { name: 'forward', base: { type: 'filter', hook: 'forward', priority: 0 }, rules },
  ];
  const t = { family, name: names.vnPolicyTable, counters, sets, chains };
  return { ...t, fingerprint: fingerprint(t) };
}

function vnNatTable(net: DesiredNetwork): NftTable | undefined {
  if (!net.localBreakout || !net.breakoutTransit) return undefined;
  const chains: NftChain[] = [
    {
      name: 'postrouting',
      base: { type: 'nat', hook: 'postrouting', priority: 100 },
      rules: [`oifname "${names.breakoutVn}" snat to ${net.breakoutTransit.vnIp} comment "local breakout"`],
    },
  ];
  const t = { family: 'ip' as const, name: names.vnNatTable, counters: [], sets: [], chains };
  return { ...t, fingerprint: fingerprint(t) };
}

function nodeNatTable(d: DesiredNodeNetwork): NftTable | undefined {
  const transit = d.networks
    .filter((n) => n.localBreakout && n.breakoutTransit)
    .map((n) => n.breakoutTransit!.vnIp);
  if (!d.breakout || !transit.length) return undefined;
  const chains: NftChain[] = [
    {
      name: 'postrouting',
      base: { type: 'nat', hook: 'postrouting', priority: 100 },
      rules: [`ip saddr @transit oifname "${d.breakout.uplinkIfname}" masquerade comment "local breakout"`],
    },
  ];
  const sets: NftSet[] = [{ name: 'transit', type: 'ipv4_addr', elements: sortedUnique(transit) }];
  const t = { family: 'ip' as const, name: names.nodeNatTable(d.netnsPrefix), counters: [], sets, chains };
  return { ...t, fingerprint: fingerprint(t) };
}

/**
 * `notrack` for the node's own VXLAN packets, in the raw hooks (priority -300, before
 * conntrack at -200): encapsulated packets are not connections anyone filters or translates,
 * but wherever a NAT table is loaded in the node namespace (breakout's masquerade, a host
 * firewall) conntrack would otherwise look up, create and age one entry per VXLAN flow and
 * per direction. Matched on this node's VTEP address and the VXLAN port: the packets it sends
 * (output) and the ones sent to it (prerouting); forwarded traffic is left alone. A firewall
 * in the node namespace that accepts VXLAN by `ct state new` must accept `ct state untracked`
 * too (docs/vrouter.md).
 */
export function nodeRawTable(d: DesiredNodeNetwork): NftTable | undefined {
  if (!d.networks.length) return undefined;
  const port = d.underlay.vxlanPort ?? DEFAULT_VXLAN_PORT;
  const vtep = d.underlay.vtepIp;
  const comment = 'comment "VXLAN underlay: not a connection"';
  const chains: NftChain[] = [
    {
      name: 'prerouting',
      base: { type: 'filter', hook: 'prerouting', priority: -300 },
      rules: [`ip daddr ${vtep} udp dport ${port} notrack ${comment}`],
    },
    {
      name: 'output',
      base: { type: 'filter', hook: 'output', priority: -300 },
      rules: [`ip saddr ${vtep} udp dport ${port} notrack ${comment}`],
    },
  ];
  const t = {
    family: 'ip' as const,
    name: names.nodeRawTable(d.netnsPrefix),
    counters: [],
    sets: [],
    chains,
  };
  return { ...t, fingerprint: fingerprint(t) };
}

/** Ops that bring one nft table (or its absence) from observed to desired. */
function planNft(
  netns: NetnsRef,
  want: NftTable | undefined,
  family: NftTable['family'],
  name: string,
  obs: NsState,
): KernelOp[] {
  const have = obs.nft.find((t) => t.family === family && t.name === name);
  if (!want) return have ? [{ op: 'nft-table-del', netns, family, table: name }] : [];
  if (!have || have.fingerprint !== want.fingerprint) return [{ op: 'nft-table', netns, table: want }];
  const ops: KernelOp[] = [];
  for (const s of want.sets) {
    const cur = sortedUnique(have.sets[s.name] ?? []);
    if (cur.join(',') !== s.elements.join(','))
      ops.push({ op: 'nft-set', netns, family, table: name, set: s.name, elements: s.elements });
  }
  return ops;
}

function linkSetDelta(
  netns: NetnsRef,
  name: string,
  have: ObservedLink | undefined,
  want: { mtu?: number; master?: string; up?: boolean; learning?: boolean },
): KernelOp | undefined {
  const op: Extract<KernelOp, { op: 'link-set' }> = { op: 'link-set', netns, name };
  let changed = false;
  if (want.mtu !== undefined && have?.mtu !== want.mtu) {
    op.mtu = want.mtu;
    changed = true;
  }
  if (want.master !== undefined && have?.master !== want.master) {
    op.master = want.master;
    changed = true;
  }
  if (want.up !== undefined && have?.up !== want.up) {
    op.up = want.up;
    changed = true;
  }
  // A port that just got (re)attached starts with learning on.
  const learningNow = op.master !== undefined ? true : have?.learning;
  if (want.learning !== undefined && learningNow !== want.learning) {
    op.learning = want.learning;
    changed = true;
  }
  return changed ? op : undefined;
}

function gatewayCidr(net: DesiredNetwork): string {
  const gw = parseIp(net.gateway)!;
  const subnet = net.subnets.map((s) => parseCidr(s)!).find((c) => cidrContains(c, gw))!;
  return `${net.gateway}/${subnet.prefix}`;
}

/**
 * The planner: desired state + observed kernel state → ordered kernel operations. Pure and
 * deterministic. Order: create namespaces; remove incompatible devices; node-namespace batch
 * (create VXLAN into the network namespace, breakout veths, move workload interfaces in); per network
 * namespace one ip batch, one bridge batch, sysctls, one nft transaction; node nft and
 * sysctls; delete stale namespaces. Only Tether's objects are considered: its namespaces
 * (`<prefix>-vn<VNI>`), `tvx<VNI>`/`tbo<VNI>` links in the node namespace, routes with
 * protocol 183, its nft tables.
 */
export function plan(desired: DesiredNodeNetwork, observed: Observed): Plan {
  const stats: PlanStats = {
    netnsCreated: 0,
    netnsDeleted: 0,
    entriesAdded: 0,
    entriesDeleted: 0,
    missingInterfaces: [],
  };
  const nodeNs = desired.underlay.netns;
  const mtu = desired.underlay.mtu - VXLAN_OVERHEAD;
  const port = desired.underlay.vxlanPort ?? DEFAULT_VXLAN_PORT;
  const existing = new Set(observed.netns);
  const policyMode = observed.policy.mode;
  const nodeLinks = new Map(observed.node.links.map((l) => [l.name, l]));

  const phaseNetns: KernelOp[] = [];
  const phaseTeardown: KernelOp[] = [];
  const phaseNode: KernelOp[] = [];
  const phaseVn: KernelOp[] = [];
  const phaseEnd: KernelOp[] = [];

  const desiredNs = new Set<string>();
  const desiredNodeLinks = new Set<string>();

  for (const net of desired.networks) {
    const ns = names.vnNetns(desired.netnsPrefix, net.vni);
    desiredNs.add(ns);
    const obs = observed.vn[ns] ?? EMPTY;
    if (!existing.has(ns)) {
      phaseNetns.push({ op: 'netns-add', name: ns });
      stats.netnsCreated += 1;
    }
    const vnLinks = new Map(obs.links.map((l) => [l.name, l]));
    const gone = new Set<string>();

    // VXLAN: its UDP socket must live in the node namespace, the device in the network's.
    const vx = names.vxlan(net.vni);
    desiredNodeLinks.add(vx);
    const vxOk = (l: ObservedLink | undefined) =>
      l?.vxlan !== undefined &&
      l.vxlan.vni === net.vni &&
      (l.vxlan.local === undefined || l.vxlan.local === desired.underlay.vtepIp) &&
      (l.vxlan.port === undefined || l.vxlan.port === port) &&
      !l.vxlan.learning &&
      l.vxlan.proxy;
    const vxInVn = vnLinks.get(vx);
    if (vxInVn && !vxOk(vxInVn)) {
      phaseTeardown.push({ op: 'link-del', netns: ns, name: vx });
      gone.add(vx);
    }
    if (!vxInVn || gone.has(vx)) {
      const vxInNode = nodeLinks.get(vx);
      if (vxInNode && !vxOk(vxInNode)) phaseNode.push({ op: 'link-del', netns: nodeNs, name: vx });
      // Created directly inside the network namespace, requested from the node namespace: the
      // UDP socket and `dev` stay in the node namespace. A device left in the node namespace
      // (created there by an older run) is moved instead.
      if (vxInNode && vxOk(vxInNode)) phaseNode.push({ op: 'link-move', netns: nodeNs, name: vx, to: ns });
      else
        phaseNode.push({
          op: 'vxlan-add',
          netns: nodeNs,
          into: ns,
          name: vx,
          vni: net.vni,
          local: desired.underlay.vtepIp,
          dev: desired.underlay.ifname,
          dstport: port,
          mtu,
        });
    }

    // Breakout veth pair.
    const bo = names.breakoutNode(net.vni);
    const transit = net.localBreakout ? net.breakoutTransit : undefined;
    const boVn = vnLinks.get(names.breakoutVn);
    const boNode = nodeLinks.get(bo);
    if (transit) {
      desiredNodeLinks.add(bo);
      if (!boVn || !boNode) {
        if (boVn) phaseTeardown.push({ op: 'link-del', netns: ns, name: names.breakoutVn });
        if (boNode) phaseNode.push({ op: 'link-del', netns: nodeNs, name: bo });
        phaseNode.push({
          op: 'veth-add',
          netns: nodeNs,
          name: bo,
          peer: names.breakoutVn,
          peerNetns: ns,
          mtu,
        });
        gone.add(names.breakoutVn);
      }
      const nodeHave = boVn && boNode ? boNode : undefined;
      const want = `${transit.nodeIp}/31`;
      for (const a of nodeHave?.addrs ?? [])
        if (a !== want) phaseNode.push({ op: 'addr-del', netns: nodeNs, dev: bo, cidr: a });
      if (!nodeHave?.addrs.includes(want))
        phaseNode.push({ op: 'addr-replace', netns: nodeNs, dev: bo, cidr: want });
      const s = linkSetDelta(nodeNs, bo, nodeHave, { mtu, up: true });
      if (s) phaseNode.push(s);
    } else if (boVn) {
      // Deleting one end of a veth deletes the other: the node-side end goes with it.
      phaseTeardown.push({ op: 'link-del', netns: ns, name: names.breakoutVn });
      gone.add(names.breakoutVn);
      if (boNode) desiredNodeLinks.add(bo);
    }

    // Workload host ends: move from the node namespace when they are still there.
    const wanted = new Set<string>();
    for (const ep of net.localEndpoints) {
      wanted.add(ep.hostIfname);
      if (vnLinks.has(ep.hostIfname)) continue;
      if (nodeLinks.has(ep.hostIfname)) {
        phaseNode.push({ op: 'link-move', netns: nodeNs, name: ep.hostIfname, to: ns });
        gone.add(ep.hostIfname);
      } else stats.missingInterfaces.push(`${net.name}/${ep.id}:${ep.hostIfname}`);
    }

    // ---- inside the network namespace: ip batch
    const vnOps: KernelOp[] = [];
    const cur = (name: string): ObservedLink | undefined => {
      if (gone.has(name)) return undefined;
      const l = vnLinks.get(name);
      // Ports of a bridge that is being recreated are detached by its deletion.
      if (l?.master === names.bridge && gone.has(names.bridge))
        return { ...l, master: undefined } as ObservedLink;
      return l;
    };
    // Stale links: anything in our namespace that is not ours to keep.
    for (const l of obs.links) {
      if (l.name === 'lo' || l.name === names.bridge || l.name === vx || wanted.has(l.name)) continue;
      if (l.name === names.breakoutVn && transit) continue;
      if (gone.has(l.name)) continue;
      vnOps.push({ op: 'link-del', netns: ns, name: l.name });
    }
    const br = cur(names.bridge);
    if (br?.mac && br.mac !== net.gatewayMac) {
      vnOps.push({ op: 'link-del', netns: ns, name: names.bridge });
      gone.add(names.bridge);
    }
    if (!cur(names.bridge))
      vnOps.push({ op: 'bridge-add', netns: ns, name: names.bridge, mtu, mac: net.gatewayMac });
    const brSet = linkSetDelta(ns, names.bridge, cur(names.bridge), { mtu, up: true });
    if (brSet) vnOps.push(brSet);
    if (cur('lo')?.up !== true) vnOps.push({ op: 'link-set', netns: ns, name: 'lo', up: true });
    const gwCidr = gatewayCidr(net);
    for (const a of cur(names.bridge)?.addrs ?? [])
      if (a !== gwCidr) vnOps.push({ op: 'addr-del', netns: ns, dev: names.bridge, cidr: a });
    if (!cur(names.bridge)?.addrs.includes(gwCidr))
      vnOps.push({ op: 'addr-replace', netns: ns, dev: names.bridge, cidr: gwCidr });
    const vxSet = linkSetDelta(ns, vx, cur(vx), { mtu, master: names.bridge, up: true, learning: false });
    if (vxSet) vnOps.push(vxSet);
    if (transit) {
      const want = `${transit.vnIp}/31`;
      const have = cur(names.breakoutVn);
      for (const a of have?.addrs ?? [])
        if (a !== want) vnOps.push({ op: 'addr-del', netns: ns, dev: names.breakoutVn, cidr: a });
      if (!have?.addrs.includes(want))
        vnOps.push({ op: 'addr-replace', netns: ns, dev: names.breakoutVn, cidr: want });
      const s = linkSetDelta(ns, names.breakoutVn, have, { mtu, up: true });
      if (s) vnOps.push(s);
    }
    for (const ep of net.localEndpoints) {
      if (!vnLinks.has(ep.hostIfname) && !gone.has(ep.hostIfname)) continue;
      const s = linkSetDelta(ns, ep.hostIfname, cur(ep.hostIfname), { mtu, master: names.bridge, up: true });
      if (s) vnOps.push(s);
    }

    // Routes with Tether's protocol.
    const gwSubnet = formatCidr(parseCidr(gwCidr)!);
    const wantRoutes = new Map<string, { dst: string; via?: string; dev: string }>();
    for (const s of net.subnets) {
      const c = formatCidr(parseCidr(s)!);
      if (c !== gwSubnet) wantRoutes.set(c, { dst: c, dev: names.bridge });
    }
    if (transit) wantRoutes.set('default', { dst: 'default', via: transit.nodeIp, dev: names.breakoutVn });
    const routeKey = (r: { dst: string; via?: string; dev: string }) => `${r.dst} ${r.via ?? ''} ${r.dev}`;
    const haveRoutes = new Set(obs.routes.filter((r) => !gone.has(r.dev)).map((r) => routeKey(r)));
    for (const r of obs.routes) {
      if (gone.has(r.dev) || wantRoutes.has(r.dst)) continue; // a desired dst is overwritten by replace
      const del: KernelOp = { op: 'route-del', netns: ns, dst: r.dst, dev: r.dev };
      if (r.via) del.via = r.via;
      vnOps.push(del);
    }
    for (const w of wantRoutes.values()) {
      if (haveRoutes.has(routeKey(w))) continue;
      const op: KernelOp = { op: 'route-replace', netns: ns, dst: w.dst, dev: w.dev };
      if (w.via) op.via = w.via;
      vnOps.push(op);
    }

    // Neighbour (proxy ARP) entries for remote endpoints, on the VXLAN device.
    const wantNeigh = new Map<string, string>();
    const wantFdb = new Map<string, string>();
    for (const r of net.remoteEndpoints) {
      wantNeigh.set(r.ip, r.mac);
      wantFdb.set(r.mac, r.vtep);
    }
    const vxGone = gone.has(vx);
    const haveNeigh = new Map<string, string>();
    for (const n of obs.neighs) if (n.dev === vx && !vxGone) haveNeigh.set(n.ip, n.mac);
    for (const [ip] of haveNeigh)
      if (!wantNeigh.has(ip)) {
        vnOps.push({ op: 'neigh-del', netns: ns, dev: vx, ip });
        stats.entriesDeleted += 1;
      }
    for (const [ip, mac] of wantNeigh)
      if (haveNeigh.get(ip) !== mac) {
        vnOps.push({ op: 'neigh-replace', netns: ns, dev: vx, ip, mac });
        stats.entriesAdded += 1;
      }

    // ---- bridge batch: forwarding entries (VXLAN: MAC → VTEP; bridge: MAC → VXLAN port).
    const brOps: KernelOp[] = [];
    const haveSelf = new Map<string, string>();
    const haveMaster = new Set<string>();
    for (const f of obs.fdb) {
      if (f.dev !== vx || vxGone) continue;
      if (f.target === 'self' && f.dst) haveSelf.set(f.mac, f.dst);
      if (f.target === 'master') haveMaster.add(f.mac);
    }
    const vxPortOk = !vxGone && cur(vx)?.master === names.bridge;
    for (const [mac, dst] of haveSelf)
      if (!wantFdb.has(mac)) {
        brOps.push({ op: 'fdb-del', netns: ns, dev: vx, mac, target: 'self', dst });
        stats.entriesDeleted += 1;
      }
    if (vxPortOk)
      for (const mac of haveMaster)
        if (!wantFdb.has(mac)) {
          brOps.push({ op: 'fdb-del', netns: ns, dev: vx, mac, target: 'master' });
          stats.entriesDeleted += 1;
        }
    for (const [mac, dst] of wantFdb) {
      if (haveSelf.get(mac) !== dst) {
        brOps.push({ op: 'fdb-replace', netns: ns, dev: vx, mac, target: 'self', dst });
        stats.entriesAdded += 1;
      }
      if (!vxPortOk || !haveMaster.has(mac)) {
        brOps.push({ op: 'fdb-replace', netns: ns, dev: vx, mac, target: 'master' });
        stats.entriesAdded += 1;
      }
    }

    // ---- sysctl + nft
    const sysOps: KernelOp[] = [];
    if (transit && obs.sysctl[IP_FORWARD] !== '1')
      sysOps.push({ op: 'sysctl', netns: ns, key: IP_FORWARD, value: '1' });
    // br_netfilter hands bridged frames to the IP hooks only where policy needs it: the
    // kernel's default (1 for all three) makes every network's bridged traffic pay for the IP
    // hooks, and for conntrack wherever a NAT or ct table is loaded (red's SNAT table would
    // track every bridged frame). Only IPv4 in `inet-br-netfilter` mode needs it: policy is
    // IPv4 (its table accepts other protocols unjudged), and no ARP table exists.
    if (observed.policy.facts.brNetfilter) {
      const v4 = policyMode === 'inet-br-netfilter' && net.policies.length ? '1' : '0';
      for (const key of BRIDGE_NF_CALLS) {
        const want = key === BRIDGE_NF_CALL_IPTABLES ? v4 : '0';
        if (obs.sysctl[key] !== want) sysOps.push({ op: 'sysctl', netns: ns, key, value: want });
      }
    }
    const policy = policyTable(net, policyMode);
    const nftOps = [
      ...planNft(ns, vnNatTable(net), 'ip', names.vnNatTable, obs),
      // The table of the other family (another mode, an older version) goes in the same transaction.
      ...planNft(ns, policy?.family === 'bridge' ? policy : undefined, 'bridge', names.vnPolicyTable, obs),
      ...planNft(ns, policy?.family === 'inet' ? policy : undefined, 'inet', names.vnPolicyTable, obs),
    ];
    phaseVn.push(...vnOps, ...brOps, ...sysOps, ...nftOps);
  }

  // Node namespace: leftovers of Tether's (a VXLAN never moved, a breakout end of a removed
  // network) are deleted; nothing else there is touched.
  for (const l of observed.node.links)
    if (/^(tvx|tbo)\d+$/.test(l.name) && !desiredNodeLinks.has(l.name))
      phaseNode.push({ op: 'link-del', netns: nodeNs, name: l.name });

  const nodeNat = nodeNatTable(desired);
  phaseEnd.push(...planNft(nodeNs, nodeNat, 'ip', names.nodeNatTable(desired.netnsPrefix), observed.node));
  phaseEnd.push(
    ...planNft(nodeNs, nodeRawTable(desired), 'ip', names.nodeRawTable(desired.netnsPrefix), observed.node),
  );
  if (nodeNat && observed.node.sysctl[IP_FORWARD] !== '1')
    phaseEnd.push({ op: 'sysctl', netns: nodeNs, key: IP_FORWARD, value: '1' });

  const pattern = names.vnNetnsPattern(desired.netnsPrefix);
  for (const ns of [...existing].sort())
    if (pattern.test(ns) && !desiredNs.has(ns)) {
      phaseEnd.push({ op: 'netns-del', name: ns });
      stats.netnsDeleted += 1;
    }

  return { ops: [...phaseNetns, ...phaseTeardown, ...phaseNode, ...phaseVn, ...phaseEnd], stats };
}
