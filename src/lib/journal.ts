import {
  closeSync,
  existsSync,
  fdatasyncSync,
  ftruncateSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import * as zlib from 'node:zlib';
import { writeFileAtomic } from './atomic.js';
import { isTetherError, TetherError } from './errors.js';
import { INPUT_LIMITS, parseJson } from './input.js';

// ---------------------------------------------------------------------------------------
// CRC-32 (IEEE, the one zlib, gzip and PNG use). node:zlib has crc32 only from Node 20.15 /
// 22.2; the engines range starts at 20.11, so a table-driven fallback gives the same values.

let crcTable: Uint32Array | undefined;

/** Table-driven CRC-32; `value` continues a previous checksum, like zlib.crc32. */
export function crc32Portable(data: Uint8Array, value = 0): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = (value ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) c = crcTable[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const nativeCrc = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;

export const crc32: (data: Uint8Array, value?: number) => number =
  typeof nativeCrc === 'function' ? (d, v = 0) => nativeCrc(d, v) : crc32Portable;

// ---------------------------------------------------------------------------------------
// On-disk format. Both files start with an 8-byte magic and hold frames:
//   u32le payload length | u32le CRC-32 over (the 4 length bytes, then the payload) | payload
// The length is inside the checksum so a zeroed or shifted header never passes as a frame.
//   <base>.checkpoint  magic "TTHRCKP1", one frame: {"generation":G,"state":…}
//   <base>.journal     magic "TTHRJNL1", a header frame {"generation":G}, then one frame per
//                      record appended since checkpoint G (generation 0: no checkpoint yet).
// A checkpoint is written atomically (temp file, fsync, rename, fsync dir), then the log is
// replaced by an empty one of the new generation the same way. A crash between the two
// leaves a log of an older generation, whose records the checkpoint already holds: it is
// dropped on recovery. Records are only ever appended, each fdatasync'ed before append()
// returns, so a crash can only damage the bytes after the last acknowledged record.

const CKPT_MAGIC = Buffer.from('TTHRCKP1', 'latin1');
const LOG_MAGIC = Buffer.from('TTHRJNL1', 'latin1');
const FRAME_HEAD = 8;

function frame(payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEAD + payload.length);
  out.writeUInt32LE(payload.length, 0);
  out.writeUInt32LE(crc32(payload, crc32(out.subarray(0, 4))), 4);
  payload.copy(out, FRAME_HEAD);
  return out;
}

type FrameRead = { ok: true; payload: Buffer; end: number } | { ok: false; reason: string };

function readFrame(buf: Buffer, off: number, maxPayload: number): FrameRead {
  if (buf.length - off < FRAME_HEAD) return { ok: false, reason: 'incomplete frame header' };
  const len = buf.readUInt32LE(off);
  if (len === 0 || len > maxPayload)
    return { ok: false, reason: `frame length ${len} outside 1..${maxPayload}` };
  if (buf.length - off - FRAME_HEAD < len) return { ok: false, reason: 'incomplete frame' };
  const payload = buf.subarray(off + FRAME_HEAD, off + FRAME_HEAD + len);
  const want = buf.readUInt32LE(off + 4);
  if (crc32(payload, crc32(buf.subarray(off, off + 4))) !== want)
    return { ok: false, reason: 'checksum mismatch' };
  return { ok: true, payload, end: off + FRAME_HEAD + len };
}

function logHeader(generation: number): Buffer {
  return Buffer.concat([LOG_MAGIC, frame(Buffer.from(JSON.stringify({ generation })))]);
}

// ---------------------------------------------------------------------------------------

export interface JournalOptions<S, R> {
  /** Base path: the journal keeps `<path>.checkpoint` and `<path>.journal`. */
  path: string;
  /** Largest record (its JSON) accepted by append() and read back. */
  maxRecordBytes: number;
  /** Largest checkpoint file and largest log file. */
  maxFileBytes: number;
  /** A checkpoint is taken before the append that would follow this many records… */
  checkpointRecords: number;
  /** …or this many bytes of records since the last checkpoint. */
  checkpointBytes: number;
  /** Nesting bound for the JSON of records and checkpoints (default INPUT_LIMITS.maxDepth). */
  maxDepth?: number;
  /** Turn a checkpoint's JSON state into S; throw (preferably TetherError) if it is not one. */
  decodeState: (value: unknown, where: string) => S;
  /** Turn a record's JSON into R; throw if it is not one. */
  decodeRecord: (value: unknown, where: string) => R;
}

export interface Recovered<S, R> {
  /** The last checkpoint's state, if one was ever written. */
  state: S | undefined;
  /** Records appended after that checkpoint, in order. */
  records: R[];
  /** A torn or corrupt tail found after the last valid record (cut off, unless read-only). */
  truncated?: { offset: number; bytes: number; reason: string };
  /** Whether any journal file exists. */
  exists: boolean;
}

export interface JournalStats {
  generation: number;
  /** Records in the log since the last checkpoint. */
  records: number;
  /** Size of the log file, header included. */
  logBytes: number;
  checkpointBytes: number;
}

/** Journals of this process by resolved base path: a newer writer supersedes an older one. */
const writers = new Map<string, Journal<unknown, unknown>>();

/**
 * A durable append-only journal of JSON records with periodic checkpoints. append() returns
 * only after the record is on disk (fdatasync); checkpoint() atomically replaces the state
 * and empties the log. Recovery replays the checkpoint and every valid record and cuts off a
 * torn or corrupt tail; anything else wrong with the files is TETHER_E_STATE naming the file,
 * and sizes over the limits are TETHER_E_TOO_LARGE naming the file and the limit.
 *
 * One writer per base path: the files are not locked against other processes.
 */
export class Journal<S, R> {
  readonly checkpointPath: string;
  readonly logPath: string;
  private fd: number | undefined;
  /** 'absent': no log file yet, or it must be rewritten empty (right after a checkpoint).
   *  'broken': a write failed; the next append rewrites everything from the caller's state. */
  private log: 'open' | 'absent' | 'broken' = 'absent';
  private generation = 0;
  private size = 0;
  private headerBytes = 0;
  private records = 0;
  private checkpointBytes = 0;
  private superseded = false;

  private constructor(private readonly opts: JournalOptions<S, R>) {
    this.checkpointPath = `${opts.path}.checkpoint`;
    this.logPath = `${opts.path}.journal`;
  }

  /** Opens for writing: recovers, cuts a torn tail, and drops a log a checkpoint superseded. */
  static open<S, R>(opts: JournalOptions<S, R>): { journal: Journal<S, R> } & Recovered<S, R> {
    const j = new Journal(opts);
    j.removeTempFiles();
    const rec = j.recover();
    const key = resolve(opts.path);
    writers.get(key)?.supersede();
    writers.set(key, j as Journal<unknown, unknown>);
    if (rec.logGeneration === undefined || rec.logGeneration < j.generation) {
      // No log, or one from before the last checkpoint (crash between the two renames).
      if (rec.logGeneration !== undefined) j.createLog();
    } else {
      const fd = openSync(j.logPath, 'r+');
      try {
        if (rec.truncated) {
          ftruncateSync(fd, rec.truncated.offset);
          fdatasyncSync(fd);
        }
      } catch (e) {
        closeSync(fd);
        throw j.stateError(`cannot cut the torn tail: ${(e as Error).message}`, j.logPath, e);
      }
      j.fd = fd;
      j.log = 'open';
      j.size = rec.validEnd;
      j.headerBytes = rec.headerEnd;
      j.records = rec.records.length;
    }
    return { journal: j, state: rec.state, records: rec.records, exists: rec.exists, ...tail(rec) };
  }

  /** Reads without changing anything (another process may be writing): a torn tail is
   *  ignored, not cut; a checkpoint taken while reading is retried. */
  static read<S, R>(opts: JournalOptions<S, R>): Recovered<S, R> {
    for (let attempt = 0; ; attempt++) {
      try {
        const rec = new Journal(opts).recover();
        return { state: rec.state, records: rec.records, exists: rec.exists, ...tail(rec) };
      } catch (e) {
        if (attempt < 5 && isTetherError(e) && e.details.race === true) continue;
        throw e;
      }
    }
  }

  get stats(): JournalStats {
    return {
      generation: this.generation,
      records: this.records,
      logBytes: this.size,
      checkpointBytes: this.checkpointBytes,
    };
  }

  /**
   * Appends one record and returns once it is on disk. `snapshot` must return the state that
   * the last checkpoint plus every record appended so far produce; it is called (before this
   * record is written) when a checkpoint is due or the log would outgrow its limit. On any
   * error nothing of the record is on disk.
   */
  append(record: R, snapshot: () => S): void {
    this.checkUsable();
    const payload = Buffer.from(JSON.stringify(record));
    if (payload.length > this.opts.maxRecordBytes) {
      throw new TetherError('TETHER_E_TOO_LARGE', `journal record is ${payload.length} bytes`, {
        file: this.logPath,
        expected: `at most ${this.opts.maxRecordBytes} bytes per record`,
      });
    }
    const bytes = frame(payload);
    const sinceCheckpoint = this.size - this.headerBytes;
    if (
      this.log === 'broken' ||
      (this.log === 'open' &&
        (this.records >= this.opts.checkpointRecords ||
          sinceCheckpoint >= this.opts.checkpointBytes ||
          this.size + bytes.length > this.opts.maxFileBytes))
    ) {
      this.checkpoint(snapshot());
    }
    if (this.log === 'absent') this.createLog();
    if (this.size + bytes.length > this.opts.maxFileBytes) {
      throw new TetherError('TETHER_E_TOO_LARGE', 'journal would outgrow its size limit', {
        file: this.logPath,
        expected: `at most ${this.opts.maxFileBytes} bytes per file`,
      });
    }
    const fd = this.fd!;
    try {
      let off = 0;
      while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off, this.size + off);
      fdatasyncSync(fd);
    } catch (e) {
      // After a failed write or fsync the file's tail is unknown (and a failed fsync may have
      // dropped dirty pages): stop using this log; the next append rewrites state and log.
      this.closeFd();
      this.log = 'broken';
      throw this.stateError(`cannot append to the journal: ${(e as Error).message}`, this.logPath, e);
    }
    this.size += bytes.length;
    this.records++;
  }

  /** Atomically replaces the checkpoint with `state` and starts an empty log. */
  checkpoint(state: S): void {
    this.checkUsable();
    const generation = this.generation + 1;
    const body = Buffer.concat([CKPT_MAGIC, frame(Buffer.from(JSON.stringify({ generation, state })))]);
    if (body.length > this.opts.maxFileBytes) {
      throw new TetherError('TETHER_E_TOO_LARGE', `checkpoint is ${body.length} bytes`, {
        file: this.checkpointPath,
        expected: `at most ${this.opts.maxFileBytes} bytes per file`,
      });
    }
    try {
      writeFileAtomic(this.checkpointPath, body, 0o600);
    } catch (e) {
      throw this.stateError(`cannot write the checkpoint: ${(e as Error).message}`, this.checkpointPath, e);
    }
    // From here the checkpoint holds everything: the old log is stale whatever happens next.
    this.closeFd();
    this.generation = generation;
    this.checkpointBytes = body.length;
    this.log = 'absent';
    this.records = 0;
    this.size = 0;
    this.createLog();
  }

  close(): void {
    this.closeFd();
    const key = resolve(this.opts.path);
    if (writers.get(key) === (this as Journal<unknown, unknown>)) writers.delete(key);
  }

  // -------------------------------------------------------------------------------------

  private supersede(): void {
    this.closeFd();
    this.superseded = true;
  }

  private checkUsable(): void {
    if (this.superseded) {
      throw new TetherError(
        'TETHER_E_STATE',
        'the journal was opened again in this process; this handle is stale',
        {
          file: this.logPath,
        },
      );
    }
  }

  private closeFd(): void {
    if (this.fd === undefined) return;
    try {
      closeSync(this.fd);
    } catch {
      // Closing can report a deferred write error; the data in question was never acknowledged.
    }
    this.fd = undefined;
  }

  private createLog(): void {
    const header = logHeader(this.generation);
    try {
      writeFileAtomic(this.logPath, header, 0o600);
      this.fd = openSync(this.logPath, 'r+');
    } catch (e) {
      this.log = 'absent';
      throw this.stateError(`cannot create the journal: ${(e as Error).message}`, this.logPath, e);
    }
    this.log = 'open';
    this.size = header.length;
    this.headerBytes = header.length;
    this.records = 0;
  }

  /** Temp files of checkpoints and logs a crash left behind (writeFileAtomic names them). */
  private removeTempFiles(): void {
    const dir = dirname(this.opts.path);
    if (!existsSync(dir)) return;
    const prefixes = [basename(this.checkpointPath), basename(this.logPath)].map((p) => `${p}.tmp-`);
    for (const f of readdirSync(dir)) {
      if (prefixes.some((p) => f.startsWith(p))) {
        try {
          unlinkSync(join(dir, f));
        } catch {
          // Gone already or not ours to remove: harmless either way.
        }
      }
    }
  }

  private stateError(message: string, file: string, cause?: unknown, extra: Record<string, unknown> = {}) {
    return new TetherError('TETHER_E_STATE', message, { file, ...extra }, { cause });
  }

  private readBounded(file: string): Buffer | undefined {
    if (!existsSync(file)) return undefined;
    let buf: Buffer;
    try {
      const st = statSync(file);
      if (!st.isFile()) throw this.stateError('not a regular file', file);
      if (st.size > this.opts.maxFileBytes) throw this.tooLarge(file, st.size);
      buf = readFileSync(file);
    } catch (e) {
      if (isTetherError(e)) throw e;
      throw this.stateError(`cannot read: ${(e as Error).message}`, file, e);
    }
    if (buf.length > this.opts.maxFileBytes) throw this.tooLarge(file, buf.length);
    return buf;
  }

  private tooLarge(file: string, size: number): TetherError {
    return new TetherError('TETHER_E_TOO_LARGE', `journal file is ${size} bytes`, {
      file,
      expected: `at most ${this.opts.maxFileBytes} bytes`,
    });
  }

  private json(payload: Buffer, file: string, offset: number): unknown {
    const where = `${file} (byte ${offset})`;
    try {
      return parseJson(payload, { source: where, maxDepth: this.opts.maxDepth ?? INPUT_LIMITS.maxDepth });
    } catch (e) {
      throw this.stateError(`journal frame is not JSON: ${(e as Error).message}`, file, e, { offset });
    }
  }

  private decode<T>(fn: (v: unknown, where: string) => T, value: unknown, file: string, offset: number): T {
    try {
      return fn(value, `${file} (byte ${offset})`);
    } catch (e) {
      if (isTetherError(e, 'TETHER_E_STATE')) throw e;
      throw this.stateError(`unexpected content: ${(e as Error).message}`, file, e, { offset });
    }
  }

  private recover(): Recovered<S, R> & {
    logGeneration: number | undefined;
    validEnd: number;
    headerEnd: number;
  } {
    let state: S | undefined;
    const ckpt = this.readBounded(this.checkpointPath);
    if (ckpt) {
      const f = this.checkMagic(ckpt, CKPT_MAGIC, this.checkpointPath, 'checkpoint');
      const fr = readFrame(ckpt, f, this.opts.maxFileBytes);
      if (!fr.ok || fr.end !== ckpt.length) {
        throw this.stateError(
          `checkpoint is damaged: ${fr.ok ? 'bytes after the frame' : fr.reason}`,
          this.checkpointPath,
        );
      }
      const v = this.json(fr.payload, this.checkpointPath, f) as { generation?: unknown; state?: unknown };
      if (v === null || typeof v !== 'object' || !isGeneration(v.generation) || v.generation < 1)
        throw this.stateError('checkpoint has no valid generation', this.checkpointPath, undefined, {
          field: 'generation',
          expected: 'an integer ≥ 1',
        });
      state = this.decode(this.opts.decodeState, v.state, this.checkpointPath, f);
      this.generation = v.generation;
      this.checkpointBytes = ckpt.length;
    }

    const records: R[] = [];
    const log = this.readBounded(this.logPath);
    if (!log)
      return {
        state,
        records,
        exists: ckpt !== undefined,
        logGeneration: undefined,
        validEnd: 0,
        headerEnd: 0,
      };
    const f = this.checkMagic(log, LOG_MAGIC, this.logPath, 'journal');
    const head = readFrame(log, f, 4096);
    if (!head.ok) throw this.stateError(`journal header is damaged: ${head.reason}`, this.logPath);
    const h = this.json(head.payload, this.logPath, f) as { generation?: unknown };
    if (h === null || typeof h !== 'object' || !isGeneration(h.generation))
      throw this.stateError('journal header has no valid generation', this.logPath, undefined, {
        field: 'generation',
        expected: 'an integer ≥ 0',
      });
    const logGeneration = h.generation;
    if (logGeneration < this.generation) {
      return { state, records, exists: true, logGeneration, validEnd: head.end, headerEnd: head.end };
    }
    if (logGeneration > this.generation) {
      // A reader can see the new log of a checkpoint whose file it read just before: `race`
      // lets read() try again. For the writer this is a missing or older checkpoint.
      throw this.stateError(
        `journal generation ${logGeneration} is newer than the checkpoint's (${this.generation || 'none'})`,
        this.logPath,
        undefined,
        { race: true, expected: `generation ${this.generation}` },
      );
    }
    let off = head.end;
    let truncated: Recovered<S, R>['truncated'];
    while (off < log.length) {
      const fr = readFrame(log, off, this.opts.maxRecordBytes);
      if (!fr.ok) {
        truncated = { offset: off, bytes: log.length - off, reason: fr.reason };
        break;
      }
      records.push(
        this.decode(this.opts.decodeRecord, this.json(fr.payload, this.logPath, off), this.logPath, off),
      );
      off = fr.end;
    }
    return {
      state,
      records,
      exists: true,
      logGeneration,
      validEnd: off,
      headerEnd: head.end,
      ...(truncated ? { truncated } : {}),
    };
  }

  private checkMagic(buf: Buffer, magic: Buffer, file: string, what: string): number {
    if (buf.length < magic.length || !buf.subarray(0, magic.length).equals(magic)) {
      throw this.stateError(`not a Tether ${what} file (bad magic)`, file, undefined, {
        expected: `a file starting with ${magic.toString('latin1')}`,
      });
    }
    return magic.length;
  }
}

function isGeneration(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function tail<T extends { truncated?: Recovered<unknown, unknown>['truncated'] }>(
  r: T,
): { truncated?: NonNullable<T['truncated']> } {
  return r.truncated ? { truncated: r.truncated } : {};
}
