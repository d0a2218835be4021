/** IPv4 arithmetic shared by the controller's allocator, the node's IPAM and the vRouter. */

/** Dotted quad → unsigned 32-bit number; undefined when malformed. Hand-rolled: the vRouter
 *  runs it per endpoint. */
export function parseIp(s: string): number | undefined {
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      part = part * 10 + (c - 48);
      digits += 1;
      if (digits > 3 || part > 255) return undefined;
    } else if (c === 46) {
      if (digits === 0 || dots === 3) return undefined;
      n = n * 256 + part;
      part = 0;
      digits = 0;
      dots += 1;
    } else return undefined;
  }
  if (dots !== 3 || digits === 0) return undefined;
  return n * 256 + part;
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

/** Parses `a.b.c.d/n`; with `strict`, host bits must be zero. */
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

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.base)}/${c.prefix}`;
}

export function cidrContains(c: Cidr, ip: number): boolean {
  return (ip & maskOf(c.prefix)) >>> 0 === c.base;
}

/** Last address of the range (broadcast address for prefixes < 31). */
export function lastOf(c: Cidr): number {
  return (c.base + 2 ** (32 - c.prefix) - 1) >>> 0;
}

export function isMac(s: string): boolean {
  return /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(s);
}
