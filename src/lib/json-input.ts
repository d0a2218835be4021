import { TetherError } from './errors.js';

// JSON input without the yaml package: the control API client and `tether status` read
// JSON only, and loading yaml would cost them most of their start-up time (src/cli/main.ts).
// src/lib/input.ts re-exports all of this.

/**
 * Bounds on structured input read from files and peers. JSON.parse itself is iterative,
 * but everything after it (JSON.stringify, structuredClone, Ajv, the YAML composer, our
 * own walks) recurses, and a 10,000-level document overflowed the stack there. Real
 * resources, profiles and configs nest a handful of levels.
 */
export const INPUT_LIMITS = {
  /** Deepest nesting of arrays/objects (mappings/sequences) accepted. */
  maxDepth: 64,
  /** Largest input file read. */
  maxFileBytes: 16 * 1024 * 1024,
} as const;

export interface InputSource {
  /** File name or peer description, named in every error. */
  source: string;
  /** 1-based line the value starts at in the source, when known. */
  line?: number;
  maxDepth?: number;
}

export function tooDeep(source: string, maxDepth: number, line?: number): TetherError {
  return new TetherError('TETHER_E_PARSE', `nesting deeper than ${maxDepth} levels`, {
    file: source,
    ...(line !== undefined ? { line } : {}),
    expected: `at most ${maxDepth} levels of nested objects/arrays`,
  });
}

/**
 * Throws TETHER_E_PARSE (naming the source and line) when JSON text nests deeper than
 * allowed. A linear scan over the text, before anything is built from it.
 */
export function checkJsonDepth(text: string, opts: InputSource): void {
  const max = opts.maxDepth ?? INPUT_LIMITS.maxDepth;
  let depth = 0;
  let line = 1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 10) line++;
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
      continue;
    }
    if (c === 34) inString = true;
    else if (c === 91 /* [ */ || c === 123 /* { */) {
      if (++depth > max) throw tooDeep(opts.source, max, line);
    } else if (c === 93 /* ] */ || c === 125 /* } */) depth--;
  }
}

/** Parses JSON from a file or peer: TETHER_E_PARSE naming the source on bad syntax or
 *  nesting deeper than allowed, never a RangeError. */
export function parseJson(text: string | Buffer, opts: InputSource): unknown {
  const s = typeof text === 'string' ? text : text.toString('utf8');
  checkJsonDepth(s, opts);
  try {
    return JSON.parse(s) as unknown;
  } catch (e) {
    throw new TetherError(
      'TETHER_E_PARSE',
      `not JSON: ${(e as Error).message}`,
      { file: opts.source },
      { cause: e },
    );
  }
}
