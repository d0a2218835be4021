// Profile loading at the size limit: how long load + checks (and validation against a
// fixture machine's inventory) take for large generated profiles, next to floors measured
// in the same run on the same text: JSON.parse of the same data, the yaml library's own
// parseDocument without its duplicate-key check (the CST parse every YAML reader pays), and
// yaml.parse with its defaults (whose duplicate-key check is quadratic in keys per mapping).
//   npm run bench (BENCH_ONLY=profile-load) or: npx tsx test/bench/profile-load.ts
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, parseDocument } from 'yaml';
import { RootedHostFs } from '../../src/kernel/hw/hostfs.js';
import { readInventory } from '../../src/kernel/hw/inventory.js';
import { MAX_PROFILE_BYTES } from '../../src/profiles/limits.js';
import { loadProfile, shippedProfilesDir } from '../../src/profiles/load.js';
import { checkProfile, validateProfile } from '../../src/profiles/validate.js';
import { tempMachine } from '../fixtures/hw/build.js';

type Result = Record<string, number | string>;

/** Median wall time of `runs` calls, in ms (one warm-up call first). */
function time(fn: () => unknown, runs = 5): number {
  fn();
  const xs: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    fn();
    xs.push(performance.now() - t);
  }
  xs.sort((a, b) => a - b);
  return +(xs[Math.floor(xs.length / 2)] as number).toFixed(1);
}

/** A profile extending base whose sysctls fill it to just under `bytes`. */
function sysctlProfile(bytes: number): { text: string; keys: number } {
  const head = 'extends: [base]\nkernel:\n  sysctls:\n';
  let text = head;
  let keys = 0;
  for (;;) {
    const line = `    net.k${keys}.value: ${keys}\n`;
    if (Buffer.byteLength(text) + line.length > bytes) break;
    text += line;
    keys++;
  }
  return { text, keys };
}

function labelProfile(keys: number): string {
  let text = 'site:\n  labels:\n';
  for (let i = 0; i < keys; i++) text += `    l${i}: "v${i}"\n`;
  return text;
}

/** 8,192 single-VF groups of one policy on the fixture's E810: ~160 KB of ranges. */
function vfRangeProfile(): string {
  let text = 'sriov:\n  - name: fh\n    pf: {name: ens1f0}\n    numVfs: 8192\n    vfGroups:\n';
  for (let i = 0; i < 8192; i++) text += `      - range: "${i}"\n        vlan: ${1 + (i % 4094)}\n`;
  return text;
}

export async function run(): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), 'tether-bench-profile-'));
  const root = tempMachine('all-nics');
  try {
    const inv = await readInventory(new RootedHostFs(root));
    const searchPath = [shippedProfilesDir()];
    const out: Result = {};
    const cases: Array<{ name: string; text: string; keys: number; hardware: boolean }> = [];
    const big = sysctlProfile(MAX_PROFILE_BYTES);
    cases.push({ name: '1MiB-sysctls', text: big.text, keys: big.keys, hardware: true });
    cases.push({ name: '40k-labels', text: labelProfile(40_000), keys: 40_000, hardware: true });
    cases.push({ name: '10k-labels', text: labelProfile(10_000), keys: 10_000, hardware: false });
    cases.push({ name: '8k-vf-groups', text: vfRangeProfile(), keys: 8192 * 2, hardware: false });
    for (const c of cases) {
      const f = join(dir, `${c.name}.yaml`);
      writeFileSync(f, c.text);
      const data = parse(c.text, { uniqueKeys: false });
      const json = JSON.stringify(data);
      out[`${c.name}: bytes`] = Buffer.byteLength(c.text);
      out[`${c.name}: keys`] = c.keys;
      out[`${c.name}: JSON.parse of the same data, ms`] = time(() => JSON.parse(json));
      out[`${c.name}: yaml parseDocument (floor), ms`] = time(() =>
        parseDocument(c.text, { uniqueKeys: false }),
      );
      const load = time(() => checkProfile(loadProfile(f, { searchPath })));
      out[`${c.name}: tether load + checks, ms`] = load;
      if (c.hardware) {
        const p = loadProfile(f, { searchPath });
        out[`${c.name}: tether validate against inventory, ms`] = time(() => validateProfile(p, inv));
      }
      out[`${c.name}: load + checks / yaml floor`] = +(
        load / (out[`${c.name}: yaml parseDocument (floor), ms`] as number)
      ).toFixed(2);
    }
    // The yaml library's default duplicate-key check compares each key with every earlier
    // one: one run each, at 10k and 40k keys in one mapping, to show the growth.
    for (const k of [10_000, 40_000]) {
      const text = labelProfile(k);
      const t = performance.now();
      parse(text);
      out[`yaml.parse defaults (uniqueKeys), ${k / 1000}k keys, ms`] = +(performance.now() - t).toFixed(0);
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(root, { recursive: true, force: true });
  }
}

if (process.argv[1]?.endsWith('profile-load.ts')) {
  run().then(
    (r) => {
      for (const [k, v] of Object.entries(r)) console.log(`${k.padEnd(58)} ${v}`);
    },
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
