import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { TetherError } from '../lib/errors.js';

/**
 * Join token: `T10<sha256 of controller CA DER, hex>::<id>.<secret>`, the k3s `K10` idea:
 * the node checks the controller's CA against the pinned hash before it sends the secret.
 * Only the SHA-256 of the secret is stored.
 */
export interface ParsedToken {
  caFingerprint: string;
  id: string;
  secret: string;
}

const TOKEN_RE = /^T10([0-9a-f]{64})::([a-z0-9]{6})\.([a-z0-9]{32})$/;
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

function randomString(n: number): string {
  const bytes = randomBytes(n * 2);
  let s = '';
  for (let i = 0; s.length < n && i < bytes.length; i++) {
    const b = bytes[i] ?? 0;
    // Rejection sampling keeps the alphabet uniform (252 = 7·36).
    if (b < 252) s += ALPHABET[b % 36];
  }
  return s.length === n ? s : randomString(n);
}

export function newToken(caFingerprint: string): ParsedToken & { text: string } {
  const id = randomString(6);
  const secret = randomString(32);
  return { caFingerprint, id, secret, text: formatToken({ caFingerprint, id, secret }) };
}

export function formatToken(t: ParsedToken): string {
  return `T10${t.caFingerprint}::${t.id}.${t.secret}`;
}

export function parseToken(text: string): ParsedToken {
  const m = TOKEN_RE.exec(text.trim());
  if (!m) {
    throw new TetherError('TETHER_E_INVALID', 'malformed join token', {
      field: 'token',
      expected: 'T10<64 hex>::<6 char id>.<32 char secret>',
    });
  }
  return { caFingerprint: m[1]!, id: m[2]!, secret: m[3]! };
}

/** The part a node sends over the wire once the CA is pinned. */
export function credentialPart(t: ParsedToken): string {
  return `${t.id}.${t.secret}`;
}

export function splitCredential(cred: string): { id: string; secret: string } {
  const m = /^([a-z0-9]{6})\.([a-z0-9]{32})$/.exec(cred);
  if (!m) throw new TetherError('TETHER_E_TOKEN', 'malformed token credential', { field: 'token' });
  return { id: m[1]!, secret: m[2]! };
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export function secretMatches(secret: string, storedHash: string): boolean {
  const a = Buffer.from(hashSecret(secret), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Object name of the EnrollmentToken resource holding token `id`. */
export function tokenObjectName(id: string): string {
  return `token-${id}`;
}
