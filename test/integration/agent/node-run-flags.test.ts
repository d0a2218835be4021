// `tether node run` refuses bad proxy and reconcile flags before it touches anything.
import { describe, expect, it } from 'vitest';
import { runTether } from '../support/proc.js';

describe('tether node run flags', () => {
  for (const [flags, field] of [
    [['--proxy', 'maybe'], '--proxy'],
    [['--proxy', ''], '--proxy'],
    [['--proxy-port', '0'], '--proxy-port'],
    [['--proxy-port', '65536'], '--proxy-port'],
    [['--proxy-port', '74x4'], '--proxy-port'],
    [['--reconcile-interval', '10ms'], '--reconcile-interval'],
    [['--reconcile-interval', 'soon'], '--reconcile-interval'],
    [['--metrics-listen', '127.0.0.1:99999'], '--metrics-listen'],
    [['--metrics-listen', 'everywhere'], '--metrics-listen'],
  ] as const) {
    it(`refuses ${flags.join(' ')} naming ${field} (exit 4)`, async () => {
      const r = await runTether(['node', 'run', '--state-dir', '/nonexistent-tether-state', ...flags]);
      expect(r.code, r.stderr).toBe(4);
      expect(r.stderr).toContain(field);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
  }
});
