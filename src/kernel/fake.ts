import type {
  BatchResult,
  Kernel,
  KernelOp,
  KernelOpName,
  NetnsRef,
  NftFamily,
  NftTable,
  NsState,
  ObservedLink,
  OpFailure,
  PolicyKernelFacts,
  ReadOptions,
  Tool,
} from './types.js';
import { BRIDGE_NF_CALL_IPTABLES, BRIDGE_NF_CALLS } from './types.js';

interface FakeLink {
  name: string;
  kind?: string;
  mtu: number;
  mac: string;
  up: boolean;
  master?: string;
  learning?: boolean;
  vxlan?: { vni: number; local: string; port: number; sockNs: string };
  /** veth peer: namespace key and name. */
  peer?: { ns: string; name: string };
  addrs: string[];
}

interface FakeNs {
  links: Map<string, FakeLink>;
  routes: Map<string, { dst: string; via?: string; dev: string }>;
  neighs: Map<string, { dev: string; ip: string; mac: string }>;
  fdb: Map<string, { dev: string; mac: string; target: 'self' | 'master'; dst?: string }>;
  nft: Map<string, { table: NftTable; sets: Map<string, string[]>; counters: Map<string, number> }>;
  sysctl: Map<string, string>;
  /** Policy routing: fwmark rules by `priority fwmark table`, routes of numbered tables. */
  rules: Map<string, { priority: number; fwmark: number; table: number }>;
  tableRoutes: Map<string, { dst: string; via?: string; dev: string; table: number; onlink?: boolean }>;
}

/** Key of the caller's own namespace in the fake. */
const ROOT = '';

class KernelErr extends Error {}

/** What this project's test VMs offer (br_netfilter built in, no nf_conntrack_bridge). */
export const TEST_VM_POLICY_FACTS: PolicyKernelFacts = {
  brNetfilter: true,
  inetConntrack: true,
  bridgeConntrack: false,
};

function newNs(facts: PolicyKernelFacts): FakeNs {
  const sysctl = new Map([
    ['net.ipv4.ip_forward', '0'],
    ['net.ipv4.conf.all.send_redirects', '1'],
  ]);
  // The kernel starts every namespace with all bridge-nf-call-* on.
  if (facts.brNetfilter) for (const k of BRIDGE_NF_CALLS) sysctl.set(k, '1');
  return {
    // A new namespace holds a loopback device, down.
    links: new Map([['lo', { name: 'lo', mtu: 65536, mac: '00:00:00:00:00:00', up: false, addrs: [] }]]),
    routes: new Map(),
    neighs: new Map(),
    fdb: new Map(),
    nft: new Map(),
    sysctl,
    rules: new Map(),
    tableRoutes: new Map(),
  };
}

let macCounter = 0;
function fakeMac(): string {
  macCounter += 1;
  const h = macCounter.toString(16).padStart(6, '0');
  return `02:fa:ce:${h.slice(0, 2)}:${h.slice(2, 4)}:${h.slice(4, 6)}`;
}

/**
 * An in-memory kernel with the semantics the vRouter relies on: `add` of something that exists
 * fails with EEXIST, `del` of something missing fails with ENOENT, `replace` always wins;
 * deleting a namespace destroys its links (and veth peers elsewhere); moving a link flushes its
 * addresses, routes and entries; a VXLAN device keeps its UDP socket (and VNI uniqueness) in
 * the namespace where it was created. `failNext(op)` makes the next op of that kind fail, so
 * tests can interrupt a plan anywhere. `log` records every batch as it would be run.
 */
export class FakeKernel implements Kernel {
  private readonly spaces: Map<string, FakeNs>;
  private readonly failures: { op: KernelOpName; message: string; after: number }[] = [];
  /** Every apply() call, in order. */
  readonly log: { tool: Tool; netns: NetnsRef; ops: KernelOp[] }[] = [];
  /** Number of apply() calls (≈ processes the real kernel would have started). */
  processes = 0;

  /** `facts`: what the fake kernel offers for stateful bridged filtering (default: the test VM's). */
  constructor(readonly policyFacts: PolicyKernelFacts = TEST_VM_POLICY_FACTS) {
    this.spaces = new Map([[ROOT, newNs(policyFacts)]]);
  }

  /** Number of probePolicy() calls. */
  probes = 0;

  async probePolicy(_netns: NetnsRef): Promise<PolicyKernelFacts> {
    this.probes += 1;
    return { ...this.policyFacts };
  }

  /** The next op of this kind (after skipping `after` successful ones) fails with `message`. */
  failNext(op: KernelOpName, message = 'injected failure', after = 0): void {
    this.failures.push({ op, message, after });
  }

  /** Test setup: create a link as some other actor would (a CNI plugin, the lab). */
  addLink(netns: NetnsRef, link: Partial<FakeLink> & { name: string }): void {
    const ns = this.ns(netns);
    ns.links.set(link.name, { mtu: 1500, mac: fakeMac(), up: true, addrs: [], ...link });
  }

  /** Test setup: a veth pair whose ends live in two namespaces. */
  addVeth(netns: NetnsRef, name: string, peerNetns: NetnsRef, peer: string, mtu = 1500): void {
    const a = this.ns(netns);
    const b = this.ns(peerNetns);
    a.links.set(name, {
      name,
      kind: 'veth',
      mtu,
      mac: fakeMac(),
      up: true,
      addrs: [],
      peer: { ns: peerNetns ?? ROOT, name: peer },
    });
    b.links.set(peer, {
      name: peer,
      kind: 'veth',
      mtu,
      mac: fakeMac(),
      up: true,
      addrs: [],
      peer: { ns: netns ?? ROOT, name },
    });
  }

  /** Test setup: a namespace created by someone else (a node, a workload). */
  addNsForTest(name: string): void {
    if (!this.spaces.has(name)) this.spaces.set(name, newNs(this.policyFacts));
  }

  /** Everything the fake holds, with generated MACs of non-bridge links removed, for comparisons. */
  async dump(): Promise<Record<string, unknown>> {
    const out: Record<string, unknown> = {};
    for (const key of [...this.spaces.keys()].sort()) {
      const s = await this.readNs(key === ROOT ? undefined : key, {
        entries: true,
        nftTables: [...(this.spaces.get(key)?.nft.keys() ?? [])].map((k) => {
          const [family, name] = k.split(' ');
          return { family: family as NftFamily, name: name! };
        }),
        sysctls: ['net.ipv4.ip_forward', BRIDGE_NF_CALL_IPTABLES],
      });
      if (!s) continue;
      for (const l of s.links) if (l.kind !== 'bridge') delete l.mac;
      s.links.sort((a, b) => (a.name < b.name ? -1 : 1));
      s.routes.sort((a, b) => (a.dst < b.dst ? -1 : 1));
      s.neighs.sort((a, b) => (a.ip < b.ip ? -1 : 1));
      s.fdb.sort((a, b) => (`${a.mac}${a.target}` < `${b.mac}${b.target}` ? -1 : 1));
      out[key || '(root)'] = s;
    }
    return out;
  }

  hasNs(name: string): boolean {
    return this.spaces.has(name);
  }

  counterAdd(netns: NetnsRef, family: NftFamily, table: string, counter: string, packets: number): void {
    const t = this.ns(netns).nft.get(`${family} ${table}`);
    if (t) t.counters.set(counter, (t.counters.get(counter) ?? 0) + packets);
  }

  private ns(netns: NetnsRef): FakeNs {
    const key = netns ?? ROOT;
    const ns = this.spaces.get(key);
    if (!ns) throw new KernelErr(`Cannot open network namespace "${key}": No such file or directory`);
    return ns;
  }

  async listNetns(): Promise<string[]> {
    return [...this.spaces.keys()].filter((k) => k !== ROOT).sort();
  }

  async readNs(netns: NetnsRef, opts: ReadOptions = {}): Promise<NsState | undefined> {
    const ns = this.spaces.get(netns ?? ROOT);
    if (!ns) return undefined;
    const links: ObservedLink[] = [...ns.links.values()].map((l) => {
      const o: ObservedLink = { name: l.name, mtu: l.mtu, mac: l.mac, up: l.up, addrs: [...l.addrs] };
      if (l.kind) o.kind = l.kind;
      if (l.master) {
        o.master = l.master;
        o.learning = l.learning ?? true;
      }
      if (l.vxlan)
        o.vxlan = {
          vni: l.vxlan.vni,
          local: l.vxlan.local,
          port: l.vxlan.port,
          learning: false,
          proxy: true,
        };
      return o;
    });
    const state: NsState = {
      links,
      routes: [...ns.routes.values()].map((r) => ({ ...r })),
      neighs: opts.entries ? [...ns.neighs.values()].map((n) => ({ ...n })) : [],
      fdb: opts.entries ? [...ns.fdb.values()].map((f) => ({ ...f })) : [],
      nft: [],
      sysctl: {},
    };
    if (opts.rules) {
      state.rules = [...ns.rules.values()].map((r) => ({ ...r }));
      state.tableRoutes = [...ns.tableRoutes.values()].map((r) => ({ ...r }));
    }
    for (const w of opts.nftTables ?? []) {
      const t = ns.nft.get(`${w.family} ${w.name}`);
      if (!t) continue;
      state.nft.push({
        family: w.family,
        name: w.name,
        fingerprint: t.table.fingerprint,
        sets: Object.fromEntries([...t.sets].map(([k, v]) => [k, [...v]])),
        counters: Object.fromEntries([...t.counters].map(([k, v]) => [k, { packets: v, bytes: v * 84 }])),
      });
    }
    for (const k of opts.sysctls ?? []) {
      const v = ns.sysctl.get(k);
      if (v !== undefined) state.sysctl[k] = v;
    }
    return state;
  }

  async apply(tool: Tool, netns: NetnsRef, ops: readonly KernelOp[]): Promise<BatchResult> {
    this.processes += 1;
    this.log.push({ tool, netns, ops: [...ops] });
    const failures: OpFailure[] = [];
    if (tool === 'nft') {
      // One transaction: all or nothing.
      const snapshot = this.spaces.get(netns ?? ROOT);
      const backup = snapshot ? new Map(snapshot.nft) : undefined;
      for (const [index, op] of ops.entries()) {
        try {
          this.injected(op);
          this.exec(op);
        } catch (e) {
          if (snapshot && backup) snapshot.nft = backup;
          const message = (e as Error).message;
          return {
            failures: ops.map((o, i) => ({
              index: i,
              op: o,
              message: i === index ? message : 'transaction aborted',
            })),
          };
        }
      }
      return { failures };
    }
    for (const [index, op] of ops.entries()) {
      try {
        this.injected(op);
        this.exec(op);
      } catch (e) {
        failures.push({ index, op, message: (e as Error).message });
      }
    }
    return { failures };
  }

  private injected(op: KernelOp): void {
    const i = this.failures.findIndex((f) => f.op === op.op);
    if (i < 0) return;
    const f = this.failures[i]!;
    if (f.after > 0) {
      f.after -= 1;
      return;
    }
    this.failures.splice(i, 1);
    throw new KernelErr(f.message);
  }

  private link(ns: FakeNs, name: string): FakeLink {
    const l = ns.links.get(name);
    if (!l) throw new KernelErr(`Cannot find device "${name}"`);
    return l;
  }

  private newLinkCheck(ns: FakeNs, name: string): void {
    if (ns.links.has(name)) throw new KernelErr('RTNETLINK answers: File exists');
  }

  private removeLink(nsKey: string, name: string, viaPeer = false): void {
    const ns = this.spaces.get(nsKey);
    const l = ns?.links.get(name);
    if (!ns || !l) return;
    ns.links.delete(name);
    this.flushDev(ns, name);
    for (const other of ns.links.values())
      if (other.master === name) {
        delete other.master;
        delete other.learning;
        this.flushMasterFdb(ns, other.name);
      }
    if (l.peer && !viaPeer) this.removeLink(l.peer.ns, l.peer.name, true);
  }

  private flushMasterFdb(ns: FakeNs, dev: string): void {
    for (const [k, f] of ns.fdb) if (f.dev === dev && f.target === 'master') ns.fdb.delete(k);
  }

  private flushDev(ns: FakeNs, dev: string): void {
    for (const [k, r] of ns.routes) if (r.dev === dev) ns.routes.delete(k);
    for (const [k, r] of ns.tableRoutes) if (r.dev === dev) ns.tableRoutes.delete(k);
    for (const [k, n] of ns.neighs) if (n.dev === dev) ns.neighs.delete(k);
    for (const [k, f] of ns.fdb) if (f.dev === dev) ns.fdb.delete(k);
  }

  private exec(op: KernelOp): void {
    switch (op.op) {
      case 'netns-add':
        if (this.spaces.has(op.name))
          throw new KernelErr(`Cannot create namespace file "/run/netns/${op.name}": File exists`);
        this.spaces.set(op.name, newNs(this.policyFacts));
        return;
      case 'netns-del': {
        const ns = this.spaces.get(op.name);
        if (!ns)
          throw new KernelErr(
            `Cannot remove namespace file "/run/netns/${op.name}": No such file or directory`,
          );
        for (const name of [...ns.links.keys()]) this.removeLink(op.name, name);
        this.spaces.delete(op.name);
        return;
      }
      case 'vxlan-add': {
        const ns = this.ns(op.netns);
        const target = op.into ? this.ns(op.into) : ns;
        this.newLinkCheck(target, op.name);
        const sockNs = op.netns ?? ROOT;
        for (const s of this.spaces.values())
          for (const l of s.links.values())
            if (l.vxlan && l.vxlan.sockNs === sockNs && l.vxlan.vni === op.vni && l.vxlan.port === op.dstport)
              throw new KernelErr('Error: A VXLAN device with the specified VNI already exists.');
        this.link(ns, op.dev);
        target.links.set(op.name, {
          name: op.name,
          kind: 'vxlan',
          mtu: op.mtu,
          mac: fakeMac(),
          up: false,
          addrs: [],
          vxlan: { vni: op.vni, local: op.local, port: op.dstport, sockNs },
        });
        return;
      }
      case 'bridge-add': {
        const ns = this.ns(op.netns);
        this.newLinkCheck(ns, op.name);
        ns.links.set(op.name, {
          name: op.name,
          kind: 'bridge',
          mtu: op.mtu,
          mac: op.mac,
          up: false,
          addrs: [],
        });
        // Per-device IPv4 settings appear with the device, with the kernel's defaults.
        ns.sysctl.set(`net.ipv4.conf.${op.name}.send_redirects`, '1');
        return;
      }
      case 'veth-add': {
        const ns = this.ns(op.netns);
        const peerNs = this.ns(op.peerNetns);
        this.newLinkCheck(ns, op.name);
        this.newLinkCheck(peerNs, op.peer);
        const a = op.netns ?? ROOT;
        const b = op.peerNetns ?? ROOT;
        ns.links.set(op.name, {
          name: op.name,
          kind: 'veth',
          mtu: op.mtu,
          mac: fakeMac(),
          up: false,
          addrs: [],
          peer: { ns: b, name: op.peer },
        });
        peerNs.links.set(op.peer, {
          name: op.peer,
          kind: 'veth',
          mtu: op.mtu,
          mac: fakeMac(),
          up: false,
          addrs: [],
          peer: { ns: a, name: op.name },
        });
        return;
      }
      case 'link-move': {
        const from = this.ns(op.netns);
        const l = this.link(from, op.name);
        const to = this.ns(op.to);
        this.newLinkCheck(to, op.name);
        from.links.delete(op.name);
        this.flushDev(from, op.name);
        l.addrs = [];
        l.up = false;
        delete l.master;
        delete l.learning;
        to.links.set(op.name, l);
        if (l.peer) {
          const p = this.spaces.get(l.peer.ns)?.links.get(l.peer.name);
          if (p?.peer) p.peer = { ns: op.to, name: op.name };
        }
        return;
      }
      case 'link-set': {
        const ns = this.ns(op.netns);
        const l = this.link(ns, op.name);
        if (op.master) {
          const m = this.link(ns, op.master);
          if (m.kind !== 'bridge') throw new KernelErr('Error: Device is not a bridge');
        }
        if (op.mtu !== undefined) l.mtu = op.mtu;
        if (op.master === null) {
          delete l.master;
          delete l.learning;
          this.flushMasterFdb(ns, l.name);
        } else if (op.master !== undefined && op.master !== l.master) {
          // Leaving a bridge (or changing bridge) drops the port's bridge entries.
          if (l.master) this.flushMasterFdb(ns, l.name);
          l.master = op.master;
          l.learning = true;
        }
        if (op.up !== undefined) l.up = op.up;
        if (op.learning !== undefined) {
          if (!l.master) throw new KernelErr('Error: not a bridge port');
          l.learning = op.learning;
        }
        return;
      }
      case 'link-del': {
        const ns = this.ns(op.netns);
        this.link(ns, op.name);
        this.removeLink(op.netns ?? ROOT, op.name);
        return;
      }
      case 'addr-replace': {
        const l = this.link(this.ns(op.netns), op.dev);
        if (!l.addrs.includes(op.cidr)) l.addrs.push(op.cidr);
        return;
      }
      case 'addr-del': {
        const l = this.link(this.ns(op.netns), op.dev);
        if (!l.addrs.includes(op.cidr))
          throw new KernelErr('RTNETLINK answers: Cannot assign requested address');
        l.addrs = l.addrs.filter((a) => a !== op.cidr);
        return;
      }
      case 'route-replace': {
        const ns = this.ns(op.netns);
        this.link(ns, op.dev);
        if (op.table !== undefined) {
          const r: { dst: string; via?: string; dev: string; table: number; onlink?: boolean } = {
            dst: op.dst,
            dev: op.dev,
            table: op.table,
          };
          if (op.via) r.via = op.via;
          if (op.onlink) r.onlink = true;
          ns.tableRoutes.set(`${op.table} ${op.dst}`, r);
          return;
        }
        const r: { dst: string; via?: string; dev: string } = { dst: op.dst, dev: op.dev };
        if (op.via) r.via = op.via;
        ns.routes.set(op.dst, r);
        return;
      }
      case 'route-del': {
        const ns = this.ns(op.netns);
        if (op.table !== undefined) {
          if (!ns.tableRoutes.delete(`${op.table} ${op.dst}`))
            throw new KernelErr('RTNETLINK answers: No such process');
          return;
        }
        if (!ns.routes.has(op.dst)) throw new KernelErr('RTNETLINK answers: No such process');
        ns.routes.delete(op.dst);
        return;
      }
      case 'rule-add': {
        const ns = this.ns(op.netns);
        const k = `${op.priority} ${op.fwmark} ${op.table}`;
        // The kernel refuses an identical rule (EEXIST) since 4.x with NLM_F_EXCL (`ip rule add`).
        if (ns.rules.has(k)) throw new KernelErr('RTNETLINK answers: File exists');
        ns.rules.set(k, { priority: op.priority, fwmark: op.fwmark, table: op.table });
        return;
      }
      case 'rule-del': {
        const ns = this.ns(op.netns);
        if (!ns.rules.delete(`${op.priority} ${op.fwmark} ${op.table}`))
          throw new KernelErr('RTNETLINK answers: No such file or directory');
        return;
      }
      case 'neigh-replace': {
        const ns = this.ns(op.netns);
        this.link(ns, op.dev);
        ns.neighs.set(`${op.dev} ${op.ip}`, { dev: op.dev, ip: op.ip, mac: op.mac });
        return;
      }
      case 'neigh-del': {
        const ns = this.ns(op.netns);
        if (!ns.neighs.delete(`${op.dev} ${op.ip}`))
          throw new KernelErr('RTNETLINK answers: No such file or directory');
        return;
      }
      case 'fdb-replace': {
        const ns = this.ns(op.netns);
        const l = this.link(ns, op.dev);
        if (op.target === 'master' && !l.master)
          throw new KernelErr('RTNETLINK answers: Operation not supported');
        const e: { dev: string; mac: string; target: 'self' | 'master'; dst?: string } = {
          dev: op.dev,
          mac: op.mac,
          target: op.target,
        };
        if (op.dst) e.dst = op.dst;
        ns.fdb.set(`${op.dev} ${op.mac} ${op.target}`, e);
        return;
      }
      case 'fdb-del': {
        const ns = this.ns(op.netns);
        if (!ns.fdb.delete(`${op.dev} ${op.mac} ${op.target}`))
          throw new KernelErr('RTNETLINK answers: No such file or directory');
        return;
      }
      case 'sysctl': {
        const ns = this.ns(op.netns);
        if (!ns.sysctl.has(op.key))
          throw new KernelErr(
            `sysctl: cannot stat /proc/sys/${op.key.replace(/\./g, '/')}: No such file or directory`,
          );
        ns.sysctl.set(op.key, op.value);
        return;
      }
      case 'nft-table': {
        const ns = this.ns(op.netns);
        const usesCt = op.table.chains.some((c) => c.rules.some((r) => /(^|\s)ct\s/.test(r)));
        if (usesCt && op.table.family === 'bridge' && !this.policyFacts.bridgeConntrack)
          throw new KernelErr('Error: Could not process rule: Protocol error');
        if (usesCt && op.table.family !== 'bridge' && !this.policyFacts.inetConntrack)
          throw new KernelErr('Error: Could not process rule: No such file or directory');
        ns.nft = new Map(ns.nft);
        ns.nft.set(`${op.table.family} ${op.table.name}`, {
          table: op.table,
          sets: new Map(op.table.sets.map((s) => [s.name, [...s.elements]])),
          counters: new Map(op.table.counters.map((c) => [c, 0])),
        });
        return;
      }
      case 'nft-set': {
        const ns = this.ns(op.netns);
        const t = ns.nft.get(`${op.family} ${op.table}`);
        if (!t?.sets.has(op.set)) throw new KernelErr(`Error: No such file or directory; set ${op.set}`);
        ns.nft = new Map(ns.nft);
        const sets = new Map(t.sets);
        sets.set(op.set, [...op.elements]);
        ns.nft.set(`${op.family} ${op.table}`, { ...t, sets });
        return;
      }
      case 'nft-table-del': {
        const ns = this.ns(op.netns);
        ns.nft = new Map(ns.nft);
        ns.nft.delete(`${op.family} ${op.table}`);
        return;
      }
    }
  }
}
