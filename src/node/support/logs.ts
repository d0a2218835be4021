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

/**
 * Cuts a byte stream into lines: the one place `tether logs` does that, for the file it
 * tails, the file it follows and `journalctl -f`'s output. A line that grows past
 * MAX_LOG_LINE without its newline is dropped whole (its tail too, up to the next newline),
 * so a runaway writer costs bounded memory and never splices into the next line.
 */
export class LineSplitter {
  private partial = '';
  private skipping = false;

  /** The complete lines in `chunk` (after what came before), without their newlines. */
  push(chunk: string): string[] {
    const parts = (this.partial + chunk).split('\n');
    this.partial = parts.pop() ?? '';
    const lines: string[] = [];
    for (const p of parts) {
      if (this.skipping) this.skipping = false;
      else lines.push(p);
    }
    if (this.partial.length > MAX_LOG_LINE) {
      this.partial = '';
      this.skipping = true;
    }
    return lines;
  }

  /** The last line when the stream ends without a newline. */
  end(): string[] {
    const rest = this.skipping ? '' : this.partial;
    this.partial = '';
    this.skipping = false;
    return rest === '' ? [] : [rest];
  }
}

/** At most `maxBytes` of the file from byte `start` (fewer at its end); empty when it is gone. */
function readRange(path: string, start: number, maxBytes: number): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return Buffer.alloc(0);
  }
  try {
    const size = fstatSync(fd).size;
    const n = Math.max(0, Math.min(size - start, maxBytes));
    const buf = Buffer.alloc(n);
    const got = n > 0 ? readSync(fd, buf, 0, n, start) : 0;
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

/** The last `maxBytes` of a file (up to byte `end`, default its size), from the first whole line on. */
export function tailFile(path: string, maxBytes: number, end?: number): string {
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    return '';
  }
  const stop = Math.min(size, end ?? size);
  const start = Math.max(0, stop - maxBytes);
  const s = readRange(path, start, stop - start).toString('utf8');
  return start > 0 ? s.slice(s.indexOf('\n') + 1) : s;
}

/** A place in the log file: which file (inode) and how far it has been read. */
export interface LogFilePosition {
  ino: number;
  pos: number;
}

/**
 * The newest `maxBytes` of each generation (`path.1`, then `path`), and where a follower
 * (followLogFile `from`) goes on so that nothing between the two is lost or shown twice.
 */
export function readLogFileTail(path: string, maxBytes: number): { text: string; from?: LogFilePosition } {
  let st: { ino: number; size: number } | undefined;
  try {
    st = statSync(path);
  } catch {
    st = undefined;
  }
  const text = tailFile(`${path}.1`, maxBytes) + (st ? tailFile(path, maxBytes, st.size) : '');
  return st ? { text, from: { ino: st.ino, pos: st.size } } : { text };
}

export interface FollowOptions {
  /** Stops following (the promise resolves). */
  signal?: AbortSignal;
  pollMs?: number;
  /** Most bytes read at once. */
  chunkBytes?: number;
  /** Go on from here (readLogFileTail) instead of from the file's end now. */
  from?: LogFilePosition;
}

/**
 * Calls `onLine` for every line appended to the log file from now on, across rotations
 * (RotatingLogFile renames `path` to `path.1` and starts a new `path`): when the file at `path`
 * is another inode than before, the rest of the old one is read from `path.1` first, then the
 * new file from its start, so no line is lost or shown twice. A file that shrank in place
 * (truncated) is read again from its start. Polls: the log directory may be on any file system.
 */
export async function followLogFile(
  path: string,
  onLine: (line: string) => void,
  opts: FollowOptions = {},
): Promise<void> {
  const pollMs = opts.pollMs ?? 250;
  const chunkBytes = opts.chunkBytes ?? 4 * 1024 * 1024;
  const stat = (p: string) => {
    try {
      const st = statSync(p);
      return { ino: st.ino, size: st.size };
    } catch {
      return undefined;
    }
  };
  let cur = opts.from ? { ino: opts.from.ino, size: opts.from.pos } : stat(path);
  let pos = opts.from ? opts.from.pos : (cur?.size ?? 0);
  let split = new LineSplitter();
  const drain = (p: string, upTo: number) => {
    while (pos < upTo) {
      const b = readRange(p, pos, Math.min(chunkBytes, upTo - pos));
      if (b.length === 0) break;
      pos += b.length;
      for (const l of split.push(b.toString('utf8'))) if (l.trim() !== '') onLine(l);
    }
  };
  while (!opts.signal?.aborted) {
    const now = stat(path);
    if (now && cur && now.ino !== cur.ino) {
      // Rotated: finish the old generation, if it is the one now at path.1.
      const old = stat(`${path}.1`);
      if (old && old.ino === cur.ino) drain(`${path}.1`, old.size);
      for (const l of split.end()) if (l.trim() !== '') onLine(l);
      split = new LineSplitter();
      pos = 0;
    } else if (now && now.size < pos) {
      split = new LineSplitter();
      pos = 0;
    }
    if (now) {
      cur = now;
      drain(path, now.size);
    }
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        opts.signal?.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, pollMs);
      opts.signal?.addEventListener('abort', done, { once: true });
    });
  }
}
