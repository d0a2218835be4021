import { type Batch, type Kernel, type KernelOp, type OpFailure, toBatches } from '../../kernel/types.js';
import type { Logger } from '../../lib/log.js';

export interface ApplyResult {
  batches: number;
  ops: number;
  failures: (OpFailure & { batch: number })[];
}

/**
 * Executes a plan: consecutive ops of the same tool and namespace form one batch, run as one
 * process (`ip -batch -`, `bridge -batch -`, one `nft -f -` transaction, one `sysctl -w`).
 * Batches run in plan order, except that consecutive entry batches of one namespace (the
 * neighbour batch and the forwarding-entry batch) run concurrently: they only depend on the
 * devices made by the batches before them. A failed op does not stop the batch (`-force`) nor
 * the plan: the agent re-observes and re-plans, which converges from wherever the kernel ended.
 */
/**
 * Executes a plan: consecutive ops of the same tool and namespace form one batch, run as one
 * process (`ip -batch -`, `bridge -batch -`, one `nft -f -` transaction, one `sysctl -w`), in
 * plan order. (Running a namespace's neighbour and forwarding batches concurrently was measured
 * on the 2-core test VM: 2–4× slower, both fight for the rtnl lock; so batches run one by one.)
 * A failed op does not stop the batch (`-force`) nor the plan: the agent re-observes and
 * re-plans, which converges from wherever the kernel ended up.
 */
export async function applyPlan(
  kernel: Kernel,
  ops: readonly KernelOp[],
  logger?: Logger,
  onBatch?: (b: Batch, index: number, total: number) => void,
): Promise<ApplyResult> {
  const batches = toBatches(ops);
  const failures: ApplyResult['failures'] = [];
  for (const [i, b] of batches.entries()) {
    onBatch?.(b, i, batches.length);
    const started = performance.now();
    const res = await kernel.apply(b.tool, b.netns, b.ops);
    logger?.debug(
      {
        tool: b.tool,
        netns: b.netns ?? '(node)',
        ops: b.ops.length,
        failed: res.failures.length,
        ms: Math.round(performance.now() - started),
      },
      'batch applied',
    );
    for (const f of res.failures) failures.push({ ...f, batch: i });
  }
  return { batches: batches.length, ops: ops.length, failures };
}
