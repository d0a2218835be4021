/** IPv4 arithmetic for the site IPAM (no dependencies). */

export function parseIp(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  let n = 0;
  for (const part of m.slice(1)) {
    const v = Number(part);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

export function formatIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export interface Cidr {
  /** First address (network address) as an unsigned 32-bit number. */
  base: number;
  prefix: number;
}

export function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Parses `a.b.c.d/n`; host bits must be zero when `strict`. */
export function parseCidr(s: string, strict = false): Cidr | undefined {
  const [ip, len, extra] = s.split('/');
  if (extra !== undefined || ip === undefined || len === undefined || !/^\d{1,2}$/.test(len))
    return undefined;
  const n = parseIp(ip);
  const prefix = Number(len);
  if (n === undefined || prefix > 32) return undefined;
  const base = (n & maskOf(prefix)) >>> 0;
  if (strict && base !== n) return undefined;
  return { base, prefix };
}

/** Last address of the range (broadcast address for prefixes < 31). */
export function lastOf(c: Cidr): number {
  return (c.base + 2 ** (32 - c.prefix) - 1) >>> 0;
}

export function contains(c: Cidr, ip: number): boolean {
  return (ip & maskOf(c.prefix)) >>> 0 === c.base;
}
