// Fuzz-style: every parser of file/peer input, over nesting depths from legal to absurd, in
// every nesting style, and over sizes. Each must accept what is within the bounds and answer
// anything beyond them with a TetherError naming the source, never a RangeError.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseResourceDocuments, validateDocuments, validateObject } from '../../../src/api/validate.js';
import { isTetherError } from '../../../src/lib/errors.js';
import {
  checkJsonDepth,
  checkValueDepth,
  checkYamlDepth,
  INPUT_LIMITS,
  parseJson,
  parseYaml,
  readInputFile,
} from '../../../src/lib/input.js';
import { parseProfileText } from '../../../src/profiles/load.js';

const MAX = INPUT_LIMITS.maxDepth;
const DEPTHS = [1, 2, 10, MAX - 1, MAX, MAX + 1, MAX + 2, 200, 1000, 10_000, 100_000];

/** A value nested `d` levels deep, alternating arrays and objects by a seeded pattern. */
function deepValue(d: number, seed: number): unknown {
  let v: unknown = 'leaf';
  for (let i = 0; i < d; i++) v = (i * 7 + seed) % 3 === 0 ? { k: v } : [v];
  return v;
}

/** JSON text nested `d` deep without building the value (it may be too deep to stringify). */
function deepJson(d: number, style: 'array' | 'object' | 'mixed'): string {
  let open = '';
  let close = '';
  for (let i = 0; i < d; i++) {
    const obj = style === 'object' || (style === 'mixed' && i % 2 === 1);
    open += obj ? '{"k":' : '[';
    close = (obj ? '}' : ']') + close;
  }
  return `${open}"x"${close}`;
}

/** YAML nested `d` deep in one of the styles a user (or attacker) can write. */
function deepYaml(
  d: number,
  style: 'block-map' | 'block-seq' | 'compact-seq' | 'flow-seq' | 'flow-map' | 'mixed',
): string {
  switch (style) {
    case 'block-map': {
      const parts: string[] = [];
      for (let i = 0; i < d; i++) parts.push(`${' '.repeat(i)}k:`);
      return `${parts.join('\n')} x\n`;
    }
    case 'block-seq': {
      const parts: string[] = [];
      for (let i = 0; i < d; i++) parts.push(`${' '.repeat(2 * i)}-`);
      return `${parts.join('\n')} x\n`;
    }
    case 'compact-seq':
      return `${'- '.repeat(d)}x\n`;
    case 'flow-seq':
      return `${'['.repeat(d)}x${']'.repeat(d)}\n`;
    case 'flow-map':
      return `${'{k: '.repeat(d)}x${'}'.repeat(d)}\n`;
    case 'mixed': {
      // Block mappings, then flow sequences inside: both kinds of nesting add up.
      const half = Math.floor(d / 2);
      const parts: string[] = [];
      for (let i = 0; i < half; i++) parts.push(`${' '.repeat(i)}k:`);
      return `${parts.join('\n')} ${'['.repeat(d - half)}x${']'.repeat(d - half)}\n`;
    }
  }
}

/** Runs `fn`; returns 'ok', or the TetherError code; fails the test on anything else. */
function outcome(fn: () => unknown, source: string): string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    if (!isTetherError(e)) throw new Error(`not a TetherError: ${String(e)}`);
    expect(e.details.file, e.message).toContain(source);
    return e.code;
  }
}

describe('JSON input depth', () => {
  for (const style of ['array', 'object', 'mixed'] as const) {
    it(`${style} nesting: accepted up to ${MAX}, TETHER_E_PARSE naming the source beyond`, () => {
      for (const d of DEPTHS) {
        const text = deepJson(d, style);
        const got = outcome(() => parseJson(text, { source: 'peer.json' }), 'peer.json');
        expect(got, `depth ${d}`).toBe(d <= MAX ? 'ok' : 'TETHER_E_PARSE');
      }
    });
  }

  it('does not count brackets inside strings, escaped quotes included', () => {
    const s = JSON.stringify({ a: '['.repeat(500), b: 'say \\"[{[{"', c: '\\' });
    expect(outcome(() => parseJson(s, { source: 's' }), 's')).toBe('ok');
    expect(() => checkJsonDepth(`["\\\\", ${'['.repeat(MAX)}${']'.repeat(MAX)}]`, { source: 's' })).toThrow(
      /nesting deeper/,
    );
  });

  it('names the line where the nesting went too deep', () => {
    const text = `{\n"a":\n${deepJson(MAX + 5, 'array')}\n}`;
    expect(() => parseJson(text, { source: 'f.json' })).toThrow(
      expect.objectContaining({ code: 'TETHER_E_PARSE', details: expect.objectContaining({ line: 3 }) }),
    );
  });

  it('bad syntax is TETHER_E_PARSE with the source', () => {
    for (const bad of ['{', '[1,]', '{"a" 1}', '', 'nul']) {
      expect(outcome(() => parseJson(bad, { source: 'x.json' }), 'x.json')).toBe('TETHER_E_PARSE');
    }
  });
});

describe('YAML input depth', () => {
  for (const style of ['block-map', 'block-seq', 'compact-seq', 'flow-seq', 'flow-map', 'mixed'] as const) {
    it(`${style}: parseYaml accepts up to ${MAX}, TETHER_E_PARSE beyond, at every depth`, () => {
      for (const d of DEPTHS) {
        // Block styles cost d² characters; stop where the file would exceed the size bound.
        if ((style.startsWith('block') || style === 'mixed') && d * d > INPUT_LIMITS.maxFileBytes) continue;
        const text = deepYaml(d, style);
        const got = outcome(() => parseYaml(text, { source: 'in.yaml' }), 'in.yaml');
        expect(got, `depth ${d}`).toBe(d <= MAX ? 'ok' : 'TETHER_E_PARSE');
      }
    });
  }

  it('a legal document passes the check unchanged', () => {
    const text = 'a:\n  b: [1, {c: "[[[[", d: [x, y]}]\n  e: |\n    [[[[[[[[[[[[\n    {{{{{{{{{{{{\n';
    expect(() => checkYamlDepth(text, { source: 'ok.yaml' })).not.toThrow();
    expect(parseYaml(text, { source: 'ok.yaml' })).toEqual({
      a: { b: [1, { c: '[[[[', d: ['x', 'y'] }], e: '[[[[[[[[[[[[\n{{{{{{{{{{{{\n' },
    });
  });
});

describe('values handed over already parsed', () => {
  it('checkValueDepth is iterative and exact', () => {
    for (const d of DEPTHS) {
      for (const seed of [0, 1, 2]) {
        const got = outcome(() => checkValueDepth(deepValue(d, seed), { source: 'v' }), 'v');
        expect(got, `depth ${d} seed ${seed}`).toBe(d <= MAX ? 'ok' : 'TETHER_E_PARSE');
      }
    }
  });

  it('checkValueDepth counts a shared value (YAML alias) at the deepest place it is used', () => {
    // Each level holds the one below twice: directly (`a`, walked first) and two lists down
    // (`b`). A walk that skips what it has seen would only ever measure the `a` path.
    const chain = (levels: number): unknown => {
      let v: unknown = 'leaf';
      for (let i = 0; i < levels; i++) v = { b: [[v]], a: v };
      return v;
    };
    expect(outcome(() => checkValueDepth(chain(10), { source: 'v' }), 'v')).toBe('ok');
    // 30 levels: the a-path alone is 31 deep, through b it is 91 (> 64).
    expect(outcome(() => checkValueDepth(chain(30), { source: 'v' }), 'v')).toBe('TETHER_E_PARSE');
    // The same in YAML: anchors chained two lists deep each, then all referenced shallowly
    // (and walked first); 35 anchors nest 70 deep with 71 aliases (under the alias cap).
    let yaml = 'z:\n  - &c0 [x]\n';
    for (let i = 1; i < 35; i++) yaml += `  - &c${i} [[*c${i - 1}]]\n`;
    yaml += `a: [${Array.from({ length: 35 }, (_, i) => `*c${34 - i}`).join(', ')}]\n`;
    expect(outcome(() => parseYaml(yaml, { source: 'v.yaml' }), 'v.yaml')).toBe('TETHER_E_PARSE');
  });

  it('validateObject refuses a too-deep resource with TETHER_E_PARSE, not a stack overflow', () => {
    for (const d of [MAX + 1, 10_000, 100_000]) {
      const obj = {
        apiVersion: 'tether.dev/v1',
        kind: 'Site',
        metadata: { name: 's' },
        spec: deepValue(d, 0),
      };
      expect(outcome(() => validateObject(obj, { file: 'r.yaml' }), 'r.yaml')).toBe('TETHER_E_PARSE');
    }
  });
});

describe('every file parser', () => {
  const resource = (inner: string) =>
    `apiVersion: tether.dev/v1\nkind: Site\nmetadata:\n  name: s\nspec:\n  labels:\n    x: ${inner}\n`;
  // Profiles bound their own nesting (src/profiles/limits.ts) and call it an invalid profile,
  // with the line where it gets too deep.
  const parsers: Array<[string, (text: string) => unknown, string]> = [
    ['parseResourceDocuments', (t) => parseResourceDocuments(t, 'res.yaml'), 'TETHER_E_PARSE'],
    ['validateDocuments', (t) => validateDocuments(t, 'res.yaml'), 'TETHER_E_PARSE'],
    ['parseProfileText', (t) => parseProfileText(t, 'res.yaml'), 'TETHER_E_INVALID'],
  ];
  for (const [name, parse, code] of parsers) {
    it(`${name}: deep flow, deep JSON and deep compact sequences end in a TetherError naming the file`, () => {
      for (const d of [200, 10_000, 100_000]) {
        for (const inner of [`${'['.repeat(d)}1${']'.repeat(d)}`, deepJson(d, 'mixed')]) {
          const got = outcome(() => parse(resource(inner)), 'res.yaml');
          expect(got, `${name} depth ${d}`).toBe(code);
        }
        const seq = `apiVersion: tether.dev/v1\nkind: Site\nmetadata:\n  name: s\nspec:\n  a:\n    ${'- '.repeat(d)}x\n`;
        expect(
          outcome(() => parse(seq), 'res.yaml'),
          `${name} compact ${d}`,
        ).toBe(code);
      }
    });
  }
});

describe('input size', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-input-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses a file over the bound before reading it, naming the file', () => {
    for (const [size, max, want] of [
      [10, 100, 'ok'],
      [100, 100, 'ok'],
      [101, 100, 'TETHER_E_TOO_LARGE'],
      [1 << 20, 1000, 'TETHER_E_TOO_LARGE'],
    ] as const) {
      const f = join(dir, `f-${size}-${max}`);
      writeFileSync(f, Buffer.alloc(size, 0x61));
      expect(
        outcome(() => readInputFile(f, { maxBytes: max }), f),
        `${size}/${max}`,
      ).toBe(want);
    }
  });
});
