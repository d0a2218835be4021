import type { Command } from 'commander';
import { TetherError } from '../../lib/errors.js';
import { ProcessRunner } from '../../lib/exec.js';
import { runDiag, type Verdict } from '../../node/support/diag.js';
import { DEFAULT_NODE_DIR } from '../admin.js';
import { EXIT } from '../exit.js';
import { out, paint, renderStructured } from '../output.js';

/** Exit code of `tether diag` (docs/field.md): 0 all pass, 1 a warning, 7 a failure. */
export function diagExitCode(worst: Verdict): number {
  return worst === 'pass' ? EXIT.OK : worst === 'warn' ? EXIT.ERROR : EXIT.CHECK_FAILED;
}

export function registerDiag(program: Command): void {
  program
    .command('diag')
    .description(
      'live checks of this node, each pass/warn/fail with what to do (exit 0 all pass, 1 warning, 7 failure)',
    )
    .option('--state-dir <dir>', 'node state directory', DEFAULT_NODE_DIR)
    .option('--timeout <ms>', 'per network check', '3000')
    .option('-o, --output <fmt>', 'json|yaml')
    .addHelpText(
      'after',
      '\nExamples:\n  tether diag\n  tether diag -o json | jq \'.checks[] | select(.verdict != "pass")\'\n',
    )
    .action(async (o: { stateDir: string; timeout: string; output?: string }) => {
      if (o.output !== undefined && o.output !== 'json' && o.output !== 'yaml') {
        throw new TetherError('TETHER_E_INVALID', `bad output format "${o.output.slice(0, 40)}"`, {
          field: '--output',
          expected: 'json or yaml',
        });
      }
      const t = Number(o.timeout);
      if (!Number.isInteger(t) || t < 100 || t > 60_000) {
        throw new TetherError('TETHER_E_INVALID', `bad --timeout "${o.timeout.slice(0, 20)}"`, {
          field: '--timeout',
          expected: 'milliseconds from 100 to 60000',
        });
      }
      const r = await runDiag({ stateDir: o.stateDir, runner: new ProcessRunner(), timeoutMs: t });
      if (o.output) out(renderStructured(r, o.output));
      else {
        const mark = {
          pass: paint('PASS', 'green', process.stdout),
          warn: paint('WARN', 'yellow', process.stdout),
          fail: paint('FAIL', 'red', process.stdout),
        };
        for (const c of r.checks) {
          out(`${mark[c.verdict]}  ${c.name}: ${c.detail}\n`);
          if (c.remedy) out(`      → ${c.remedy}\n`);
        }
      }
      process.exitCode = diagExitCode(r.worst);
    });
}
