import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram, unknownCommandAt } from '../../../src/cli/main.js';
import { runTether } from '../../integration/support/proc.js';

/** Every command path of the real tree: [['node'], ['node', 'run'], …]. */
function paths(cmd: Command, prefix: string[] = []): string[][] {
  return cmd.commands.flatMap((c) => [[...prefix, c.name()], ...paths(c, [...prefix, c.name()])]);
}
const groups = (cmd: Command, prefix: string[] = []): string[][] =>
  cmd.commands.length === 0 ? [] : [prefix, ...cmd.commands.flatMap((c) => groups(c, [...prefix, c.name()]))];

const program = await buildProgram();

describe('unknown commands are usage errors, with or without --help', () => {
  it('finds no unknown word in any real command path, with help flags anywhere', () => {
    for (const p of paths(program)) {
      expect(unknownCommandAt(program, p), p.join(' ')).toBe(-1);
      expect(unknownCommandAt(program, [...p, '--help']), p.join(' ')).toBe(-1);
      expect(unknownCommandAt(program, ['--help', ...p]), p.join(' ')).toBe(-1);
      expect(unknownCommandAt(program, ['help', ...p]), p.join(' ')).toBe(-1);
    }
  });

  it('names the first unknown word under every command group', () => {
    for (const g of groups(program)) {
      for (const bad of ['nosuch', 'Node', 'x-y', '0']) {
        expect(unknownCommandAt(program, [...g, bad]), `${g.join(' ')} ${bad}`).toBe(g.length);
        expect(unknownCommandAt(program, [...g, bad, '--help'])).toBe(g.length);
        expect(unknownCommandAt(program, [...g, '-h', bad])).toBe(g.length + 1);
        expect(unknownCommandAt(program, ['help', ...g, bad])).toBe(g.length + 1);
      }
    }
  });

  it('leaves arguments of leaf commands alone', () => {
    expect(unknownCommandAt(program, ['get', 'nodes', 'anything', '--help'])).toBe(-1);
    expect(unknownCommandAt(program, ['apply', '-f', 'x.yaml'])).toBe(-1);
    expect(unknownCommandAt(program, ['--', 'nosuch'])).toBe(-1);
  });

  it('the real binary exits 2 and says which word, and 0 for help of a real command', async () => {
    for (const argv of [
      ['nosuch', '--help'],
      ['node', 'nosuch', '--help'],
      ['help', 'nosuch'],
    ]) {
      const r = await runTether(argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.stderr).toContain("unknown command 'nosuch'");
      expect(r.stdout).toBe('');
    }
    const ok = await runTether(['node', '--help']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('Usage: tether node');
  }, 60_000);
});
