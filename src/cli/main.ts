#!/usr/bin/env node
// Composition root of the `tether` binary: every subcommand is registered here and nowhere
// else; each command module parses its flags, calls library code and prints.
import { Command, CommanderError } from 'commander';
import { describeError, isTetherError } from '../lib/errors.js';
import { registerProfileKind } from '../profiles/resource.js';
import { registerCheck } from './commands/check.js';
import { registerController } from './commands/controller.js';
import { registerLab } from './commands/lab.js';
import { registerNode } from './commands/node.js';
import { registerProfile } from './commands/profile.js';
import { registerResources } from './commands/resources.js';
import { registerShell } from './commands/shell.js';
import { registerStatus } from './commands/status.js';
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
  registerShell,
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

/**
 * Index in `argv` of the first word that names no subcommand of the command group it is given
 * to (`tether foo`, `tether node foo`, `tether help foo`), or -1. Commander shows help for
 * `tether foo --help` and exits 0 before it looks at `foo`; an unknown command must be a usage
 * error whatever flags come with it, so this runs first.
 */
export function unknownCommandAt(program: Command, argv: readonly string[]): number {
  let cmd = program;
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i] as string;
    if (word === '--') return -1;
    if (cmd.commands.length === 0) return -1;
    if (word.startsWith('-')) {
      // A group's own option that takes a value (`--flag VALUE`) consumes the next word.
      const opt = cmd.options.find((o) => o.long === word || o.short === word);
      if (opt && (opt.required || opt.optional)) i++;
      continue;
    }
    if (word === 'help') continue; // `help X` is checked as X
    const next = cmd.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (!next) return i;
    cmd = next;
  }
  return -1;
}

export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  const unknown = unknownCommandAt(program, argv);
  // Let commander word the error (with its "Did you mean" hint), without the help flags that
  // would make it print help instead.
  const args =
    unknown >= 0
      ? argv.filter((a, i) => !(a === '--help' || a === '-h' || (a === 'help' && i < unknown)))
      : argv;
  try {
    await program.parseAsync([...args], { from: 'user' });
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
