#!/usr/bin/env node
// Composition root of the `tether` binary: every subcommand is registered here and nowhere
// else; each command module parses its flags, calls library code and prints.
//
// Command modules load on use (COMMANDS below): a technician's `tether status` must answer
// about as fast as an empty `node -e 0` (BENCHMARKS.md, cli-startup), and loading every
// module (gRPC, yaml, ajv, the controller) costs several times that. So main.ts imports
// nothing heavy at the top: commander itself is loaded only on the slow path, and a command
// with a `fast` entry runs without it when its flags are all ones it parses itself.
import type { Command } from 'commander';
import { describeError, isTetherError } from '../lib/errors.js';
import { EXIT, exitCodeFor } from './exit.js';
import { paint, say } from './term.js';

type Register = (program: Command) => void;

/** One line per command module: the top-level words it registers, and how to load it.
 *  A new command is one more line. `profileKinds`: the module reads or writes Profile
 *  objects, so the Profile kind is registered first. */
export interface CommandModule {
  names: readonly string[];
  load: () => Promise<Register>;
  profileKinds?: boolean;
  /** Runs argv (after the command word) without commander; undefined: not handled here. */
  fast?: () => Promise<(argv: readonly string[]) => Promise<number | undefined>>;
}

export const COMMANDS: readonly CommandModule[] = [
  { names: ['controller'], load: async () => (await import('./commands/controller.js')).registerController },
  { names: ['token'], load: async () => (await import('./commands/token.js')).registerToken },
  {
    names: ['node'],
    load: async () => (await import('./commands/node.js')).registerNode,
    profileKinds: true,
  },
  {
    names: ['status'],
    load: async () => (await import('./commands/status.js')).registerStatus,
    fast: async () => (await import('./commands/status-fast.js')).statusFast,
  },
  {
    names: ['apply', 'get', 'describe', 'delete'],
    load: async () => (await import('./commands/resources.js')).registerResources,
    profileKinds: true,
  },
  {
    names: ['profile'],
    load: async () => (await import('./commands/profile.js')).registerProfile,
    profileKinds: true,
  },
  {
    names: ['check'],
    load: async () => (await import('./commands/check.js')).registerCheck,
    profileKinds: true,
  },
  { names: ['lab'], load: async () => (await import('./commands/lab.js')).registerLab, profileKinds: true },
  { names: ['shell'], load: async () => (await import('./commands/shell.js')).registerShell },
  { names: ['diag'], load: async () => (await import('./commands/diag.js')).registerDiag },
  { names: ['logs'], load: async () => (await import('./commands/logs.js')).registerLogs },
  { names: ['bundle'], load: async () => (await import('./commands/bundle.js')).registerBundle },
  { names: ['dashboard'], load: async () => (await import('./commands/dashboard.js')).registerDashboard },
  {
    names: ['completion'],
    load: async () => (await import('./commands/completion.js')).completionCommand(() => buildProgram()),
  },
];

const VERSION = process.env.npm_package_version ?? '0.1.0';

/** The program with the given command modules registered (all of them by default). */
export async function buildProgram(modules: readonly CommandModule[] = COMMANDS): Promise<Command> {
  const { Command } = await import('commander');
  if (modules.some((m) => m.profileKinds)) {
    (await import('../profiles/resource.js')).registerProfileKind();
  }
  const program = new Command('tether')
    .description('Tether: edge/5G remote-compute appliance (controller, node, field CLI)')
    .version(VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  const registers = await Promise.all(modules.map((m) => m.load()));
  for (const register of registers) register(program);
  (await import('./examples.js')).attachExamples(program);
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

/** The module named by the first command word of argv (skipping `help`), if any. */
function moduleFor(argv: readonly string[]): CommandModule | undefined {
  const word = argv.find((a) => a !== 'help' && !a.startsWith('-'));
  if (word === undefined || word !== argv.find((a) => a !== 'help')) return undefined;
  return COMMANDS.find((m) => m.names.includes(word));
}

function reportError(e: unknown): number {
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

export async function main(argv: readonly string[]): Promise<number> {
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
    process.stdout.write(`${VERSION}\n`);
    return EXIT.OK;
  }
  const mod = moduleFor(argv);
  try {
    if (mod?.fast && argv[0] === mod.names[0]) {
      const run = await mod.fast();
      const code = await run(argv.slice(1));
      if (code !== undefined) return code;
    }
  } catch (e) {
    return reportError(e);
  }
  // A known command loads only its own module; anything else (top-level help, a typo that
  // gets a "Did you mean") sees the whole tree.
  const { CommanderError } = await import('commander');
  const program = await buildProgram(mod ? [mod] : COMMANDS);
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
    return reportError(e);
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('/src/cli/main.ts')) {
  // `tether logs | head`: the reader went away, which ends the command, not with a stack trace.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(EXIT.OK);
      throw e;
    });
  }
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
