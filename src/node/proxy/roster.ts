import type { TetherObject } from '../../api/resource.js';
import { normalizeSerial } from '../../lib/pki.js';

/** A Node summary of the site roster, as the controller puts it in every site slice. */
export interface RosterEntry {
  name: string;
  site: string;
  phase: string;
  vtep: string | undefined;
  certSerials: string[];
}

export function rosterEntry(o: TetherObject): RosterEntry | undefined {
  if (o.kind !== 'Node') return undefined;
  const spec = (o.spec ?? {}) as { site?: unknown };
  const st = (o.status ?? {}) as { phase?: unknown; vtep?: unknown; certSerials?: unknown };
  return {
    name: o.metadata.name,
    site: typeof spec.site === 'string' ? spec.site : '',
    phase: typeof st.phase === 'string' ? st.phase : '',
    vtep: typeof st.vtep === 'string' && st.vtep !== '' ? st.vtep : undefined,
    certSerials: Array.isArray(st.certSerials)
      ? st.certSerials.filter((s): s is string => typeof s === 'string').map(normalizeSerial)
      : [],
  };
}

/** The roster of `site` from a slice's objects. */
export function rosterOf(objects: Iterable<TetherObject>, site: string): Map<string, RosterEntry> {
  const out = new Map<string, RosterEntry>();
  for (const o of objects) {
    const r = rosterEntry(o);
    if (r && r.site === site) out.set(r.name, r);
  }
  return out;
}

/** Why `node` presenting certificate `serial` may not use the proxy, or undefined if it may. */
export function rosterRefusal(
  roster: ReadonlyMap<string, RosterEntry>,
  node: string,
  serial: string,
): { code: 'TETHER_E_REVOKED' | 'TETHER_E_PERMISSION'; message: string } | undefined {
  const r = roster.get(node);
  if (!r) return { code: 'TETHER_E_PERMISSION', message: `node "${node}" is not in this site's roster` };
  if (r.phase !== 'Approved')
    return {
      code: r.phase === 'Revoked' ? 'TETHER_E_REVOKED' : 'TETHER_E_PERMISSION',
      message: `node "${node}" is ${r.phase ? r.phase.toLowerCase() : 'not approved'}`,
    };
  if (!r.certSerials.includes(normalizeSerial(serial)))
    return {
      code: 'TETHER_E_PERMISSION',
      message: `certificate ${normalizeSerial(serial)} is not a current certificate of node "${node}"`,
    };
  return undefined;
}

/** Election candidates: Approved nodes with a VTEP, ranked by name. */
export function candidates(roster: ReadonlyMap<string, RosterEntry>): RosterEntry[] {
  return [...roster.values()]
    .filter((r) => r.phase === 'Approved' && r.vtep)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Whether the roster says `serial` is not a current certificate of `node`: the node is listed
 * and revoked, reset, pending, or holds other serials now. A node the roster does not list is
 * not refused here (a node new to the site may probe before the roster names it; Sync still
 * needs rosterRefusal to pass).
 */
export function rosterDisowns(
  roster: ReadonlyMap<string, RosterEntry>,
  node: string,
  serial: string,
): boolean {
  return roster.has(node) && rosterRefusal(roster, node, serial) !== undefined;
}

/**
 * Whether a connection of `node` with `serial` must end because the roster changed from `prev`
 * to `next`: the node was listed and is now refused (revoked, reset, deleted, or that
 * certificate superseded).
 */
export function rosterDropped(
  prev: ReadonlyMap<string, RosterEntry>,
  next: ReadonlyMap<string, RosterEntry>,
  node: string,
  serial: string,
): boolean {
  return (prev.has(node) || next.has(node)) && rosterRefusal(next, node, serial) !== undefined;
}
