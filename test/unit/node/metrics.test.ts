// The node's link-counter parser (bounded, never throws) and the scrape-time families.
import { existsSync } from 'node:fs';
import fc from 'fast-check';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { CommandRunner } from '../../../src/lib/exec.js';
import { lazyCounter, lazyGauge, MAX_SERIES_PER_FAMILY, stateSet } from '../../../src/lib/prom.js';
import type { NodeAgent } from '../../../src/node/agent/daemon.js';
import { MAX_LINK_JSON_BYTES, nodeMetrics, parseLinkStats } from '../../../src/node/metrics.js';
import type { SiteProxyStatus } from '../../../src/node/proxy/proxy.js';
import { noShellDrops } from '../../../src/node/proxy/shell-relay.js';
import { runProcess } from '../../integration/support/proc.js';

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

describe('site proxy shell families', () => {
  // Only the two families below are scraped, and they read nothing of the agent or the host.
  const agent = {} as unknown as NodeAgent;
  const runner: CommandRunner = {
    run: () => Promise.reject(new Error('no command runs in this test')),
  };
  const proxyStatus = (open: number, dropped = noShellDrops()): SiteProxyStatus => ({
    active: open > 0,
    revision: 0,
    agents: 1,
    siteLocal: 0,
    shells: { open, dropped },
  });
  const scrape = async (proxy: (() => SiteProxyStatus | undefined) | undefined) => {
    const reg = nodeMetrics({ agent, networking: undefined, runner, gateway: () => undefined, proxy });
    return [
      await reg.getSingleMetricAsString('tether_node_proxy_shells'),
      await reg.getSingleMetricAsString('tether_node_proxy_shells_dropped_total'),
    ].join('\n');
  };

  it('export the relayed shells now and the dropped frames by reason, read at scrape time', async () => {
    let st = proxyStatus(2, { bad: 1, notOwner: 3, notAttached: 0, notAllowed: 2 });
    const text = await scrape(() => st);
    expect(text).toMatch(/^# TYPE tether_node_proxy_shells gauge$/m);
    expect(text).toMatch(/^tether_node_proxy_shells 2$/m);
    expect(text).toMatch(/^# TYPE tether_node_proxy_shells_dropped_total counter$/m);
    expect(text).toMatch(/^tether_node_proxy_shells_dropped_total\{reason="bad"\} 1$/m);
    expect(text).toMatch(/^tether_node_proxy_shells_dropped_total\{reason="not_owner"\} 3$/m);
    expect(text).toMatch(/^tether_node_proxy_shells_dropped_total\{reason="not_attached"\} 0$/m);
    expect(text).toMatch(/^tether_node_proxy_shells_dropped_total\{reason="not_allowed"\} 2$/m);
    st = proxyStatus(0);
    const reg = nodeMetrics({
      agent,
      networking: undefined,
      runner,
      gateway: () => undefined,
      proxy: () => st,
    });
    st = proxyStatus(1);
    expect(await reg.getSingleMetricAsString('tether_node_proxy_shells')).toMatch(
      /^tether_node_proxy_shells 1$/m,
    );
  });

  it('with --proxy off: no shells and no dropped series', async () => {
    const text = await scrape(undefined);
    expect(text).toMatch(/^tether_node_proxy_shells 0$/m);
    expect(text).not.toMatch(/^tether_node_proxy_shells_dropped_total\{/m);
  });

  it('passes promtool check metrics', async (t) => {
    if (!existsSync('/usr/bin/promtool')) t.skip();
    const body = `${await scrape(() => proxyStatus(1, { ...noShellDrops(), notOwner: 4 }))}\n`;
    const r = await runProcess('promtool', ['check', 'metrics'], { input: body, timeoutMs: 20_000 });
    expect(r.code, `${r.stdout}${r.stderr}`).toBe(0);
  });
});
