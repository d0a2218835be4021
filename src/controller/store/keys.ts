/**
 * How every store keeps and orders objects, in one place so that the backends (memory,
 * SQLite, etcd), the replica mirror and the migration agree: a map key per object, and the
 * order `list()` answers in.
 */

/** The map key of one object. Kinds are bare words (no `/`), so a key names one object. */
export function objectKey(kind: string, name: string): string {
  return `${kind}/${name}`;
}

/** Plain code-unit order, no locale: for the ASCII names the API allows this is SQLite's
 *  BINARY collation and etcd's byte order, so every backend lists in the same order. */
export function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Kind, then name: the order of `list()`. */
export function byKindName(a: { kind: string; name: string }, b: { kind: string; name: string }): number {
  return cmp(a.kind, b.kind) || cmp(a.name, b.name);
}
