#!/usr/bin/env node
// Composition root of the `tether` binary: every subcommand is registered here and nowhere
// else; each command module parses its flags, calls library code and prints.
import { Command, CommanderError } from 'commander';
import { describeError, isTetherError } from '../lib/errors.js';
import { registerProfileKind } from '../profiles/resource.js';
import { registerCheck } from './commands/check.js';
import { registerController } from './commands/controller.js';
import { registerLab } from './commands/lab.js';
import { registerNode, registerStatus } from './commands/node.js';
import { registerProfile } from './commands/profile.js';
import { registerResources } from './commands/resources.js';
import { registerToken } from './commands/token.js';
import { EXIT, exitCodeFor } from './exit.js';
import { paint, say } from './output.js';

const registrations: Array<(program: Command) => void> = [
  registerController,
  registerToken,
  registerNode,
  registerStatus,
  registerResources,
  registerProfile,
  registerCheck,
  registerLab,
];

export function buildProgram(): Command {
  registerProfileKind();
  const program = new Command('tether')
    .description('Tether: edge/5G remote-compute appliance (controller, node, field CLI)')
    .version(process.env.npm_package_version ?? '0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  for (const register of registrations) register(program);
  return program;
}

export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.OK;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (
        e.code === 'commander.helpDisplayed' ||
        e.code === 'commander.version' ||
        e.code === 'commander.help'
      )
        return EXIT.OK;
      return EXIT.USAGE;
    }
    if (isTetherError(e)) {
      say(`${paint('error:', 'red')} ${describeError(e)}`);
      return exitCodeFor(e.code);
    }
    // A bug, not bad input; still no stack trace for the user unless asked for.
    const detail =
      e instanceof Error ? (process.env.TETHER_DEBUG ? (e.stack ?? e.message) : e.message) : String(e);
    say(
      `${paint('error:', 'red')} internal error: ${detail} [TETHER_E_INTERNAL] (TETHER_DEBUG=1 shows the stack)`,
    );
    return EXIT.ERROR;
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('/src/cli/main.ts')) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
