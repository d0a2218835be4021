// `tether status` without commander (src/cli/commands/status-fast.ts): for any argv it either
// hands over to commander or reads exactly the options commander would have read.
import { Command } from 'commander';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseStatusArgs } from '../../../src/cli/commands/status-fast.js';
import { DEFAULT_NODE_DIR } from '../../../src/cli/defaults.js';
import { COMMANDS } from '../../../src/cli/main.js';

/** What commander makes of `status ARGV` with the real registerStatus (its action replaced). */
async function commanderOptions(argv: readonly string[]): Promise<Record<string, unknown> | 'error'> {
  const mod = COMMANDS.find((m) => m.names.includes('status'));
  if (!mod) throw new Error('no status command');
  const program = new Command('tether').exitOverride().configureOutput({
    writeErr: () => {},
    writeOut: () => {},
  });
  (await mod.load())(program);
  const status = program.commands.find((c) => c.name() === 'status') as Command;
  status.exitOverride();
  let seen: Record<string, unknown> | undefined;
  status.action((o: Record<string, unknown>) => {
    seen = { ...o };
  });
  try {
    await program.parseAsync(['status', ...argv], { from: 'user' });
  } catch {
    return 'error';
  }
  return seen ?? 'error';
}

describe('status fast path', () => {
  it('reads the flags registerStatus declares, in every spelling commander accepts', () => {
    expect(parseStatusArgs([])).toEqual({ stateDir: DEFAULT_NODE_DIR });
    expect(parseStatusArgs(['--state-dir', '/s', '--socket=/x.sock', '-ojson'])).toEqual({
      stateDir: '/s',
      socket: '/x.sock',
      output: 'json',
    });
    expect(parseStatusArgs(['-o', 'yaml', '--output', 'json'])).toEqual({
      stateDir: DEFAULT_NODE_DIR,
      output: 'json',
    });
  });

  it('hands help, unknown flags, arguments and missing values to commander', () => {
    for (const argv of [
      ['--help'],
      ['-h'],
      ['--state-dir'],
      ['--state-dir', '--socket', 'x'],
      ['extra'],
      ['--bogus'],
      ['--'],
      ['-x'],
      ['--state-dir', '/s', 'help'],
      ['--toString', 'x'], // no prototype key is a flag
    ]) {
      expect(parseStatusArgs(argv), argv.join(' ')).toBeUndefined();
    }
  });

  it('agrees with commander on every argv it accepts (property)', async () => {
    const word = fc.oneof(
      fc.constantFrom(
        '--state-dir',
        '--socket',
        '-o',
        '--output',
        '-h',
        '--help',
        '--',
        '-',
        '-ojson',
        '--state-dir=/a',
        '--socket=',
        '--output=yaml',
        '--nope',
        'json',
        'yaml',
        '/var/x',
        '=',
      ),
      fc.string({ maxLength: 6 }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(word, { maxLength: 6 }), async (argv) => {
        const fast = parseStatusArgs(argv);
        if (fast === undefined) return; // commander decides; nothing to compare
        const slow = await commanderOptions(argv);
        expect(slow, argv.join(' ')).not.toBe('error');
        const clean = (o: object) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
        expect(clean(fast), JSON.stringify(argv)).toEqual(clean(slow as object));
      }),
      { numRuns: 400 },
    );
  });
});
