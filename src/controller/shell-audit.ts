import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { TetherError } from '../lib/errors.js';
import { Journal } from '../lib/journal.js';

/**
 * One remote shell session as the audit keeps it (docs/shell.md "Audit record"): who opened
 * it, when, why, on which node, how it ended, how many bytes each way, and where its
 * asciicast recording is.
 */
export interface ShellSessionRecord {
  id: string;
  operator: string;
  node: string;
  site: string;
  reason: string;
  startedAt: string;
  /** "direct" or "proxy NODE" (the site proxy it went through). */
  path: string;
  cols: number;
  rows: number;
  /** Absolute path of the asciicast v2 file in the controller's data directory. */
  recording: string;
  endedAt?: string;
  /** exit | signal | idle-timeout | max-duration | closed | node-lost | refused | error | controller-restart */
  ending?: string;
  exitCode?: number;
  signal?: number;
  code?: string;
  message?: string;
  /** Operator input bytes relayed to the node, and output bytes relayed back. */
  bytesIn: number;
  bytesOut: number;
}

export type ShellEndFields = Pick<
  ShellSessionRecord,
  'ending' | 'exitCode' | 'signal' | 'code' | 'message'
> & {
  bytesIn: number;
  bytesOut: number;
};

type AuditEntry =
  | { t: 'open'; session: ShellSessionRecord }
  | ({ t: 'end'; id: string; endedAt: string } & ShellEndFields);

/** Sessions kept in the audit (the checkpoint); older ones drop out, their recordings stay. */
export const MAX_AUDIT_SESSIONS = 100_000;

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function decodeSession(v: unknown, where: string): ShellSessionRecord {
  const ok =
    isObj(v) &&
    ['id', 'operator', 'node', 'site', 'reason', 'startedAt', 'path', 'recording'].every(
      (k) => typeof v[k] === 'string',
    ) &&
    ['cols', 'rows', 'bytesIn', 'bytesOut'].every((k) => typeof v[k] === 'number');
  if (!ok)
    throw new TetherError('TETHER_E_STATE', 'shell audit entry is not a session record', {
      file: where,
      expected: 'id, operator, node, site, reason, startedAt, path, recording, cols, rows, bytesIn, bytesOut',
    });
  return v as unknown as ShellSessionRecord;
}

function decodeEntry(v: unknown, where: string): AuditEntry {
  if (isObj(v) && v.t === 'open') return { t: 'open', session: decodeSession(v.session, where) };
  if (isObj(v) && v.t === 'end' && typeof v.id === 'string' && typeof v.endedAt === 'string')
    return v as unknown as AuditEntry;
  throw new TetherError('TETHER_E_STATE', 'shell audit entry of unknown type', {
    file: where,
    expected: '{"t":"open"|"end",…}',
  });
}

/**
 * The controller's durable shell audit: an append-only journal (src/lib/journal.ts) in
 * `<data>/shell/audit`. The open record is on disk (fdatasync) before the node is asked to
 * spawn anything, and the end record before the operator hears the session ended; a session
 * a controller crash cut short is closed as `controller-restart` on the next start.
 */
export class ShellAudit {
  private readonly journal: Journal<ShellSessionRecord[], AuditEntry>;
  private readonly sessions = new Map<string, ShellSessionRecord>();
  readonly dir: string;

  constructor(dir: string, now: () => Date = () => new Date()) {
    this.dir = dir;
    mkdirSync(join(dir, 'recordings'), { recursive: true, mode: 0o700 });
    const opened = Journal.open<ShellSessionRecord[], AuditEntry>({
      path: join(dir, 'audit'),
      maxRecordBytes: 16 * 1024,
      maxFileBytes: 256 * 1024 * 1024,
      checkpointRecords: 4096,
      checkpointBytes: 4 * 1024 * 1024,
      decodeState: (v, where) => {
        if (!Array.isArray(v))
          throw new TetherError('TETHER_E_STATE', 'shell audit checkpoint is not a list', { file: where });
        return v.map((s) => decodeSession(s, where));
      },
      decodeRecord: decodeEntry,
    });
    this.journal = opened.journal;
    for (const s of opened.state ?? []) this.sessions.set(s.id, s);
    for (const e of opened.records) this.applyEntry(e);
    for (const s of [...this.sessions.values()]) {
      if (s.endedAt) continue;
      this.end(
        s.id,
        {
          ending: 'controller-restart',
          message: 'the controller stopped while the session was open',
          bytesIn: s.bytesIn,
          bytesOut: s.bytesOut,
        },
        now(),
      );
    }
  }

  recordingPath(id: string): string {
    return join(this.dir, 'recordings', `${id}.cast`);
  }

  /** Durable before it returns. */
  open(s: ShellSessionRecord): void {
    this.append({ t: 'open', session: s });
  }

  /** Durable before it returns; a second end of the same session changes nothing. */
  end(id: string, f: ShellEndFields, at = new Date()): ShellSessionRecord | undefined {
    const s = this.sessions.get(id);
    if (!s || s.endedAt) return s;
    this.append({ t: 'end', id, endedAt: at.toISOString(), ...f });
    return this.sessions.get(id);
  }

  get(id: string): ShellSessionRecord | undefined {
    return this.sessions.get(id);
  }

  /** Newest first. */
  list(opts: { node?: string; limit?: number } = {}): ShellSessionRecord[] {
    const all = [...this.sessions.values()].filter((s) => !opts.node || s.node === opts.node);
    all.reverse();
    return all.slice(0, opts.limit ?? 100);
  }

  close(): void {
    this.journal.close();
  }

  private append(e: AuditEntry): void {
    this.journal.append(e, () => [...this.sessions.values()]);
    this.applyEntry(e);
  }

  private applyEntry(e: AuditEntry): void {
    if (e.t === 'open') {
      this.sessions.set(e.session.id, e.session);
      // Map order is insertion order: the first key is the oldest session.
      while (this.sessions.size > MAX_AUDIT_SESSIONS) {
        const oldest = this.sessions.keys().next().value as string;
        this.sessions.delete(oldest);
      }
      return;
    }
    const s = this.sessions.get(e.id);
    if (!s || s.endedAt) return;
    const { t: _t, id: _id, ...rest } = e;
    Object.assign(s, rest);
  }
}
