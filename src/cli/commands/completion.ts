import { Argument, type Command } from 'commander';
import { completionScript, SHELLS, type Shell } from '../completion.js';
import { out } from '../output.js';

/** `tether completion SHELL`. Takes the builder of the whole tree: this module is loaded
 *  alone (main.ts loads one command module per run), but completes every command. */
export function completionCommand(buildAll: () => Promise<Command>): (program: Command) => void {
  return (program) => {
    program
      .command('completion')
      .description('print a shell completion script (commands, subcommands, flags)')
      .addArgument(new Argument('<shell>', 'bash or zsh').choices(SHELLS))
      .action(async (shell: Shell) => {
        out(completionScript(await buildAll(), shell));
      });
  };
}
