import { TetherError } from './errors.js';

/**
 * Controller address lists (issue 12): what a node stores, what `--controller a:p,b:p` and
 * bootstrap.yaml give it, and what a controller advertises in a session. The last one is
 * peer-supplied, so every list is bounded and checked the same way wherever it comes from.
 */

/** At most this many controller addresses per node (bootstrap.yaml allows the same). */
export const MAX_CONTROLLERS = 8;
/** A DNS name is at most 253 characters; with ":" and a port, 260. */
export const MAX_ADDRESS_CHARS = 260;

// The same syntax as bootstrap.yaml's `controllers` (src/node/bootstrap/config.ts): a DNS
// name or IPv4 literal, or a bracketed IPv6 literal, then a port.
const HOST_PORT_RE =
  /^(?:[A-Za-z0-9](?:[-A-Za-z0-9]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*|\[[0-9a-fA-F:.]+\]):([0-9]{1,5})$/;

/** Why `addr` is not a controller address, or undefined when it is one. */
export function hostPortProblem(addr: unknown): string | undefined {
  if (typeof addr !== 'string') return 'not a string';
  if (addr.length === 0) return 'empty';
  if (addr.length > MAX_ADDRESS_CHARS) return `longer than ${MAX_ADDRESS_CHARS} characters`;
  const m = HOST_PORT_RE.exec(addr);
  if (!m) return 'not HOST:PORT';
  const port = Number(m[1]);
  if (port < 1 || port > 65535) return `port ${m[1]} is out of range`;
  return undefined;
}

/**
 * Checks a list of controller addresses: 1 to 8 entries, each HOST:PORT, duplicates dropped
 * (first one kept, order kept). Throws TETHER_E_INVALID naming `field` and the entry.
 */
export function parseControllerList(list: unknown, field: string): string[] {
  if (!Array.isArray(list))
    throw new TetherError('TETHER_E_INVALID', `${field} is not a list`, {
      field,
      expected: `1 to ${MAX_CONTROLLERS} controller addresses HOST:PORT`,
    });
  if (list.length === 0 || list.length > MAX_CONTROLLERS)
    throw new TetherError('TETHER_E_INVALID', `${field} has ${list.length} addresses`, {
      field,
      expected: `1 to ${MAX_CONTROLLERS} controller addresses HOST:PORT`,
    });
  const out: string[] = [];
  for (const [i, a] of list.entries()) {
    const why = hostPortProblem(a);
    if (why)
      throw new TetherError(
        'TETHER_E_INVALID',
        `${field}[${i}] ${typeof a === 'string' ? `"${a.slice(0, 64)}"` : ''} is ${why}`,
        { field: `${field}[${i}]`, expected: 'HOST:PORT (a DNS name or IPv4 address, or [IPv6])' },
      );
    if (!out.includes(a as string)) out.push(a as string);
  }
  return out;
}

/** `--controller a:p,b:p` (commas, optional spaces) as a checked list. */
export function parseControllerFlag(value: string, flag = '--controller'): string[] {
  if (value.length > MAX_CONTROLLERS * (MAX_ADDRESS_CHARS + 2))
    throw new TetherError('TETHER_E_INVALID', `${flag} is too long`, {
      field: flag,
      expected: `1 to ${MAX_CONTROLLERS} controller addresses HOST:PORT, comma-separated`,
    });
  return parseControllerList(
    value
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.length > 0),
    flag,
  );
}
