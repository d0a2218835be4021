import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import formatsModule from 'ajv-formats';
import { isMap, isScalar, isSeq, LineCounter, parseAllDocuments, type Node as YamlNode } from 'yaml';
import { TetherError } from '../lib/errors.js';
import { checkValueDepth, checkYamlDepth } from '../lib/input.js';
import {
  type Issue,
  type JsonSchema,
  type KindDefinition,
  kindDefinition,
  knownKinds,
  LABEL_MAP_SCHEMA,
  parseCidr,
} from './kinds.js';
// Registers Gateway and FloatingIP: every path that validates a resource has them.
import './gateway-kinds.js';
import { API_VERSION, type TetherObject } from './resource.js';

export { type Issue, knownKinds, registerKind } from './kinds.js';

/**
 * Validation of resources: the envelope and each kind's spec through Ajv, then the kind's
 * semantic checks. Errors are TETHER_E_INVALID with the file, the line, a readable field
 * path (`spec.subnets[0]`) and what was expected, for the first problem; every problem is in
 * `details.errors`. Pure: no I/O.
 */

/** Where an object came from, so errors can name the file and line. */
export interface Source {
  file?: string;
  /** 0-based position of the document in a multi-document file. */
  index?: number;
  /** Line of a field path like `spec.subnets[0]` (nearest existing ancestor when absent). */
  lineOf?: (path: string) => number | undefined;
}

/** One problem, as listed in `details.errors`. */
export interface ValidationIssue extends Issue {
  line?: number;
}

// ---------------------------------------------------------------------------------------
// Ajv

// ajv-formats is CommonJS with `exports.default`; NodeNext types see the namespace.
const addFormats = ((formatsModule as unknown as { default?: unknown }).default ??
  formatsModule) as unknown as (ajv: Ajv, formats: string[]) => Ajv;

/** Ajv for the envelope (strict) and for kinds' spec/status schemas. The latter is lenient
 *  about unknown keywords because modules may register schemas written for editors too
 *  (`$schema`, `markdownDescription`, …); the built-in ones are checked under strict mode by
 *  the unit tests. Each schema is compiled as its own root, so its internal `$ref`s work. */
export function newAjv(strict: boolean): Ajv {
  const a = new Ajv({ allErrors: true, strict, verbose: true, useDefaults: true });
  addFormats(a, ['date-time', 'ipv4']);
  a.addFormat('ipv4-cidr', { type: 'string', validate: (s: string) => parseCidr(s) !== undefined });
  return a;
}
const strictAjv = newAjv(true);
const kindAjv = newAjv(false);

const DNS_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
const DNS_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';

function envelopeSchema(def: KindDefinition): JsonSchema {
  const label = def.name === 'dns-label';
  return {
    type: 'object',
    additionalProperties: false,
    required: ['apiVersion', 'kind', 'metadata', 'spec'],
    properties: {
      apiVersion: { const: API_VERSION },
      kind: { const: def.kind },
      metadata: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        properties: {
          name: {
            type: 'string',
            minLength: 1,
            maxLength: label ? 63 : 253,
            pattern: label ? DNS_LABEL : DNS_SUBDOMAIN,
            description: label
              ? 'a DNS-1123 label: at most 63 lowercase letters, digits or "-", starting and ending with a letter or digit'
              : 'a DNS-1123 subdomain: at most 253 characters, dot-separated labels of lowercase letters, digits or "-"',
          },
          labels: LABEL_MAP_SCHEMA,
          annotations: {
            type: 'object',
            additionalProperties: { type: 'string' },
            description: 'a map of string annotations',
          },
          revision: { type: 'integer', minimum: 0 },
          createRevision: { type: 'integer', minimum: 0 },
          creationTimestamp: { type: 'string', format: 'date-time' },
        },
      },
      // Checked against the kind's own schemas, compiled separately (see validatorFor).
      spec: { type: 'object', description: 'a mapping' },
      status: { type: 'object', description: 'a mapping' },
    },
  };
}

interface Validators {
  envelope: ValidateFunction;
  spec: ValidateFunction;
  status: ValidateFunction;
}

const compiled = new WeakMap<KindDefinition, Validators>();
function validatorsFor(def: KindDefinition): Validators {
  let v = compiled.get(def);
  if (!v) {
    v = {
      envelope: strictAjv.compile(envelopeSchema(def)),
      spec: kindAjv.compile(withoutMetaSchema(def.specSchema)),
      status: kindAjv.compile(withoutMetaSchema(def.statusSchema)),
    };
    compiled.set(def, v);
  }
  return v;
}

/** Drops `$schema` (Ajv here speaks draft-07 and the dialect adds nothing to validation). */
function withoutMetaSchema(schema: JsonSchema): JsonSchema {
  if (!('$schema' in schema)) return schema;
  const { $schema: _, ...rest } = schema;
  return rest;
}

/** Runs the envelope and the kind's spec/status schemas; Ajv errors with paths from the root. */
function schemaErrors(v: Validators, o: Record<string, unknown>): ErrorObject[] {
  const errors: ErrorObject[] = [];
  if (!v.envelope(o)) errors.push(...(v.envelope.errors ?? []));
  const part = (name: 'spec' | 'status', fn: ValidateFunction) => {
    const value = o[name];
    if (value === undefined || value === null || typeof value !== 'object' || Array.isArray(value)) return;
    if (!fn(value))
      errors.push(...(fn.errors ?? []).map((e) => ({ ...e, instancePath: `/${name}${e.instancePath}` })));
  };
  part('spec', v.spec);
  part('status', v.status);
  return errors;
}

// ---------------------------------------------------------------------------------------
// validateObject

/**
 * Validates one resource and returns it as a TetherObject: a deep copy of the input with
 * schema defaults filled in (e.g. Site `approval: auto`, `underlayMtu: 1500`) and `spec: {}`
 * when spec was omitted. The input is not modified. Throws TETHER_E_INVALID.
 */
export function validateObject(obj: unknown, source: Source = {}): TetherObject {
  const fail = (issues: Issue[], extra: Record<string, unknown> = {}): never => {
    throw invalid(issues, source, extra);
  };
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    return fail([
      {
        field: '',
        message: `a resource must be a mapping, not ${describeValue(obj)}`,
        expected: 'a mapping with apiVersion, kind, metadata and spec',
      },
    ]);
  }
  // Everything below (structuredClone, Ajv, our walks) recurses over the value.
  checkValueDepth(obj, { source: source.file ?? 'input' });
  let o: Record<string, unknown>;
  try {
    o = structuredClone(obj) as Record<string, unknown>;
  } catch (e) {
    return fail([
      {
        field: '',
        message: `not plain data: ${e instanceof Error ? e.message : String(e)}`,
        expected: 'a mapping of plain values (as parsed from YAML or JSON)',
      },
    ]);
  }
  const kinds = knownKinds();
  const kind = o.kind;
  if (typeof kind !== 'string') {
    return fail([
      {
        field: 'kind',
        message:
          kind === undefined
            ? 'missing required field "kind"'
            : `kind must be a string, not ${describeValue(kind)}`,
        expected: `one of: ${kinds.join(', ')}`,
      },
    ]);
  }
  const def = kindDefinition(kind);
  if (!def) {
    const guess = closest(kind, kinds);
    return fail([
      {
        field: 'kind',
        message: `unknown kind "${kind}"${guess ? ` (did you mean "${guess}"?)` : ''}`,
        expected: `one of: ${kinds.join(', ')}`,
      },
    ]);
  }
  const meta = o.metadata as { name?: unknown } | undefined;
  const extra = {
    kind,
    ...(meta && typeof meta === 'object' && typeof meta.name === 'string' ? { name: meta.name } : {}),
  };
  if (!('spec' in o)) o.spec = {};
  const errors = schemaErrors(validatorsFor(def), o);
  if (errors.length > 0) return fail(ajvIssues(errors, o), extra);
  const typed = o as unknown as TetherObject;
  const issues = def.check?.(typed) ?? [];
  if (issues.length > 0) fail(issues, extra);
  return typed;
}

function invalid(issues: Issue[], source: Source, extra: Record<string, unknown>): TetherError {
  const withLines: ValidationIssue[] = issues.map((i) => {
    const line = source.lineOf?.(i.field);
    return line === undefined ? { ...i } : { ...i, line };
  });
  // First problem in document order (Ajv's order among problems on the same line).
  const ordered = withLines
    .map((i, k) => ({ i, k }))
    .sort((a, b) => (a.i.line ?? Infinity) - (b.i.line ?? Infinity) || a.k - b.k)
    .map((x) => x.i);
  const first = ordered[0]!;
  const details: Record<string, unknown> = {
    ...(source.file !== undefined ? { file: source.file } : {}),
    ...(first.line !== undefined ? { line: first.line } : {}),
    ...(first.field ? { field: first.field } : {}),
    expected: first.expected,
    ...(source.index !== undefined ? { document: source.index } : {}),
    ...extra,
    errors: ordered,
  };
  return new TetherError('TETHER_E_INVALID', first.message, details);
}

function ajvIssues(errors: ErrorObject[], data: unknown): Issue[] {
  const out: Issue[] = [];
  const seen = new Set<string>();
  // A missing field explained by a misspelt one next to it (`matchLabel` for `matchLabels`)
  // is reported once, as the unknown field with its suggestion.
  const explained = new Set<string>();
  for (const e of errors) {
    if (e.keyword !== 'additionalProperties') continue;
    const props = Object.keys(((e.parentSchema ?? {}) as JsonSchema).properties ?? {});
    const guess = closest(String((e.params as Record<string, unknown>).additionalProperty), props);
    if (guess) explained.add(`${e.instancePath}/${guess}`);
  }
  for (const e of errors) {
    // propertyNames reports the inner error and then its own; keep the latter.
    if ((e as { propertyName?: string }).propertyName !== undefined) continue;
    if (e.keyword === 'required') {
      const missing = String((e.params as Record<string, unknown>).missingProperty);
      if (explained.has(`${e.instancePath}/${missing}`)) continue;
    }
    const issue = ajvIssue(e, data);
    const key = `${issue.field}\0${issue.message}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push(issue);
    }
  }
  return out;
}

function ajvIssue(e: ErrorObject, root: unknown): Issue {
  const segs = pointerSegments(e.instancePath, root);
  const at = formatPath(segs);
  const parent = (e.parentSchema ?? {}) as JsonSchema;
  const params = e.params as Record<string, unknown>;
  const value = e.data;
  switch (e.keyword) {
    case 'required': {
      const prop = String(params.missingProperty);
      const props = (parent.properties ?? {}) as Record<string, JsonSchema>;
      return {
        field: formatPath([...segs, prop]),
        message: `missing required field "${prop}"`,
        expected: describeSchema(props[prop]) ?? 'a value',
      };
    }
    case 'additionalProperties': {
      const prop = String(params.additionalProperty);
      const known = Object.keys((parent.properties ?? {}) as object);
      const guess = closest(prop, known);
      return {
        field: formatPath([...segs, prop]),
        message: `unknown field "${prop}"${guess ? ` (did you mean "${guess}"?)` : ''}`,
        expected: known.length > 0 ? `only the fields ${known.join(', ')}` : 'no fields',
      };
    }
    case 'propertyNames': {
      const prop = String(params.propertyName);
      return {
        field: formatPath([...segs, prop]),
        message: `invalid key "${prop}"`,
        expected: describeSchema(e.schema as JsonSchema) ?? 'a valid key',
      };
    }
    case 'enum':
      return {
        field: at,
        message: `${describeValue(value)} is not allowed`,
        expected: `one of: ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`,
      };
    case 'const':
      return {
        field: at,
        message: `${describeValue(value)} is not allowed`,
        expected: JSON.stringify(params.allowedValue),
      };
    case 'type':
      return {
        field: at,
        message: `must be ${article(String(params.type))}, not ${describeValue(value)}`,
        expected: describeSchema(parent) ?? article(String(params.type)),
      };
    case 'format':
      return {
        field: at,
        message: `${describeValue(value)} is not ${article(formatName(String(params.format)))}`,
        expected: describeSchema(parent) ?? article(formatName(String(params.format))),
      };
    case 'pattern':
      return {
        field: at,
        message: `${describeValue(value)} is not valid`,
        expected: describeSchema(parent) ?? `a string matching ${String(params.pattern)}`,
      };
    case 'uniqueItems': {
      const [a, b] = [Number(params.i), Number(params.j)].sort((x, y) => x - y);
      return {
        field: `${at}[${b}]`,
        message: `duplicate of ${at}[${a}]`,
        expected: describeSchema(parent) ?? 'distinct items',
      };
    }
    default:
      return {
        field: at,
        message: `${describeValue(value)}: ${e.message ?? e.keyword}`,
        expected: describeSchema(parent) ?? e.message ?? e.keyword,
      };
  }
}

function describeSchema(s: JsonSchema | undefined): string | undefined {
  if (!s) return undefined;
  if (typeof s.description === 'string') return s.description;
  if (Array.isArray(s.enum)) return `one of: ${s.enum.map((v) => JSON.stringify(v)).join(', ')}`;
  if ('const' in s) return JSON.stringify(s.const);
  if (typeof s.format === 'string') return article(formatName(s.format));
  if (typeof s.type === 'string') {
    const bounds: string[] = [];
    if (typeof s.minimum === 'number') bounds.push(`>= ${s.minimum}`);
    if (typeof s.maximum === 'number') bounds.push(`<= ${s.maximum}`);
    if (typeof s.maxLength === 'number') bounds.push(`at most ${s.maxLength} characters`);
    return `${article(s.type)}${bounds.length ? ` ${bounds.join(', ')}` : ''}`;
  }
  return undefined;
}

function formatName(f: string): string {
  return (
    (
      { 'date-time': 'RFC 3339 date-time', ipv4: 'IPv4 address', 'ipv4-cidr': 'IPv4 CIDR' } as Record<
        string,
        string
      >
    )[f] ?? `${f} string`
  );
}

function article(t: string): string {
  const word = t === 'object' ? 'mapping' : t === 'array' ? 'list' : t;
  return `${/^[aeiouAEIOU]/.test(word) && !/^(RFC|IPv4)/.test(word) ? 'an' : 'a'} ${word}`.replace(
    /^a (RFC|IPv4)/,
    'an $1',
  );
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v);
  return String(v);
}

/** Closest candidate by edit distance (≤ 2, or ≤ 1 for short words), case-insensitive. */
function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = word.length <= 4 ? 1 : 2;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d <= bestD && c !== word) {
      best = c;
      bestD = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

// ---------------------------------------------------------------------------------------
// Paths: `spec.subnets[0]`, `metadata.labels["app.kubernetes.io/name"]`

export type PathSegment = string | number;

export function formatPath(segs: readonly PathSegment[]): string {
  let out = '';
  for (const s of segs) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(s)) out += out ? `.${s}` : s;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out;
}

export function parsePath(path: string): PathSegment[] {
  const segs: PathSegment[] = [];
  const re = /\.?([A-Za-z_$][\w$-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/gy;
  let m: RegExpExecArray | null = re.exec(path);
  while (m) {
    if (m[1] !== undefined) segs.push(m[1]);
    else if (m[2] !== undefined) segs.push(Number(m[2]));
    else segs.push(JSON.parse(m[3]!) as string);
    if (re.lastIndex === path.length) break;
    m = re.exec(path);
  }
  return segs;
}

/** Ajv instancePath (`/spec/subnets/0`) → segments, numbers where the data is a list. */
function pointerSegments(pointer: string, root: unknown): PathSegment[] {
  if (pointer === '') return [];
  const segs: PathSegment[] = [];
  let cur: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur)) {
      segs.push(Number(key));
      cur = cur[Number(key)];
    } else {
      segs.push(key);
      cur = cur && typeof cur === 'object' ? (cur as Record<string, unknown>)[key] : undefined;
    }
  }
  return segs;
}

// ---------------------------------------------------------------------------------------
// YAML / JSON documents

export interface ParsedDocument {
  /** The document as plain data (not yet validated). */
  object: unknown;
  /** 1-based line where the document's content starts. */
  line: number;
  /** 1-based line of a field path like `spec.subnets[0]`; for a path that does not exist,
   *  the line of its nearest existing ancestor. */
  lineOf(path: string): number | undefined;
}

/**
 * Splits a file of one or more YAML documents (JSON is YAML too) into plain objects, each
 * with a way to find the line of any field. Empty documents are skipped. Throws
 * TETHER_E_PARSE naming the file and line on a syntax error or duplicate key.
 */
export function parseResourceDocuments(text: string, file: string): ParsedDocument[] {
  // Before the composer, which recurses: a 10,000-level document overflowed the stack.
  checkYamlDepth(text, { source: file });
  const lc = new LineCounter();
  // The library's own duplicate-key check compares every key with every earlier one (an
  // 80,000-key mapping took 40 s); checkUniqueKeys does it with one Set per mapping.
  const docs = parseAllDocuments(text, { lineCounter: lc, uniqueKeys: false, prettyErrors: true });
  const out: ParsedDocument[] = [];
  for (const doc of docs) {
    const err = doc.errors[0];
    if (err) {
      const line = lc.linePos(err.pos[0]).line;
      const msg = err.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
      throw new TetherError('TETHER_E_PARSE', msg, { file, line, yamlCode: err.code });
    }
    const contents = doc.contents;
    if (contents === null) continue;
    checkUniqueKeys(lc, contents, file);
    let object: unknown;
    try {
      object = doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      throw new TetherError(
        'TETHER_E_PARSE',
        e instanceof Error ? e.message : String(e),
        { file, line: lineAt(lc, contents) ?? 1 },
        { cause: e },
      );
    }
    // A document with only comments (or an explicit null) is no resource: skip it.
    if (object === null || object === undefined) continue;
    const line = lineAt(lc, contents) ?? 1;
    checkValueDepth(object, { source: file, line });
    out.push({ object, line, lineOf: (path: string) => lineOfPath(lc, contents, parsePath(path)) ?? line });
  }
  return out;
}

/** Duplicate keys in any mapping of the document: TETHER_E_PARSE at the second one. Linear. */
function checkUniqueKeys(lc: LineCounter, root: YamlNode, file: string): void {
  // Depth is bounded by checkYamlDepth already; an explicit stack all the same.
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const node = stack.pop();
    if (isMap(node)) {
      const seen = new Set<string>();
      for (const pair of node.items) {
        const key = String(isScalar(pair.key) ? pair.key.value : pair.key);
        if (seen.has(key)) {
          throw new TetherError('TETHER_E_PARSE', `Map keys must be unique: "${key}" appears twice`, {
            file,
            line: lineAt(lc, pair.key as YamlNode) ?? lineAt(lc, node) ?? 1,
            yamlCode: 'DUPLICATE_KEY',
            expected: 'each key once per mapping',
          });
        }
        seen.add(key);
        stack.push(pair.value);
      }
    } else if (isSeq(node)) {
      for (const item of node.items) stack.push(item);
    }
  }
}

function lineAt(lc: LineCounter, node: YamlNode | null | undefined): number | undefined {
  const start = node?.range?.[0];
  return start === undefined ? undefined : lc.linePos(start).line;
}

function lineOfPath(lc: LineCounter, root: YamlNode, segs: readonly PathSegment[]): number | undefined {
  let node: unknown = root;
  let line = lineAt(lc, root);
  for (const seg of segs) {
    if (isMap(node)) {
      const pair = node.items.find((p) => String(isScalar(p.key) ? p.key.value : p.key) === String(seg));
      if (!pair) break;
      line = lineAt(lc, pair.key as YamlNode) ?? line;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (!item) break;
      line = lineAt(lc, item as YamlNode) ?? line;
      node = item;
    } else {
      break;
    }
  }
  return line;
}

/**
 * Parses and validates every document of a file. Throws at the first invalid document
 * (TETHER_E_PARSE or TETHER_E_INVALID, with file and line), and TETHER_E_INVALID when the
 * same kind/name appears twice, so nothing from a bad file gets applied.
 */
export function validateDocuments(text: string, file: string): TetherObject[] {
  const seen = new Map<string, number>();
  return parseResourceDocuments(text, file).map((d, index) => {
    const obj = validateObject(d.object, { file, index, lineOf: d.lineOf });
    const key = `${obj.kind}/${obj.metadata.name}`;
    const prev = seen.get(key);
    if (prev !== undefined) {
      throw invalid(
        [
          {
            field: 'metadata.name',
            message: `${key} is already defined in this file at line ${prev}`,
            expected: 'each object once per file',
          },
        ],
        { file, index, lineOf: d.lineOf },
        { kind: obj.kind, name: obj.metadata.name },
      );
    }
    seen.set(key, d.lineOf('metadata.name') ?? d.line);
    return obj;
  });
}
