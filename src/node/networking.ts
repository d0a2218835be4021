import { join } from 'node:path';
import type { VirtualNetwork } from '../api/kinds.js';
import { API_VERSION, type TetherObject } from '../api/resource.js';
import { TetherError } from '../lib/errors.js';
import type { CommandRunner } from '../lib/exec.js';
import type { Logger } from '../lib/log.js';
import type { StateCache } from './cache.js';
import { siteBlockOf } from './cni/blocks.js';
import { FileIpam } from './cni/file-ipam.js';
import type { EndpointRegistry, LocalEndpoint } from './cni/registry.js';
import { CniServer } from './cni/server.js';
import type { StateConsumer } from './daemon.js';
import { VRouter } from './vrouter/agent.js';
import type { BreakoutConfig, DesiredNodeNetwork, Underlay } from './vrouter/model.js';
import { desiredFromResources } from './vrouter/resources.js';
import { validateDesired } from './vrouter/validate.js';

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
}

/** CNI_ARGS `TETHER_LABELS=app=web,tier=fe` → labels that policies select on. */
export function labelsFromArgs(args: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of (args?.TETHER_LABELS ?? '').split(',')) {
    const i = pair.indexOf('=');
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
  private cache: StateCache | undefined;
  private lastDesired: DesiredNodeNetwork | undefined;
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
    this.ipam = new FileIpam({
      file: join(opts.stateDir, 'ipam.json'),
      blockFor: (network) => siteBlockOf(this.ownShare(network), opts.site, opts.underlay.mtu - 50),
      onChange: () => {
        this.onEndpoints?.(this.localEndpointObjects());
        void this.onLocalChange?.();
      },
    });
    this.cni = new CniServer({
      socketPath: opts.cniSocket,
      registry: this.attachWaitsForKernel(this.ipam),
      logger: opts.log.child({ component: 'cni' }),
    });
  }

  /**
   * CNI ADD answers only once the vRouter has wired the new interface into its network, so a
   * workload can send from its first packet (the runtime starts it right after ADD).
   */
  private attachWaitsForKernel(ipam: FileIpam): EndpointRegistry {
    return {
      allocate: (req) => ipam.allocate(req),
      markAttached: async (key) => {
        const ep = await ipam.markAttached(key);
        await this.onLocalChange?.();
        return ep;
      },
      release: (key) => ipam.release(key),
      get: (key) => ipam.get(key),
      list: () => ipam.list(),
      gc: (network, valid) => ipam.gc(network, valid),
    };
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

  async start(cache: StateCache): Promise<void> {
    this.cache = cache;
    await this.cni.start();
    this.onEndpoints?.(this.localEndpointObjects());
  }

  async stop(): Promise<void> {
    await this.cni.close();
  }

  localEndpointObjects(): TetherObject[] {
    return this.ipam
      .list()
      .filter((e) => e.state === 'attached')
      .map((e) => endpointObject(this.opts.node, this.opts.site, this.opts.underlay.vtepIp, e));
  }

  desired(cache: StateCache): DesiredNodeNetwork {
    const local = this.localEndpointObjects();
    const objects = [
      ...cache
        .list()
        .filter((o) => !(o.kind === 'Endpoint' && (o.spec as { node?: string }).node === this.opts.node)),
      ...local,
    ];
    return desiredFromResources(
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
  }

  async apply(cache: StateCache): Promise<void> {
    this.cache = cache;
    const desired = this.desired(cache);
    this.lastDesired = desired;
    const report = await this.vrouter.sync(desired);
    if (!report.ok) {
      throw new TetherError(
        'TETHER_E_KERNEL',
        `vrouter did not converge: ${report.failures.map((f) => f.message).join('; ')}`,
      );
    }
  }

  /** Per-rule policy counters of the last applied state (for `tether diag`). */
  counters() {
    return this.lastDesired ? this.vrouter.counters(this.lastDesired) : Promise.resolve([]);
  }
}
