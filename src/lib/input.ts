import { readFileSync, statSync } from 'node:fs';
import { Lexer, LineCounter, Parser, parse as parseYamlText } from 'yaml';
import { TetherError } from './errors.js';
import { INPUT_LIMITS, type InputSource, tooDeep } from './json-input.js';

export {
  checkJsonDepth,
  INPUT_LIMITS,
  type InputSource,
  parseJson,
} from './json-input.js';

/**
 * Throws TETHER_E_PARSE (naming the source and line) when YAML text nests deeper than
 * allowed, in block or flow style. Runs the yaml package's own lexer and CST parser, which
 * are iterative (its composer is not), and stops at the first token too deep.
 */
export function checkYamlDepth(text: string, opts: InputSource): void {
  const max = opts.maxDepth ?? INPUT_LIMITS.maxDepth;
  const lc = new LineCounter();
  const parser = new Parser(lc.addNewLine);
  lc.addNewLine(0);
  let offset = 0;
  // The parser's stack holds the document, each open block collection (and flow mapping),
  // and at most one scalar or property token on top; nested flow sequences share one
  // entry, so flow brackets are counted separately. Together they bound the nesting the
  // composer will recurse through (checkValueDepth then applies the exact limit).
  const limit = max + 3;
  let flow = 0;
  for (const lexeme of new Lexer().lex(text)) {
    if (lexeme === '[' || lexeme === '{') flow++;
    else if (lexeme === ']' || lexeme === '}') flow--;
    for (const _ of parser.next(lexeme)) {
      // Completed top-level tokens: not needed, only the nesting while parsing.
    }
    offset += lexeme.length;
    if (parser.stack.length > limit || flow > max) throw tooDeep(opts.source, max, lc.linePos(offset).line);
  }
  for (const _ of parser.end()) {
    // drain
  }
}

/** Parses one YAML (or JSON) document from a file or peer with the depth bound:
 *  TETHER_E_PARSE naming the source, never a RangeError. */
export function parseYaml(text: string, opts: InputSource): unknown {
  checkYamlDepth(text, opts);
  let value: unknown;
  try {
    value = parseYamlText(text, { maxAliasCount: 100, prettyErrors: false }) as unknown;
  } catch (e) {
    const msg = e instanceof Error ? (e.message.split('\n')[0] ?? e.message) : String(e);
    const pos = (e as { linePos?: Array<{ line: number }> }).linePos?.[0]?.line;
    throw new TetherError(
      'TETHER_E_PARSE',
      msg,
      { file: opts.source, ...(pos !== undefined ? { line: pos } : {}) },
      { cause: e },
    );
  }
  checkValueDepth(value, opts);
  return value;
}

/**
 * Throws TETHER_E_PARSE when a value (already parsed, e.g. handed over by a library) nests
 * deeper than allowed. Iterative, so it is safe on any depth.
 */
export function checkValueDepth(value: unknown, opts: InputSource): void {
  const max = opts.maxDepth ?? INPUT_LIMITS.maxDepth;
  const stack: Array<[unknown, number]> = [[value, 0]];
  // A value shared by YAML aliases can be reached at several depths: walk it again only
  // when reached deeper than before, so the bound is exact and each value is walked at most
  // `max` times.
  const deepest = new Map<object, number>();
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (d + 1 > max) throw tooDeep(opts.source, max, opts.line);
    if ((deepest.get(v) ?? -1) >= d) continue;
    deepest.set(v, d);
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (child !== null && typeof child === 'object') stack.push([child, d + 1]);
    }
  }
}

/**
 * Reads a text file of structured input, refusing one larger than `maxBytes` before
 * reading it (TETHER_E_TOO_LARGE naming the file). `path` 0 reads stdin.
 */
export function readInputFile(path: string | 0, opts: { name?: string; maxBytes?: number } = {}): string {
  const max = opts.maxBytes ?? INPUT_LIMITS.maxFileBytes;
  const name = opts.name ?? String(path);
  if (path !== 0) {
    const st = statSync(path);
    if (st.isFile() && st.size > max) throw tooLarge(name, st.size, max);
  }
  const buf = readFileSync(path);
  if (buf.length > max) throw tooLarge(name, buf.length, max);
  return buf.toString('utf8');
}

function tooLarge(name: string, size: number, max: number): TetherError {
  return new TetherError('TETHER_E_TOO_LARGE', `input is ${size} bytes`, {
    file: name,
    expected: `at most ${max} bytes`,
  });
}
