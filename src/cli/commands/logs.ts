import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { TetherError } from '../../lib/errors.js';
import { ProcessRunner } from '../../lib/exec.js';
import {
  followLogFile,
  formatLogRecord,
  LineSplitter,
  type LogRecord,
  logFilePath,
  parseLogLine,
  readLogFileTail,
} from '../../node/support/logs.js';
import { DEFAULT_NODE_DIR } from '../defaults.js';
import { parseDuration } from '../flags.js';
import { out, paint, useColor } from '../term.js';

export const NODE_UNIT = 'tether-node';
/** What a one-shot `tether logs` reads at most from the file (the newest part). */
const TAIL_BYTES = 4 * 1024 * 1024;

export type LogSource = 'journal' | 'file';

/** `--since`: a duration back from now (`15m`) or an ISO 8601 time. */
export function parseSince(text: string, now = new Date()): Date {
  if (/^\d+(ms|s|m|h|d)/.test(text)) return new Date(now.getTime() - parseDuration(text, '--since') * 1000);
  const d = new Date(text);
  if (text.length > 64 || Number.isNaN(d.getTime())) {
    throw new TetherError('TETHER_E_INVALID', `bad --since "${text.slice(0, 64)}"`, {
      field: '--since',
      expected: 'a duration (15m, 2h, 1d) or an ISO 8601 time (2026-12-03T11:00:00Z)',
    });
  }
  return d;
}

/** The journal when the node runs under systemd (its unit is active), the state-dir file otherwise. */
export async function detectSource(stateDir: string): Promise<LogSource> {
  if (!existsSync('/run/systemd/system')) return 'file';
  const r = await new ProcessRunner()
    .run('systemctl', ['is-active', NODE_UNIT], { allowFailure: true, timeoutMs: 3000 })
    .catch(() => undefined);
  if (r?.stdout.trim() === 'active') return 'journal';
  return existsSync(logFilePath(stateDir)) ? 'file' : 'journal';
}

export interface LogFilter {
  since?: Date;
  component?: string;
}

export function keep(r: LogRecord, f: LogFilter): boolean {
  if (f.since && r.time && new Date(r.time).getTime() < f.since.getTime()) return false;
  if (f.component) {
    const c = r.component ?? (typeof r.fields.component === 'string' ? r.fields.component : undefined);
    if (c !== f.component && c !== `tether-${f.component}`) return false;
  }
  return true;
}

/** Where journalctl reads: the system journal, or journal files in a directory (`-D`). */
export interface JournalPlace {
  /** A directory of journal files (e.g. a box's /var/log/journal copied to a laptop). */
  directory?: string;
}

/** journalctl's arguments for the node unit's entries as JSON: the last `lines`, then (follow) new ones. */
export function journalArgs(
  f: LogFilter,
  opts: JournalPlace & { follow?: boolean; lines: number },
): string[] {
  const args = ['-u', NODE_UNIT, '-o', 'json', '--no-pager', '-n', String(opts.lines)];
  if (opts.directory !== undefined) args.push('-D', opts.directory);
  if (f.since) args.push('--since', `@${Math.floor(f.since.getTime() / 1000)}`);
  if (opts.follow) args.push('-f');
  return args;
}

/** Recent log lines (oldest first) as raw lines, for the bundle and `tether logs`. */
export async function readLogLines(
  stateDir: string,
  source: LogSource,
  f: LogFilter = {},
  place: JournalPlace = {},
): Promise<string[]> {
  let text: string;
  if (source === 'journal') {
    const args = journalArgs(f, { ...place, lines: 5000 });
    const r = await new ProcessRunner().run('journalctl', args, { allowFailure: true, timeoutMs: 20_000 });
    if (r.code !== 0) {
      throw new TetherError('TETHER_E_UNAVAILABLE', `journalctl failed: ${r.stderr.trim().slice(0, 300)}`, {
        expected: `a journal with unit ${NODE_UNIT} (or --source file)`,
      });
    }
    text = r.stdout;
  } else {
    text = readLogFileTail(logFilePath(stateDir), TAIL_BYTES).text;
  }
  return text.split('\n').filter((l) => l.trim() !== '' && keep(parseLogLine(l), f));
}

export function registerLogs(program: Command): void {
  program
    .command('logs')
    .description(
      "this node's daemon logs: pretty on a terminal, JSON lines otherwise (journal under systemd, <state-dir>/logs/node.log else)",
    )
    .option('--state-dir <dir>', 'node state directory', DEFAULT_NODE_DIR)
    .option('-f, --follow', 'keep printing new lines')
    .option('--since <when>', 'only lines after this: 15m, 2h, 1d or an ISO 8601 time')
    .option('--component <name>', 'only this component (pino name: node, firstboot, or a component field)')
    .option('--source <src>', 'journal|file (default: journal when the unit runs under systemd)')
    .option(
      '--journal-dir <dir>',
      "read journal files in this directory (journalctl -D), e.g. a box's /var/log/journal",
    )
    .option('-o, --output <fmt>', 'json|pretty (default: pretty on a terminal)')
    .addHelpText(
      'after',
      '\nExamples:\n  tether logs --since 15m\n  tether logs -f --component firstboot\n  tether logs -o json | jq .msg\n  tether logs --journal-dir /mnt/box/var/log/journal --since 2026-12-03T11:00:00Z\n',
    )
    .action(
      async (o: {
        stateDir: string;
        follow?: boolean;
        since?: string;
        component?: string;
        source?: string;
        journalDir?: string;
        output?: string;
      }) => {
        if (o.source !== undefined && o.source !== 'journal' && o.source !== 'file') {
          throw new TetherError('TETHER_E_INVALID', `bad --source "${o.source.slice(0, 40)}"`, {
            field: '--source',
            expected: 'journal or file',
          });
        }
        if (o.output !== undefined && o.output !== 'json' && o.output !== 'pretty') {
          throw new TetherError('TETHER_E_INVALID', `bad output format "${o.output.slice(0, 40)}"`, {
            field: '--output',
            expected: 'json or pretty',
          });
        }
        const filter: LogFilter = {
          ...(o.since ? { since: parseSince(o.since) } : {}),
          ...(o.component ? { component: o.component } : {}),
        };
        if (o.journalDir !== undefined && o.source === 'file') {
          throw new TetherError('TETHER_E_INVALID', '--journal-dir reads a journal, not the log file', {
            field: '--journal-dir',
            expected: 'no --source, or --source journal',
          });
        }
        if (o.journalDir !== undefined && !existsSync(o.journalDir)) {
          throw new TetherError('TETHER_E_NOT_FOUND', `no directory ${o.journalDir}`, {
            field: '--journal-dir',
            expected: 'a directory of journal files (*.journal)',
          });
        }
        const place: JournalPlace = o.journalDir !== undefined ? { directory: o.journalDir } : {};
        const source =
          (o.source as LogSource | undefined) ??
          (o.journalDir !== undefined ? 'journal' : await detectSource(o.stateDir));
        const pretty = o.output ? o.output === 'pretty' : Boolean(process.stdout.isTTY);
        const colour = useColor(process.stdout);
        const print = (line: string): void => {
          const r = parseLogLine(line);
          if (!keep(r, filter)) return;
          if (pretty) out(`${formatLogRecord(r, (s, c) => (colour ? paint(s, c, process.stdout) : s))}\n`);
          else if (r.raw !== undefined) out(`${JSON.stringify({ level: 'unknown', msg: r.raw })}\n`);
          else
            out(
              `${JSON.stringify({ ...(r.time ? { time: r.time } : {}), level: r.level, ...(r.component ? { component: r.component } : {}), msg: r.msg, ...r.fields })}\n`,
            );
        };
        if (source === 'file' && !existsSync(logFilePath(o.stateDir))) {
          throw new TetherError('TETHER_E_NOT_FOUND', `no log file ${logFilePath(o.stateDir)}`, {
            file: logFilePath(o.stateDir),
            expected: 'a node daemon that has run with this --state-dir (or --source journal)',
          });
        }
        if (source === 'file' && o.follow) {
          // The recent lines, then what is appended from exactly where they ended.
          const tail = readLogFileTail(logFilePath(o.stateDir), TAIL_BYTES);
          for (const l of tail.text.split('\n')) if (l.trim() !== '') print(l);
          // Ctrl-C ends following, as for the journal: exit 0, not death by signal.
          const stop = new AbortController();
          process.once('SIGINT', () => stop.abort());
          await followLogFile(logFilePath(o.stateDir), print, {
            signal: stop.signal,
            ...(tail.from ? { from: tail.from } : {}),
          });
          return;
        }
        if (!o.follow) {
          for (const l of await readLogLines(o.stateDir, source, filter, place)) print(l);
          return;
        }
        const args = journalArgs(filter, { ...place, follow: true, lines: 100 });
        await followStream(spawn('journalctl', args, { stdio: ['ignore', 'pipe', 'inherit'] }), print);
      },
    );
}

function followStream(child: ReturnType<typeof spawn>, print: (l: string) => void): Promise<void> {
  return new Promise((resolve) => {
    const split = new LineSplitter();
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => {
      for (const l of split.push(d)) print(l);
    });
    child.on('close', () => {
      for (const l of split.end()) print(l);
      resolve();
    });
    child.on('error', () => resolve());
    process.once('SIGINT', () => child.kill('SIGTERM'));
  });
}
