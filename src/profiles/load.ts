import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject } from 'ajv';
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import { TetherError } from '../lib/errors.js';
import { checkValueDepth, checkYamlDepth } from '../lib/input.js';
import { PROFILE_SPEC_SCHEMA, type ProfileSpec } from './schema.js';

/** Where a field of a resolved profile came from. */
export interface Origin {
  file: string;
  line: number;
}

/** One problem found in a profile: always names file, line and field when known. */
export interface ProfileIssue {
  severity: 'error' | 'warning';
  file?: string;
  line?: number;
  field: string;
  message: string;
  expected?: string;
}

export interface ResolvedProfile {
  /** Name of the top profile (file name without .yaml). */
  name: string;
  /** Files in composition order (bases first). */
  files: string[];
  spec: ProfileSpec;
  /** Canonical field path → where its value was set (the last file that set it wins). */
  origins: Map<string, Origin>;
}

/** Shipped profiles: <repo>/profiles (next to src/ in a checkout; next to dist/ in a bundle). */
export function shippedProfilesDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const c of [
    resolve(here, '../../profiles'),
    resolve(here, '../profiles'),
    '/usr/share/tether/profiles',
  ]) {
    if (existsSync(join(c, 'base.yaml'))) return c;
  }
  return resolve(here, '../../profiles');
}

export function formatIssue(i: ProfileIssue): string {
  const where = [i.file && (i.line ? `${i.file}:${i.line}` : i.file), i.field].filter(Boolean).join(': ');
  return `${where}: ${i.message}${i.expected ? ` (expected ${i.expected})` : ''}`;
}

/** Throws one TETHER_E_INVALID error carrying every issue; the first one names file/line/field. */
export function throwIssues(issues: ProfileIssue[], what: string): never {
  const errors = issues.filter((i) => i.severity === 'error');
  const first = errors[0];
  if (!first) throw new TetherError('TETHER_E_INTERNAL', 'throwIssues without errors');
  throw new TetherError(
    'TETHER_E_INVALID',
    errors.length === 1
      ? `${what}: ${formatIssue(first)}`
      : `${what}: ${errors.length} errors:\n  ${errors.map(formatIssue).join('\n  ')}`,
    { file: first.file, line: first.line, field: first.field, expected: first.expected, issues },
  );
}

// ---- canonical paths ----

/** Arrays whose elements merge by a key instead of by position. */
const KEYED: Record<string, string> = { sriov: 'name' };

export function childPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  if (parent === '') return key;
  if (/[.[\]\s]/.test(key)) return `${parent}[${key}]`;
  return `${parent}.${key}`;
}

function elementPath(parent: string, item: unknown, index: number): string {
  const k = KEYED[parent];
  if (k && item && typeof item === 'object' && typeof (item as Record<string, unknown>)[k] === 'string')
    return `${parent}[${(item as Record<string, string>)[k]}]`;
  return `${parent}[${index}]`;
}

// ---- one file ----

export interface ParsedFile {
  file: string;
  name: string;
  spec: ProfileSpec;
  origins: Map<string, Origin>;
}

const ajv = new Ajv({ allErrors: true, strict: false });
const validateSchema = ajv.compile(PROFILE_SPEC_SCHEMA);

/** Parses and schema-checks one profile file; errors cite file:line and the field. */
export function parseProfileText(text: string, file: string): ParsedFile {
  // Before the composer, which recurses: a 10,000-level document overflowed the stack.
  checkYamlDepth(text, { source: file });
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const lineOf = (offset: number | undefined): number => (offset === undefined ? 1 : lc.linePos(offset).line);
  if (doc.errors.length > 0) {
    throwIssues(
      doc.errors.map((e) => ({
        severity: 'error' as const,
        file,
        line: lineOf(e.pos[0]),
        field: '(syntax)',
        message: e.message.split('\n')[0] ?? e.message,
      })),
      `cannot parse ${file}`,
    );
  }
  const value = (doc.toJS({ maxAliasCount: 100 }) ?? {}) as unknown;
  checkValueDepth(value, { source: file });
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throwIssues(
      [
        {
          severity: 'error',
          file,
          line: 1,
          field: '(root)',
          message: 'a profile is a mapping',
          expected: 'key: value pairs',
        },
      ],
      `invalid profile ${file}`,
    );
  }
  const nodeAt = (segs: Array<string | number>): Node | undefined => {
    let n: unknown = doc.contents;
    for (const s of segs) {
      if (isMap(n)) n = n.items.find((p) => isScalar(p.key) && String(p.key.value) === String(s))?.value;
      else if (isSeq(n)) n = n.items[Number(s)];
      else return undefined;
    }
    return n as Node | undefined;
  };
  const keyLine = (segs: Array<string | number>): number | undefined => {
    const parent = nodeAt(segs.slice(0, -1));
    const last = segs[segs.length - 1];
    if (isMap(parent)) {
      const pair = parent.items.find((p) => isScalar(p.key) && String(p.key.value) === String(last));
      if (pair && isScalar(pair.key)) return lineOf(pair.key.range?.[0]);
    }
    const n = nodeAt(segs);
    return n?.range ? lineOf(n.range[0]) : undefined;
  };
  if (!validateSchema(value)) {
    const issues: ProfileIssue[] = [];
    for (const e of dedupe(validateSchema.errors ?? [])) {
      const segs = e.instancePath
        .split('/')
        .slice(1)
        .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
        .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
      let fieldSegs = segs;
      let message = e.message ?? 'is invalid';
      let expected: string | undefined;
      if (e.keyword === 'additionalProperties') {
        const extra = String((e.params as { additionalProperty: string }).additionalProperty);
        fieldSegs = [...segs, extra];
        message = 'unknown field';
        expected = `one of ${Object.keys(schemaAt(segs)?.properties ?? {}).join(', ')}`;
      } else if (e.keyword === 'required') {
        const miss = String((e.params as { missingProperty: string }).missingProperty);
        message = `missing required field "${miss}"`;
      } else if (e.keyword === 'enum') {
        expected = `one of ${((e.params as { allowedValues: unknown[] }).allowedValues ?? []).join(', ')}`;
        message = 'has an invalid value';
      } else if (e.keyword === 'type') {
        expected = String((e.params as { type: string }).type);
        message = 'has the wrong type';
      } else if (e.keyword === 'pattern') {
        message = 'has an invalid format';
        expected = describePattern(segs);
      } else if (e.keyword === 'minimum' || e.keyword === 'maximum') {
        expected = `${e.keyword === 'minimum' ? '>=' : '<='} ${(e.params as { limit: number }).limit}`;
        message = 'is out of range';
      }
      issues.push({
        severity: 'error',
        file,
        line: keyLine(fieldSegs) ?? keyLine(segs) ?? 1,
        field: fieldSegs.reduce<string>((p, s) => childPath(p, s), '') || '(root)',
        message,
        ...(expected ? { expected } : {}),
      });
    }
    throwIssues(issues, `invalid profile ${file}`);
  }
  const origins = new Map<string, Origin>();
  const walk = (n: unknown, path: string): void => {
    if (isMap(n)) {
      for (const pair of n.items) {
        if (!isScalar(pair.key)) continue;
        const p = childPath(path, String(pair.key.value));
        origins.set(p, { file, line: lineOf(pair.key.range?.[0]) });
        walk(pair.value, p);
      }
    } else if (isSeq(n)) {
      n.items.forEach((item, i) => {
        const js = isMap(item) ? item.toJSON() : undefined;
        const p = elementPath(path, js, i);
        origins.set(p, { file, line: lineOf((item as Node).range?.[0]) });
        walk(item, p);
      });
    }
  };
  walk(doc.contents, '');
  const spec = value as ProfileSpec & { $schema?: string };
  delete spec.$schema;
  // Duplicate policy names would merge silently: refuse them.
  const seen = new Set<string>();
  (spec.sriov ?? []).forEach((p, i) => {
    if (seen.has(p.name))
      throwIssues(
        [
          {
            severity: 'error',
            file,
            line: keyLine(['sriov', i, 'name']) ?? 1,
            field: `sriov[${i}].name`,
            message: `duplicate SR-IOV policy name "${p.name}"`,
            expected: 'unique names',
          },
        ],
        `invalid profile ${file}`,
      );
    seen.add(p.name);
  });
  return { file, name: basename(file).replace(/\.ya?ml$/, ''), spec, origins };
}

function dedupe(errs: ErrorObject[]): ErrorObject[] {
  // anyOf produces one error per branch plus the anyOf itself; keep the most useful one.
  const out: ErrorObject[] = [];
  const anyOfPaths = new Set(errs.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  for (const e of errs) {
    if (anyOfPaths.has(e.instancePath) && e.keyword !== 'anyOf') continue;
    if (out.some((o) => o.instancePath === e.instancePath && o.keyword === e.keyword)) continue;
    out.push(e.keyword === 'anyOf' ? { ...e, keyword: 'pattern', message: 'has an invalid format' } : e);
  }
  return out;
}

interface SchemaNode {
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode;
}

function schemaAt(segs: Array<string | number>): SchemaNode | undefined {
  let s: SchemaNode | undefined = PROFILE_SPEC_SCHEMA as unknown as SchemaNode;
  for (const seg of segs) s = typeof seg === 'number' ? s?.items : s?.properties?.[seg];
  return s;
}

function describePattern(segs: Array<string | number>): string {
  const last = segs[segs.length - 1];
  if (last === 'reserved' || last === 'isolated' || last === 'offlined' || last === 'range')
    return 'a kernel list like "0-3,8"';
  if (last === 'pciAddress') return 'a PCI address like 0000:51:00.0';
  if (last === 'vendor' || last === 'device') return '4 lower-case hex digits, like 8086';
  if (last === 'representorNaming') return 'a template containing {vf}, like "{pf}_{vf}"';
  return 'a value matching the schema';
}

export function parseProfileFile(file: string): ParsedFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new TetherError('TETHER_E_NOT_FOUND', `cannot read profile ${file}: ${(e as Error).message}`, {
      file,
    });
  }
  return parseProfileText(text, file);
}

// ---- composition ----

/** Lists concatenated (without duplicates) instead of replaced when a profile extends another. */
const UNION_LISTS = new Set(['kernel.additionalArgs', 'kernel.moduleBlacklist']);

function dropUnder(origins: Map<string, Origin>, p: string): void {
  for (const k of [...origins.keys()])
    if (k === p || k.startsWith(`${p}.`) || k.startsWith(`${p}[`)) origins.delete(k);
}

function copyUnder(from: Map<string, Origin>, to: Map<string, Origin>, p: string): void {
  for (const [k, v] of from) if (k === p || k.startsWith(`${p}.`) || k.startsWith(`${p}[`)) to.set(k, v);
}

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function mergeInto(
  base: Record<string, unknown>,
  over: Record<string, unknown>,
  path: string,
  origins: Map<string, Origin>,
  overOrigins: Map<string, Origin>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, ov] of Object.entries(over)) {
    if (path === '' && k === 'extends') continue;
    const p = childPath(path, k);
    const bv = out[k];
    if (isObj(bv) && isObj(ov)) {
      const o = overOrigins.get(p);
      if (o) origins.set(p, o);
      out[k] = mergeInto(bv, ov, p, origins, overOrigins);
    } else if (KEYED[p] && Array.isArray(bv) && Array.isArray(ov)) {
      const key = KEYED[p] as string;
      const merged = [...bv] as Record<string, unknown>[];
      for (const item of ov as Record<string, unknown>[]) {
        const ip = `${p}[${String(item[key])}]`;
        const idx = merged.findIndex((b) => b[key] === item[key]);
        if (idx >= 0) {
          const o = overOrigins.get(ip);
          if (o) origins.set(ip, o);
          merged[idx] = mergeInto(merged[idx] as Record<string, unknown>, item, ip, origins, overOrigins);
        } else {
          merged.push(item);
          copyUnder(overOrigins, origins, ip);
        }
      }
      out[k] = merged;
    } else if (UNION_LISTS.has(p) && Array.isArray(bv) && Array.isArray(ov)) {
      const merged = [...bv];
      ov.forEach((x, i) => {
        if (merged.includes(x)) return;
        const o = overOrigins.get(`${p}[${i}]`);
        if (o) origins.set(`${p}[${merged.length}]`, o);
        merged.push(x);
      });
      out[k] = merged;
      const o = overOrigins.get(p);
      if (o && !origins.has(p)) origins.set(p, o);
    } else {
      dropUnder(origins, p);
      copyUnder(overOrigins, origins, p);
      out[k] = structuredClone(ov);
    }
  }
  return out;
}

export interface LoadOptions {
  /** Directories searched for `extends` names after the extending file's own directory. */
  searchPath?: string[];
}

/**
 * Loads a profile by name (from the search path) or by file path, resolves `extends`
 * recursively (cycles refused), and merges: bases left to right, then the file itself.
 * Objects merge key by key; `sriov` policies merge by name; kernel.additionalArgs and
 * kernel.moduleBlacklist accumulate; any other list or scalar is replaced.
 */
export function loadProfile(nameOrFile: string, opts: LoadOptions = {}): ResolvedProfile {
  const search = opts.searchPath ?? [shippedProfilesDir()];
  const findFile = (name: string, fromDir: string | undefined): string | undefined => {
    if (/[/\\]|\.ya?ml$/.test(name)) return existsSync(name) ? resolve(name) : undefined;
    for (const d of [...(fromDir ? [fromDir] : []), ...search]) {
      for (const ext of ['.yaml', '.yml']) {
        const f = join(d, `${name}${ext}`);
        if (existsSync(f)) return f;
      }
    }
    return undefined;
  };
  const top = findFile(nameOrFile, undefined);
  if (!top)
    throw new TetherError(
      'TETHER_E_NOT_FOUND',
      `profile "${nameOrFile}" not found (searched ${search.join(', ')})`,
      {
        field: 'profile',
        expected: 'a file path or the name of a profile in the search path',
      },
    );
  const files: string[] = [];
  const resolveFile = (
    file: string,
    stack: string[],
  ): { spec: Record<string, unknown>; origins: Map<string, Origin> } => {
    const parsed = parseProfileFile(file);
    let spec: Record<string, unknown> = {};
    let origins = new Map<string, Origin>();
    (parsed.spec.extends ?? []).forEach((name, i) => {
      const line = parsed.origins.get(`extends[${i}]`)?.line ?? parsed.origins.get('extends')?.line;
      const f = findFile(name, dirname(file));
      if (!f)
        throwIssues(
          [
            {
              severity: 'error',
              file,
              line,
              field: `extends[${i}]`,
              message: `profile "${name}" not found`,
              expected: `${name}.yaml next to this file or in ${search.join(', ')}`,
            },
          ],
          `invalid profile ${file}`,
        );
      if (stack.includes(f))
        throwIssues(
          [
            {
              severity: 'error',
              file,
              line,
              field: `extends[${i}]`,
              message: `"${name}" extends itself (${[...stack, f].map((x) => basename(x)).join(' → ')})`,
              expected: 'no cycles',
            },
          ],
          `invalid profile ${file}`,
        );
      const b = resolveFile(f, [...stack, f]);
      const o2 = new Map(origins);
      spec = mergeInto(spec, b.spec, '', o2, b.origins);
      origins = o2;
    });
    const own = new Map(origins);
    spec = mergeInto(spec, parsed.spec as Record<string, unknown>, '', own, parsed.origins);
    if (!files.includes(file)) files.push(file);
    if (parsed.spec.description !== undefined) spec.description = parsed.spec.description;
    return { spec, origins: own };
  };
  const r = resolveFile(top, [top]);
  const spec = r.spec as ProfileSpec;
  spec.extends = undefined;
  delete spec.extends;
  return { name: basename(top).replace(/\.ya?ml$/, ''), files, spec, origins: r.origins };
}

/** Where a (canonical) field was set: the field itself or its nearest ancestor. */
export function originOf(p: ResolvedProfile, field: string): Origin | undefined {
  let f = field;
  while (f) {
    const o = p.origins.get(f);
    if (o) return o;
    const cut = Math.max(f.lastIndexOf('.'), f.lastIndexOf('['));
    if (cut <= 0) break;
    f = f.slice(0, cut);
  }
  return p.files.length ? { file: p.files[p.files.length - 1] as string, line: 1 } : undefined;
}
