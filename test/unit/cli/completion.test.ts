// Completion is checked in the real shells: the script `tether completion` prints is sourced
// into bash (driven through COMP_WORDS/COMP_CWORD and the function `complete` registered) and
// into zsh after compinit (its registration, and the shared resolver).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTether } from '../../integration/support/proc.js';

const haveZsh = (() => {
  try {
    execFileSync('zsh', ['-fc', 'true']);
    return true;
  } catch {
    return false;
  }
})();

let dir: string;
let bashScript: string;
let zshScript: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 't11-completion-'));
  const bash = await runTether(['completion', 'bash']);
  const zsh = await runTether(['completion', 'zsh']);
  expect(bash.code, bash.stderr).toBe(0);
  expect(zsh.code, zsh.stderr).toBe(0);
  bashScript = join(dir, 'tether.bash');
  zshScript = join(dir, '_tether');
  writeFileSync(bashScript, bash.stdout);
  writeFileSync(zshScript, zsh.stdout);
  writeFileSync(join(dir, 'state-one'), '');
}, 60_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** COMPREPLY after the shell's own `complete -F` function for `tether` runs on `words`. */
function bashComplete(words: readonly string[]): string[] {
  const q = (w: string) => `'${w.replaceAll("'", "'\\''")}'`;
  const script = `source ${q(bashScript)}
fn=$(complete -p tether | sed -E 's/.*-F ([^ ]+).*/\\1/')
COMP_WORDS=(tether ${words.map(q).join(' ')}); COMP_CWORD=${words.length}
"$fn"; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const out = execFileSync('bash', ['--norc', '--noprofile', '-c', script], { cwd: dir, encoding: 'utf8' });
  return out.split('\n').filter(Boolean);
}

describe('bash completion', () => {
  it('completes top-level commands by prefix', () => {
    expect(bashComplete(['st'])).toEqual(['status']);
    expect(bashComplete(['c']).sort()).toEqual(['check', 'completion', 'controller']);
    expect(bashComplete([''])).toContain('node');
  });

  it('completes subcommands and the flags of the command typed so far', () => {
    expect(bashComplete(['node', 'en'])).toEqual(['enroll']);
    expect(bashComplete(['token', 'create', '--s'])).toEqual(['--site']);
    expect(bashComplete(['node', 'run', '--state'])).toEqual(['--state-dir']);
    expect(bashComplete(['--v'])).toEqual(['--version']);
  });

  it('skips flag values and completes files after a flag that takes one', () => {
    // `--site x` consumes x; the next word is still a flag of `token create`.
    expect(bashComplete(['token', 'create', '--site', 'create', '--tt'])).toEqual(['--ttl']);
    expect(bashComplete(['node', 'run', '--state-dir', 'state-'])).toEqual(['state-one']);
  });

  it('offers nothing for an unknown command', () => {
    expect(bashComplete(['nosuch', '--s'])).toEqual([]);
    expect(bashComplete(['nosuch', ''])).not.toContain('node');
  });
});

describe.skipIf(!haveZsh)('zsh completion', () => {
  const zsh = (body: string): string =>
    execFileSync(
      'zsh',
      ['-fc', `autoload -U compinit && compinit -u -D -d ${dir}/zcompdump && source ${zshScript} && ${body}`],
      { cwd: dir, encoding: 'utf8' },
    );

  it('registers _tether for tether with compdef', () => {
    expect(zsh('print -r -- $_comps[tether]').trim()).toBe('_tether');
  });

  it('resolves the same candidates as bash', () => {
    expect(zsh('_tether_candidates token create --s').trim().split(' ')).toContain('--site');
    expect(zsh('_tether_candidates node ""').trim().split(' ')).toContain('enroll');
    expect(zsh('_tether_candidates node run --state-dir ""').trim()).toBe('__files__');
    // `path` in zsh is PATH's array; the resolver must not clobber it.
    expect(zsh('_tether_candidates node ""; print -r -- $PATH').trim()).toContain('/');
  });
});
