import { createPrivateKey, sign, verify, X509Certificate } from 'node:crypto';
import { TetherError } from '../lib/errors.js';
import { parseJson } from '../lib/input.js';
import { identityOf, verifyIssuedBy } from '../lib/pki.js';
import type { ShellFrame__Output } from './gen/tether/v1/ShellFrame.js';

/**
 * The remote shell's contract between the controller and a node (docs/shell.md): limits,
 * the signed open request and the checks every peer-supplied frame goes through. Shared by
 * the controller (which signs and relays), the site proxy (which relays) and the node (which
 * verifies and spawns the pty).
 */
export const SHELL_LIMITS = {
  /** Largest `data` of one frame (input or output). */
  maxFrameBytes: 64 * 1024,
  /** Output the node may send before the controller grants more (the flow-control window). */
  windowBytes: 256 * 1024,
  /** Terminal size a peer may ask for. */
  minCols: 1,
  maxCols: 1000,
  minRows: 1,
  maxRows: 1000,
  /** A signed open request is good for this long after it was issued (clock skew included). */
  openValidityMs: 120_000,
  /** `reason` of a session: trimmed length. */
  minReason: 3,
  maxReason: 500,
  /** A node runs at most this many shells at once. */
  maxSessionsPerNode: 4,
  /** Largest signed open payload. */
  maxOpenPayloadBytes: 4096,
} as const;

/** What the controller signs when it opens a shell on a node. */
export interface ShellOpenBody {
  id: string;
  node: string;
  site: string;
  /** The operator's identity name (from their certificate). */
  operator: string;
  reason: string;
  cols: number;
  rows: number;
  /** Unix ms by the controller's clock. */
  issuedAt: number;
  expiresAt: number;
  /** The node ends the shell after this long whatever else happens (the controller does too). */
  maxSeconds: number;
  /** Initial output credit (bytes). */
  window: number;
}

const SESSION_ID = /^[a-z0-9-]{8,64}$/;
const NAME = /^[a-z0-9.-]{1,253}$/;

function bad(message: string, field: string, expected: string): TetherError {
  return new TetherError('TETHER_E_INVALID', message, { field, expected });
}

export function checkSessionId(id: unknown, field = 'shell.session_id'): string {
  if (typeof id !== 'string' || !SESSION_ID.test(id))
    throw bad(`shell session id "${String(id).slice(0, 80)}" is not valid`, field, '8 to 64 of [a-z0-9-]');
  return id;
}

/** A terminal size from a peer: integers within SHELL_LIMITS, else TETHER_E_INVALID. */
export function checkSize(
  cols: unknown,
  rows: unknown,
  field = 'shell.size',
): { cols: number; rows: number } {
  const ok = (v: unknown, min: number, max: number) =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
  if (!ok(cols, SHELL_LIMITS.minCols, SHELL_LIMITS.maxCols))
    throw bad(
      `terminal width ${String(cols)}`,
      `${field}.cols`,
      `an integer ${SHELL_LIMITS.minCols}–${SHELL_LIMITS.maxCols}`,
    );
  if (!ok(rows, SHELL_LIMITS.minRows, SHELL_LIMITS.maxRows))
    throw bad(
      `terminal height ${String(rows)}`,
      `${field}.rows`,
      `an integer ${SHELL_LIMITS.minRows}–${SHELL_LIMITS.maxRows}`,
    );
  return { cols: cols as number, rows: rows as number };
}

export function checkReason(reason: unknown): string {
  const r = typeof reason === 'string' ? reason.trim() : '';
  if (r.length < SHELL_LIMITS.minReason || r.length > SHELL_LIMITS.maxReason || /\p{Cc}/u.test(r))
    throw new TetherError('TETHER_E_PERMISSION', 'a remote shell needs a reason', {
      field: 'reason',
      expected: `--reason TEXT: ${SHELL_LIMITS.minReason} to ${SHELL_LIMITS.maxReason} printable characters`,
    });
  return r;
}

/** A frame's data: at most maxFrameBytes. */
export function checkData(data: Uint8Array, field = 'shell.data'): Buffer {
  if (data.length > SHELL_LIMITS.maxFrameBytes)
    throw new TetherError('TETHER_E_TOO_LARGE', `shell frame of ${data.length} bytes`, {
      field,
      expected: `at most ${SHELL_LIMITS.maxFrameBytes} bytes`,
    });
  return Buffer.from(data.buffer, data.byteOffset, data.length);
}

/** The frame's operation, checked for what a peer may send; throws TETHER_E_INVALID or _TOO_LARGE. */
export type CheckedFrame =
  | { id: string; op: 'open'; open: { payload: Buffer; signature: Buffer; certPem: string } }
  | { id: string; op: 'data'; data: Buffer }
  | { id: string; op: 'resize'; cols: number; rows: number }
  | { id: string; op: 'credit'; credit: number }
  | {
      id: string;
      op: 'end';
      ending: string;
      exitCode: number;
      signal: number;
      code: string;
      message: string;
    };

const ENDINGS = new Set([
  'exit',
  'signal',
  'idle-timeout',
  'max-duration',
  'closed',
  'node-lost',
  'refused',
  'error',
  'controller-restart',
]);

export function checkFrame(f: ShellFrame__Output): CheckedFrame {
  const id = checkSessionId(f.session_id);
  switch (f.op) {
    case 'open': {
      const o = f.open;
      if (
        !o ||
        !(o.payload instanceof Uint8Array) ||
        !(o.signature instanceof Uint8Array) ||
        typeof o.cert_pem !== 'string'
      )
        throw bad(
          'shell open without payload, signature and certificate',
          'shell.open',
          'payload, signature and cert_pem',
        );
      if (o.payload.length === 0 || o.payload.length > SHELL_LIMITS.maxOpenPayloadBytes)
        throw bad(
          `shell open payload of ${o.payload.length} bytes`,
          'shell.open.payload',
          `1 to ${SHELL_LIMITS.maxOpenPayloadBytes} bytes`,
        );
      if (o.cert_pem.length > 16_384)
        throw bad('shell open certificate too large', 'shell.open.cert_pem', 'at most 16 KiB');
      return {
        id,
        op: 'open',
        open: { payload: Buffer.from(o.payload), signature: Buffer.from(o.signature), certPem: o.cert_pem },
      };
    }
    case 'data':
      if (!(f.data instanceof Uint8Array)) throw bad('shell data frame without bytes', 'shell.data', 'bytes');
      return { id, op: 'data', data: checkData(f.data) };
    case 'resize': {
      const s = checkSize(f.resize?.cols, f.resize?.rows, 'shell.resize');
      return { id, op: 'resize', ...s };
    }
    case 'credit': {
      const c = Number(f.credit);
      if (!Number.isInteger(c) || c <= 0 || c > SHELL_LIMITS.windowBytes)
        throw bad(
          `shell credit ${String(f.credit)}`,
          'shell.credit',
          `an integer 1–${SHELL_LIMITS.windowBytes}`,
        );
      return { id, op: 'credit', credit: c };
    }
    case 'end': {
      const e = f.end;
      if (!e)
        throw bad(
          'shell end frame without its fields',
          'shell.end',
          'ending, exit_code, signal, code, message',
        );
      const ending = ENDINGS.has(e.ending) ? e.ending : 'error';
      const int = (v: number) => (Number.isInteger(v) && v >= -1 && v <= 255 ? v : -1);
      return {
        id,
        op: 'end',
        ending,
        exitCode: int(e.exit_code),
        signal: int(e.signal),
        code: typeof e.code === 'string' && /^TETHER_E_[A-Z_]{1,40}$/.test(e.code) ? e.code : '',
        message: typeof e.message === 'string' ? e.message.slice(0, 500) : '',
      };
    }
    default:
      throw bad('shell frame without an operation', 'shell.op', 'open, data, resize, credit or end');
  }
}

export function signShellOpen(
  body: ShellOpenBody,
  keyPem: string,
  certPem: string,
): { payload: Buffer; signature: Buffer; cert_pem: string } {
  const payload = Buffer.from(JSON.stringify(body));
  return { payload, signature: sign('sha256', payload, createPrivateKey(keyPem)), cert_pem: certPem };
}

/**
 * Checks an open request as the node must before it spawns anything: signed by a controller
 * certificate of our CA (not expired), for this node and site, not expired itself, with
 * sane fields. Returns the body; throws TETHER_E_PERMISSION or TETHER_E_INVALID.
 */
export function verifyShellOpen(
  open: { payload: Buffer; signature: Buffer; certPem: string },
  caPem: string,
  expect: { node: string; site: string; now: number; id: string },
): ShellOpenBody {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(open.certPem);
  } catch {
    throw new TetherError('TETHER_E_PERMISSION', 'shell open carries no readable certificate', {
      field: 'shell.open.cert_pem',
      expected: "the controller's certificate (PEM)",
    });
  }
  const ca = new X509Certificate(caPem);
  const id = identityOf(cert);
  if (!verifyIssuedBy(cert, ca, new Date(expect.now)) || id?.role !== 'controller')
    throw new TetherError('TETHER_E_PERMISSION', 'shell open is not from a controller of our CA', {
      field: 'shell.open.cert_pem',
      expected: 'a current controller certificate issued by the CA this node enrolled with',
    });
  let ok = false;
  try {
    ok = verify('sha256', open.payload, cert.publicKey, open.signature);
  } catch {
    ok = false;
  }
  if (!ok)
    throw new TetherError('TETHER_E_PERMISSION', 'shell open signature does not verify', {
      field: 'shell.open.signature',
      expected: "an ECDSA P-256 signature by the controller's key",
    });
  const v = parseJson(open.payload, { source: 'shell open payload', maxDepth: 4 }) as Partial<ShellOpenBody>;
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw bad('shell open payload is not an object', 'shell.open.payload', 'a JSON object');
  if (v.id !== expect.id) throw bad('shell open names another session', 'shell.open.payload.id', expect.id);
  if (v.node !== expect.node)
    throw new TetherError('TETHER_E_PERMISSION', `shell open is for node "${String(v.node).slice(0, 80)}"`, {
      field: 'shell.open.payload.node',
      expected: expect.node,
    });
  if (v.site !== expect.site)
    throw new TetherError('TETHER_E_PERMISSION', `shell open is for site "${String(v.site).slice(0, 80)}"`, {
      field: 'shell.open.payload.site',
      expected: expect.site,
    });
  for (const k of ['issuedAt', 'expiresAt', 'maxSeconds', 'window'] as const)
    if (typeof v[k] !== 'number' || !Number.isFinite(v[k]) || (v[k] as number) < 0)
      throw bad(`shell open ${k} is not a number`, `shell.open.payload.${k}`, 'a number, 0 or more');
  if (
    expect.now > (v.expiresAt as number) ||
    (v.expiresAt as number) - (v.issuedAt as number) > SHELL_LIMITS.openValidityMs
  )
    throw new TetherError('TETHER_E_PERMISSION', 'shell open request has expired', {
      field: 'shell.open.payload.expiresAt',
      expected: `a request issued within ${SHELL_LIMITS.openValidityMs / 1000} s (check the node's clock)`,
    });
  if (typeof v.operator !== 'string' || !NAME.test(v.operator))
    throw bad('shell open operator is not a name', 'shell.open.payload.operator', '[a-z0-9.-]{1,253}');
  checkReason(v.reason);
  checkSize(v.cols, v.rows, 'shell.open.payload');
  if ((v.window as number) > SHELL_LIMITS.windowBytes)
    throw bad(
      'shell open window too large',
      'shell.open.payload.window',
      `at most ${SHELL_LIMITS.windowBytes}`,
    );
  return v as ShellOpenBody;
}
