/**
 * hostPort mappings (the CNI `portMappings` capability), done by Tether because the standard
 * `portmap` plugin cannot: it DNATs in the namespace the runtime runs plugins in (the node's),
 * which has no route into a virtual network's namespace, and with overlapping subnets there
 * can be none. Tether takes the one path that exists, the local-breakout transit link:
 *
 *   node ns:  fib daddr type local tcp dport HOST  → dnat to <transit vnIp>:HOST  (→ tbo<VNI>)
 *   VN ns:    iifname "tbo0" tcp dport HOST        → dnat to <workload ip>:CONTAINER
 *
 * Replies go back the same way (the workload's default route is the gateway, the network's
 * default route is the transit link) and conntrack undoes both translations. So mappings need a
 * network with local breakout on this node; the node refuses others at ADD.
 *
 * Its own nft tables (`tether_pm_<prefix>` in the node namespace, `tether_pm` in each network's),
 * never the vRouter's, each replaced whole in one `nft -f` (atomic).
 */
import type { CommandRunner } from '../lib/exec.js';
import type { LocalEndpoint, PortMapping } from './cni/registry.js';
import { type DesiredNodeNetwork, names } from './vrouter/model.js';

export const PORTMAP_VN_TABLE = 'tether_pm';
export const portmapNodeTable = (prefix: string): string => `tether_pm_${prefix.replace(/-/g, '_')}`;

/** One `nft -f` script per namespace (`undefined` key: the node's own). */
export type PortmapScripts = Map<string | undefined, string>;

function table(name: string, rules: string[]): string {
  // Create-then-delete makes the delete safe when the table does not exist yet.
  const reset = `table ip ${name} {}\ndelete table ip ${name}\n`;
  if (rules.length === 0) return reset;
  return (
    `${reset}table ip ${name} {\n  chain prerouting {\n    type nat hook prerouting priority -100; policy accept;\n` +
    rules.map((r) => `    ${r}\n`).join('') +
    '  }\n}\n'
  );
}

/**
 * A rule comment from runtime-chosen names: a Linux interface name may hold `"` or `;`, which
 * would end the quoted comment and break the whole `nft -f` (and every later apply).
 */
export const comment = (text: string): string => text.replace(/[^A-Za-z0-9_.:/-]/g, '_').slice(0, 120);

const match = (m: PortMapping): string =>
  `${m.hostIP ? `ip daddr ${m.hostIP}` : 'fib daddr type local'} ${m.protocol} dport ${m.hostPort}`;

/**
 * The scripts for the current endpoints: the node namespace's table and one table per network
 * with local breakout. Pure. Endpoints of a network without a transit link get no rule (ADD
 * refused them).
 */
export function renderPortmaps(
  desired: DesiredNodeNetwork,
  endpoints: readonly LocalEndpoint[],
): PortmapScripts {
  const nodeRules: string[] = [];
  const out: PortmapScripts = new Map();
  for (const net of desired.networks) {
    const transit = net.localBreakout ? net.breakoutTransit : undefined;
    if (!transit) continue;
    const vnRules: string[] = [];
    const eps = endpoints
      .filter((e) => e.network === net.name && e.state === 'attached' && e.portMappings?.length)
      .sort((a, b) => a.ip.localeCompare(b.ip));
    for (const ep of eps)
      for (const m of ep.portMappings ?? []) {
        const note = comment(`${ep.containerId}/${ep.ifname}`);
        nodeRules.push(`${match(m)} dnat to ${transit.vnIp}:${m.hostPort} comment "${note}"`);
        vnRules.push(
          `iifname "${names.breakoutVn}" ${m.protocol} dport ${m.hostPort} dnat to ${ep.ip}:${m.containerPort} comment "${note}"`,
        );
      }
    out.set(names.vnNetns(desired.netnsPrefix, net.vni), table(PORTMAP_VN_TABLE, vnRules));
  }
  out.set(desired.underlay.netns, table(portmapNodeTable(desired.netnsPrefix), nodeRules));
  return out;
}

/**
 * Applies the scripts: every namespace while the node has (or just had) mappings, so a table
 * lost with a recreated namespace comes back; nothing at all while there are none.
 */
export class PortmapApplier {
  private hadRules = true; // the first pass cleans up after an earlier run

  constructor(private readonly runner: CommandRunner) {}

  async apply(scripts: PortmapScripts): Promise<void> {
    const hasRules = [...scripts.values()].some((s) => s.includes('dnat to'));
    if (!hasRules && !this.hadRules) return;
    for (const [netns, script] of scripts)
      await this.runner.run('nft', ['-f', '-'], { input: script, ...(netns ? { netns } : {}) });
    this.hadRules = hasRules;
  }
}
