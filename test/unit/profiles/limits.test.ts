/**
 * Bad profiles of every kind end in one coded error naming file, line, field and
 * expectation: reversed and oversized lists, files too large or too deep, alias bombs,
 * several documents, merge keys, duplicate keys, runaway extends; and the checks that
 * need no hardware run without an inventory.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { MAX_CPU_ID, parseCpuList, tryParseCpuList } from '../../../src/kernel/hw/cpulist.js';
import { type Inventory, readInventory } from '../../../src/kernel/hw/inventory.js';
import { isTetherError, type TetherError } from '../../../src/lib/errors.js';
import { MAX_NESTING, MAX_PROFILE_BYTES } from '../../../src/profiles/limits.js';
import {
  loadProfile,
  originOf,
  type ProfileIssue,
  parseProfileText,
  type ResolvedProfile,
} from '../../../src/profiles/load.js';
import { checkProfile, validateProfile } from '../../../src/profiles/validate.js';
import { machine, PROFILES } from '../../fixtures/hw/scenario.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-limits-'));
let n = 0;
function write(text: string, name = `p${n++}`): string {
  const f = join(dir, `${name}.yaml`);
  writeFileSync(f, text);
  return f;
}

function caught(fn: () => unknown): TetherError {
  try {
    fn();
  } catch (e) {
    if (isTetherError(e)) return e;
    throw e;
  }
  throw new Error('no error');
}

const load = (f: string): ResolvedProfile => loadProfile(f, { searchPath: [dir, PROFILES] });

/** The single issue of a refused file: asserts it names the file, a line and a field. */
function refusal(f: string): ProfileIssue {
  const e = caught(() => load(f));
  expect(['TETHER_E_INVALID', 'TETHER_E_TOO_LARGE']).toContain(e.code);
  expect(e.details.file).toBe(f);
  expect(e.details.line).toBeGreaterThan(0);
  expect(e.details.expected).toBeTruthy();
  return {
    severity: 'error',
    file: e.details.file as string,
    line: e.details.line as number,
    field: e.details.field as string,
    message: e.message,
    expected: e.details.expected as string,
  };
}

const errorsOf = (issues: ProfileIssue[]) => issues.filter((i) => i.severity === 'error');

describe('CPU and VF lists', () => {
  it.each([
    ['3-1', /ends before it starts/, /"1-3"/],
    ['0,8-2', /ends before it starts/, /"2-8"/],
    ['0-99999', /beyond the largest possible CPU id 8191/, /0-8191/],
    [`${MAX_CPU_ID + 1}`, /beyond the largest/, /0-8191/],
    ['99999999999999999999', /not a CPU number/, /0-8191/],
    ['1-2-3', /not a CPU number or range/, /like "0-3,8"/],
  ])('%s is refused with a reason and an expectation, never a bare exception', (text, message, expected) => {
    const r = tryParseCpuList(text);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.message).toMatch(message);
      expect(r.expected).toMatch(expected);
    }
    const e = caught(() => parseCpuList(text));
    expect(e.code).toBe('TETHER_E_INVALID');
  });

  it('the whole machine range expands, sorted and without duplicates', () => {
    expect(parseCpuList(`0-${MAX_CPU_ID},5,0-3`)).toHaveLength(MAX_CPU_ID + 1);
    expect(parseCpuList('8,1-3,2')).toEqual([1, 2, 3, 8]);
  });

  it('a corrupt CPU list in sysfs names the file (TETHER_E_STATE), not a stack trace', async () => {
    const k = machine('all-nics');
    for (const [f, text] of [
      ['/sys/devices/system/cpu/online', '0-99999\n'],
      ['/sys/devices/system/cpu/present', '63-0\n'],
      ['/sys/devices/system/node/node0/cpulist', 'garbage\n'],
    ] as const) {
      const m = machine('all-nics');
      writeFileSync(join(m.root, f), text);
      const e = await readInventory(m).catch((x: unknown) => x);
      expect(isTetherError(e, 'TETHER_E_STATE'), String(e)).toBe(true);
      expect((e as TetherError).details.file).toBe(f);
      expect((e as TetherError).message).toContain(f);
    }
    expect((await readInventory(k)).present).toHaveLength(64);
  });

  it('an empty VF range (max -1) never prints "0--1"', () => {
    const r = tryParseCpuList('0', -1, 'VF');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(`${r.message} ${r.expected}`).not.toContain('--');
  });
});

describe('file limits', () => {
  it('a file over 1 MiB is refused before it is parsed (TETHER_E_TOO_LARGE, exit 4)', () => {
    const f = write(`description: "${'x'.repeat(MAX_PROFILE_BYTES)}"\n`);
    const e = caught(() => load(f));
    expect(e.code).toBe('TETHER_E_TOO_LARGE');
    expect(e.details).toMatchObject({ file: f, line: 1, expected: expect.stringMatching(/1 MiB/) });
    expect(caught(() => parseProfileText('x'.repeat(MAX_PROFILE_BYTES + 1), 'mem.yaml')).code).toBe(
      'TETHER_E_TOO_LARGE',
    );
  });

  it.each([
    ['flow lists', 100_000, (d: number) => `site:\n  labels: ${'['.repeat(d)}${']'.repeat(d)}\n`],
    ['flow maps', 50_000, (d: number) => `site:\n  labels: ${'{a: '.repeat(d)}1${'}'.repeat(d)}\n`],
    [
      'block maps',
      600,
      (d: number) =>
        `site:\n  labels:\n${Array.from({ length: d }, (_, i) => `${'  '.repeat(i + 2)}k${i}:`).join('\n')} 1\n`,
    ],
  ])('nesting deeper than the limit (%s) is refused, also far deeper', (_, deepest, make) => {
    for (const depth of [MAX_NESTING + 1, deepest]) {
      const f = write(make(depth));
      const i = refusal(f);
      expect(`${i.message} ${i.expected}`).toMatch(/nested|deep|valid YAML|levels/);
    }
  });

  it('alias bombs are refused, whatever their shape', () => {
    for (const [width, depth] of [
      [9, 6],
      [2, 30],
      [400, 2],
    ] as const) {
      const lines = ['a0: &a0 ["x"]'];
      for (let d = 1; d <= depth; d++)
        lines.push(`a${d}: &a${d} [${Array.from({ length: width }, () => `*a${d - 1}`).join(', ')}]`);
      const i = refusal(write(`site:\n  labels:\n${lines.map((l) => `    ${l}`).join('\n')}\n`));
      expect(i.field).toBe('(aliases)');
      expect(i.message).toMatch(/alias/);
    }
  });

  it('an alias to an anchor that does not exist names the file', () => {
    const i = refusal(write('cpu:\n  reserved: *nope\n'));
    expect(i.message).toMatch(/nope/);
  });

  it.each([
    ['two documents', 'cpu:\n  reserved: "0"\n---\ncpu:\n  reserved: "1"\n', 3],
    ['a trailing empty document', 'description: x\n---\n', 2],
    ['three documents', '---\na: 1\n...\n---\nb: 2\n---\nc: 3\n', 4],
  ])('%s: one clear message at the second document', (_, text, line) => {
    const i = refusal(write(text));
    expect(i.field).toBe('(document)');
    expect(i.line).toBe(line);
    expect(i.message).toMatch(/second YAML document/);
    expect(i.expected).toMatch(/one document per file/);
  });

  it('a leading --- is one document', () => {
    expect(load(write('---\ndescription: x\n')).spec.description).toBe('x');
  });

  it('a duplicate key is refused at its second occurrence, in any mapping', () => {
    const i = refusal(write('cpu:\n  reserved: "0"\n  isolated: remaining\n  reserved: "1"\n'));
    expect(i).toMatchObject({ line: 4, field: 'cpu.reserved' });
    expect(i.message).toMatch(/duplicate key "reserved"/);
    expect(refusal(write('kernel:\n  sysctls:\n    vm.a: 1\n    vm.b: 2\n    vm.a: 3\n')).line).toBe(5);
  });

  it('several problems in one file: each once, in the message and in details.issues', () => {
    const f = write('cpu:\n  reservd: "0"\n  isolatd: remaining\nkernel:\n  iommu: maybe\n');
    const e = caught(() => load(f));
    const issues = e.details.issues as ProfileIssue[];
    expect(issues.map((i) => [i.line, i.field])).toEqual([
      [2, 'cpu.reservd'],
      [3, 'cpu.isolatd'],
      [5, 'kernel.iommu'],
    ]);
    for (const i of issues) expect(e.message.split(`${f}:${i.line}: ${i.field}:`)).toHaveLength(2);
  });
});

describe('YAML merge keys', () => {
  it('<<: *anchor merges; keys set next to it win; origins point at the anchor', () => {
    const f = write(
      [
        'sriov:',
        '  - name: fh',
        '    pf: {name: ens1f0}',
        '    numVfs: 8',
        '    vfGroups:',
        '      - &fast',
        '        range: "0-3"',
        '        mtu: 1500',
        '        trust: true',
        '      - <<: *fast',
        '        range: "4-7"',
        '',
      ].join('\n'),
    );
    const p = load(f);
    expect(p.spec.sriov?.[0]?.vfGroups?.[1]).toEqual({ range: '4-7', mtu: 1500, trust: true });
    expect(originOf(p, 'sriov[fh].vfGroups[1].range')).toEqual({ file: f, line: 11 });
    expect(originOf(p, 'sriov[fh].vfGroups[1].trust')).toEqual({ file: f, line: 9 });
  });

  it('several merge sources: the first wins; a merged value is schema-checked at the anchor', () => {
    const p = load(
      write(
        'memory:\n  hugepages:\n    pages:\n      - &a {size: 2M, count: 1}\n      - &b {size: 1G, count: 2}\n      - <<: [*b, *a]\n',
      ),
    );
    expect(p.spec.memory?.hugepages?.pages?.[2]).toEqual({ size: '1G', count: 2 });
    const i = refusal(write('cpu: &c\n  reservd: "0"\nkernel:\n  sysctls:\n    <<: *c\n'));
    expect(i).toMatchObject({ line: 2, field: 'cpu.reservd' });
  });

  it('hundreds of merges of one anchor are fine (aliases are budgeted by what they copy)', () => {
    const groups = ['      - &g {range: "0", mtu: 1500, trust: true}'];
    for (let i = 1; i < 500; i++) groups.push(`      - <<: *g\n        range: "${i}"`);
    const p = load(
      write(
        `sriov:\n  - name: fh\n    pf: {name: ens1f0}\n    numVfs: 500\n    vfGroups:\n${groups.join('\n')}\n`,
      ),
    );
    expect(p.spec.sriov?.[0]?.vfGroups?.[499]).toEqual({ range: '499', mtu: 1500, trust: true });
  });

  it('an alias inside the node it points at is refused', () => {
    const i = refusal(write('site:\n  labels: &a\n    x: *a\n'));
    expect(i).toMatchObject({ field: '(aliases)', line: 3 });
  });

  it('a merge of something that is not a mapping is refused with the reason', () => {
    expect(refusal(write('cpu:\n  <<: 5\n')).message).toMatch(/[Mm]erge/);
  });
});

describe('extends', () => {
  it('a name with .yaml resolves next to the extending file, wherever the process runs', () => {
    const sub = join(dir, 'rel');
    mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, 'rel-base.yaml'), 'cpu:\n  reserved: "0-1"\n');
    const top = join(sub, 'rel-top.yaml');
    writeFileSync(top, 'extends: [rel-base.yaml]\ncpu:\n  isolated: remaining\n');
    const cwd = process.cwd();
    try {
      process.chdir(tmpdir());
      const p = loadProfile(relative(tmpdir(), top), { searchPath: [PROFILES] });
      expect(p.spec.cpu).toEqual({ reserved: '0-1', isolated: 'remaining' });
      expect(p.files).toEqual([join(sub, 'rel-base.yaml'), top]);
    } finally {
      process.chdir(cwd);
    }
  });

  it('a diamond of extends is composed once per file, not once per path', () => {
    // 40 levels of two parents each: 2^40 paths, 80 files (over the limit of 64).
    const levels = 40;
    write('kernel:\n  sysctls:\n    vm.x0: 0\n', 'dia-0-a');
    write('kernel:\n  sysctls:\n    vm.y0: 0\n', 'dia-0-b');
    for (let l = 1; l < levels; l++)
      for (const s of ['a', 'b'])
        write(
          `extends: [dia-${l - 1}-a, dia-${l - 1}-b]\nkernel:\n  sysctls:\n    vm.${s}${l}: ${l}\n`,
          `dia-${l}-${s}`,
        );
    const e = caught(() => load(join(dir, `dia-${levels - 1}-a.yaml`)));
    expect(e.details.field).toMatch(/^extends\[\d\]$/);
    expect(e.message).toMatch(/more than 64 files/);
    const p = load(join(dir, 'dia-20-a.yaml'));
    expect(p.files).toHaveLength(41);
    expect(Object.keys(p.spec.kernel?.sysctls ?? {})).toHaveLength(41);
  });
});

describe('checks that need no hardware (plain validate)', () => {
  const staticErrors = (text: string) => errorsOf(checkProfile(load(write(text))));

  it.each([
    ['cpu:\n  reserved: "3-1"\n  isolated: remaining\n', 'cpu.reserved', 2, /ends before it starts/],
    [
      'cpu:\n  reserved: "0-1"\n  isolated: "2-99999"\n',
      'cpu.isolated',
      3,
      /beyond the largest possible CPU id/,
    ],
    [
      'cpu:\n  reserved: "0-3"\n  isolated: "2-7"\n',
      'cpu.isolated',
      3,
      /CPUs 2-3 are both reserved and isolated/,
    ],
    ['cpu:\n  reserved: "1"\n  offlined: "0"\n', 'cpu.offlined', 3, /CPU 0 cannot be taken offline/],
    [
      'sriov:\n  - name: fh\n    pf: {name: x}\n    numVfs: 4\n    vfGroups:\n      - range: "2-5"\n',
      'sriov[fh].vfGroups[0].range',
      6,
      /VFs 4-5 are beyond numVfs 4/,
    ],
    [
      'sriov:\n  - name: fh\n    pf: {name: x}\n    numVfs: 4\n    vfGroups:\n      - range: "3-0"\n',
      'sriov[fh].vfGroups[0].range',
      6,
      /ends before it starts/,
    ],
    [
      'sriov:\n  - name: fh\n    pf: {name: x}\n    numVfs: 8\n    vfGroups:\n      - range: "0-99999"\n',
      'sriov[fh].vfGroups[0].range',
      6,
      /VF 99999 is beyond the largest possible VF id 65534/,
    ],
    [
      'sriov:\n  - name: fh\n    pf: {name: x}\n    numVfs: 8\n    vfGroups:\n      - range: "0-3"\n      - range: "3-4"\n',
      'sriov[fh].vfGroups[1].range',
      7,
      /VFs 3 are already in vfGroups\[0\]/,
    ],
    ['sriov:\n  - name: fh\n    numVfs: 8\n', 'sriov[fh]', 2, /has no pf/],
    [
      'smartnic:\n  sriov: [nope]\n  eswitchMode: switchdev\n',
      'smartnic.sriov[0]',
      2,
      /no SR-IOV policy named/,
    ],
    ['time:\n  ptp:\n    role: slave\n', 'time.ptp.interface', 2, /needs an interface/],
  ])('%j → %s', (text, field, line, message) => {
    const errs = staticErrors(text);
    const hit = errs.find((e) => e.field === field);
    expect(hit, JSON.stringify(errs)).toBeDefined();
    expect(hit?.line).toBe(line);
    expect(hit?.message).toMatch(message);
    expect(hit?.expected).toBeTruthy();
    expect(errs.filter((e) => e.field === field)).toHaveLength(1);
  });

  it('numVfs 0 with a range: says there are no VF indexes, never "0--1"', () => {
    const [e] = staticErrors(
      'sriov:\n  - name: fh\n    pf: {name: x}\n    numVfs: 0\n    vfGroups:\n      - range: "0"\n',
    );
    expect(e?.expected).toMatch(/no VF indexes \(numVfs is 0/);
    expect(`${e?.message} ${e?.expected}`).not.toMatch(/\d--\d/);
  });

  it('a VF range beyond an inherited numVfs blames the file that set the range', () => {
    const base = write('sriov:\n  - name: fh\n    pf: {name: x}\n    numVfs: 8\n', 'inh-vf-base');
    const site = write(
      'extends: [inh-vf-base]\nsriov:\n  - name: fh\n    numVfs: 2\n    vfGroups:\n      - range: "0-3"\n',
    );
    const [e] = errorsOf(checkProfile(load(site)));
    expect(e).toMatchObject({ file: site, line: 6, field: 'sriov[fh].vfGroups[0].range' });
    expect(base).toBeTruthy();
  });
});

describe('hardware checks', () => {
  let inv: Inventory;
  beforeAll(async () => {
    inv = await readInventory(machine('all-nics'));
  });

  it('a field with a hardware-free error gets no second error from the hardware checks', () => {
    const p = load(write('cpu:\n  reserved: "0-1"\n  isolated: "64-1"\n'));
    const errs = errorsOf(validateProfile(p, inv));
    expect(errs.map((e) => e.field)).toEqual(['cpu.isolated']);
    expect(errs[0]?.message).toMatch(/ends before it starts/);
  });

  it('hugepage overflow names the entry that crosses the limit, not the first one', () => {
    // node 1 has 96 GiB: 40 + 40 fit under 90 %, the third entry (20 more) does not.
    const f = write(
      [
        'memory:',
        '  hugepages:',
        '    pages:',
        '      - {size: 2M, count: 8, node: 0}',
        '      - {size: 1G, count: 40, node: 1}',
        '      - {size: 1G, count: 40, node: 1}',
        '      - {size: 1G, count: 20, node: 1}',
        '      - {size: 1G, count: 5, node: 1}',
        '',
      ].join('\n'),
    );
    const errs = errorsOf(validateProfile(load(f), inv));
    expect(errs).toHaveLength(1);
    expect(errs[0]).toMatchObject({ field: 'memory.hugepages.pages[3].count', line: 7 });
    expect(errs[0]?.message).toMatch(/NUMA node 1 need 100\.0 GiB/);
  });
});
