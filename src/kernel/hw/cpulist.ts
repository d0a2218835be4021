import { TetherError } from '../../lib/errors.js';

/**
 * Largest CPU id a Linux machine can have: x86_64 allows CONFIG_NR_CPUS up to 8192
 * (CONFIG_MAXSMP), arm64 up to 4096, so ids run 0-8191. A list naming a higher id is a
 * typo, and refusing it bounds the expansion of a range to 8,192 entries.
 */
export const MAX_CPU_ID = 8191;

/** Why a list is refused and what was expected instead (no field: the caller knows it). */
export interface ListProblem {
  message: string;
  expected: string;
}

/** Parses a kernel list, or says why not. Never throws; the work is bounded by `max`. */
export function tryParseCpuList(
  text: string,
  max: number = MAX_CPU_ID,
  what = 'CPU',
): { ok: true; ids: number[] } | ({ ok: false } & ListProblem) {
  const s = text.trim();
  if (s === '') return { ok: true, ids: [] };
  const expected = max < 0 ? `no ${what} indexes` : `a list of ${what} ids within 0-${max}, like "0-3,8"`;
  const ranges: Array<[number, number]> = [];
  for (const part of s.split(',')) {
    const p = part.trim();
    const m = /^(\d{1,16})(?:-(\d{1,16}))?$/.exec(p);
    if (!m)
      return {
        ok: false,
        message: `"${p.length > 40 ? `${p.slice(0, 40)}…` : p}" is not a ${what} number or range`,
        expected,
      };
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a)
      return {
        ok: false,
        message: `range "${p}" ends before it starts`,
        expected: `a range from low to high, like "${b}-${a}"`,
      };
    if (b > max)
      return {
        ok: false,
        message:
          max < 0
            ? `${what} ${b} is listed but there are none`
            : `${what} ${b} is beyond the largest possible ${what} id ${max}`,
        expected,
      };
    ranges.push([a, b]);
  }
  // Sorted and merged before expanding: the output is at most max + 1 ids, and the work is
  // proportional to the text plus the output, whatever `max` is.
  ranges.sort((x, y) => x[0] - y[0]);
  const ids: number[] = [];
  let next = 0; // first id not yet emitted: overlapping ranges add nothing twice
  for (const [a, b] of ranges) {
    for (let i = Math.max(a, next); i <= b; i++) ids.push(i);
    next = Math.max(next, b + 1);
  }
  return { ok: true, ids };
}

/**
 * Kernel CPU-list syntax (`0-3,8,10-11`), as in /sys/devices/system/cpu/online,
 * isolcpus= and cpuset.cpus. Also used for VF ranges (`0-3`, with `max` = the last VF).
 * Refuses reversed ranges and ids above `max` with TETHER_E_INVALID (details.expected).
 */
export function parseCpuList(text: string, max: number = MAX_CPU_ID, what = 'CPU'): number[] {
  const r = tryParseCpuList(text, max, what);
  if (!r.ok) throw new TetherError('TETHER_E_INVALID', r.message, { expected: r.expected });
  return r.ids;
}

/** Formats a set of CPUs in the shortest kernel syntax: [0,1,2,5] → "0-2,5". */
export function formatCpuList(cpus: Iterable<number>): string {
  const xs = [...new Set(cpus)].sort((a, b) => a - b);
  const parts: string[] = [];
  let i = 0;
  while (i < xs.length) {
    const start = xs[i] as number;
    let end = start;
    while (i + 1 < xs.length && xs[i + 1] === end + 1) {
      end += 1;
      i += 1;
    }
    parts.push(start === end ? `${start}` : `${start}-${end}`);
    i += 1;
  }
  return parts.join(',');
}
