import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { VirtualNetwork } from '../api/kinds.js';
import { API_VERSION, type TetherObject } from '../api/resource.js';
import { resolveSiteLocal } from '../api/site-local.js';
import { TetherError } from '../lib/errors.js';
import type { CommandRunner } from '../lib/exec.js';
import type { Logger } from '../lib/log.js';
import type { ApplyOutcome, StateConsumer } from './agent/reconcile.js';
import type { DurableState } from './agent/session.js';
import { siteBlockOf } from './cni/blocks.js';
import { FileIpam } from './cni/file-ipam.js';
import type { AllocateRequest, AttachmentKey, EndpointRegistry, LocalEndpoint } from './cni/registry.js';
import { CniServer } from './cni/server.js';
import { type FipReturn, withFipReturns } from './gateway/model.js';
import { PortmapApplier, renderPortmaps } from './portmap.js';
import { VRouter } from './vrouter/agent.js';
import {
  type BreakoutConfig,
  DEFAULT_VXLAN_PORT,
  type DesiredNodeNetwork,
  names,
  type Underlay,
} from './vrouter/model.js';
import { desiredFromResources } from './vrouter/resources.js';
import { validateDesired } from './vrouter/validate.js';

/** Host ports the node itself listens on or will (issue 10: BGP and BFD to the site router). */
const RESERVED_HOST_PORTS: ReadonlyArray<{ protocol: string; port: number; what: string }> = [
  { protocol: 'tcp', port: 22, what: 'ssh' },
  { protocol: 'tcp', port: 179, what: 'BGP' },
  { protocol: 'udp', port: 3784, what: 'BFD' },
  { protocol: 'udp', port: 3785, what: 'BFD echo' },
];

export interface NetworkingOptions {
  stateDir: string;
  node: string;
  site: string;
  underlay: Underlay;
  netnsPrefix: string;
  breakout?: BreakoutConfig;
  cniSocket: string;
  runner: CommandRunner;
  log: Logger;
  /**
   * How often the node re-reads its endpoints from the kernel (ms, default 10 000): it
   * releases those whose network namespace is gone and learns MACs chained plugins changed.
   */
  sweepMs?: number;
  /** The SiteLocal set (docs/proxy.md): endpoints of the site's other nodes the site proxy
   *  accepted that the controller has not confirmed yet. */
  siteLocal?: () => readonly TetherObject[];
  /** Nodes the SiteLocal set speaks for (SiteLocal.nodes). */
  siteLocalNodes?: () => readonly string[];
}

/**
 * The objects desired state is built from: the cached slice, the SiteLocal set and the
 * node's own endpoints, with the precedence of `resolveSiteLocal` (src/api/site-local.ts):
 * own endpoints win, a covered node's slice copies are ignored, the slice wins over a
 * SiteLocal entry of the same name, IP or MAC.
 */
export function desiredObjects(input: {
  node: string;
  slice: readonly TetherObject[];
  siteLocal: readonly TetherObject[];
  /** Nodes whose endpoints come from `siteLocal` alone (SiteLocal.nodes): the slice's copies
   *  of them are older than what the node itself reported at the site. */
  siteLocalNodes?: readonly string[];
  local: readonly TetherObject[];
}): TetherObject[] {
  // The rules are src/api/site-local.ts's, shared with the site proxy that builds the set.
  const r = resolveSiteLocal({
    slice: input.slice,
    siteLocal: input.siteLocal,
    covered: input.siteLocalNodes ?? [],
    self: input.node,
    own: input.local,
  });
  return [...r.slice, ...r.siteLocal, ...input.local];
}

/** `dev:inode` of a network namespace path, or `undefined` when the path is gone. */
export function netnsIdOf(path: string): string | undefined {
  try {
    const st = statSync(path);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

const NETNS_DIR = '/var/run/netns';

/**
 * CNI_ARGS `TETHER_LABELS=app:web,tier:fe` → labels that policies select on. `app=web` is
 * read too, but breaks chains: the standard (Go) plugins refuse a CNI_ARGS pair with a second
 * `=` ("ARGS: invalid pair"), so every plugin after tether-cni would fail.
 */
export function labelsFromArgs(args: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of (args?.TETHER_LABELS ?? '').split(',')) {
    const i = pair.search(/[:=]/);
    if (i > 0) out[pair.slice(0, i).trim()] = pair.slice(i + 1).trim();
  }
  return out;
}

/** A stable endpoint id from a CNI attachment: DNS-safe and short. */
export function endpointId(containerId: string, ifname: string): string {
  const clean = (s: string) => s.toLowerCase().replace(/[^a-z0-9-]/g, '-');
  return `${clean(containerId).slice(0, 24)}-${clean(ifname)}`.replace(/^-+|-+$/g, '');
}

/** A local CNI attachment as the Endpoint resource the controller stores and reflects. */
export function endpointObject(node: string, site: string, vtep: string, ep: LocalEndpoint): TetherObject {
  const labels = labelsFromArgs(ep.args);
  return {
    apiVersion: API_VERSION,
    kind: 'Endpoint',
    metadata: {
      name: `${node}.${endpointId(ep.containerId, ep.ifname)}`,
      ...(Object.keys(labels).length ? { labels } : {}),
    },
    spec: {
      network: ep.network,
      node,
      site,
      mac: ep.mac,
      ip: ep.ip,
      vtep,
      hostIfname: ep.hostIfname,
      ...(Object.keys(labels).length ? { labels } : {}),
    },
  };
}

/**
 * The node's networking: the CNI endpoint (addresses from this site's block, persisted before
 * answering) and the vRouter (desired state from the cache plus local endpoints → kernel).
 * Local endpoints come from the node's own registry, never from the controller's echo, so
 * the site keeps forwarding to its workloads with the WAN down.
 */
export class NodeNetworking implements StateConsumer {
  readonly name = 'vrouter';
  readonly vrouter: VRouter;
  private readonly ipam: FileIpam;
  private readonly cni: CniServer;
  private cache: DurableState | undefined;
  private lastDesired: DesiredNodeNetwork | undefined;
  private lastReturns: readonly FipReturn[] = [];
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly portmaps: PortmapApplier;
  private sweeping: Promise<void> | undefined;
  /** Set by the composition root: report endpoints upstream, and re-run apply. */
  onEndpoints: ((eps: TetherObject[]) => void) | undefined;
  onLocalChange: (() => Promise<void>) | undefined;

  constructor(private readonly opts: NetworkingOptions) {
    // Bad flags (prefix, VTEP, MTU) fail at start-up, not at every apply afterwards.
    validateDesired({
      node: opts.node,
      netnsPrefix: opts.netnsPrefix,
      underlay: opts.underlay,
      ...(opts.breakout ? { breakout: opts.breakout } : {}),
      networks: [],
    });
    this.vrouter = new VRouter(opts.runner, opts.log.child({ component: 'vrouter' }));
    this.portmaps = new PortmapApplier(opts.runner);
    this.ipam = new FileIpam({
      file: join(opts.stateDir, 'ipam.json'),
      blockFor: (network) => siteBlockOf(this.knownNetwork(network), opts.site, opts.underlay.mtu - 50),
      onChange: () => {
        this.onEndpoints?.(this.localEndpointObjects());
        void this.onLocalChange?.();
      },
    });
    this.cni = new CniServer({
      socketPath: opts.cniSocket,
      registry: this.kernelBackedRegistry(this.ipam),
      logger: opts.log.child({ component: 'cni' }),
    });
  }

  /**
   * The registry the CNI endpoint serves: FileIpam, with the kernel in the loop. ADD answers
   * only once the vRouter has wired the interface and a packet flows (a runtime starts the
   * workload at once); DEL only once the interface is gone; CHECK re-reads the MAC.
   */
  private kernelBackedRegistry(ipam: FileIpam): EndpointRegistry {
    return {
      allocate: async (req) => {
        const netnsId = req.netns ? netnsIdOf(req.netns) : undefined;
        if (req.netns && !netnsId)
          throw new TetherError('TETHER_E_PRECONDITION', `network namespace ${req.netns} does not exist`, {
            field: 'netns',
          });
        const old = ipam.get(req);
        if (old?.netnsId && netnsId && old.netnsId !== netnsId) {
          // Same container id + ifname in another namespace: the old workload is gone.
          this.opts.log.info(
            { containerId: old.containerId, ip: old.ip },
            'cni: attachment re-added in a new namespace; releasing the old one',
          );
          await this.releaseNow(old);
        }
        if (req.portMappings?.length && !ipam.get(req)) this.checkPortMappings(req);
        return ipam.allocate(netnsId ? { ...req, netnsId } : req);
      },
      markAttached: async (key) => {
        await ipam.markAttached(key);
        await this.onLocalChange?.();
        return this.verifyWired(key);
      },
      update: (key, patch) => ipam.update(key, patch),
      release: async (key) => {
        const ep = ipam.get(key);
        if (!ep || (key.network !== undefined && key.network !== ep.network)) return undefined;
        return this.releaseNow(ep);
      },
      get: (key) => ipam.get(key),
      check: async (key) => {
        const ep = ipam.get(key);
        if (ep?.state !== 'attached' || !ep.netns) return ep;
        return this.learnMac(ep);
      },
      list: () => ipam.list(),
      gc: async (network, valid) => {
        const keep = new Set(valid.map((v) => `${v.containerId}/${v.ifname}`));
        const gone = ipam
          .list()
          .filter((e) => e.network === network && !keep.has(`${e.containerId}/${e.ifname}`));
        for (const ep of gone) await this.unwire(ep);
        const released = await ipam.gc(network, valid);
        await this.onLocalChange?.();
        return released;
      },
    };
  }

  /**
   * Removes the interface first (deleting one end of the veth takes the other: wherever the
   * host end lives, it stops forwarding now), then the address, then lets the vRouter drop
   * what referred to it. Answers only when the host end is gone.
   */
  private async releaseNow(ep: LocalEndpoint): Promise<LocalEndpoint | undefined> {
    await this.unwire(ep);
    const released = await this.ipam.release({ containerId: ep.containerId, ifname: ep.ifname });
    await this.onLocalChange?.();
    const left = await this.hostEndAt(ep);
    if (left)
      throw new TetherError('TETHER_E_KERNEL', `host end ${ep.hostIfname} is still present in ${left}`, {
        hostIfname: ep.hostIfname,
      });
    return released;
  }

  /** Namespaces the host end of an endpoint may be in: its network's, then the node's. */
  private hostNamespaces(ep: LocalEndpoint): (string | undefined)[] {
    const vni = this.vniOf(ep.network);
    return [
      ...(vni !== undefined ? [names.vnNetns(this.opts.netnsPrefix, vni)] : []),
      this.opts.underlay.netns,
    ];
  }

  private vniOf(network: string): number | undefined {
    const fromDesired = this.lastDesired?.networks.find((n) => n.name === network)?.vni;
    if (fromDesired !== undefined) return fromDesired;
    const vni = (this.cache?.get('VirtualNetwork', network) as VirtualNetwork | undefined)?.status?.vni;
    return typeof vni === 'number' ? vni : undefined;
  }

  private async unwire(ep: LocalEndpoint): Promise<void> {
    for (const ns of this.hostNamespaces(ep))
      await this.opts.runner.run('ip', [...(ns ? ['-n', ns] : []), 'link', 'del', ep.hostIfname], {
        allowFailure: true,
      });
  }

  /** Where the host end still is, or `undefined` when it is gone everywhere. */
  private async hostEndAt(ep: LocalEndpoint): Promise<string | undefined> {
    for (const ns of this.hostNamespaces(ep)) {
      const r = await this.opts.runner.run(
        'ip',
        [...(ns ? ['-n', ns] : []), 'link', 'show', 'dev', ep.hostIfname],
        {
          allowFailure: true,
        },
      );
      if (r.code === 0) return ns ?? 'the node namespace';
    }
    return undefined;
  }

  /** The workload end as the kernel has it: `undefined` when it is not there. */
  private async readWorkloadEnd(
    ep: LocalEndpoint,
  ): Promise<{ mac: string; up: boolean; addresses: string[] } | undefined> {
    if (!ep.netns) return undefined;
    const r = await this.opts.runner.run(
      'nsenter',
      [`--net=${ep.netns}`, 'ip', '-j', 'addr', 'show', 'dev', ep.ifname],
      { allowFailure: true },
    );
    if (r.code !== 0) return undefined;
    const link = (
      JSON.parse(r.stdout || '[]') as {
        address?: string;
        flags?: string[];
        addr_info?: { family?: string; local?: string }[];
      }[]
    )[0];
    if (!link?.address) return undefined;
    return {
      mac: link.address.toLowerCase(),
      up: (link.flags ?? []).includes('UP'),
      addresses: (link.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => a.local ?? ''),
    };
  }

  /** Records the MAC the kernel has for the workload end (a chained plugin may have set it). */
  private async learnMac(ep: LocalEndpoint): Promise<LocalEndpoint> {
    const w = await this.readWorkloadEnd(ep);
    if (!w || w.mac === ep.mac) return ep;
    this.opts.log.info({ containerId: ep.containerId, from: ep.mac, to: w.mac }, 'cni: endpoint MAC changed');
    return this.ipam.update(ep, { mac: w.mac });
  }

  /**
   * After the vRouter's sync: the host end must be an up port of its network's bridge, the
   * workload end up with its address, and a ping from the workload to the anycast gateway
   * must be answered. Otherwise ADD fails (the plugin rolls back) instead of handing out an
   * address with no connectivity.
   */
  private async verifyWired(key: AttachmentKey): Promise<LocalEndpoint> {
    const ep = this.ipam.get(key);
    if (!ep)
      throw new TetherError(
        'TETHER_E_NOT_FOUND',
        `no address allocated for ${key.containerId}/${key.ifname}`,
      );
    const fail = (why: string): TetherError =>
      new TetherError(
        'TETHER_E_KERNEL',
        `${ep.network}: workload ${key.containerId}/${key.ifname} is not wired: ${why}`,
        {
          hostIfname: ep.hostIfname,
        },
      );
    const vni = this.lastDesired?.networks.find((n) => n.name === ep.network)?.vni;
    if (vni === undefined)
      throw fail(`network ${ep.network} is not in the vRouter's state (see tether status)`);
    const vnNs = names.vnNetns(this.opts.netnsPrefix, vni);
    const r = await this.opts.runner.run('ip', ['-n', vnNs, '-j', 'link', 'show', 'dev', ep.hostIfname], {
      allowFailure: true,
    });
    const link =
      r.code === 0 ? (JSON.parse(r.stdout || '[]') as { master?: string; flags?: string[] }[])[0] : undefined;
    if (!link)
      throw fail(
        `host end ${ep.hostIfname} was not found in the node's namespace (was the plugin run in another network namespace than the node agent?)`,
      );
    if (link.master !== names.bridge)
      throw fail(`host end ${ep.hostIfname} is not a port of ${names.bridge} in ${vnNs}`);
    if (!(link.flags ?? []).includes('LOWER_UP')) throw fail(`host end ${ep.hostIfname} has no carrier`);
    const w = await this.readWorkloadEnd(ep);
    if (!w) throw fail(`${ep.ifname} does not exist in ${ep.netns ?? '(no namespace)'}`);
    if (!w.up) throw fail(`${ep.ifname} in ${ep.netns} is down`);
    if (!w.addresses.includes(ep.ip)) throw fail(`${ep.ifname} in ${ep.netns} lacks ${ep.ip}`);
    if (!(await this.pingGateway(ep)))
      throw fail(`no answer from the gateway ${ep.gateway} to a ping from ${ep.ip}`);
    return this.ipam.update(ep, { mac: w.mac, hostNetns: `${NETNS_DIR}/${vnNs}` });
  }

  private async pingGateway(ep: LocalEndpoint): Promise<boolean> {
    for (let i = 0; i < 3; i++) {
      const r = await this.opts.runner.run(
        'nsenter',
        [`--net=${ep.netns}`, 'ping', '-n', '-q', '-c', '1', '-W', '1', ep.gateway],
        { allowFailure: true },
      );
      if (r.code === 0) return true;
    }
    return false;
  }

  /**
   * The periodic (and start-up) look at every local endpoint: one whose network namespace is
   * gone, or is another namespace now, is released (a runtime that never retries a failed DEL
   * would leak it for good); an attached one's MAC is re-read from the kernel.
   */
  async sweep(): Promise<void> {
    await this.cni.exclusive(async () => {
      for (const ep of this.ipam.list()) {
        try {
          if (ep.netns) {
            const id = netnsIdOf(ep.netns);
            if (!id || (ep.netnsId && id !== ep.netnsId)) {
              this.opts.log.info(
                { containerId: ep.containerId, ifname: ep.ifname, netns: ep.netns, ip: ep.ip },
                'cni: releasing an endpoint whose network namespace is gone',
              );
              await this.releaseNow(ep);
              continue;
            }
          }
          if (ep.state === 'attached') await this.learnMac(ep);
        } catch (e) {
          this.opts.log.warn(
            { containerId: ep.containerId, err: (e as Error).message },
            'cni: endpoint sweep',
          );
        }
      }
    });
  }

  /**
   * hostPort mappings go through the local-breakout transit link (src/node/portmap.ts), so the
   * network needs local breakout on this node; a host port is given to one workload at a time.
   */
  private checkPortMappings(req: AllocateRequest): void {
    const vn = this.cache?.get('VirtualNetwork', req.network) as VirtualNetwork | undefined;
    if (vn && (!vn.spec.localBreakout || !this.opts.breakout))
      throw new TetherError(
        'TETHER_E_INVALID',
        `hostPort mappings need local breakout: network ${req.network} has none on this node`,
        {
          field: 'runtimeConfig.portMappings',
          expected: 'a network with spec.localBreakout on a node run with --breakout-if, or no port mappings',
        },
      );
    const vxlan = this.opts.underlay.vxlanPort ?? DEFAULT_VXLAN_PORT;
    for (const m of req.portMappings ?? []) {
      // The node's own ports: a DNAT of the VXLAN port would hand the site's overlay (every
      // other node's encapsulated traffic) to a container; ssh and BGP/BFD are the node's.
      const reserved = RESERVED_HOST_PORTS.find((r) => r.protocol === m.protocol && r.port === m.hostPort);
      if ((m.protocol === 'udp' && m.hostPort === vxlan) || reserved)
        throw new TetherError(
          'TETHER_E_INVALID',
          `host port ${m.hostPort}/${m.protocol} is the node's own (${reserved?.what ?? 'VXLAN overlay'})`,
          {
            field: 'runtimeConfig.portMappings',
            expected: `a host port other than ${vxlan}/udp (VXLAN) and ${RESERVED_HOST_PORTS.map((r) => `${r.port}/${r.protocol}`).join(', ')}`,
          },
        );
      const holder = this.ipam
        .list()
        .find((e) => e.portMappings?.some((o) => o.protocol === m.protocol && o.hostPort === m.hostPort));
      if (holder)
        throw new TetherError(
          'TETHER_E_INVALID',
          `host port ${m.hostPort}/${m.protocol} is already mapped to ${holder.containerId}/${holder.ifname}`,
          {
            field: 'runtimeConfig.portMappings',
            expected: 'a host port no other workload on this node maps',
          },
        );
    }
  }

  /** The network as seen through this node's share: when the controller has split the site
   *  block among the site's nodes, allocate only from this node's part of it. */
  private ownShare(network: string): VirtualNetwork | undefined {
    const vn = this.cache?.get('VirtualNetwork', network) as VirtualNetwork | undefined;
    const share = vn?.status?.nodeBlocks?.[this.opts.node];
    if (!vn || !share) return vn;
    return {
      ...vn,
      status: { ...vn.status, siteBlocks: { ...vn.status?.siteBlocks, [this.opts.site]: share } },
    };
  }

  /** The network for IPAM; an unknown one is a configuration error once the node holds a snapshot. */
  private knownNetwork(network: string): VirtualNetwork | undefined {
    const vn = this.ownShare(network);
    if (!vn && this.cache && this.cache.snapshotRevision > 0)
      throw new TetherError(
        'TETHER_E_NOT_FOUND',
        `network ${network} does not exist at site ${this.opts.site} (no VirtualNetwork of that name covers it)`,
        { field: 'network', expected: 'the name of a VirtualNetwork that covers this site' },
      );
    return vn;
  }

  async start(cache: DurableState): Promise<void> {
    this.cache = cache;
    await this.cni.start();
    this.onEndpoints?.(this.localEndpointObjects());
    await this.sweep();
    const every = this.opts.sweepMs ?? 10_000;
    this.sweepTimer = setInterval(() => {
      if (!this.sweeping) this.sweeping = this.sweep().finally(() => (this.sweeping = undefined));
    }, every);
    this.sweepTimer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.sweepTimer);
    await this.sweeping;
    await this.cni.close();
  }

  localEndpointObjects(): TetherObject[] {
    return this.ipam
      .list()
      .filter((e) => e.state === 'attached')
      .map((e) => endpointObject(this.opts.node, this.opts.site, this.opts.underlay.vtepIp, e));
  }

  desired(cache: DurableState): DesiredNodeNetwork {
    return this.plan(cache).desired;
  }

  /** The vRouter's desired state and the floating IP return paths it carries next hops for. */
  private plan(cache: DurableState): { desired: DesiredNodeNetwork; returns: FipReturn[] } {
    const objects = desiredObjects({
      node: this.opts.node,
      slice: cache.list(),
      siteLocal: this.opts.siteLocal?.() ?? [],
      siteLocalNodes: this.opts.siteLocalNodes?.() ?? [],
      local: this.localEndpointObjects(),
    });
    const d = desiredFromResources(
      {
        nodeName: this.opts.node,
        site: this.opts.site,
        objects,
        underlay: this.opts.underlay,
        netnsPrefix: this.opts.netnsPrefix,
        ...(this.opts.breakout ? { breakout: this.opts.breakout } : {}),
      },
      (p) => this.opts.log.debug({ problem: p }, 'vrouter: skipping unusable resource'),
    );
    return withFipReturns(d, this.opts.node, this.opts.site, objects);
  }

  async apply(cache: DurableState): Promise<ApplyOutcome> {
    this.cache = cache;
    const { desired, returns } = this.plan(cache);
    this.lastDesired = desired;
    this.lastReturns = returns;
    const report = await this.vrouter.sync(desired);
    if (!report.ok) {
      throw new TetherError(
        'TETHER_E_KERNEL',
        `vrouter did not converge: ${report.failures.map((f) => f.message).join('; ')}`,
      );
    }
    await this.portmaps.apply(renderPortmaps(desired, this.ipam.list()));
    return { changes: report.changes };
  }

  /** The floating IP return paths of the last pass's plan (the gateway consumer applies
   *  their nft tables and policy routing; their next hops are in the plan's networks). */
  fipReturns(): readonly FipReturn[] {
    return this.lastReturns;
  }

  /** The plan of the last pass (the gateway consumer, which runs after it, binds to it). */
  planned(): DesiredNodeNetwork | undefined {
    return this.lastDesired;
  }

  /** Per-rule policy counters of the last applied state (for `tether diag`). */
  counters() {
    return this.lastDesired ? this.vrouter.counters(this.lastDesired) : Promise.resolve([]);
  }
}
