import { readdirSync } from 'node:fs';
import type { Command } from 'commander';
import { FakeKernel } from '../../kernel/hw/fake.js';
import { type HostFs, RootedHostFs } from '../../kernel/hw/hostfs.js';
import { isTetherError, TetherError } from '../../lib/errors.js';
import { type CommandRunner, ProcessRunner } from '../../lib/exec.js';
import { applyProfile, observe, readApplied } from '../../profiles/apply.js';
import {
  formatIssue,
  loadProfile,
  originOf,
  type ProfileIssue,
  parseProfileFile,
  type ResolvedProfile,
  shippedProfilesDir,
  throwIssues,
} from '../../profiles/load.js';
import { type Plan, planProfile } from '../../profiles/plan.js';
import { PROFILE_SPEC_SCHEMA } from '../../profiles/schema.js';
import { checkProfile, validateProfile } from '../../profiles/validate.js';
import { out, paint, renderStructured, renderTable, say } from '../output.js';

interface HostOpts {
  root: string;
  fakeKernel?: boolean;
  profilesDir?: string[];
  output?: string;
}

/** The host ports: the real node at /, or a fixture tree (with --fake-kernel, kernel semantics emulated). */
export function hostPorts(o: { root: string; fakeKernel?: boolean }): { fs: HostFs; runner: CommandRunner } {
  if (o.fakeKernel) {
    if (o.root === '/' || o.root === '')
      throw new TetherError(
        'TETHER_E_PRECONDITION',
        '--fake-kernel needs --root <fixture dir>: it must never write to the real /sys',
        {
          field: '--root',
          expected: 'a fixture tree directory',
        },
      );
    const k = new FakeKernel(o.root);
    return { fs: k, runner: k.runner };
  }
  return { fs: new RootedHostFs(o.root), runner: new ProcessRunner() };
}

export function load(name: string, dirs?: string[]): ResolvedProfile {
  return loadProfile(name, { searchPath: [...(dirs ?? []), shippedProfilesDir()] });
}

/**
 * Loads a profile and runs the checks that need no hardware: a bad profile is refused
 * (TETHER_E_INVALID, exit 4) before anything looks at the node. Returns its warnings.
 */
export function loadChecked(name: string, dirs?: string[]): { p: ResolvedProfile; warnings: ProfileIssue[] } {
  const p = load(name, dirs);
  const issues = checkProfile(p);
  if (issues.some((i) => i.severity === 'error')) throwIssues(issues, `invalid profile ${p.name}`);
  return { p, warnings: issues };
}

/** The issues a load error carries (one per problem), or undefined when it is no profile error. */
function loadIssues(e: unknown): ProfileIssue[] | undefined {
  if (!isTetherError(e) || !['TETHER_E_INVALID', 'TETHER_E_TOO_LARGE', 'TETHER_E_PARSE'].includes(e.code))
    return undefined;
  const listed = e.details.issues as ProfileIssue[] | undefined;
  if (listed?.length) return listed;
  const d = e.details;
  return [
    {
      severity: 'error',
      ...(d.file ? { file: d.file } : {}),
      ...(d.line ? { line: d.line } : {}),
      field: d.field ?? '(file)',
      message: e.message,
      ...(d.expected ? { expected: d.expected } : {}),
    },
  ];
}

const issueLine = (i: ProfileIssue): string =>
  `${i.severity === 'error' ? paint('error:', 'red') : paint('warning:', 'yellow')} ${formatIssue(i)}`;

/**
 * Runs a command so that every problem of a refused profile is printed once: an error
 * carrying several issues is listed one per line, then a summary without a location
 * (describeError would otherwise repeat the first issue in front of the list).
 */
export async function sayingOnce<T>(fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const issues = isTetherError(e) ? (e.details.issues as ProfileIssue[] | undefined) : undefined;
    const errors = (issues ?? []).filter((i) => i.severity === 'error');
    if (!isTetherError(e) || !issues || errors.length < 2) throw e;
    for (const i of issues) say(issueLine(i));
    throw new TetherError(e.code, `${errors.length} errors in the profile (listed above)`, { issues });
  }
}

const hostOptions = (c: Command): Command =>
  c
    .option('--root <dir>', 'host root: / on a node, or a sysfs/procfs fixture tree', '/')
    .option('--fake-kernel', 'emulate kernel behaviour on a fixture tree (devlink, ip, sriov_numvfs rules)')
    .option('--profiles-dir <dir...>', 'extra directories searched for profiles (before the shipped ones)');

export function renderPlan(plan: Plan): string {
  const lines: string[] = [];
  const boot = plan.ops.filter((o) => o.phase === 'boot');
  const runtime = plan.ops.filter((o) => o.phase === 'runtime');
  lines.push(
    `${paint('Plan for profile', 'bold')} ${plan.profile}: ${plan.ops.length} steps, ${plan.reboot.count} reboot${plan.reboot.count === 1 ? '' : 's'}`,
  );
  let n = 0;
  const step = (o: Plan['ops'][number]) => {
    n++;
    lines.push(
      `  ${String(n).padStart(3)}. ${o.summary}${o.disruptive ? paint(`  [disruptive: ${o.disruptive}]`, 'yellow') : ''}`,
    );
    if (o.why) lines.push(`       ${paint(`because ${o.why}`, 'dim')}`);
  };
  if (boot.length) {
    lines.push('', paint('Boot configuration', 'bold'));
    boot.forEach(step);
  }
  if (plan.reboot.count) {
    lines.push(
      '',
      paint(
        `Reboot (1)${plan.reboot.pending ? ': already configured, waiting for the reboot' : ''}, because:`,
        'yellow',
      ),
    );
    for (const r of plan.reboot.reasons) lines.push(`  - ${r}`);
  }
  if (runtime.length) {
    lines.push(
      '',
      paint(
        plan.runtimeAfterReboot ? 'Runtime (after the reboot, no further reboot)' : 'Runtime (no reboot)',
        'bold',
      ),
    );
    runtime.forEach(step);
  }
  if (!plan.ops.length && !plan.reboot.count) lines.push('', 'Nothing to do: the node matches the profile.');
  for (const x of plan.notes) lines.push(`${paint('note:', 'dim')} ${x}`);
  for (const w of plan.warnings) lines.push(`${paint('warning:', 'yellow')} ${w}`);
  return `${lines.join('\n')}\n`;
}

export function registerProfile(program: Command): void {
  const prof = program
    .command('profile')
    .description('site and hardware profiles: list, show, validate, plan, apply');

  prof
    .command('list')
    .description('list the shipped profiles')
    .option('--profiles-dir <dir...>', 'extra directories searched for profiles')
    .option('-o, --output <fmt>', 'json|yaml')
    .action((o: { profilesDir?: string[]; output?: string }) => {
      const dirs = [...(o.profilesDir ?? []), shippedProfilesDir()];
      const rows: Array<{ name: string; extends: string[]; description: string; dir: string }> = [];
      for (const d of dirs) {
        let names: string[] = [];
        try {
          names = readdirSync(d).filter((f) => /\.ya?ml$/.test(f));
        } catch {
          continue;
        }
        for (const f of names.sort()) {
          const name = f.replace(/\.ya?ml$/, '');
          if (rows.some((r) => r.name === name)) continue;
          let spec: { description?: string; extends?: string[] } = {};
          try {
            spec = parseProfileFile(`${d}/${f}`).spec;
          } catch {
            // An invalid file is still listed; `tether profile validate NAME` says what is wrong.
          }
          rows.push({ name, extends: spec.extends ?? [], description: spec.description ?? '', dir: d });
        }
      }
      if (o.output === 'json' || o.output === 'yaml') return out(renderStructured(rows, o.output));
      out(
        renderTable(
          ['name', 'extends', 'description'],
          rows.map((r) => [r.name, r.extends.join(',') || '-', r.description]),
        ),
      );
    });

  prof
    .command('show <profile>')
    .description('print a profile after composition (extends resolved), with where each field was set')
    .option('--profiles-dir <dir...>', 'extra directories searched for profiles')
    .option('--origins', 'list the file:line of every field')
    .option('-o, --output <fmt>', 'json|yaml (default yaml)')
    .action(async (name: string, o: { profilesDir?: string[]; origins?: boolean; output?: string }) => {
      const p = await sayingOnce(() => load(name, o.profilesDir));
      const fmt = o.output === 'json' ? 'json' : 'yaml';
      if (o.origins) {
        out(
          renderStructured(
            {
              name: p.name,
              files: p.files,
              spec: p.spec,
              origins: Object.fromEntries([...p.origins].map(([k, v]) => [k, `${v.file}:${v.line}`])),
            },
            fmt,
          ),
        );
        return;
      }
      out(renderStructured(p.spec, fmt));
    });

  hostOptions(
    prof
      .command('validate <profile...>')
      .description('check profiles: schema and composition; with --hardware also against the node inventory')
      .option('--hardware', 'also validate against the hardware under --root')
      .option('-o, --output <fmt>', 'json|yaml'),
  ).action(async (names: string[], o: HostOpts & { hardware?: boolean }) => {
    const report: Array<{ profile: string; files: string[]; issues: ProfileIssue[] }> = [];
    for (const name of names) {
      let p: ResolvedProfile;
      try {
        p = load(name, o.profilesDir);
      } catch (e) {
        const issues = loadIssues(e);
        if (!issues) throw e;
        report.push({ profile: name, files: [], issues });
        continue;
      }
      let issues = checkProfile(p);
      if (o.hardware && !issues.some((i) => i.severity === 'error')) {
        const { fs } = hostPorts(o);
        issues = validateProfile(p, (await observe(fs, undefined, p)).inv);
      }
      report.push({ profile: p.name, files: p.files, issues });
    }
    const errors = report.flatMap((r) => r.issues.filter((i) => i.severity === 'error'));
    if (o.output === 'json' || o.output === 'yaml') out(renderStructured(report, o.output));
    else
      for (const r of report) {
        say(
          `${r.issues.some((i) => i.severity === 'error') ? paint('invalid', 'red') : paint('valid', 'green')}  ${r.profile}${r.files.length ? ` (${r.files.join(' + ')})` : ''}`,
        );
        for (const i of r.issues) say(`  ${issueLine(i)}`);
      }
    if (errors.length) {
      // Each problem was printed above with its file:line, field and expectation.
      const bad = report.filter((r) => r.issues.some((i) => i.severity === 'error')).length;
      throw new TetherError(
        'TETHER_E_INVALID',
        `${errors.length} error(s) in ${bad} of ${report.length} profile(s)${o.output ? ' (in the report)' : ' (listed above)'}`,
        { issues: errors },
      );
    }
  });

  hostOptions(
    prof
      .command('plan <profile>')
      .description('show what apply would change, in order, and how many reboots it needs and why')
      .option('-o, --output <fmt>', 'json|yaml'),
  ).action(async (name: string, o: HostOpts) => {
    const { p } = await sayingOnce(() => loadChecked(name, o.profilesDir));
    const { fs, runner } = hostPorts(o);
    const obs = await observe(fs, runner, p);
    const issues = validateProfile(p, obs.inv);
    const errors = issues.filter((i) => i.severity === 'error');
    if (errors.length) {
      for (const i of issues) say(issueLine(i));
      // The problems were printed above, each once with its file:line and field.
      throw new TetherError(
        'TETHER_E_INVALID',
        `profile ${p.name} does not fit this node (${errors.length} error(s) listed above); nothing planned`,
        { issues: errors },
      );
    }
    const plan = planProfile(p, obs, readApplied(obs));
    if (o.output === 'json' || o.output === 'yaml')
      return out(renderStructured({ ...plan, issues }, o.output));
    for (const i of issues) say(`${paint('warning:', 'yellow')} ${formatIssue(i)}`);
    out(renderPlan(plan));
  });

  hostOptions(
    prof
      .command('apply <profile>')
      .description('apply a profile: validate, plan, execute; journaled so an interrupted apply resumes')
      .option('-o, --output <fmt>', 'json|yaml summary on stdout'),
  ).action(async (name: string, o: HostOpts) => {
    const { p } = await sayingOnce(() => loadChecked(name, o.profilesDir));
    const { fs, runner } = hostPorts(o);
    const res = await sayingOnce(() => applyProfile(p, { fs, runner, progress: (l) => say(l) }));
    const summary = {
      profile: p.name,
      executed: res.executed,
      resumed: res.resumed,
      rebootRequired: res.rebootRequired,
      rebootReasons: res.plan.reboot.reasons,
      warnings: [
        ...res.plan.warnings,
        ...res.issues.filter((i) => i.severity === 'warning').map(formatIssue),
      ],
    };
    if (o.output === 'json' || o.output === 'yaml') out(renderStructured(summary, o.output));
    for (const w of summary.warnings) say(`${paint('warning:', 'yellow')} ${w}`);
    if (res.executed === 0 && !res.rebootRequired) say('nothing to do: the node matches the profile');
    else if (res.rebootRequired)
      say(
        `${paint('reboot required', 'yellow')} (${res.plan.reboot.reasons.length} reason(s), see tether profile plan); after the reboot run tether profile apply ${name} again (tether-profile.service does it at boot)`,
      );
    else
      say(`${paint('applied', 'green')} ${p.name}: ${res.executed} steps${res.resumed ? ' (resumed)' : ''}`);
  });

  prof
    .command('schema')
    .description('print the JSON Schema of a profile (also the spec of a kind: Profile resource)')
    .action(() => out(`${JSON.stringify(PROFILE_SPEC_SCHEMA, null, 2)}\n`));

  prof
    .command('origin <profile> <field>')
    .description('print the file:line that set a field of a composed profile (e.g. sriov[fronthaul].numVfs)')
    .option('--profiles-dir <dir...>', 'extra directories searched for profiles')
    .action(async (name: string, field: string, o: { profilesDir?: string[] }) => {
      const p = await sayingOnce(() => load(name, o.profilesDir));
      const org = originOf(p, field);
      out(`${org ? `${org.file}:${org.line}` : '(unknown)'}\n`);
    });
}
