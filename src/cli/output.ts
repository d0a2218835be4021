import { stringify } from 'yaml';

export { out, paint, renderTable, say, useColor } from './term.js';

export type OutputFormat = 'table' | 'json' | 'yaml' | 'name';

export function parseOutputFormat(v: string | undefined): OutputFormat {
  if (v === undefined || v === 'table' || v === 'wide') return 'table';
  if (v === 'json' || v === 'yaml' || v === 'name') return v;
  throw new Error(`-o ${v}: expected one of table, json, yaml, name`);
}

export function renderStructured(value: unknown, format: 'json' | 'yaml'): string {
  return format === 'json' ? `${JSON.stringify(value, null, 2)}\n` : stringify(value);
}
