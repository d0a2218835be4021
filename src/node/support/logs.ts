import {
  appendFileSync,
  closeSync,
  existsSync,
  fstatSync,
  openSync,
  readSync,
  renameSync,
  statSync,
} from 'node:fs';
import { join } from 'node:path';
import { printable } from '../../lib/printable.js';

/**
 * The node's logs for `tether logs` and the bundle (docs/field.md). The daemon writes pino JSON
 * lines to stdout (journald under systemd) and, so that a box without systemd still has them,
 * to `<state-dir>/logs/node.log`, rotated at LOG_FILE_BYTES into `node.log.1` (one
 * generation: at most 2 × LOG_FILE_BYTES on disk).
 */

export const LOG_DIR = 'logs';
export const LOG_FILE = 'node.log';
export const LOG_FILE_BYTES = 8 * 1024 * 1024;
/** A log line longer than this is not parsed (it is shown cut, as `raw`). */
export const MAX_LOG_LINE = 64 * 1024;

export const logFilePath = (stateDir: string): string => join(stateDir, LOG_DIR, LOG_FILE);

/** Appends whole lines to the log file, rotating when it passes `maxBytes`. Never throws. */
export class RotatingLogFile {
  private size: number;
  private failed = false;

  constructor(
    readonly path: string,
    readonly maxBytes = LOG_FILE_BYTES,
  ) {
    this.size = existsSync(path) ? statSync(path).size : 0;
  }

  write(line: string): void {
    if (this.failed) return;
    try {
      const n = Buffer.byteLength(line);
      if (this.size > 0 && this.size + n > this.maxBytes) {
        renameSync(this.path, `${this.path}.1`);
        this.size = 0;
      }
      appendFileSync(this.path, line, { mode: 0o600 });
      this.size += n;
    } catch {
      // A full or read-only disk must not take the daemon down with it; journald still has
      // the line, and diag reports the disk.
      this.failed = true;
    }
  }
}

export interface LogRecord {
  time?: string;
  level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'unknown';
  /** pino `name` (tether-node, tether-firstboot) or a `component` field, when present. */
  component?: string;
  msg: string;
  fields: Record<string, unknown>;
  /** The line as read, when it was no JSON object (or too long to parse). */
  raw?: string;
}

const LEVELS: Array<[number, LogRecord['level']]> = [
  [60, 'fatal'],
  [50, 'error'],
  [40, 'warn'],
  [30, 'info'],
  [20, 'debug'],
  [10, 'trace'],
];

function levelOf(v: unknown): LogRecord['level'] {
  if (typeof v === 'number') return LEVELS.find(([n]) => v >= n)?.[1] ?? 'trace';
  if (typeof v === 'string') {
    const l = v.toLowerCase();
    for (const [, name] of LEVELS) if (l === name) return name;
  }
  return 'unknown';
}

/**
 * One log line (pino JSON, optionally with journald's `<N>` priority prefix, or a
 * `journalctl -o json` entry whose MESSAGE is such a line) as a record. Total: anything that
 * is no JSON object becomes `{level: unknown, raw}`; nothing throws.
 */
export function parseLogLine(line: string): LogRecord {
  const cut = line.length > MAX_LOG_LINE ? `${line.slice(0, MAX_LOG_LINE)}…` : line;
  const t = line.replace(/^<\d{1,2}>/, '').trim();
  if (line.length > MAX_LOG_LINE || !t.startsWith('{'))
    return { level: 'unknown', msg: cut.trim(), fields: {}, raw: cut };
  let o: unknown;
  try {
    o = JSON.parse(t);
  } catch {
    return { level: 'unknown', msg: cut.trim(), fields: {}, raw: cut };
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) {
    return { level: 'unknown', msg: cut.trim(), fields: {}, raw: cut };
  }
  const rec = o as Record<string, unknown>;
  // journalctl -o json: the daemon's own line is in MESSAGE (a string, or a byte array when not UTF-8).
  if (typeof rec.MESSAGE === 'string' && rec.MESSAGE.trimStart().startsWith('{')) {
    const inner = parseLogLine(rec.MESSAGE);
    const us = typeof rec.__REALTIME_TIMESTAMP === 'string' ? Number(rec.__REALTIME_TIMESTAMP) : Number.NaN;
    if (!inner.time && Number.isFinite(us)) {
      const d = new Date(us / 1000);
      if (!Number.isNaN(d.getTime())) inner.time = d.toISOString();
    }
    return inner;
  }
  if (typeof rec.MESSAGE === 'string') {
    return {
      level: 'unknown',
      msg: rec.MESSAGE.slice(0, MAX_LOG_LINE),
      fields: {},
      raw: rec.MESSAGE.slice(0, MAX_LOG_LINE),
    };
  }
  const { time, level, msg, name, component, pid: _pid, hostname: _h, ...fields } = rec;
  const out: LogRecord = {
    level: levelOf(level),
    msg: typeof msg === 'string' ? msg : msg === undefined ? '' : JSON.stringify(msg),
    fields,
  };
  if (typeof time === 'string') out.time = time;
  else if (typeof time === 'number' && Number.isFinite(time)) {
    const d = new Date(time);
    if (!Number.isNaN(d.getTime())) out.time = d.toISOString();
  }
  const comp = typeof component === 'string' ? component : typeof name === 'string' ? name : undefined;
  if (comp !== undefined) out.component = comp;
  return out;
}

export type LogColour = 'red' | 'green' | 'yellow' | 'bold' | 'dim';

const COLOUR: Record<LogRecord['level'], LogColour> = {
  trace: 'dim',
  debug: 'dim',
  info: 'green',
  warn: 'yellow',
  error: 'red',
  fatal: 'red',
  unknown: 'dim',
};

/** One record as one human line: `time LEVEL component: msg key=value …`. */
export function formatLogRecord(
  r: LogRecord,
  paint: (s: string, colour: LogColour) => string = (s) => s,
): string {
  // One record is one line on the terminal, and nothing in it reaches the terminal as a
  // control sequence: only the level's colour is painted after cleaning.
  const clean = (t: string) => printable(t.replace(/[\r\n]+/g, ' '));
  if (r.raw !== undefined) return clean(r.raw);
  const kv = Object.entries(r.fields)
    .map(
      ([k, v]) =>
        `${k}=${typeof v === 'string' ? (/\s/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v)}`,
    )
    .join(' ');
  const head = clean(`${r.time ?? '-'} `);
  const rest = clean(` ${r.component ? `${r.component}: ` : ''}${r.msg}${kv ? ` ${kv}` : ''}`);
  return `${head}${paint(r.level.toUpperCase().padEnd(5), COLOUR[r.level])}${rest}`;
}

/** The last `maxBytes` of a file, from the first whole line on. */
export function tailFile(path: string, maxBytes: number): string {
  if (!existsSync(path)) return '';
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const start = Math.max(0, size - maxBytes);
    const buf = Buffer.alloc(size - start);
    readSync(fd, buf, 0, buf.length, start);
    let s = buf.toString('utf8');
    if (start > 0) s = s.slice(s.indexOf('\n') + 1);
    return s;
  } finally {
    closeSync(fd);
  }
}
