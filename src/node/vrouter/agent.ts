import { IprouteKernel } from '../../kernel/iproute2.js';
import type { Kernel, KernelOp } from '../../kernel/types.js';
import { TetherError } from '../../lib/errors.js';
import type { CommandRunner } from '../../lib/exec.js';
import type { Logger } from '../../lib/log.js';
import { applyPlan } from './applier.js';
import { type DesiredNodeNetwork, names } from './model.js';
import { observe } from './observe.js';
import { DEFAULT_DENY_COUNTER, type PlanStats, plan, policyFamily, ruleCounter } from './planner.js';
import { choosePolicyMode, type PolicyChoice } from './policy-mode.js';
import { validateDesired } from './validate.js';

export interface VRouterOptions {
  /** Kernel port; default: the real kernel through `runner`. Tests pass a FakeKernel. */
  kernel?: Kernel;
  /** Observe → plan → apply passes per sync before giving up (default 3). */
  maxPasses?: number;
  /** Called before each batch runs: progress for long programming runs (CLI, logs). */
  onProgress?: (p: SyncProgress) => void;
}

export interface SyncProgress {
  pass: number;
  /** 0-based index of the batch about to run, and the number of batches in this pass. */
  batch: number;
  batches: number;
  tool: string;
  netns: string | undefined;
  ops: number;
}

export interface SyncReport {
  /** True when the last pass applied without failures (the kernel matches desired state). */
  ok: boolean;
  passes: number;
  /** Ops applied over all passes. */
  ops: number;
  /** Batches (≈ processes) run over all passes. */
  batches: number;
  /** Plan statistics of the first pass. */
  stats: PlanStats;
  /**
   * What the sync changed, one line per op of the first pass that had any (at most
   * MAX_CHANGES lines, then a count): a re-plan of unchanged desired state that changes
   * something has repaired drift, and this says what.
   */
  changes: string[];
  /** Failures of the last pass. */
  failures: { op: KernelOp; message: string }[];
  durationMs: number;
  /** Where the time went, summed over passes (ms). */
  timings: { validateMs: number; observeMs: number; planMs: number; applyMs: number };
  /** How policy is enforced on this kernel, and the probed facts behind the choice. */
  policy: PolicyChoice;
}

export interface PolicyCounter {
  network: string;
  policy: string;
  /** Rule name, or `(default)` for the default-deny counter. */
  rule: string;
  packets: number;
  bytes: number;
}

/**
 * The vRouter agent's kernel side. `sync(desired)` observes the kernel, plans the difference
 * and applies it, repeating while ops fail (another actor raced us, a previous run was killed
 * half-way). Calls are serialised; every call is safe to repeat and safe to interrupt: state
 * is always read back from the kernel, never remembered.
 */
export class VRouter {
  private readonly kernel: Kernel;
  private readonly maxPasses: number;
  private readonly onProgress: ((p: SyncProgress) => void) | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  /** Probed once: the kernel's modules do not change under a running agent. */
  private policyChoice: Promise<PolicyChoice> | undefined;

  constructor(
    runner: CommandRunner,
    private readonly logger: Logger,
    opts: VRouterOptions = {},
  ) {
    this.kernel = opts.kernel ?? new IprouteKernel(runner);
    this.maxPasses = opts.maxPasses ?? 3;
    this.onProgress = opts.onProgress;
  }

  sync(desired: DesiredNodeNetwork): Promise<SyncReport> {
    return this.serial(() => this.syncNow(desired));
  }

  /** Removes everything Tether created for this node (namespaces, tables, node-side links). */
  teardown(desired: Pick<DesiredNodeNetwork, 'node' | 'netnsPrefix' | 'underlay'>): Promise<SyncReport> {
    return this.sync({
      node: desired.node,
      netnsPrefix: desired.netnsPrefix,
      underlay: desired.underlay,
      networks: [],
    });
  }

  /** How policy is enforced on this kernel (probed on first use, then cached). */
  policy(desired: Pick<DesiredNodeNetwork, 'underlay'>): Promise<PolicyChoice> {
    this.policyChoice ??= this.kernel.probePolicy(desired.underlay.netns).then((facts) => {
      const choice = choosePolicyMode(facts);
      this.logger.info({ mode: choice.mode, facts }, `vrouter: policy mode: ${choice.reason}`);
      return choice;
    });
    const p = this.policyChoice;
    // A failed probe is not cached: the next call probes again.
    p.catch(() => {
      if (this.policyChoice === p) this.policyChoice = undefined;
    });
    return p;
  }

  /** Packet/byte counters of every policy rule (and default deny) of every network. */
  counters(desired: DesiredNodeNetwork): Promise<PolicyCounter[]> {
    return this.serial(async () => {
      const out: PolicyCounter[] = [];
      const family = policyFamily((await this.policy(desired)).mode);
      for (const net of desired.networks) {
        if (!net.policies.length || !family) continue;
        const ns = names.vnNetns(desired.netnsPrefix, net.vni);
        const s = await this.kernel.readNs(ns, {
          nftTables: [{ family, name: names.vnPolicyTable }],
        });
        const counters = s?.nft[0]?.counters ?? {};
        net.policies.forEach((p, pi) => {
          p.rules.forEach((r, ri) => {
            const c = counters[ruleCounter(pi, ri)];
            out.push({
              network: net.name,
              policy: p.name,
              rule: r.name,
              packets: c?.packets ?? 0,
              bytes: c?.bytes ?? 0,
            });
          });
        });
        const d = counters[DEFAULT_DENY_COUNTER];
        if (d)
          out.push({
            network: net.name,
            policy: '(all)',
            rule: '(default)',
            packets: d.packets,
            bytes: d.bytes,
          });
      }
      return out;
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async syncNow(desired: DesiredNodeNetwork): Promise<SyncReport> {
    const started = performance.now();
    validateDesired(desired);
    let ops = 0;
    let batches = 0;
    let firstStats: PlanStats | undefined;
    let failures: { op: KernelOp; message: string }[] = [];
    let passes = 0;
    let changes: string[] = [];
    const timings = { validateMs: 0, observeMs: 0, planMs: 0, applyMs: 0 };
    timings.validateMs = performance.now() - started;
    const policy = await this.policy(desired);
    if (policy.mode === 'none') {
      const withPolicy = desired.networks.filter((n) => n.policies.length).map((n) => n.name);
      // Refused before anything is applied: a network whose policy cannot be enforced must
      // not come up looking protected.
      if (withPolicy.length)
        throw new TetherError(
          'TETHER_E_PRECONDITION',
          `network ${withPolicy.join(', ')} has policies, but this kernel cannot enforce them: ${policy.reason}`,
          {
            field: 'policies',
            expected: 'br_netfilter with inet conntrack, or nf_conntrack_bridge',
            facts: policy.facts,
          },
        );
    }
    while (passes < this.maxPasses) {
      passes += 1;
      let t = performance.now();
      const observed = await observe(this.kernel, desired, policy);
      timings.observeMs += performance.now() - t;
      t = performance.now();
      const p = plan(desired, observed);
      timings.planMs += performance.now() - t;
      firstStats ??= p.stats;
      if (changes.length === 0) changes = describeOps(p.ops);
      if (p.ops.length === 0) {
        failures = [];
        break;
      }
      this.logger.info(
        { pass: passes, ops: p.ops.length, added: p.stats.entriesAdded, deleted: p.stats.entriesDeleted },
        'vrouter: applying plan',
      );
      t = performance.now();
      const pass = passes;
      const res = await applyPlan(this.kernel, p.ops, this.logger, (b, batch, total) =>
        this.onProgress?.({ pass, batch, batches: total, tool: b.tool, netns: b.netns, ops: b.ops.length }),
      );
      timings.applyMs += performance.now() - t;
      ops += res.ops;
      batches += res.batches;
      failures = res.failures.map((f) => ({ op: f.op, message: f.message }));
      if (failures.length === 0) break;
      this.logger.warn(
        { pass: passes, failures: failures.length, first: failures[0]?.message },
        'vrouter: some operations failed; re-observing',
      );
    }
    const report: SyncReport = {
      ok: failures.length === 0,
      passes,
      ops,
      batches,
      stats: firstStats!,
      changes,
      failures,
      policy,
      durationMs: Math.round(performance.now() - started),
      timings: Object.fromEntries(
        Object.entries(timings).map(([k, v]) => [k, Math.round(v)]),
      ) as SyncReport['timings'],
    };
    if (report.stats.missingInterfaces.length)
      this.logger.warn({ missing: report.stats.missingInterfaces }, 'vrouter: workload interfaces not found');
    return report;
  }
}

const MAX_CHANGES = 20;

/** One line per op (`fdb-replace 02:…:01 dev tvx4096 dst 192.0.2.2 in t1-vn4096`), bounded. */
export function describeOps(ops: readonly KernelOp[]): string[] {
  const line = (op: KernelOp): string => {
    const where = 'netns' in op && op.netns ? ` in ${op.netns}` : '';
    switch (op.op) {
      case 'route-replace':
      case 'route-del':
        return `${op.op} ${op.dst}${op.via ? ` via ${op.via}` : ''} dev ${op.dev}${where}`;
      case 'fdb-replace':
      case 'fdb-del':
        return `${op.op} ${op.mac} dev ${op.dev} ${op.target}${op.dst ? ` dst ${op.dst}` : ''}${where}`;
      case 'neigh-replace':
        return `${op.op} ${op.ip} lladdr ${op.mac} dev ${op.dev}${where}`;
      case 'neigh-del':
        return `${op.op} ${op.ip} dev ${op.dev}${where}`;
      case 'netns-add':
      case 'netns-del':
        return `${op.op} ${op.name}`;
      case 'addr-replace':
      case 'addr-del':
        return `${op.op} ${op.cidr} dev ${op.dev}${where}`;
      case 'nft-table':
        return `${op.op} ${op.table.family} ${op.table.name}${where}`;
      case 'nft-set':
        return `${op.op} ${op.family} ${op.table} ${op.set}${where}`;
      case 'nft-table-del':
        return `${op.op} ${op.family} ${op.table}${where}`;
      case 'sysctl':
        return `${op.op} ${op.key}=${op.value}${where}`;
      case 'rule-add':
      case 'rule-del':
        return `${op.op} fwmark 0x${op.fwmark.toString(16)} table ${op.table}${where}`;
      default:
        return `${op.op} ${op.name}${where}`;
    }
  };
  const out = ops.slice(0, MAX_CHANGES).map(line);
  if (ops.length > MAX_CHANGES) out.push(`… and ${ops.length - MAX_CHANGES} more`);
  return out;
}

/** Throws TETHER_E_KERNEL when a sync did not converge. */
export function assertConverged(r: SyncReport): void {
  if (!r.ok)
    throw new TetherError(
      'TETHER_E_KERNEL',
      `vRouter did not converge: ${r.failures[0]?.message ?? 'unknown'}`,
      {
        failures: r.failures.length,
      },
    );
}
