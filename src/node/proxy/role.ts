import type { Logger } from '../../lib/log.js';
import type { NodeAgent } from '../agent/daemon.js';
import { siteProxyUpstream, type Upstream, type UpstreamChooser } from '../agent/upstream.js';
import { SiteProxy, type SiteProxyStatus } from './proxy.js';

/** What the role needs of src/node/run.ts' RoleContext (declared here: run.ts imports us). */
export interface ProxyRoleContext {
  agent: NodeAgent;
  options: {
    stateDir: string;
    version?: string;
    heartbeatMs: number;
    proxy: { port: number; address?: string; wanHeartbeatMs?: number };
  };
  log: Logger;
  underlayIp?: string;
  setUpstreamChooser(c: UpstreamChooser): void;
  controller: Upstream;
}

/**
 * The site proxy as a role of the node daemon (src/node/run.ts): every node runs the proxy
 * port and the election; the active one also serves NodeSession and holds the site's WAN
 * session. The agent's upstream becomes "the active proxy of my site, else the controller",
 * and it reconnects whenever that choice changes.
 */
export function siteProxyRole(): {
  name: string;
  start(ctx: ProxyRoleContext): Promise<void>;
  stop(): Promise<void>;
  /** The proxy's live state; undefined when this node runs no proxy role. */
  status(): SiteProxyStatus | undefined;
} {
  let proxy: SiteProxy | undefined;
  return {
    name: 'site-proxy',
    async start(ctx: ProxyRoleContext): Promise<void> {
      const { agent, log } = ctx;
      const id = agent.identity;
      const address = ctx.underlayIp ?? ctx.options.proxy.address;
      if (!address) {
        // A node without an underlay address cannot be a candidate nor be reached by its site.
        log.info('no underlay address (no vRouter): no site proxy role; syncing from the controller');
        return;
      }
      const upstreams = new Map<string, Upstream>();
      const p = new SiteProxy({
        stateDir: ctx.options.stateDir,
        node: id.name,
        site: id.site,
        controllers: agent.controllers,
        caPem: id.caPem,
        credentials: id.credentials,
        vtep: address,
        port: ctx.options.proxy.port,
        agentHeartbeatMs: ctx.options.heartbeatMs,
        ...(ctx.options.proxy.wanHeartbeatMs ? { wanHeartbeatMs: ctx.options.proxy.wanHeartbeatMs } : {}),
        log: log.child({ component: 'site-proxy' }),
        agentNodes: () => agent.cache.list('Node'),
        agentSlice: () => ({ revision: agent.cache.revision, objects: agent.cache.list() }),
        agentObject: (kind, name) => agent.cache.get(kind, name),
        ...(ctx.options.version !== undefined ? { version: ctx.options.version } : {}),
        onLeader: (l) => {
          log.info({ proxy: l?.node ?? null }, 'site proxy changed; agent reconnects');
          agent.session.reconnect(l ? `site proxy is now ${l.node}` : 'no site proxy known');
        },
      });
      proxy = p;
      // What the agent receives from its own proxy is the proxy's objects: keep them once.
      agent.session.shareObjects((kind, name) => p.sharedObject(kind, name));
      ctx.setUpstreamChooser(() => {
        const u = p.upstream();
        if (u.kind !== 'proxy') return ctx.controller;
        let up = upstreams.get(u.address);
        if (!up) {
          up = siteProxyUpstream(id, u.address);
          upstreams.set(u.address, up);
        }
        return up;
      });
      await p.start();
    },
    async stop(): Promise<void> {
      await proxy?.stop();
      proxy = undefined;
    },
    status: () => proxy?.status(),
  };
}
