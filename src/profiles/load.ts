import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject } from 'ajv';
import {
  type Document,
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseDocument,
  visit,
  type YAMLMap,
} from 'yaml';
import { TetherError } from '../lib/errors.js';
import { MAX_ALIAS_NODES, MAX_COMPOSED_FILES, MAX_NESTING, MAX_PROFILE_BYTES } from './limits.js';
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

/**
 * Throws one TETHER_E_INVALID error carrying every issue (details.issues). One error: its
 * file, line, field and expectation go in the details and the message is the problem alone,
 * so `describeError` says each part once. Several: the message lists them, one per line, and
 * the details name the first (the CLI prints the list itself, see `sayingOnce`).
 */
export function throwIssues(issues: ProfileIssue[], what: string): never {
  const errors = issues.filter((i) => i.severity === 'error');
  const first = errors[0];
  if (!first) throw new TetherError('TETHER_E_INTERNAL', 'throwIssues without errors');
  if (errors.length === 1)
    throw new TetherError('TETHER_E_INVALID', first.message, {
      file: first.file,
      line: first.line,
      field: first.field,
      expected: first.expected,
      issues,
    });
  const listed = errors.slice(0, MAX_LISTED).map(formatIssue);
  if (errors.length > MAX_LISTED) listed.push(`… and ${errors.length - MAX_LISTED} more`);
  throw new TetherError('TETHER_E_INVALID', `${what}: ${errors.length} errors:\n  ${listed.join('\n  ')}`, {
    file: first.file,
    line: first.line,
    field: first.field,
    expected: first.expected,
    issues,
  });
}

/** Issues listed in one error message; the rest are only in details.issues. */
const MAX_LISTED = 20;

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

/** Line where flow brackets first nest deeper than the limit (quotes ignored: a hint only). */
function deepLine(text: string): number {
  let depth = 0;
  let line = 1;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 10) line++;
    else if (c === 91 || c === 123) {
      if (++depth > MAX_NESTING) return line;
    } else if ((c === 93 || c === 125) && depth > 0) depth--;
  }
  return 1;
}

/**
 * How many nodes the document's aliases copy in all (each alias: the size of what it
 * points at, its own aliases included). Memoized per node, so linear in the document even
 * when the expansion is exponential. Returns where it gives up, or undefined within budget.
 */
function aliasExpansion(
  doc: Document.Parsed,
  limit: number,
): { at: number | undefined; cycle: boolean } | undefined {
  const memo = new Map<unknown, number>();
  const active = new Set<unknown>();
  let cycle = false;
  const size = (n: unknown): number => {
    if (isAlias(n)) return size(n.resolve(doc));
    if (!isMap(n) && !isSeq(n)) return 1;
    const known = memo.get(n);
    if (known !== undefined) return known;
    if (active.has(n)) {
      cycle = true;
      return Number.POSITIVE_INFINITY;
    }
    active.add(n);
    let total = 1;
    for (const item of n.items as unknown[]) {
      if (isPair(item)) total += size(item.key) + size(item.value);
      else total += size(item);
      if (total > limit) break;
    }
    active.delete(n);
    memo.set(n, total);
    return total;
  };
  let total = 0;
  let stop: { at: number | undefined; cycle: boolean } | undefined;
  try {
    visit(doc, {
      Alias(_, a) {
        total += size(a.resolve(doc));
        if (total > limit || cycle) {
          stop = { at: a.range?.[0], cycle };
          return visit.BREAK;
        }
        return undefined;
      },
    });
  } catch (e) {
    // A chain of aliases to aliases deeper than the stack: refuse it like a bomb.
    if (!(e instanceof RangeError)) throw e;
    return { at: undefined, cycle: false };
  }
  return stop;
}

function refuse(file: string, line: number, field: string, message: string, expected?: string): never {
  throwIssues(
    [{ severity: 'error', file, line, field, message, ...(expected ? { expected } : {}) }],
    `invalid profile ${file}`,
  );
}

/** The yaml library ran out of stack: a file nested far deeper than the limit. */
function tooDeepToParse(file: string, text: string): never {
  refuse(
    file,
    deepLine(text),
    '(syntax)',
    `nested more than ${MAX_NESTING} levels deep (too deep to parse)`,
    `at most ${MAX_NESTING} levels of mappings and lists`,
  );
}

const isMergeKey = (k: unknown): boolean =>
  isScalar(k) && (typeof k.value === 'symbol' || (k.value === '<<' && k.source === '<<'));

/**
 * Parses and schema-checks one profile file; errors cite file:line and the field.
 * Linear in the size of the file: the yaml library's own duplicate-key check is quadratic
 * (it compares every key with every earlier one), so keys are checked here with one Set
 * per mapping, and the line of every node is recorded in one walk instead of being looked
 * up per error.
 */
export function parseProfileText(text: string, file: string): ParsedFile {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_PROFILE_BYTES)
    throw new TetherError(
      'TETHER_E_TOO_LARGE',
      `profile is ${bytes} bytes, more than the ${MAX_PROFILE_BYTES} a profile may have`,
      { file, line: 1, field: '(file)', expected: `at most ${MAX_PROFILE_BYTES} bytes (1 MiB)` },
    );
  const lc = new LineCounter();
  const lineOf = (offset: number | undefined): number => (offset === undefined ? 1 : lc.linePos(offset).line);
  let doc: Document.Parsed;
  try {
    doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: false, merge: true });
  } catch (e) {
    // The library recurses per nesting level: a stack overflow means a file nested far
    // deeper than the limit (flow brackets), so say that, at the line where it gets deep.
    if (e instanceof RangeError) tooDeepToParse(file, text);
    return refuse(file, 1, '(syntax)', `cannot be parsed: ${(e as Error).message}`, 'valid YAML');
  }
  const multi = doc.errors.find((e) => e.code === 'MULTIPLE_DOCS');
  if (multi)
    refuse(
      file,
      lineOf(multi.pos[0]),
      '(document)',
      'a second YAML document starts here ("---"): a profile file holds exactly one',
      'one document per file (split it, or use extends)',
    );
  if (doc.errors.some((e) => /call stack/i.test(e.message))) tooDeepToParse(file, text);
  if (doc.errors.length > 0) {
    throwIssues(
      doc.errors.map((e) => ({
        severity: 'error' as const,
        file,
        line: lineOf(e.pos[0]),
        field: '(syntax)',
        message: e.message.split('\n')[0]?.replace(/ at line \d+, column \d+:?$/, '') ?? e.message,
        expected: 'valid YAML',
      })),
      `cannot parse ${file}`,
    );
  }

  // One walk: nesting depth, duplicate keys, line of every key (by raw path, for schema
  // errors) and origins (by canonical path, for composition).
  // The raw-path line index only serves schema errors: built by a second walk when there are.
  const lineIndex = new Map<string, number>();
  let indexing = false;
  const origins = new Map<string, Origin>();
  const rawKey = (segs: ReadonlyArray<string | number>): string => segs.map((x) => `\u0000${x}`).join('');
  const walk = (n: unknown, path: string, raw: string, depth: number): void => {
    if (!isMap(n) && !isSeq(n)) return;
    const line = lineOf((n as Node).range?.[0]);
    if (depth > MAX_NESTING)
      refuse(
        file,
        line,
        path || '(root)',
        `nested more than ${MAX_NESTING} levels deep`,
        `at most ${MAX_NESTING} levels of mappings and lists`,
      );
    if (isMap(n)) {
      const seen = new Set<string>();
      const merged: Array<YAMLMap.Parsed | undefined> = [];
      for (const pair of n.items) {
        if (isMergeKey(pair.key)) {
          // `<<: *base` (or a list of them): the merged keys were written at the anchor.
          const v = pair.value;
          const srcs = isSeq(v) ? v.items : [v];
          for (const s of srcs) {
            const target = isAlias(s) ? s.resolve(doc) : s;
            if (isMap(target)) merged.push(target as YAMLMap.Parsed);
          }
          continue;
        }
        if (!isScalar(pair.key) || pair.key.value === null || typeof pair.key.value === 'object')
          refuse(
            file,
            lineOf((pair.key as Node | null)?.range?.[0] ?? n.range?.[0]),
            path || '(root)',
            'a key here is a list, a mapping or empty',
            'plain keys (field names)',
          );
        const k = String(pair.key.value);
        const keyLine = lineOf(pair.key.range?.[0]);
        if (seen.has(k))
          refuse(
            file,
            keyLine,
            childPath(path, k),
            `duplicate key "${k}" (also set earlier in the same mapping)`,
            'each key once per mapping',
          );
        seen.add(k);
        const p = childPath(path, k);
        const r = indexing ? `${raw}\u0000${k}` : '';
        if (indexing) lineIndex.set(r, keyLine);
        origins.set(p, { file, line: keyLine });
        if (isMap(pair.value) || isSeq(pair.value)) walk(pair.value, p, r, depth + 1);
      }
      // Keys from merge sources count where the mapping does not set them itself; the first
      // source wins, as in YAML's merge rule. Their lines are those of the anchor's keys.
      for (const m of merged) {
        if (!m) continue;
        for (const pair of m.items) {
          if (!isScalar(pair.key)) continue;
          const k = String(pair.key.value);
          if (seen.has(k)) continue;
          seen.add(k);
          const p = childPath(path, k);
          const keyLine = lineOf(pair.key.range?.[0]);
          if (indexing) lineIndex.set(`${raw}\u0000${k}`, keyLine);
          origins.set(p, { file, line: keyLine });
          // Not walked further: what aliases copy is counted once by aliasExpansion, and a
          // walk through them would give an alias bomb exponential time.
        }
      }
    } else if (isSeq(n)) {
      n.items.forEach((item, i) => {
        const name = KEYED[path] && isMap(item) ? item.get('name') : undefined;
        const p = typeof name === 'string' ? `${path}[${name}]` : `${path}[${i}]`;
        const itemLine = lineOf((item as Node | null)?.range?.[0]) || line;
        const r = indexing ? `${raw}\u0000${i}` : '';
        if (indexing) lineIndex.set(r, itemLine);
        origins.set(p, { file, line: itemLine });
        if (isMap(item) || isSeq(item)) walk(item, p, r, depth + 1);
      });
    }
  };
  walk(doc.contents, '', '', 1);

  // Aliases are budgeted by what they expand to, not by how often they are used: a file
  // may merge one anchor into hundreds of groups, but no alias may copy a large subtree
  // many times over (an alias bomb multiplies at every level).
  const bomb = aliasExpansion(doc, MAX_ALIAS_NODES);
  if (bomb)
    refuse(
      file,
      lineOf(bomb.at),
      '(aliases)',
      bomb.cycle
        ? 'an alias refers to the node that contains it'
        : `YAML aliases expand to more than ${MAX_ALIAS_NODES} nodes: an alias bomb?`,
      bomb.cycle
        ? 'aliases to finished anchors only'
        : `aliases that copy at most ${MAX_ALIAS_NODES} nodes in all`,
    );
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: -1 }) ?? {};
  } catch (e) {
    return refuse(
      file,
      1,
      '(syntax)',
      (e as Error).message,
      'valid YAML (anchors defined before their aliases)',
    );
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    refuse(file, 1, '(root)', 'a profile is a mapping', 'key: value pairs');
  }
  const keyLine = (segs: ReadonlyArray<string | number>): number | undefined => {
    for (let n = segs.length; n > 0; n--) {
      const l = lineIndex.get(rawKey(segs.slice(0, n)));
      if (l !== undefined) return l;
    }
    return undefined;
  };
  if (!validateSchema(value)) {
    indexing = true;
    walk(doc.contents, '', '', 1);
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
        expected = `"${miss}" set`;
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
      } else if (e.keyword === 'propertyNames') {
        const name = String((e.params as { propertyName?: string }).propertyName ?? '');
        fieldSegs = [...segs, name];
        message = 'has an invalid name';
        expected = 'a sysctl name like net.core.rmem_max';
      } else if (e.keyword === 'uniqueItems') {
        message = 'lists the same item twice';
        expected = 'each item once';
      } else if (e.keyword === 'minItems' || e.keyword === 'minProperties') {
        expected = 'at least one entry';
      }
      issues.push({
        severity: 'error',
        file,
        line: keyLine(fieldSegs) ?? 1,
        field: fieldSegs.reduce<string>((p, s) => childPath(p, s), '') || '(root)',
        message,
        ...(expected ? { expected } : {}),
      });
    }
    throwIssues(issues, `invalid profile ${file}`);
  }
  const spec = value as ProfileSpec & { $schema?: string };
  delete spec.$schema;
  // Duplicate policy names would merge silently: refuse them.
  const names = new Set<string>();
  (spec.sriov ?? []).forEach((p, i) => {
    if (names.has(p.name) && !indexing) {
      indexing = true;
      walk(doc.contents, '', '', 1);
    }
    if (names.has(p.name))
      refuse(
        file,
        keyLine(['sriov', i, 'name']) ?? 1,
        `sriov[${i}].name`,
        `duplicate SR-IOV policy name "${p.name}"`,
        'unique names',
      );
    names.add(p.name);
  });
  return { file, name: basename(file).replace(/\.ya?ml$/, ''), spec, origins };
}

function dedupe(errs: ErrorObject[]): ErrorObject[] {
  // anyOf produces one error per branch plus the anyOf itself; keep the most useful one.
  const out: ErrorObject[] = [];
  const anyOfPaths = new Set(errs.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  const seen = new Set<string>();
  for (const e of errs) {
    if (anyOfPaths.has(e.instancePath) && e.keyword !== 'anyOf') continue;
    const extra =
      e.keyword === 'additionalProperties'
        ? String((e.params as { additionalProperty?: string }).additionalProperty)
        : e.keyword === 'propertyNames'
          ? String((e.params as { propertyName?: string }).propertyName)
          : '';
    const k = `${e.instancePath}\u0000${e.keyword}\u0000${extra}`;
    if (seen.has(k)) continue;
    seen.add(k);
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
    // Checked before reading, so a huge file (or /dev/zero) is refused without being read.
    const st = statSync(file);
    if (st.isFile() && st.size > MAX_PROFILE_BYTES)
      throw new TetherError(
        'TETHER_E_TOO_LARGE',
        `profile is ${st.size} bytes, more than the ${MAX_PROFILE_BYTES} a profile may have`,
        { file, line: 1, field: '(file)', expected: `at most ${MAX_PROFILE_BYTES} bytes (1 MiB)` },
      );
    if (!st.isFile())
      throw new TetherError('TETHER_E_INVALID', 'is not a regular file', {
        file,
        field: '(file)',
        expected: 'a YAML file',
      });
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof TetherError) throw e;
    throw new TetherError('TETHER_E_NOT_FOUND', `cannot read profile ${file}: ${(e as Error).message}`, {
      file,
    });
  }
  return parseProfileText(text, file);
}

// ---- composition ----

/** Lists concatenated (without duplicates) instead of replaced when a profile extends another. */
const UNION_LISTS = new Set(['kernel.additionalArgs', 'kernel.moduleBlacklist']);

/**
 * Calls `f` with the canonical path of `v` and of everything under it, by walking the
 * value itself: linear in the size of `v`, where scanning every known path per merged key
 * made composition quadratic (a profile of 40k sysctls took a minute).
 */
function forEachPath(v: unknown, p: string, f: (path: string) => void): void {
  f(p);
  if (Array.isArray(v)) for (const [i, x] of v.entries()) forEachPath(x, elementPath(p, x, i), f);
  else if (isObj(v)) for (const [k, x] of Object.entries(v)) forEachPath(x, childPath(p, k), f);
}

function dropUnder(origins: Map<string, Origin>, p: string, old: unknown): void {
  forEachPath(old, p, (k) => origins.delete(k));
}

function copyUnder(from: Map<string, Origin>, to: Map<string, Origin>, p: string, v: unknown): void {
  forEachPath(v, p, (k) => {
    const o = from.get(k);
    if (o) to.set(k, o);
  });
}

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Sets an own property, also for "__proto__" (a label key may be anything). */
function setOwn(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === '__proto__')
    Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

function mergeInto(
  base: Record<string, unknown>,
  over: Record<string, unknown>,
  path: string,
  origins: Map<string, Origin>,
  overOrigins: Map<string, Origin>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(base)) setOwn(out, k, v);
  for (const [k, ov] of Object.entries(over)) {
    if (path === '' && k === 'extends') continue;
    const p = childPath(path, k);
    const bv = Object.hasOwn(out, k) ? out[k] : undefined;
    if (isObj(bv) && isObj(ov)) {
      const o = overOrigins.get(p);
      if (o) origins.set(p, o);
      setOwn(out, k, mergeInto(bv, ov, p, origins, overOrigins));
    } else if (KEYED[p] && Array.isArray(bv) && Array.isArray(ov)) {
      const key = KEYED[p] as string;
      const merged = [...bv] as Record<string, unknown>[];
      const at = new Map<unknown, number>();
      merged.forEach((b, i) => {
        if (!at.has(b[key])) at.set(b[key], i);
      });
      for (const item of ov as Record<string, unknown>[]) {
        const ip = `${p}[${String(item[key])}]`;
        const idx = at.get(item[key]);
        if (idx !== undefined) {
          const o = overOrigins.get(ip);
          if (o) origins.set(ip, o);
          merged[idx] = mergeInto(merged[idx] as Record<string, unknown>, item, ip, origins, overOrigins);
        } else {
          at.set(item[key], merged.length);
          merged.push(item);
          copyUnder(overOrigins, origins, ip, item);
        }
      }
      setOwn(out, k, merged);
    } else if (UNION_LISTS.has(p) && Array.isArray(bv) && Array.isArray(ov)) {
      const merged = [...bv];
      const have = new Set(merged);
      ov.forEach((x, i) => {
        if (have.has(x)) return;
        const o = overOrigins.get(`${p}[${i}]`);
        if (o) origins.set(`${p}[${merged.length}]`, o);
        have.add(x);
        merged.push(x);
      });
      setOwn(out, k, merged);
      const o = overOrigins.get(p);
      if (o && !origins.has(p)) origins.set(p, o);
    } else {
      if (bv !== undefined) dropUnder(origins, p, bv);
      if (typeof ov === 'object' && ov !== null) {
        copyUnder(overOrigins, origins, p, ov);
        setOwn(out, k, structuredClone(ov));
      } else {
        const o = overOrigins.get(p);
        if (o) origins.set(p, o);
        setOwn(out, k, ov);
      }
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
  const inDirs = (name: string, dirs: string[]): string | undefined => {
    const exts = /\.ya?ml$/.test(name) ? [''] : ['.yaml', '.yml'];
    for (const d of dirs)
      for (const ext of exts) {
        const f = join(d, `${name}${ext}`);
        if (existsSync(f)) return resolve(f);
      }
    return undefined;
  };
  // A path given on the command line is relative to the working directory; a name in
  // `extends` is relative to the extending file's own directory, then the search path.
  const findTop = (name: string): string | undefined =>
    (/[/\\]|\.ya?ml$/.test(name) && existsSync(name) ? resolve(name) : undefined) ?? inDirs(name, search);
  const top = findTop(nameOrFile);
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
  type Resolved = { spec: Record<string, unknown>; origins: Map<string, Origin> };
  // Each file is parsed and composed once, however many profiles extend it (a diamond of
  // extends would otherwise cost 2^depth).
  const done = new Map<string, Resolved>();
  const resolveFile = (file: string, stack: string[]): Resolved => {
    const cached = done.get(file);
    if (cached) return cached;
    const parsed = parseProfileFile(file);
    let spec: Record<string, unknown> = {};
    let origins = new Map<string, Origin>();
    (parsed.spec.extends ?? []).forEach((name, i) => {
      const line = parsed.origins.get(`extends[${i}]`)?.line ?? parsed.origins.get('extends')?.line;
      const f = inDirs(name, [dirname(file), ...search]);
      if (!f)
        refuse(
          file,
          line ?? 1,
          `extends[${i}]`,
          `profile "${name}" not found`,
          `${/\.ya?ml$/.test(name) ? name : `${name}.yaml`} next to this file (${dirname(file)}) or in ${search.join(', ')}`,
        );
      if (stack.includes(f))
        refuse(
          file,
          line ?? 1,
          `extends[${i}]`,
          `"${name}" extends itself (${[...stack, f].map((x) => basename(x)).join(' → ')})`,
          'no cycles',
        );
      if (!done.has(f) && done.size + stack.length >= MAX_COMPOSED_FILES)
        refuse(
          file,
          line ?? 1,
          `extends[${i}]`,
          `the composition reaches more than ${MAX_COMPOSED_FILES} files`,
          `at most ${MAX_COMPOSED_FILES} files in one composition (extends, transitively)`,
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
    const r = { spec, origins: own };
    done.set(file, r);
    return r;
  };
  const r = resolveFile(top, [top]);
  const spec = { ...r.spec } as ProfileSpec;
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
