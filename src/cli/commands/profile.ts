import { readdirSync } from 'node:fs';
import type { Command } from 'commander';
import { FakeKernel } from '../../kernel/hw/fake.js';
import { type HostFs, RootedHostFs } from '../../kernel/hw/hostfs.js';
import { TetherError } from '../../lib/errors.js';
import { type CommandRunner, ProcessRunner } from '../../lib/exec.js';
import { applyProfile, observe, readApplied } from '../../profiles/apply.js';
import {
  formatIssue,
  loadProfile,
  originOf,
  type ResolvedProfile,
  shippedProfilesDir,
} from '../../profiles/load.js';
import { type Plan, planProfile } from '../../profiles/plan.js';
import { PROFILE_SPEC_SCHEMA } from '../../profiles/schema.js';
import { validateProfile } from '../../profiles/validate.js';
import { out, paint, renderStructured, renderTable, say } from '../output.js';
import { parseYamlOrJson } from './check.js';

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
          const text = parseYamlOrJson(`${d}/${f}`) as { description?: string; extends?: string[] };
          rows.push({ name, extends: text.extends ?? [], description: text.description ?? '', dir: d });
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
    .action((name: string, o: { profilesDir?: string[]; origins?: boolean; output?: string }) => {
      const p = load(name, o.profilesDir);
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
    const report: Array<{ profile: string; files: string[]; issues: ReturnType<typeof validateProfile> }> =
      [];
    for (const name of names) {
      const p = load(name, o.profilesDir); // throws TETHER_E_INVALID with file:line on schema errors
      let issues: ReturnType<typeof validateProfile> = [];
      if (o.hardware) {
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
          `${r.issues.some((i) => i.severity === 'error') ? paint('invalid', 'red') : paint('valid', 'green')}  ${r.profile} (${r.files.join(' + ')})`,
        );
        for (const i of r.issues)
          say(
            `  ${i.severity === 'error' ? paint('error:', 'red') : paint('warning:', 'yellow')} ${formatIssue(i)}`,
          );
      }
    if (errors.length) {
      const first = errors[0];
      throw new TetherError('TETHER_E_INVALID', `${errors.length} profile error(s)`, {
        file: first?.file,
        line: first?.line,
        field: first?.field,
      });
    }
  });

  hostOptions(
    prof
      .command('plan <profile>')
      .description('show what apply would change, in order, and how many reboots it needs and why')
      .option('-o, --output <fmt>', 'json|yaml'),
  ).action(async (name: string, o: HostOpts) => {
    const p = load(name, o.profilesDir);
    const { fs, runner } = hostPorts(o);
    const obs = await observe(fs, runner, p);
    const issues = validateProfile(p, obs.inv);
    const errors = issues.filter((i) => i.severity === 'error');
    if (errors.length) {
      for (const i of issues)
        say(
          `${i.severity === 'error' ? paint('error:', 'red') : paint('warning:', 'yellow')} ${formatIssue(i)}`,
        );
      const first = errors[0];
      throw new TetherError(
        'TETHER_E_INVALID',
        `profile ${p.name} does not fit this node (${errors.length} error(s)); nothing planned`,
        {
          file: first?.file,
          line: first?.line,
          field: first?.field,
        },
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
    const p = load(name, o.profilesDir);
    const { fs, runner } = hostPorts(o);
    const res = await applyProfile(p, { fs, runner, progress: (l) => say(l) });
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
    .action((name: string, field: string, o: { profilesDir?: string[] }) => {
      const p = load(name, o.profilesDir);
      const org = originOf(p, field);
      out(`${org ? `${org.file}:${org.line}` : '(unknown)'}\n`);
    });
}
