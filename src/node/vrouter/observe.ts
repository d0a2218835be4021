import { BRIDGE_NF_CALLS, type Kernel, type NftFamily, type NsState } from '../../kernel/types.js';
import { TetherError } from '../../lib/errors.js';
import { type DesiredNodeNetwork, names } from './model.js';
import { choosePolicyMode, type PolicyChoice } from './policy-mode.js';

/** What the kernel holds that the planner compares with desired state. */
export interface Observed {
  /** Every namespace name on the machine (`ip netns list`). */
  netns: string[];
  /** The node's own namespace (underlay.netns): links, Tether's nft table, ip_forward. */
  node: NsState;
  /** Tether's network namespaces of this node (`<prefix>-vn<VNI>`) that exist, by name. */
  vn: Record<string, NsState>;
  /** Where policy can live on this kernel (probed once per agent, see policy-mode.ts). */
  policy: PolicyChoice;
}

export const IP_FORWARD = 'net.ipv4.ip_forward';

export function vnNftTables(): { family: NftFamily; name: string }[] {
  return [
    { family: 'ip', name: names.vnNatTable },
    // Both families: a table of the other layout (an older version, another kernel) is removed.
    { family: 'bridge', name: names.vnPolicyTable },
    { family: 'inet', name: names.vnPolicyTable },
  ];
}

/** Tether's nft tables in the node namespace. */
export function nodeNftTables(prefix: string): { family: NftFamily; name: string }[] {
  return [
    { family: 'ip', name: names.nodeNatTable(prefix) },
    { family: 'ip', name: names.nodeRawTable(prefix) },
  ];
}

/**
 * Reads the kernel state of one node: its own namespace and every namespace that is Tether's
 * for this prefix (desired or stale), each with `ip -j`, `bridge -j`, `nft -j`. Namespaces are
 * read concurrently, a few at a time.
 */
export async function observe(
  kernel: Kernel,
  desired: Pick<DesiredNodeNetwork, 'netnsPrefix' | 'underlay'> & {
    networks?: DesiredNodeNetwork['networks'];
  },
  /** A choice made earlier from the same kernel; probed now when absent. */
  policy?: PolicyChoice,
): Promise<Observed> {
  // Independent reads run concurrently.
  const breakout = (desired.networks ?? []).some((n) => n.localBreakout);
  const [all, node, choice] = await Promise.all([
    kernel.listNetns(),
    // ip_forward of the node namespace matters only when Tether will turn it on (breakout).
    kernel.readNs(desired.underlay.netns, {
      nftTables: nodeNftTables(desired.netnsPrefix),
      sysctls: breakout ? [IP_FORWARD] : [],
    }),
    policy ?? kernel.probePolicy(desired.underlay.netns).then(choosePolicyMode),
  ]);
  if (!node)
    throw new TetherError(
      'TETHER_E_PRECONDITION',
      `node namespace ${desired.underlay.netns} does not exist`,
      {
        field: 'underlay.netns',
      },
    );
  const pattern = names.vnNetnsPattern(desired.netnsPrefix);
  const ours = all.filter((n) => pattern.test(n));
  const vn: Record<string, NsState> = {};
  const sysctls = choice.facts.brNetfilter ? [IP_FORWARD, ...BRIDGE_NF_CALLS] : [IP_FORWARD];
  const queue = [...ours];
  const worker = async () => {
    for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
      const s = await kernel.readNs(name, { entries: true, nftTables: vnNftTables(), sysctls });
      if (s) vn[name] = s;
    }
  };
  await Promise.all([worker(), worker(), worker()]);
  return { netns: all, node, vn, policy: choice };
}
