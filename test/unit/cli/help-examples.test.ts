// Every command's --help ends with examples that would parse: each example line names a real
// command path, and every flag in it is one that command (or a parent group) defines.
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../../src/cli/main.js';
import { runTether } from '../../integration/support/proc.js';

const program = await buildProgram();

function commands(cmd: Command, path: string[] = []): Array<[string[], Command]> {
  return [[path, cmd], ...cmd.commands.flatMap((c) => commands(c, [...path, c.name()]))];
}

/** The help text as `--help` prints it, with the after-help sections. */
function helpOf(cmd: Command): string {
  let text = '';
  cmd.configureOutput({ writeOut: (s) => (text += s), writeErr: (s) => (text += s) });
  cmd.outputHelp();
  return text;
}

/** Example command lines from the help: lines of an Examples section that start with `tether`. */
function examplesIn(help: string): string[] {
  const at = help.search(/^Examples?:$/m);
  if (at < 0) return [];
  return help
    .slice(at)
    .split('\n')
    .map((l) => l.trim().replace(/^\$ /, ''))
    .filter((l) => l.startsWith('tether '));
}

/** Shell-ish words: quotes group, redirections end the command. */
function words(line: string): string[] {
  const out: string[] = [];
  for (const m of line.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)) {
    const w = m[1] ?? m[2] ?? (m[3] as string);
    if (m[3] !== undefined && /^[>|;&]/.test(w)) break;
    out.push(w);
  }
  return out.slice(1);
}

/** Flags an example passes to a command that does not define them (or a parent group). */
function unknownFlags(line: string): { path: string; bad: string[] } {
  let cmd = program;
  const chain: Command[] = [program];
  const bad: string[] = [];
  for (const w of words(line)) {
    if (w === '--') break;
    if (w.startsWith('-')) {
      const flag = w.split('=')[0] as string;
      const known =
        flag === '--help' ||
        flag === '-h' ||
        chain.some((c) => c.options.some((o) => o.long === flag || o.short === flag));
      if (!known) bad.push(flag);
      continue;
    }
    const next = cmd.commands.find((c) => c.name() === w);
    if (next) {
      cmd = next;
      chain.push(next);
    }
  }
  const path: string[] = [];
  for (let c: Command | null = cmd; c && c !== program; c = c.parent) path.unshift(c.name());
  return { path: path.join(' '), bad };
}

describe('--help examples', () => {
  const all = commands(program);

  it('walks the whole tree', () => {
    expect(all.length).toBeGreaterThan(30);
  });

  it.each(all.map(([p, c]) => [p.join(' ') || '(tether)', c] as const))(
    '%s has examples with real flags',
    (name, cmd) => {
      const examples = examplesIn(helpOf(cmd));
      expect(examples.length, `${name}: no Examples in --help`).toBeGreaterThan(0);
      const self = name === '(tether)' ? '' : name;
      const ran = new Set<string>();
      for (const ex of examples) {
        const { path, bad } = unknownFlags(ex);
        expect(bad, `${name}: "${ex}" uses flags ${bad.join(', ')} the command does not have`).toEqual([]);
        ran.add(path);
      }
      // A leaf shows itself at least once (it may also show what to run next); the top level
      // and groups may show any of their commands.
      if (cmd.commands.length === 0) expect([...ran], `${name}: no example runs it`).toContain(self);
    },
  );

  it('the flag check catches a wrong flag', () => {
    expect(unknownFlags('tether token create --site x --nosuch 1').bad).toEqual(['--nosuch']);
    expect(unknownFlags('tether status --site x').bad).toEqual(['--site']);
  });

  it('prints the examples from the real binary', async () => {
    const r = await runTether(['token', 'create', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Examples:\n {2}\$ tether token create --site/m);
  });
});
