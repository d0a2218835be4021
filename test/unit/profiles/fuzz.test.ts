/**
 * Property-based fuzzing of the profile loader and validators (fast-check): whatever the
 * file says — valid-ish profiles with out-of-range values, reversed or huge CPU/VF lists,
 * garbage, deep nesting, unicode, anchors, aliases, merge keys, several documents — loading
 * and validation either succeed or throw a TetherError with a documented code whose
 * printed form names the file. Never another exception, never a hang (each case is bounded
 * by the limits; the run is bounded by numRuns).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { formatCpuList, MAX_CPU_ID, parseCpuList, tryParseCpuList } from '../../../src/kernel/hw/cpulist.js';
import { type Inventory, readInventory } from '../../../src/kernel/hw/inventory.js';
import { describeError, type ErrorCode, isTetherError } from '../../../src/lib/errors.js';
import { MAX_VFS } from '../../../src/profiles/limits.js';
import { loadProfile } from '../../../src/profiles/load.js';
import { checkProfile, validateProfile } from '../../../src/profiles/validate.js';
import { machine, PROFILES } from '../../fixtures/hw/scenario.js';

/** The codes a bad profile may end in (docs/profiles.md, "Limits"); all exit 4. */
const PROFILE_CODES: ReadonlySet<ErrorCode> = new Set(['TETHER_E_INVALID', 'TETHER_E_TOO_LARGE']);

const dir = mkdtempSync(join(tmpdir(), 'tether-fuzz-'));
let seq = 0;

let inv: Inventory;
beforeAll(async () => {
  inv = await readInventory(machine('all-nics'));
});

// ---- arbitraries ----

const bigInt = fc.oneof(
  fc.integer({ min: 0, max: 70 }),
  fc.integer({ min: 0, max: 100_000 }),
  fc.constantFrom(8191, 8192, 65534, 65535, 65536, 2 ** 31, 2 ** 53, 1e21),
);
const rangePart = fc.oneof(
  bigInt.map(String),
  fc.tuple(bigInt, bigInt).map(([a, b]) => `${a}-${b}`),
  fc.tuple(bigInt, bigInt).map(([a, b]) => `${Math.min(a, b)}-${Math.max(a, b)}`),
);
/** CPU/VF lists: well-formed, reversed, huge, and arbitrary text. */
const listText = fc.oneof(
  fc.array(rangePart, { minLength: 0, maxLength: 8 }).map((p) => p.join(',')),
  fc.string({ unit: fc.constantFrom(...'0123456789-, \t'.split('')), maxLength: 40 }),
  fc.string({ maxLength: 20 }),
  fc.constantFrom('3-1', '0-99999', '0--1', '-1', '1-', ',', '0,,1', `0-${MAX_CPU_ID}`, '٣', '0x10'),
);

const unicode = fc.string({ unit: 'grapheme', maxLength: 12 });
const garbage = fc.oneof(
  fc.anything({ maxDepth: 3 }),
  unicode,
  fc.double(),
  fc.constantFrom(null, true, -1, 1e308, Number.MAX_SAFE_INTEGER, '', '~', '<<'),
);
const maybe = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined, freq: 3 });
const or = <T>(a: fc.Arbitrary<T>) =>
  fc.oneof({ arbitrary: a, weight: 4 }, { arbitrary: garbage, weight: 1 });
/** Deeply nested lists or maps, to probe the nesting limit. */
const deep = fc.tuple(fc.integer({ min: 1, max: 200 }), fc.boolean()).map(([d, asMap]) => {
  let v: unknown = 'leaf';
  for (let i = 0; i < d; i++) v = asMap ? { k: v } : [v];
  return v;
});

const vfGroup = fc.record(
  {
    range: or(listText),
    deviceType: or(fc.constantFrom('netdevice', 'vfio-pci')),
    mtu: or(fc.integer({ min: 0, max: 10_000 })),
    vlan: or(fc.integer({ min: -1, max: 5000 })),
    qos: or(fc.integer({ min: 0, max: 9 })),
    minTxRate: or(bigInt),
    maxTxRate: or(bigInt),
  },
  { requiredKeys: [] },
);
const policy = fc.record(
  {
    name: or(fc.constantFrom('fh', 'mgmt', 'a-b', 'Bad Name')),
    pf: or(
      fc.record(
        { name: or(fc.constantFrom('ens1f0', 'ens1f1', 'ens2f0np0', 'ens3f0', 'nope')), port: or(bigInt) },
        { requiredKeys: [] },
      ),
    ),
    numVfs: or(fc.oneof(bigInt, fc.constantFrom(0, MAX_VFS, MAX_VFS + 1))),
    mtu: or(fc.integer({ min: 0, max: 10_000 })),
    vfGroups: or(fc.array(vfGroup, { maxLength: 4 })),
  },
  { requiredKeys: [] },
);
const profileObject = fc.record(
  {
    description: or(unicode),
    extends: or(
      fc.array(fc.constantFrom('base', 'du', 'sriov-e810', 'cu', 'no-such', 'Bad/Name'), { maxLength: 3 }),
    ),
    site: or(
      fc.record(
        {
          role: or(fc.constantFrom('du', 'cu', 'generic')),
          labels: or(fc.dictionary(unicode, or(unicode), { maxKeys: 5 })),
        },
        { requiredKeys: [] },
      ),
    ),
    cpu: or(
      fc.record(
        {
          reserved: or(listText),
          isolated: or(fc.oneof(listText, fc.constant('remaining'))),
          offlined: or(listText),
        },
        { requiredKeys: [] },
      ),
    ),
    memory: or(
      fc.record({
        hugepages: or(
          fc.record(
            {
              defaultSize: or(fc.constantFrom('2M', '1G')),
              pages: or(
                fc.array(
                  fc.record(
                    {
                      size: or(fc.constantFrom('2M', '1G', '4M')),
                      count: or(bigInt),
                      node: or(fc.integer({ min: -1, max: 2000 })),
                    },
                    { requiredKeys: [] },
                  ),
                  { maxLength: 5 },
                ),
              ),
            },
            { requiredKeys: [] },
          ),
        ),
      }),
    ),
    kernel: or(
      fc.record(
        {
          iommu: or(fc.boolean()),
          workloadHints: or(fc.record({ realTime: or(fc.boolean()) }, { requiredKeys: [] })),
          sysctls: or(fc.dictionary(fc.constantFrom('vm.a', 'net.core.x', 'bad', 'a.b.c'), or(bigInt))),
          additionalArgs: or(fc.array(unicode, { maxLength: 3 })),
        },
        { requiredKeys: [] },
      ),
    ),
    time: or(
      fc.record(
        {
          ptp: or(
            fc.record(
              {
                role: or(fc.constantFrom('none', 'slave', 'gm')),
                interface: or(fc.constantFrom('ens1f0', 'eth9')),
              },
              { requiredKeys: [] },
            ),
          ),
        },
        { requiredKeys: [] },
      ),
    ),
    sriov: or(fc.array(policy, { maxLength: 3 })),
    smartnic: or(
      fc.record(
        {
          sriov: or(fc.array(fc.constantFrom('fh', 'mgmt', 'x'), { maxLength: 2 })),
          eswitchMode: or(fc.constantFrom('legacy', 'switchdev')),
        },
        { requiredKeys: [] },
      ),
    ),
    nested: maybe(deep),
  },
  { requiredKeys: [] },
);

/** Text-level hazards a serializer never produces. */
const hazard = fc.constantFrom(
  '',
  '---\n',
  '\n---\ncpu:\n  reserved: "0"\n',
  '\n...\n',
  'x: &a [1, 2]\ny: *a\n',
  'z: *undefined_anchor\n',
  'cpu:\n  <<: {reserved: "0-1"}\n',
  'cpu:\n  <<: 7\n',
  'kernel:\n  iommu: true\nkernel:\n  iommu: false\n',
  `b: &b ${JSON.stringify(Array(10).fill('x'))}\nc: &c [${Array(10).fill('*b').join(',')}]\nd: [${Array(10).fill('*c').join(',')}]\n`,
  `deep: ${'['.repeat(3000)}${']'.repeat(3000)}\n`,
  '\t- tab\n',
  '"unterminated\n',
  'cpu: !!binary aGVsbG8=\n',
  'cpu: !custom {reserved: "0"}\n',
  '? [complex, key]\n: value\n',
);

const profileText = fc.oneof(
  { weight: 3, arbitrary: profileObject.map((o) => stringify(o, { aliasDuplicateObjects: true })) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.constantFrom('prefix', 'suffix', 'both'), hazard, profileObject)
      .map(([where, h, o]) => {
        const body = stringify(o);
        return where === 'prefix'
          ? `${h}${body}`
          : where === 'suffix'
            ? `${body}\n${h}`
            : `${h}${body}\n${h}`;
      }),
  },
  { weight: 1, arbitrary: fc.array(hazard, { maxLength: 4 }).map((hs) => hs.join('\n')) },
  { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
);

// ---- properties ----

/** A message without the input it quotes. */
const unquoted = (s: string): string => s.replace(/"[^"\n]*"/g, '""');

describe('fuzz: CPU and VF lists', () => {
  it('parsing never throws anything but a TetherError; a success is sorted, unique and bounded', () => {
    fc.assert(
      fc.property(listText, fc.constantFrom(MAX_CPU_ID, MAX_VFS - 1, 7, 0, -1), (text, max) => {
        const r = tryParseCpuList(text, max);
        if (r.ok) {
          for (let i = 0; i < r.ids.length; i++) {
            const x = r.ids[i] as number;
            expect(x >= 0 && x <= max).toBe(true);
            if (i > 0) expect(x).toBeGreaterThan(r.ids[i - 1] as number);
          }
        } else {
          expect(r.message.length).toBeGreaterThan(0);
          expect(r.expected.length).toBeGreaterThan(0);
          // Our own ranges never read "0--1" (quoted input may say anything).
          expect(unquoted(`${r.message} ${r.expected}`)).not.toMatch(/\d--\d/);
        }
        try {
          parseCpuList(text, max);
        } catch (e) {
          expect(isTetherError(e, 'TETHER_E_INVALID')).toBe(true);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('format then parse gives back the set', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: MAX_CPU_ID }), { maxLength: 200 }), (ids) => {
        expect(parseCpuList(formatCpuList(ids))).toEqual([...new Set(ids)].sort((a, b) => a - b));
      }),
      { numRuns: 300 },
    );
  });
});

describe('fuzz: profiles', () => {
  it('load + checks + hardware validation: success, or a coded TetherError naming the file', async () => {
    await fc.assert(
      fc.asyncProperty(profileText, async (text) => {
        const file = join(dir, `fuzz-${seq++}.yaml`);
        writeFileSync(file, text);
        try {
          const p = loadProfile(file, { searchPath: [dir, PROFILES] });
          const issues = checkProfile(p);
          const all = validateProfile(p, inv);
          for (const i of [...issues, ...all]) {
            expect(i.field.length).toBeGreaterThan(0);
            expect(i.file).toBeTruthy();
            expect(unquoted(`${i.message} ${i.expected ?? ''}`)).not.toMatch(/\d--\d|undefined|NaN/);
          }
        } catch (e) {
          if (!isTetherError(e)) throw e;
          expect(PROFILE_CODES.has(e.code), `${e.code}: ${e.message}`).toBe(true);
          // What the CLI prints names the file (the error may be in a file it extends).
          const printed = describeError(e);
          expect(printed.includes(file) || /[\w.-]+\.yaml/.test(printed), printed).toBe(true);
          expect(unquoted(printed)).not.toMatch(/\d--\d|\bat .*\.(ts|js):\d+/);
          expect(e.details.field ?? (e.details.issues as unknown[] | undefined)?.length).toBeTruthy();
        }
      }),
      { numRuns: 300, timeout: 5000, interruptAfterTimeLimit: 120_000 },
    );
  }, 180_000);
});
