// The node's link-counter parser (bounded, never throws) and the scrape-time families.
import fc from 'fast-check';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { lazyCounter, lazyGauge, MAX_SERIES_PER_FAMILY, stateSet } from '../../../src/lib/prom.js';
import { MAX_LINK_JSON_BYTES, parseLinkStats } from '../../../src/node/metrics.js';

describe('parseLinkStats', () => {
  it('reads rx/tx bytes and packets of `ip -s -j link` output', () => {
    const out = parseLinkStats(
      JSON.stringify([
        { ifname: 'tbr0', stats64: { rx: { bytes: 10, packets: 1 }, tx: { bytes: 20, packets: 2 } } },
        { ifname: 'lo' },
        { ifname: 'tvx7', stats64: { rx: { bytes: -5, packets: 'x' }, tx: { bytes: 3, packets: 4 } } },
      ]),
    );
    expect(out).toEqual([
      { ifname: 'tbr0', rxBytes: 10, rxPackets: 1, txBytes: 20, txPackets: 2 },
      { ifname: 'tvx7', rxBytes: 0, rxPackets: 0, txBytes: 3, txPackets: 4 },
    ]);
  });

  it('gives nothing for oversized or malformed input and never throws', () => {
    expect(parseLinkStats(' '.repeat(MAX_LINK_JSON_BYTES + 1))).toEqual([]);
    expect(parseLinkStats('{"ifname":')).toEqual([]);
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 500 }), fc.json({ maxDepth: 4 })), (s) => {
        for (const l of parseLinkStats(s)) expect(l.rxBytes).toBeGreaterThanOrEqual(0);
      }),
    );
  });
});

describe('lazy families', () => {
  it('read values at scrape time, drop old label sets and cap the series per family', async () => {
    const reg = new Registry();
    let n = 2;
    lazyGauge(reg, 't_g', 'h', ['k'], () =>
      Array.from({ length: n }, (_, i) => [{ k: String(i) }, i] as const),
    );
    lazyCounter(reg, 't_total', 'h', [], () => [[{}, n * 10]]);
    expect(await reg.metrics()).toContain('t_g{k="1"} 1');
    n = 1;
    const text = await reg.metrics();
    expect(text).not.toContain('t_g{k="1"}');
    expect(text).toContain('t_total 10');
    n = MAX_SERIES_PER_FAMILY + 10;
    const big = await reg.metrics();
    expect(big.split('\n').filter((l) => l.startsWith('t_g{')).length).toBe(MAX_SERIES_PER_FAMILY);
  });

  it('stateSet marks exactly the current state', () => {
    expect(stateSet(['a', 'b'] as const, 'b', 'role')).toEqual([
      [{ role: 'a' }, 0],
      [{ role: 'b' }, 1],
    ]);
  });
});
