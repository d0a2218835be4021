import { TetherError } from '../lib/errors.js';

/** Parses durations like 90s, 15m, 1h, 7d, 1h30m. */
export function parseDuration(text: string, field = 'duration'): number {
  const re = /(\d+)(ms|s|m|h|d)/g;
  let total = 0;
  let consumed = 0;
  for (const m of text.matchAll(re)) {
    const n = Number(m[1]);
    const unit = m[2];
    total +=
      n * (unit === 'ms' ? 0.001 : unit === 's' ? 1 : unit === 'm' ? 60 : unit === 'h' ? 3600 : 86_400);
    consumed += m[0].length;
  }
  if (consumed !== text.length || consumed === 0) {
    throw new TetherError('TETHER_E_INVALID', `bad duration "${text}"`, {
      field,
      expected: 'e.g. 30s, 15m, 1h, 7d',
    });
  }
  return total;
}

export function parsePositiveInt(text: string, field: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1)
    throw new TetherError('TETHER_E_INVALID', `bad number "${text}"`, { field, expected: 'an integer ≥ 1' });
  return n;
}
