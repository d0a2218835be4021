import type { TetherObject } from './resource.js';

/**
 * Which copy of an endpoint counts at a site, between the controller's slice, the SiteLocal
 * set (endpoints the site proxy accepted that the controller has not confirmed) and a node's
 * own endpoints (docs/proxy.md, "Conflicts: the controller wins"). One function, so that the
 * proxy building the set and every agent forwarding to it apply the same rules:
 *
 * 1. A node's own endpoints (`own`, of node `self`) always win: the slice's copies of them and
 *    SiteLocal entries naming `self` are ignored, so a headless node keeps forwarding to its
 *    workloads as they are now. `self` is never covered.
 * 2. A covered node (`SiteLocal.nodes`: its latest report is not answered yet) speaks for
 *    itself: its slice Endpoints neither stand nor hold a name or an address; its SiteLocal
 *    entries are what it has now.
 * 3. A standing slice Endpoint, or an own endpoint, wins over a SiteLocal entry with the same
 *    name (the controller confirmed it or decided otherwise), or with the same IP or the same
 *    MAC in the same network (an address the controller gave out stays where it gave it).
 *
 * Objects of the slice that are not Endpoints pass through; SiteLocal entries that are not
 * Endpoints are dropped. Order is kept. Pure: nothing is mutated.
 */
export function resolveSiteLocal(input: {
  slice: readonly TetherObject[];
  siteLocal: readonly TetherObject[];
  /** SiteLocal.nodes. */
  covered: Iterable<string>;
  self?: string;
  own?: readonly TetherObject[];
}): { slice: TetherObject[]; siteLocal: TetherObject[] } {
  const self = input.self;
  const covered = new Set([...input.covered].filter((n) => n !== self));
  const own = input.own ?? [];
  const slice = input.slice.filter((o) => {
    if (o.kind !== 'Endpoint') return true;
    const node = nodeOf(o);
    return node !== self && !covered.has(node);
  });
  const names = new Set<string>();
  const held = new Set<string>();
  for (const o of [...slice, ...own]) {
    if (o.kind !== 'Endpoint') continue;
    names.add(o.metadata.name);
    for (const k of addressKeys(o)) held.add(k);
  }
  const siteLocal = input.siteLocal.filter(
    (o) =>
      o.kind === 'Endpoint' &&
      (self === undefined || nodeOf(o) !== self) &&
      !names.has(o.metadata.name) &&
      !addressKeys(o).some((k) => held.has(k)),
  );
  return { slice, siteLocal };
}

function specOf(o: TetherObject): { node?: unknown; network?: unknown; ip?: unknown; mac?: unknown } {
  return (o.spec ?? {}) as { node?: unknown; network?: unknown; ip?: unknown; mac?: unknown };
}

function nodeOf(o: TetherObject): string {
  return String(specOf(o).node ?? '');
}

/** The keys under which an endpoint holds its addresses (MACs compare case-insensitively). */
function addressKeys(o: TetherObject): string[] {
  const s = specOf(o);
  return [
    `${String(s.network)}/ip/${String(s.ip)}`,
    `${String(s.network)}/mac/${String(s.mac).toLowerCase()}`,
  ];
}
