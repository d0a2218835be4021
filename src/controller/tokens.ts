import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { formatToken, type ParsedToken } from '../api/token.js';

/** Minting and checking join tokens; the token's format is src/api/token.ts. Only the
 *  SHA-256 of the secret is ever stored. */
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
