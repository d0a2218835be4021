/**
 * Test topology for vRouter integration tests: two "node" namespaces joined by a veth underlay,
 * a "site router" namespace behind node A's uplink, and workload namespaces attached the way a
 * CNI plugin would (veth pair, workload end configured in its namespace, host end left in the
 * node namespace). Every name carries a per-run prefix; cleanup removes only what was created.
 */
import { randomBytes } from 'node:crypto';
import { type CommandRunner, ProcessRunner } from '../../../src/lib/exec.js';
import type {
  DesiredNetwork,
  DesiredNodeNetwork,
  LocalEndpoint,
  RemoteEndpoint,
} from '../../../src/node/vrouter/model.js';
import { gatewayMacFor } from '../../../src/node/vrouter/model.js';
import { allocateTransit } from '../../../src/node/vrouter/resources.js';

export const isRoot = process.getuid?.() === 0;

export const UNDERLAY_MTU = 1500;
export const OVERLAY_MTU = UNDERLAY_MTU - 50;

export interface Workload {
  ns: string;
  hostIfname: string;
  mac: string;
  ip: string;
  node: 'a' | 'b';
  labels: Record<string, string>;
}

export class Topo {
  readonly runner: CommandRunner = new ProcessRunner();
  /** Short per-run id, e.g. `vq3k`. */
  readonly id: string;
  readonly nodeA: string;
  readonly nodeB: string;
  readonly router: string;
  vtepA = '192.168.77.1';
  readonly vtepB = '192.168.77.2';
  readonly uplinkA = '10.99.0.2';
  readonly routerIp = '10.99.0.1';
  /** An address "behind" the site router (on its loopback). */
  readonly siteNet = '172.31.255.1';
  private readonly created: string[] = [];
  private ifCounter = 0;
  readonly workloads: Workload[] = [];

  constructor(label = 'v') {
    this.id = `${label}${randomBytes(3).toString('hex').slice(0, 4)}`;
    this.nodeA = `${this.id}-nodeA`;
    this.nodeB = `${this.id}-nodeB`;
    this.router = `${this.id}-router`;
  }

  async sh(cmd: string, args: string[], netns?: string, input?: string): Promise<string> {
    const opts = netns ? { netns, ...(input ? { input } : {}) } : input ? { input } : {};
    return (await this.runner.run(cmd, args, opts)).stdout;
  }

  async try(cmd: string, args: string[], netns?: string): Promise<boolean> {
    const r = await this.runner.run(cmd, args, { netns, allowFailure: true });
    return r.code === 0;
  }

  async addNs(name: string): Promise<void> {
    await this.sh('ip', ['netns', 'add', name]);
    this.created.push(name);
    await this.sh('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  }

  /** Node namespaces, underlay veth, site router with a network behind it. */
  async build(opts: { router?: boolean } = {}): Promise<void> {
    const ping = await this.runner.run('ping', ['-V'], { allowFailure: true }).catch(() => undefined);
    if (ping?.code !== 0)
      throw new Error(
        'vRouter integration tests need `ping` (Debian package iputils-ping) on the test machine',
      );
    await this.addNs(this.nodeA);
    await this.addNs(this.nodeB);
    await this.sh('ip', [
      '-n',
      this.nodeA,
      'link',
      'add',
      'ul0',
      'mtu',
      String(UNDERLAY_MTU),
      'type',
      'veth',
      'peer',
      'name',
      'ul0',
      'netns',
      this.nodeB,
    ]);
    await this.sh('ip', ['-n', this.nodeA, 'addr', 'add', `${this.vtepA}/24`, 'dev', 'ul0']);
    await this.sh('ip', ['-n', this.nodeB, 'addr', 'add', `${this.vtepB}/24`, 'dev', 'ul0']);
    await this.sh('ip', ['-n', this.nodeA, 'link', 'set', 'ul0', 'up']);
    await this.sh('ip', ['-n', this.nodeB, 'link', 'set', 'ul0', 'up']);
    if (opts.router) {
      await this.addNs(this.router);
      await this.sh('ip', [
        '-n',
        this.nodeA,
        'link',
        'add',
        'up0',
        'type',
        'veth',
        'peer',
        'name',
        'dn0',
        'netns',
        this.router,
      ]);
      await this.sh('ip', ['-n', this.nodeA, 'addr', 'add', `${this.uplinkA}/24`, 'dev', 'up0']);
      await this.sh('ip', ['-n', this.nodeA, 'link', 'set', 'up0', 'up']);
      await this.sh('ip', ['-n', this.router, 'addr', 'add', `${this.routerIp}/24`, 'dev', 'dn0']);
      await this.sh('ip', ['-n', this.router, 'link', 'set', 'dn0', 'up']);
      await this.sh('ip', ['-n', this.router, 'addr', 'add', `${this.siteNet}/32`, 'dev', 'lo']);
      await this.sh('ip', ['-n', this.nodeA, 'route', 'add', '172.31.255.0/24', 'via', this.routerIp]);
    }
  }

  /** A workload as a CNI plugin would attach it: the host end stays (down) in the node namespace. */
  async addWorkload(
    node: 'a' | 'b',
    name: string,
    ip: string,
    gateway: string,
    labels: Record<string, string> = {},
  ): Promise<Workload> {
    const ns = `${this.id}-w-${name}`;
    await this.addNs(ns);
    this.ifCounter += 1;
    const hostIfname = `${this.id}h${this.ifCounter}`;
    const mac = `02:00:${randomBytes(4).toString('hex').match(/../g)!.join(':')}`;
    const nodeNs = node === 'a' ? this.nodeA : this.nodeB;
    await this.sh('ip', [
      '-n',
      nodeNs,
      'link',
      'add',
      hostIfname,
      'mtu',
      String(OVERLAY_MTU),
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      ns,
    ]);
    await this.sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'address', mac, 'mtu', String(OVERLAY_MTU), 'up']);
    await this.sh('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    await this.sh('ip', ['-n', ns, 'route', 'add', 'default', 'via', gateway]);
    const w: Workload = { ns, hostIfname, mac, ip, node, labels };
    this.workloads.push(w);
    return w;
  }

  async ping(from: Workload | string, to: string, count = 1): Promise<boolean> {
    const ns = typeof from === 'string' ? from : from.ns;
    return this.try('ping', ['-c', String(count), '-W', '1', '-i', '0.2', to], ns);
  }

  /** Removes every namespace this topology created, by name. */
  async destroy(): Promise<void> {
    for (const ns of this.created.reverse())
      await this.runner.run('ip', ['netns', 'del', ns], { allowFailure: true });
  }

  /** Also remove namespaces a VRouter created under these prefixes (if a test failed before teardown). */
  async destroyPrefixed(prefixes: string[]): Promise<void> {
    const list = await this.runner.run('ip', ['-j', 'netns', 'list'], { allowFailure: true });
    const all = list.stdout.trim() ? (JSON.parse(list.stdout) as { name: string }[]).map((n) => n.name) : [];
    for (const name of all)
      if (prefixes.some((p) => name.startsWith(`${p}-vn`)))
        await this.runner.run('ip', ['netns', 'del', name], { allowFailure: true });
  }
}

export function network(
  name: string,
  vni: number,
  opts: { subnet?: string; gateway?: string; breakout?: boolean } = {},
): DesiredNetwork {
  const n: DesiredNetwork = {
    name,
    vni,
    subnets: [opts.subnet ?? '10.1.0.0/24'],
    gateway: opts.gateway ?? '10.1.0.1',
    gatewayMac: gatewayMacFor(vni),
    localBreakout: Boolean(opts.breakout),
    localEndpoints: [],
    remoteEndpoints: [],
    policies: [],
  };
  if (opts.breakout) n.breakoutTransit = allocateTransit([vni]).get(vni)!;
  return n;
}

export function local(w: Workload): LocalEndpoint {
  return { id: w.ns, hostIfname: w.hostIfname, mac: w.mac, ip: w.ip, labels: w.labels };
}

export function remote(w: Workload, vtep: string): RemoteEndpoint {
  return { id: w.ns, mac: w.mac, ip: w.ip, vtep, labels: w.labels };
}

export function nodeDesired(
  topo: Topo,
  node: 'a' | 'b',
  networks: DesiredNetwork[],
  breakout = false,
): DesiredNodeNetwork {
  const d: DesiredNodeNetwork = {
    node: node === 'a' ? 'node-a' : 'node-b',
    netnsPrefix: `${topo.id}${node}`,
    underlay: {
      ifname: 'ul0',
      vtepIp: node === 'a' ? topo.vtepA : topo.vtepB,
      mtu: UNDERLAY_MTU,
      netns: node === 'a' ? topo.nodeA : topo.nodeB,
    },
    networks,
  };
  if (breakout) d.breakout = { uplinkIfname: 'up0' };
  return d;
}
