// Terminal output without dependencies: what every command, and the fast `tether status`
// path, needs (src/cli/output.ts adds yaml rendering on top and re-exports these).

/** Colour only for a TTY, and never when NO_COLOR is set non-empty or TERM=dumb (clig.dev). */
export function useColor(stream: NodeJS.WriteStream = process.stderr): boolean {
  if (process.env.NO_COLOR) return false;
  if (process.env.TERM === 'dumb') return false;
  return Boolean(stream.isTTY);
}

export type Colour = 'red' | 'green' | 'yellow' | 'bold' | 'dim';
const SGR = { red: 31, green: 32, yellow: 33, bold: 1, dim: 2 } as const;

/** `text` in `color`, unconditionally (callers that already decided colour is on). */
export function sgr(text: string, color: Colour): string {
  return `\u001b[${SGR[color]}m${text}\u001b[0m`;
}

export function paint(text: string, color: Colour, stream?: NodeJS.WriteStream): string {
  return useColor(stream) ? sgr(text, color) : text;
}

/** Left-aligned columns, kubectl style; headers upper-case. */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('   ')
      .trimEnd();
  return `${[line(headers.map((h) => h.toUpperCase())), ...rows.map(line)].join('\n')}\n`;
}

export function out(text: string): void {
  process.stdout.write(text);
}

/** Human messages go to stderr so stdout stays parseable. */
export function say(text: string): void {
  process.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
}
