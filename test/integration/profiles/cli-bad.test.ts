/**
 * Bad profiles through the real `tether` binary (separate processes): `profile validate`,
 * `profile plan`, `profile apply` and `check --profile` end in exit 4 for every kind of bad
 * file, with file:line, field and expectation on stderr, each problem said once, never a
 * stack trace, and nothing written under --root.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXIT } from '../../../src/cli/exit.js';
import { MAX_PROFILE_BYTES } from '../../../src/profiles/limits.js';
import { tempMachine } from '../../fixtures/hw/build.js';
import { snapshot } from '../../fixtures/hw/scenario.js';
import { runTether } from '../support/proc.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-cli-bad-'));

function bomb(): string {
  const lines = ['a0: &a0 ["x"]'];
  for (let d = 1; d <= 8; d++)
    lines.push(
      `a${d}: &a${d} [${Array(9)
        .fill(`*a${d - 1}`)
        .join(', ')}]`,
    );
  return `site:\n  labels:\n${lines.map((l) => `    ${l}`).join('\n')}\n`;
}

/** name → [text, line, field, what the message says] */
const BAD: Record<string, [string, number, string, RegExp]> = {
  reversed: ['cpu:\n  reserved: "3-1"\n  isolated: remaining\n', 2, 'cpu.reserved', /ends before it starts/],
  huge: [
    'cpu:\n  reserved: "0-1"\n  isolated: "2-99999"\n',
    3,
    'cpu.isolated',
    /beyond the largest possible CPU id 8191/,
  ],
  vfs: [
    'sriov:\n  - name: fh\n    pf: {name: ens1f0}\n    numVfs: 0\n    vfGroups:\n      - range: "0-3"\n',
    6,
    'sriov[fh].vfGroups[0].range',
    /VFs 0-3 are beyond numVfs 0/,
  ],
  // 9^5 copies of a0 by the line of a5 (line 8): past the 100,000-node budget.
  bomb: [bomb(), 8, '(aliases)', /alias bomb/],
  multi: ['description: a\n---\ndescription: b\n', 2, '(document)', /second YAML document/],
  deep: [
    `site:\n  labels: ${'['.repeat(20000)}${']'.repeat(20000)}\n`,
    2,
    '(syntax)',
    /nested more than 32 levels/,
  ],
  large: [`description: "${'x'.repeat(MAX_PROFILE_BYTES)}"\n`, 1, '(file)', /more than the 1048576/],
};
const files = Object.fromEntries(
  Object.entries(BAD).map(([name, [text]]) => {
    const f = join(dir, `${name}.yaml`);
    writeFileSync(f, text);
    return [name, f];
  }),
);

function expectSaidOnce(stderr: string, name: string): void {
  const [, line, field, message] = BAD[name] as [string, number, string, RegExp];
  const f = files[name] as string;
  const where = `${f}:${line}: ${field}: `;
  expect(stderr.split(where).length - 1, stderr).toBe(1);
  const after = stderr.slice(stderr.indexOf(where));
  expect(after.split('\n')[0]).toMatch(message);
  expect(after.split('\n')[0]).toMatch(/\(expected .+\)/);
  expect(stderr).not.toMatch(/\n\s+at .*\.(ts|js):\d+/);
  expect(stderr).not.toMatch(/\d--\d/);
}

describe('bad profiles through the real binary: exit 4, file:line: field once', () => {
  it('profile validate (all at once): each file reported once, exit 4', async () => {
    const names = Object.keys(BAD);
    const r = await runTether(['profile', 'validate', ...names.map((n) => files[n] as string)]);
    expect(r.code).toBe(EXIT.INVALID);
    for (const n of names) expectSaidOnce(r.stderr, n);
    expect(r.stderr).toMatch(
      new RegExp(`${names.length} error\\(s\\) in ${names.length} of ${names.length} profile`),
    );
  }, 120_000);

  it.each(['reversed', 'vfs', 'bomb', 'multi'])(
    '%s: plan, apply and check --profile exit 4 and change nothing',
    async (name) => {
      const root = tempMachine('du-e810');
      const before = snapshot(root);
      const f = files[name] as string;
      for (const args of [
        ['profile', 'plan', f, '--root', root, '--fake-kernel'],
        ['profile', 'apply', f, '--root', root, '--fake-kernel'],
        ['check', '--profile', f, '--root', root],
      ]) {
        const r = await runTether(args);
        expect(r.code, `${args.join(' ')}\n${r.stderr}`).toBe(EXIT.INVALID);
        expectSaidOnce(r.stderr, name);
      }
      expect(snapshot(root)).toEqual(before);
    },
    120_000,
  );
});
