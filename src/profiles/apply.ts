import { createHash } from 'node:crypto';
import { attr, type HostFs } from '../kernel/hw/hostfs.js';
import { readInventory } from '../kernel/hw/inventory.js';
import { TetherError } from '../lib/errors.js';
import type { CommandRunner } from '../lib/exec.js';
import { type ProfileIssue, type ResolvedProfile, throwIssues } from './load.js';
import {
  type AppliedRecord,
  type Observed,
  OWNED,
  type Plan,
  type PlanOp,
  planId,
  planProfile,
} from './plan.js';
import { resolvePolicies, validateProfile } from './validate.js';

/** Reads everything the planner needs: inventory, Tether's own files, current sysctls. */
export async function observe(
  fs: HostFs,
  runner: CommandRunner | undefined,
  p?: ResolvedProfile,
): Promise<Observed> {
  const inv = await readInventory(fs, runner ? { runner } : {});
  const files: Record<string, string | undefined> = {};
  for (const f of Object.values(OWNED)) files[f] = await fs.read(f);
  const sysctls: Record<string, string | undefined> = {};
  for (const k of Object.keys(p?.spec.kernel?.sysctls ?? {}))
    sysctls[k] = attr(await fs.read(`/proc/sys/${k.replaceAll('.', '/')}`));
  return { inv, files, sysctls };
}

export function readApplied(obs: Observed): AppliedRecord | undefined {
  const t = obs.files[OWNED.applied];
  if (!t) return undefined;
  try {
    return JSON.parse(t) as AppliedRecord;
  } catch {
    return undefined;
  }
}

export interface Journal {
  version: 1;
  planId: string;
  profile: string;
  /** Hash of the composed profile: a journal is resumed only for the same profile content. */
  profileHash: string;
  bootId: string;
  state: 'running' | 'awaiting-reboot' | 'done';
  /** Number of ops of `ops` completed, in order. */
  done: number;
  ops: PlanOp[];
}

export interface ApplyOptions {
  fs: HostFs;
  runner: CommandRunner;
  /** Progress lines for humans (stderr in the CLI). */
  progress?: (line: string) => void;
}

export interface ApplyResult {
  plan: Plan;
  /** Ops executed in this run. */
  executed: number;
  /** The run continued a journal left by an interrupted run. */
  resumed: boolean;
  /** Boot configuration is written; the node must reboot, then apply runs again. */
  rebootRequired: boolean;
  issues: ProfileIssue[];
}

async function readJournal(fs: HostFs): Promise<Journal | undefined> {
  const t = await fs.read(OWNED.journal);
  if (!t) return undefined;
  try {
    const j = JSON.parse(t) as Journal;
    return j.version === 1 && Array.isArray(j.ops) ? j : undefined;
  } catch {
    return undefined;
  }
}

/** Executes one op through the ports. Every op is safe to repeat (the resume path relies on it). */
export async function executeOp(op: PlanOp, fs: HostFs, runner: CommandRunner): Promise<void> {
  switch (op.action) {
    case 'write-file':
      await fs.writeConfig(op.path as string, op.content ?? '');
      return;
    case 'remove-file':
      await fs.remove(op.path as string);
      return;
    case 'write-attr': {
      if (op.onlyIfBound) {
        const cur = (await fs.readlink(`/sys/bus/pci/devices/${op.onlyIfBound.pci}/driver`))
          ?.split('/')
          .pop();
        if (cur !== op.onlyIfBound.driver) return;
      }
      const path = op.path as string;
      const targets = path.includes('*') ? await expandGlob(fs, path) : [path];
      if (targets.length === 0)
        throw new TetherError('TETHER_E_KERNEL', `${op.id}: nothing matches ${path}`, { field: op.id });
      for (const t of targets) {
        try {
          await fs.writeAttr(t, op.value ?? '');
        } catch (e) {
          const code = (e as { code?: string }).code ?? '';
          throw new TetherError(
            'TETHER_E_KERNEL',
            `${op.summary}: echo ${op.value} > ${t}: ${code} ${(e as Error).message}`.trim(),
            { field: op.id, errno: code },
            { cause: e },
          );
        }
      }
      if (/nr_hugepages$/.test(path)) {
        const got = attr(await fs.read(path));
        if (got !== op.value)
          throw new TetherError(
            'TETHER_E_KERNEL',
            `${op.summary}: the kernel reserved only ${got} pages (memory fragmented or too small)`,
            { field: op.id },
          );
      }
      return;
    }
    case 'run':
      await runner.run(op.cmd as string, op.args ?? []);
      return;
  }
}

async function expandGlob(fs: HostFs, pattern: string): Promise<string[]> {
  const parts = pattern.split('/').filter(Boolean);
  let paths = [''];
  for (const part of parts) {
    const next: string[] = [];
    for (const p of paths) {
      if (part === '*') for (const e of await fs.list(p || '/')) next.push(`${p}/${e}`);
      else next.push(`${p}/${part}`);
    }
    paths = next;
  }
  const out: string[] = [];
  for (const p of paths) if (await fs.exists(p)) out.push(p);
  return out;
}

/**
 * Validates, plans and applies a profile. Nothing is touched when validation fails.
 * Progress is journaled after every op (`/var/lib/tether/profile/journal.json`): a run that
 * was interrupted is resumed from where it stopped (same boot), instead of re-planned.
 * Boot-time ops run first; when they need a reboot, apply stops there and the runtime part
 * runs on the next `apply` after the reboot.
 */
export async function applyProfile(p: ResolvedProfile, opts: ApplyOptions): Promise<ApplyResult> {
  const { fs, runner } = opts;
  const say = opts.progress ?? (() => {});
  const obs = await observe(fs, runner, p);
  const issues = validateProfile(p, obs.inv);
  if (issues.some((i) => i.severity === 'error'))
    throwIssues(issues, `profile ${p.name} does not fit this node`);
  const plan = planProfile(p, obs, readApplied(obs));
  let ops = plan.ops;
  let start = 0;
  let resumed = false;
  const j = await readJournal(fs);
  if (
    j &&
    j.state === 'running' &&
    j.bootId === obs.inv.bootId &&
    j.profile === p.name &&
    j.profileHash === profileHash(p) &&
    j.done < j.ops.length
  ) {
    ops = j.ops;
    start = j.done;
    resumed = true;
    say(`resuming an interrupted apply of ${j.profile}: ${j.done}/${j.ops.length} steps were done`);
  }
  const runnable = resumed ? ops : plan.runtimeAfterReboot ? ops.filter((o) => o.phase === 'boot') : ops;
  const recordApplied = async () => {
    const record: AppliedRecord = {
      profile: p.name,
      pfs: resolvePolicies(p.spec, obs.inv)
        .map((x) => x.pf.pci)
        .sort(),
    };
    const text = `${JSON.stringify(record, null, 1)}\n`;
    if ((await fs.read(OWNED.applied)) !== text) await fs.writeConfig(OWNED.applied, text);
  };
  if (runnable.length === start) {
    if (plan.reboot.count === 0) await recordApplied();
    return { plan, executed: 0, resumed, rebootRequired: plan.reboot.count > 0, issues };
  }
  const journal: Journal = {
    version: 1,
    planId: planId(runnable),
    profile: p.name,
    profileHash: profileHash(p),
    bootId: obs.inv.bootId,
    state: 'running',
    done: start,
    ops: runnable,
  };
  await fs.writeConfig(OWNED.journal, `${JSON.stringify(journal, null, 1)}\n`);
  let executed = 0;
  for (let i = start; i < runnable.length; i++) {
    const op = runnable[i] as PlanOp;
    say(`[${i + 1}/${runnable.length}] ${op.summary}`);
    await executeOp(op, fs, runner);
    executed++;
    journal.done = i + 1;
    await fs.writeConfig(OWNED.journal, `${JSON.stringify(journal, null, 1)}\n`);
  }
  const rebootRequired = resumed
    ? runnable.some((o) => o.phase === 'boot') && plan.reboot.count > 0
    : plan.runtimeAfterReboot;
  journal.state = rebootRequired ? 'awaiting-reboot' : 'done';
  await fs.writeConfig(OWNED.journal, `${JSON.stringify(journal, null, 1)}\n`);
  if (!rebootRequired) await recordApplied();
  return { plan, executed, resumed, rebootRequired, issues };
}

export function profileHash(p: ResolvedProfile): string {
  return createHash('sha256').update(JSON.stringify(p.spec)).digest('hex').slice(0, 16);
}
