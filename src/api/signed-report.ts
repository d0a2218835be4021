import { createPrivateKey, sign, verify, X509Certificate } from 'node:crypto';
import { TetherError } from '../lib/errors.js';
import { parseJson } from '../lib/input.js';
import { normalizeSerial } from '../lib/pki.js';
import type { TetherObject } from './resource.js';

/**
 * An endpoint report signed by the node it speaks for. A site proxy relays its agents'
 * reports over its one WAN session; the signature lets the controller check that the node
 * itself said it (the proxy's mTLS names only the proxy's own node), so a node hosting the
 * proxy cannot claim endpoints for its neighbours. `seq` lets the controller and the proxy
 * refuse a replay of an older report (see `isNewerReport`).
 */
export interface EndpointReportBody {
  node: string;
  site: string;
  /** Per process start of the node daemon; for diagnostics only, never for ordering. */
  bootId: string;
  /**
   * Grows with every report the node signs, across restarts and reboots (kept on the node's
   * disk, `src/lib/sequence.ts`), whatever the node's clock does: the only order of reports.
   */
  seq: number;
  /** Unix ms by the node's clock when it made the report: shown, never used to order or refuse. */
  at: number;
  endpoints: TetherObject[];
}

export interface SignedReportWire {
  payload: Buffer;
  signature: Buffer;
  cert_serial: string;
}

/** 1024 endpoints of 16 KiB (the controller's claim limits) plus the envelope. */
export const MAX_SIGNED_PAYLOAD_BYTES = 1024 * 16 * 1024 + 64 * 1024;

export function signReport(body: EndpointReportBody, keyPem: string, certPem: string): SignedReportWire {
  const payload = Buffer.from(JSON.stringify(body));
  const signature = sign('sha256', payload, createPrivateKey(keyPem));
  return { payload, signature, cert_serial: normalizeSerial(new X509Certificate(certPem).serialNumber) };
}

function bad(message: string, field: string, expected: string): TetherError {
  return new TetherError('TETHER_E_INVALID', message, { field, expected });
}

/**
 * Checks the signature against the node's certificate and the body's shape, and returns the
 * body. The caller decides which certificate is the node's (the controller: the one it
 * issued and still accepts; the proxy: the agent's TLS peer certificate).
 */
export function verifyReport(
  wire: { payload: Buffer | Uint8Array; signature: Buffer | Uint8Array },
  certPem: string,
  expect: { node: string; site: string },
): EndpointReportBody {
  const payload = Buffer.from(wire.payload);
  if (payload.length === 0 || payload.length > MAX_SIGNED_PAYLOAD_BYTES)
    throw new TetherError('TETHER_E_TOO_LARGE', `signed report payload is ${payload.length} bytes`, {
      field: 'signed.payload',
      expected: `1 to ${MAX_SIGNED_PAYLOAD_BYTES} bytes`,
    });
  let ok = false;
  try {
    ok = verify('sha256', payload, new X509Certificate(certPem).publicKey, Buffer.from(wire.signature));
  } catch {
    ok = false;
  }
  if (!ok)
    throw new TetherError('TETHER_E_PERMISSION', `endpoint report is not signed by node "${expect.node}"`, {
      field: 'signed.signature',
      expected: "an ECDSA P-256 signature by the node's current certificate",
    });
  const v = parseJson(payload, { source: `signed report of ${expect.node}` }) as Partial<EndpointReportBody>;
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw bad('signed report is not an object', 'signed.payload', 'a JSON object');
  if (v.node !== expect.node)
    throw bad(`signed report names node "${String(v.node)}"`, 'signed.payload.node', expect.node);
  if (v.site !== expect.site)
    throw bad(`signed report names site "${String(v.site)}"`, 'signed.payload.site', expect.site);
  if (typeof v.bootId !== 'string' || v.bootId.length === 0 || v.bootId.length > 64)
    throw bad('signed report has no boot id', 'signed.payload.bootId', 'a string of 1–64 characters');
  if (!Number.isSafeInteger(v.seq) || (v.seq as number) < 0)
    throw bad('signed report has a bad sequence number', 'signed.payload.seq', 'a non-negative integer');
  if (!Number.isSafeInteger(v.at) || (v.at as number) < 0)
    throw bad('signed report has a bad time', 'signed.payload.at', 'unix milliseconds');
  if (!Array.isArray(v.endpoints))
    throw bad('signed report has no endpoint list', 'signed.payload.endpoints', 'an array');
  return v as EndpointReportBody;
}

/**
 * What a receiver keeps of the last signed report it accepted from a node: the controller in
 * its store (with the accepted endpoints, so it survives a restart), the proxy in its journal.
 * `serial` is the certificate the report was signed with.
 */
export interface ReportMark {
  serial: string;
  bootId: string;
  seq: number;
  at: number;
}

/**
 * Whether `report` is newer than the node's `mark`. Under the same certificate only a higher
 * `seq` is newer, whatever the boot id or the time say: the node's sequence only ever grows
 * (also across reboots, also when its clock steps back), so an equal or lower one is a replay.
 * A report under another certificate than the mark's is newer: only a report signed by the
 * node's current certificate is accepted at all, so the mark of an older certificate holds
 * nothing back a replay could repeat, and a node enrolled again (new key, maybe a fresh disk
 * whose sequence starts over) is not held to its predecessor's numbers.
 */
export function isNewerReport(
  mark: (Partial<ReportMark> & Pick<ReportMark, 'serial' | 'seq'>) | undefined,
  report: Partial<ReportMark> & Pick<ReportMark, 'serial' | 'seq'>,
): boolean {
  if (!mark) return true;
  if (normalizeSerial(mark.serial) !== normalizeSerial(report.serial)) return true;
  return report.seq > mark.seq;
}

/** The mark of a report `body` signed with certificate `serial`. */
export function markOf(body: Pick<EndpointReportBody, 'bootId' | 'seq' | 'at'>, serial: string): ReportMark {
  return { serial: normalizeSerial(serial), bootId: body.bootId, seq: body.seq, at: body.at };
}
