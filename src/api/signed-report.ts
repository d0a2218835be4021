import { createPrivateKey, sign, verify, X509Certificate } from 'node:crypto';
import { TetherError } from '../lib/errors.js';
import { parseJson } from '../lib/input.js';
import { normalizeSerial } from '../lib/pki.js';
import type { TetherObject } from './resource.js';

/**
 * An endpoint report signed by the node it speaks for. A site proxy relays its agents'
 * reports over its one WAN session; the signature lets the controller check that the node
 * itself said it (the proxy's mTLS names only the proxy's own node), so a node hosting the
 * proxy cannot claim endpoints for its neighbours. `seq` and `at` let the controller refuse
 * a replay of an older report.
 */
export interface EndpointReportBody {
  node: string;
  site: string;
  /** Per process start of the node daemon, with `seq`: (bootId, seq) never repeats. */
  bootId: string;
  seq: number;
  /** Unix ms when the node made the report. */
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

/** Whether `b` is newer than `a` (same boot: higher seq; another boot: later time). */
export function isNewerReport(
  a: Pick<EndpointReportBody, 'bootId' | 'seq' | 'at'> | undefined,
  b: Pick<EndpointReportBody, 'bootId' | 'seq' | 'at'>,
): boolean {
  if (!a) return true;
  if (a.bootId === b.bootId) return b.seq > a.seq;
  return b.at > a.at;
}
