import { describe, expect, it } from 'vitest';
import { formatToken, parseToken } from '../../../src/api/token.js';
import { hashSecret, newToken, secretMatches } from '../../../src/controller/tokens.js';
import { fullJitterDelay } from '../../../src/lib/backoff.js';

describe('join tokens', () => {
  it('round-trips and carries the CA fingerprint', () => {
    const t = newToken('a'.repeat(64));
    expect(t.text).toMatch(/^T10a{64}::[a-z0-9]{6}\.[a-z0-9]{32}$/);
    expect(formatToken(parseToken(t.text))).toBe(t.text);
    expect(secretMatches(t.secret, hashSecret(t.secret))).toBe(true);
    expect(secretMatches(`${t.secret.slice(1)}x`, hashSecret(t.secret))).toBe(false);
  });

  it.each([
    '',
    'K10abc::x.y',
    `T10${'a'.repeat(63)}::abcdef.${'b'.repeat(32)}`,
    `T10${'a'.repeat(64)}::ABCDEF.${'b'.repeat(32)}`,
  ])('rejects malformed token %j with the expected format', (text) => {
    expect(() => parseToken(text)).toThrow(
      expect.objectContaining({
        code: 'TETHER_E_INVALID',
        details: expect.objectContaining({ field: 'token' }),
      }),
    );
  });
});

describe('full-jitter backoff', () => {
  it('stays within [0, min(cap, base·2^n)] and spreads', () => {
    const p = { baseMs: 100, capMs: 10_000 };
    expect(fullJitterDelay(0, p, () => 0.999)).toBeLessThan(100);
    expect(fullJitterDelay(3, p, () => 0.5)).toBe(400);
    expect(fullJitterDelay(50, p, () => 0.999)).toBeLessThan(10_000);
    expect(fullJitterDelay(50, p, () => 0)).toBe(0);
    let seed = 1;
    const rnd = () => {
      seed = (seed * 16807) % 2147483647;
      return seed / 2147483647;
    };
    const delays = Array.from({ length: 1000 }, () => fullJitterDelay(10, p, rnd));
    const buckets = new Set(delays.map((d) => Math.floor(d / 1000)));
    expect(buckets.size).toBe(10);
  });
});
