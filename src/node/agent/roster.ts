import type { TetherObject } from '../../api/resource.js';

/** A node of the own site as the controller summarises it in the slice (docs/proxy.md). */
export interface RosterNode {
  name: string;
  site: string;
  phase: string;
  vtep: string | undefined;
  certSerials: string[];
}

/**
 * The site roster from the cached slice: `{kind: Node, metadata: {name}, spec: {site},
 * status: {phase, vtep, certSerials}}` for each node of `site`, sorted by name (the
 * election's ranking). Malformed entries are skipped; nodes of other sites are ignored.
 */
export function siteRoster(objects: readonly TetherObject[], site: string): RosterNode[] {
  const out: RosterNode[] = [];
  for (const o of objects) {
    if (o.kind !== 'Node' || typeof o.metadata?.name !== 'string') continue;
    const spec = (o.spec ?? {}) as { site?: unknown };
    if (spec.site !== site) continue;
    const st = (o.status ?? {}) as { phase?: unknown; vtep?: unknown; certSerials?: unknown };
    out.push({
      name: o.metadata.name,
      site,
      phase: typeof st.phase === 'string' ? st.phase : '',
      vtep: typeof st.vtep === 'string' && st.vtep ? st.vtep : undefined,
      certSerials: Array.isArray(st.certSerials)
        ? st.certSerials.filter((x): x is string => typeof x === 'string')
        : [],
    });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
