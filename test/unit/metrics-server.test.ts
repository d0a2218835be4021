import fc from 'fast-check';
import { Counter, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { isTetherError } from '../../src/lib/errors.js';
import { parseMetricsListen, startMetricsServer } from '../../src/lib/metrics-server.js';

describe('metrics server', () => {
  it('parses off and HOST:PORT, refuses anything else with TETHER_E_INVALID', () => {
    expect(parseMetricsListen('off')).toBe('off');
    expect(parseMetricsListen('127.0.0.1:9448')).toEqual({ host: '127.0.0.1', port: 9448 });
    for (const bad of ['', '127.0.0.1', '300.0.0.1:1', '127.0.0.1:70000', 'x:1'])
      expect(() => parseMetricsListen(bad)).toThrow(/bad metrics listen/);
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (s) => {
        try {
          parseMetricsListen(s);
        } catch (e) {
          expect(isTetherError(e, 'TETHER_E_INVALID')).toBe(true);
        }
      }),
    );
  });

  it('serves /metrics, /livez and a failing /readyz on loopback', async () => {
    const registry = new Registry();
    new Counter({ name: 'tether_test_events_total', help: 'test', registers: [registry] }).inc(3);
    const m = await startMetricsServer({
      listen: { host: '127.0.0.1', port: 0 },
      registry,
      livez: () => ({ ok: true, reasons: [] }),
      readyz: () => ({ ok: false, reasons: ['reconcile not converged'], detail: ['leader: no', 'term: 0'] }),
    });
    try {
      const base = `http://127.0.0.1:${m.port}`;
      const metrics = await fetch(`${base}/metrics`);
      expect(await metrics.text()).toContain('tether_test_events_total 3');
      expect((await fetch(`${base}/livez`)).status).toBe(200);
      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.text()).toBe('not ok: reconcile not converged\nleader: no\nterm: 0\n');
      expect((await fetch(`${base}/nope`)).status).toBe(404);
    } finally {
      await m.close();
    }
  });
});
