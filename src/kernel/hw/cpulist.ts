/**
 * Kernel CPU-list syntax (`0-3,8,10-11`), as in /sys/devices/system/cpu/online,
 * isolcpus= and cpuset.cpus. Also used for VF ranges (`0-3`).
 */
export function parseCpuList(text: string): number[] {
  const out = new Set<number>();
  const s = text.trim();
  if (s === '') return [];
  for (const part of s.split(',')) {
    const p = part.trim();
    const m = /^(\d+)(?:-(\d+))?$/.exec(p);
    if (!m) throw new SyntaxError(`"${p}" is not a CPU number or range (like 0-3,8)`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new SyntaxError(`range "${p}" ends before it starts`);
    if (b - a > 65536) throw new SyntaxError(`range "${p}" is too large`);
    for (let i = a; i <= b; i++) out.add(i);
  }
  return [...out].sort((x, y) => x - y);
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
