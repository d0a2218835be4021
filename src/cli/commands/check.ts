import type { Command } from 'commander';
import { RootedHostFs } from '../../kernel/hw/hostfs.js';
import { checkNode } from '../../profiles/check.js';
import { EXIT } from '../exit.js';
import { out, paint, renderStructured, renderTable, say } from '../output.js';
import { loadChecked, sayingOnce } from './profile.js';

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description(
      'preflight: what this node lacks for its profile (offline, before enrollment); exit 7 when something required is missing',
    )
    .option('--profile <name>', 'profile name or file (default: the applied profile, else base)')
    .option('--root <dir>', 'host root: / on a node, or a sysfs/procfs fixture tree', '/')
    .option('--profiles-dir <dir...>', 'extra directories searched for profiles')
    .option('--underlay-if <name>', "interface carrying the VXLAN underlay (default: the default route's)")
    .option('-o, --output <fmt>', 'json|yaml')
    .action(
      async (o: {
        profile?: string;
        root: string;
        profilesDir?: string[];
        underlayIf?: string;
        output?: string;
      }) => {
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
        // A bad profile is invalid input (exit 4), not a failed check of the node (exit 7).
        const { p } = await sayingOnce(() => loadChecked(name ?? 'base', o.profilesDir));
        const report = await checkNode(fs, p, undefined, o.underlayIf ? { underlayIf: o.underlayIf } : {});
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
      },
    );
}
