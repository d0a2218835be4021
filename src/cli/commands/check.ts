import type { Command } from 'commander';
import { RootedHostFs } from '../../kernel/hw/hostfs.js';
import { parseYaml, readInputFile } from '../../lib/input.js';
import { checkNode } from '../../profiles/check.js';
import { loadProfile, shippedProfilesDir } from '../../profiles/load.js';
import { EXIT } from '../exit.js';
import { out, paint, renderStructured, renderTable, say } from '../output.js';

export function parseYamlOrJson(file: string): unknown {
  try {
    return parseYaml(readInputFile(file), { source: file }) ?? {};
  } catch {
    return {};
  }
}

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description(
      'preflight: what this node lacks for its profile (offline, before enrollment); exit 7 when something required is missing',
    )
    .option('--profile <name>', 'profile name or file (default: the applied profile, else base)')
    .option('--root <dir>', 'host root: / on a node, or a sysfs/procfs fixture tree', '/')
    .option('--profiles-dir <dir...>', 'extra directories searched for profiles')
    .option('-o, --output <fmt>', 'json|yaml')
    .action(async (o: { profile?: string; root: string; profilesDir?: string[]; output?: string }) => {
      const fs = new RootedHostFs(o.root);
      let name = o.profile;
      if (!name) {
        const applied = await fs.read('/var/lib/tether/profile/applied.json');
        try {
          name = applied ? (JSON.parse(applied) as { profile?: string }).profile : undefined;
        } catch {
          name = undefined;
        }
      }
      const p = loadProfile(name ?? 'base', { searchPath: [...(o.profilesDir ?? []), shippedProfilesDir()] });
      const report = await checkNode(fs, p);
      if (o.output === 'json' || o.output === 'yaml') out(renderStructured(report, o.output));
      else {
        const color = { pass: 'green', warn: 'yellow', fail: 'red' } as const;
        say(
          `node: kernel ${report.node.kernel || '?'}, ${report.node.cpus} CPUs, ${report.node.numaNodes} NUMA node(s), ${report.node.memoryGiB} GiB, SR-IOV PFs: ${report.node.sriovPfs.join(', ') || 'none'}`,
        );
        out(
          renderTable(
            ['status', 'check', 'detail'],
            report.results.map((r) => [
              paint(r.status.toUpperCase(), color[r.status], process.stdout),
              r.title,
              r.detail,
            ]),
          ),
        );
        for (const r of report.results.filter((x) => x.hint && x.status !== 'pass'))
          say(`${paint('hint', 'bold')} (${r.title}): ${r.hint}`);
        say(
          `${report.ok ? paint('ready', 'green') : paint('not ready', 'red')} for profile ${report.profile}: ${report.summary.pass} pass, ${report.summary.warn} warn, ${report.summary.fail} fail`,
        );
      }
      if (!report.ok) process.exitCode = EXIT.CHECK_FAILED;
    });
}
