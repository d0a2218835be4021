import type { PolicyKernelFacts } from '../../kernel/types.js';

/**
 * Where a network's policy lives, so that it can match on connection state:
 * - `inet-br-netfilter`: table `inet tether_policy`, hook forward, with the network namespace's
 *   `net.bridge.bridge-nf-call-iptables=1`, so bridged IPv4 frames reach the inet hooks and
 *   the namespace's conntrack (needs br_netfilter; the test VMs' kernel has it built in);
 * - `bridge-conntrack`: table `bridge tether_policy`, hook forward, with `nf_conntrack_bridge`
 *   (a module of stock Debian kernels); br_netfilter stays off;
 * - `none`: the kernel cannot track bridged connections, so no policy can be enforced.
 */
export type PolicyMode = 'inet-br-netfilter' | 'bridge-conntrack' | 'none';

export interface PolicyChoice {
  mode: PolicyMode;
  /** The probed facts the mode was chosen from. */
  facts: PolicyKernelFacts;
  /** One sentence for reports and logs. */
  reason: string;
}

/**
 * The choice, from probed facts alone. br_netfilter comes first: it also sees traffic routed
 * between a network's own subnets through the anycast gateway (the bridge forward hook does
 * not), so what a policy covers does not depend on the kernel's modules more than it must.
 */
export function choosePolicyMode(facts: PolicyKernelFacts): PolicyChoice {
  if (facts.brNetfilter && facts.inetConntrack)
    return {
      mode: 'inet-br-netfilter',
      facts,
      reason: 'br_netfilter and inet conntrack present: policy in inet forward, bridge-nf-call-iptables=1',
    };
  if (facts.bridgeConntrack)
    return {
      mode: 'bridge-conntrack',
      facts,
      reason: 'no br_netfilter, nf_conntrack_bridge present: policy in bridge forward with ct',
    };
  return {
    mode: 'none',
    facts,
    reason: 'neither br_netfilter with inet conntrack nor nf_conntrack_bridge: policies cannot be enforced',
  };
}
