// `tether logs` against the real systemd journal. No systemd runs this machine, so the test
// runs systemd-journald itself, in a private mount namespace (tmpfs over /run/systemd and
// /run/log, so the host's paths are untouched), and puts the writer in a cgroup named like a
// unit (`<prefix>.slice/tether-node.service`): journald derives the trusted _SYSTEMD_UNIT from
// the writer's cgroup, exactly as for a unit systemd started, and `journalctl -u tether-node`
// (what `tether logs` runs) selects by it. The writer is the project's logger
// (test/integration/fixtures/journal-writer.ts) on a journal stdout stream (systemd-cat), as
// `StandardOutput=journal` gives the node unit. Needs root, unshare, nsenter, systemd-journald.
// Run with: flock /tmp/tether-heavy.lock npx vitest run test/integration/logs-journal.test.ts
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pty from 'node-pty';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RotatingLogFile } from '../../src/node/support/logs.js';
import { REPO, runProcess, TETHER } from './support/proc.js';

const JOURNALD = '/usr/lib/systemd/systemd-journald';
const TSX = join(REPO, 'node_modules/tsx/dist/esm/index.mjs');
const PREFIX = `t11f${process.pid % 100000}`;
const CGROOT = existsSync('/sys/fs/cgroup/cgroup.controllers') ? '/sys/fs/cgroup' : '/sys/fs/cgroup/unified';
const SLICE = join(CGROOT, `${PREFIX}.slice`);
const UNIT_CG = join(SLICE, 'tether-node.service');
const usable =
  process.getuid?.() === 0 &&
  existsSync(JOURNALD) &&
  existsSync(join(CGROOT, 'cgroup.procs')) &&
  ['unshare', 'nsenter', 'systemd-cat', 'journalctl'].every((p) => {
    try {
      execFileSync('sh', ['-c', `command -v ${p}`], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  });

let journald: ChildProcess | undefined;
let jpid = 0;
const writers: ChildProcess[] = [];
const work = mkdtempSync(join(tmpdir(), `${PREFIX}-`));

async function waitFor<T>(what: string, f: () => T | undefined | false, ms = 60_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** argv run inside journald's mount namespace (where its sockets and files are). */
const inNs = (argv: readonly string[]): string[] => ['-t', String(jpid), '-m', '--', ...argv];

/** A journal writer: `inUnit` puts it in the tether-node.service cgroup first. */
function startWriter(inUnit: boolean): ChildProcess {
  const cmd = `${inUnit ? `echo $$ > ${UNIT_CG}/cgroup.procs && ` : ''}exec systemd-cat -t tether-node ${process.execPath} --import ${TSX} ${join(REPO, 'test/integration/fixtures/journal-writer.ts')}`;
  const w = spawn('nsenter', inNs(['sh', '-c', cmd]), { stdio: ['pipe', 'inherit', 'inherit'] });
  writers.push(w);
  return w;
}

/** Entries of the unit as journalctl has them (inside the namespace). */
function unitEntries(): Array<Record<string, string>> {
  const out = execFileSync('nsenter', inNs(['journalctl', '-u', 'tether-node', '-o', 'json', '--no-pager']), {
    encoding: 'utf8',
  });
  return out
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, string>);
}

const hasMessage = (text: string) => () => unitEntries().some((e) => String(e.MESSAGE).includes(text));

beforeAll(async () => {
  if (!usable) return;
  const script = [
    'set -e',
    `mount -t tmpfs ${PREFIX} /run/systemd`,
    'mkdir -p /run/log',
    `mount -t tmpfs ${PREFIX} /run/log`,
    `exec ${JOURNALD}`,
  ].join('\n');
  // unshare execs sh, which execs journald: the PID is journald's, and its mount namespace
  // (with the tmpfs mounts) ends with it.
  journald = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  jpid = journald.pid as number;
  await waitFor('journald stdout socket', () => existsSync(`/proc/${jpid}/root/run/systemd/journal/stdout`));
  mkdirSync(UNIT_CG, { recursive: true });
}, 90_000);

afterAll(async () => {
  for (const w of writers) {
    w.stdin?.end();
    w.kill('SIGTERM');
  }
  if (journald && journald.exitCode === null) {
    journald.kill('SIGTERM');
    await new Promise((r) => journald?.once('exit', r));
  }
  // The cgroups go once their processes have.
  for (const d of [UNIT_CG, SLICE]) {
    await waitFor(
      `rmdir ${d}`,
      () => {
        if (!existsSync(d)) return true;
        try {
          rmdirSync(d);
          return true;
        } catch {
          return false;
        }
      },
      30_000,
    ).catch(() => undefined);
  }
  rmSync(work, { recursive: true, force: true });
}, 90_000);

function inPty(
  file: string,
  args: string[],
  env: Record<string, string>,
): { term: pty.IPty; out: () => string; exit: Promise<number> } {
  const base = { ...(process.env as Record<string, string>) };
  delete base.NO_COLOR;
  const term = pty.spawn(file, args, { cols: 200, rows: 50, env: { ...base, TERM: 'xterm', ...env } });
  let out = '';
  term.onData((d) => {
    out += d;
  });
  const exit = new Promise<number>((resolve) => term.onExit((e) => resolve(e.exitCode)));
  return { term, out: () => out, exit };
}

describe.skipIf(!usable)('tether logs on the real journal', () => {
  it("reads the unit's entries only, with the priority the logger's <N> prefix set", async () => {
    const w = startWriter(true);
    w.stdin?.write('info first line from the unit\nwarn second line, a warning\n');
    // The same identifier from outside the unit's cgroup: journald files it, -u leaves it out.
    const stranger = startWriter(false);
    stranger.stdin?.end('info not from the unit\n');
    await waitFor('both lines in the journal', hasMessage('second line, a warning'));
    const entries = unitEntries();
    expect(entries.every((e) => e._SYSTEMD_UNIT === 'tether-node.service')).toBe(true);
    expect(entries.some((e) => String(e.MESSAGE).includes('not from the unit'))).toBe(false);
    const warn = entries.find((e) => String(e.MESSAGE).includes('a warning'));
    expect(warn?.PRIORITY).toBe('4');

    const r = await runProcess('nsenter', inNs([TETHER, 'logs', '--source', 'journal', '-o', 'json']), {
      timeoutMs: 60_000,
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { level: string; msg: string; component?: string; time?: string });
    expect(lines.map((l) => [l.level, l.msg, l.component])).toEqual([
      ['info', 'first line from the unit', 'vrouter'],
      ['warn', 'second line, a warning', 'session'],
    ]);
    expect(lines.every((l) => typeof l.time === 'string')).toBe(true);

    const only = await runProcess(
      'nsenter',
      inNs([TETHER, 'logs', '--source', 'journal', '-o', 'json', '--component', 'session', '--since', '1h']),
      { timeoutMs: 60_000 },
    );
    expect(
      only.stdout
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { msg: string }).msg),
    ).toEqual(['second line, a warning']);
  }, 180_000);

  it('-f in a pty: the recent entries, then new ones as journald files them, coloured; Ctrl-C ends it with 0', async () => {
    const w = startWriter(true);
    const p = inPty('nsenter', inNs([TETHER, 'logs', '--source', 'journal', '-f']), {});
    await waitFor('the earlier warning', () => p.out().includes('second line, a warning'));
    expect(p.out()).toContain('\u001b[33mWARN \u001b[0m');
    w.stdin?.write('error third line, while following\n');
    await waitFor('the new line', () => p.out().includes('third line, while following'));
    expect(p.out()).toContain('\u001b[31mERROR\u001b[0m session: third line, while following');
    p.term.write('\u0003');
    expect(await p.exit).toBe(0);

    const plain = inPty('nsenter', inNs([TETHER, 'logs', '--source', 'journal', '-f']), { NO_COLOR: '1' });
    await waitFor('the new line without colour', () => plain.out().includes('third line, while following'));
    expect(plain.out()).not.toContain('\u001b[');
    expect(plain.out()).toMatch(/ERROR session: third line, while following/);
    plain.term.write('\u0003');
    expect(await plain.exit).toBe(0);
  }, 180_000);

  it('--journal-dir reads the journal files journald wrote, copied off the box', async () => {
    await waitFor('the third line', hasMessage('third line'));
    const copy = join(work, 'journal');
    // journald keeps them under /run/log/journal/<machine-id>/ in its namespace.
    cpSync(`/proc/${jpid}/root/run/log/journal`, copy, { recursive: true });
    const r = await runProcess(TETHER, ['logs', '--journal-dir', copy, '-o', 'json'], { timeoutMs: 60_000 });
    expect(r.stderr).toBe('');
    const msgs = r.stdout
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { msg: string }).msg);
    expect(msgs).toEqual([
      'first line from the unit',
      'second line, a warning',
      'third line, while following',
    ]);
    const bad = await runProcess(TETHER, ['logs', '--journal-dir', join(work, 'nope')], {
      timeoutMs: 60_000,
    });
    expect(bad.code).toBe(3);
    expect(bad.stderr).toContain('[TETHER_E_NOT_FOUND]');
  }, 120_000);
});

describe('tether logs -f on the log file (no systemd)', () => {
  it('the recent lines, then appended ones across rotations, each once; Ctrl-C ends it with 0', async () => {
    const state = join(work, 'state');
    mkdirSync(join(state, 'logs'), { recursive: true });
    const file = new RotatingLogFile(join(state, 'logs', 'node.log'), 400);
    const line = (level: number, msg: string) =>
      `${JSON.stringify({ level, time: new Date().toISOString(), name: 'tether-node', msg })}\n`;
    file.write(line(30, 'before follow'));
    const p = inPty(TETHER, ['logs', '-f', '--source', 'file', '--state-dir', state], { NO_COLOR: '1' });
    await waitFor('the line before', () => p.out().includes('before follow'));
    const want: string[] = [];
    for (let i = 0; i < 12; i++) {
      // ~110 bytes a line through a 400-byte file: a rotation every three or four lines.
      const m = `followed ${i} ${'z'.repeat(40)}`;
      file.write(line(i % 3 === 0 ? 40 : 30, m));
      want.push(m);
      if (i % 2 === 1) await waitFor(`line ${i}`, () => p.out().includes(m));
    }
    await waitFor('every line', () => want.every((m) => p.out().includes(m)));
    const seen = p
      .out()
      .split(/\r?\n/)
      .filter((l) => l.includes('followed '));
    expect(seen.map((l) => /followed \d+/.exec(l)?.[0])).toEqual(
      want.map((m) => /followed \d+/.exec(m)?.[0]),
    );
    expect(p.out()).toMatch(/WARN {2}tether-node: followed 0 /);
    appendFileSync(join(state, 'logs', 'node.log'), 'not json\n');
    await waitFor('a raw line', () => p.out().includes('not json'));
    p.term.write('\u0003');
    expect(await p.exit).toBe(0);
  }, 180_000);
});
