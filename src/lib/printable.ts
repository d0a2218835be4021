/**
 * Text from a peer or a log that is about to be painted on a terminal: C0 and C1 control
 * characters and DEL become U+FFFD, so a log message or an event cannot carry escape
 * sequences (OSC title changes, screen clears, cursor moves) to the technician's terminal.
 * Tabs become a space; newlines are the caller's business (one record, one line).
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

export function printable(s: string): string {
  return s.replace(/\t/g, ' ').replace(CONTROL, '\ufffd');
}

/** `printable` applied to every string inside a JSON-shaped value (depth-bounded). */
export function printableDeep<T>(v: T, depth = 0): T {
  if (typeof v === 'string') return printable(v) as T;
  if (depth > 32 || v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map((x) => printableDeep(x, depth + 1)) as T;
  if (v instanceof Date) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>))
    out[printable(k)] = printableDeep(x, depth + 1);
  return out as T;
}
