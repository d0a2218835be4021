// `tether dashboard` in a real pty (node-pty) against a real control API on a unix socket
// (startControlApi, the daemon's own server, fed a status and an event ring this test changes).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pty from 'node-pty';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/lib/log.js';
import {
  type ControlApi,
  controlSocketPath,
  EventRing,
  type NodeLiveStatus,
  type NodeTraffic,
  startControlApi,
} from '../../src/node/control-api.js';
import { saveIdentity } from '../../src/node/identity.js';
import { TETHER, waitFor } from './support/proc.js';

let dir: string;
let api: ControlApi;
const events = new EventRing();
let phase = 'connected';

const status = (): NodeLiveStatus => ({
  node: 't11-n1',
  site: 't11-s1',
  controller: '127.0.0.1:7443',
  pid: process.pid,
  startedAt: new Date().toISOString(),
  session: { phase, since: '2026-12-03T10:00:00.000Z' },
  proxy: { role: 'active', agents: 2, wan: { phase: 'connected' } },
  revision: 42,
  snapshotRevision: 42,
  networks: [{ name: 'radio-a', vni: 4097, localEndpoints: 3, remoteEndpoints: 9 }],
  endpoints: [],
  counters: { reconciles: 7, kernelErrors: 0 },
  health: { ok: true, reasons: [] },
});

// Counters that grow by 1 MiB received per answer, as a busy network's would.
let reads = 0;
const traffic = async (): Promise<NodeTraffic> => {
  reads++;
  const c = (n: number) => ({ rxBytes: n * 1048576, rxPackets: n * 700, txBytes: 4096, txPackets: 3 });
  return {
    at: new Date().toISOString(),
    links: [
      { network: 'radio-a', link: 'vxlan', ...c(reads) },
      { network: 'radio-a', link: 'bridge', ...c(reads) },
    ],
    policy: [{ network: 'radio-a', policy: '(all)', rule: '(default)', packets: 17, bytes: 1700 }],
  };
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 't11-dash-'));
  saveIdentity(
    dir,
    { name: 't11-n1', site: 't11-s1', controllers: ['127.0.0.1:7443'], caFingerprint: 'ab' },
    'ca',
    {
      keyPem: 'k',
      certPem: 'c',
    },
  );
  events.push('session', 'connected to controller');
  api = await startControlApi({
    socketPath: controlSocketPath(dir),
    status,
    events,
    traffic,
    log: silentLogger(),
  });
});
afterAll(async () => {
  await api.close();
  rmSync(dir, { recursive: true, force: true });
});

function dashboard(env: Record<string, string>, cols = 80, rows = 24) {
  const term = pty.spawn(TETHER, ['dashboard', '--state-dir', dir, '--interval', '200ms'], {
    cols,
    rows,
    env: { ...(process.env as Record<string, string>), ...env },
  });
  let out = '';
  term.onData((d) => {
    out += d;
  });
  const exited = new Promise<number>((resolve) => term.onExit((e) => resolve(e.exitCode)));
  return { term, out: () => out, clear: () => (out = ''), exited };
}

describe('tether dashboard', () => {
  it('renders live state, follows changes and events, redraws on resize, exits 0 on q', {
    timeout: 90_000,
  }, async () => {
    const d = dashboard({ TERM: 'xterm-256color', NO_COLOR: '' });
    try {
      await waitFor('first frame', () => /t11-n1 @ t11-s1/.test(d.out()) && /radio-a/.test(d.out()), 30_000);
      expect(d.out()).toContain('4097');
      expect(d.out()).toContain('connected to controller');
      // Colour on a TTY without NO_COLOR.
      expect(d.out()).toContain('\u001b[32mconnected');
      // Traffic per network with a rate from two answers, and the default-deny drops.
      await waitFor('traffic rates', () => /radio-a\s+vxlan\s+\d[\d.]* MiB .* MiB\/s/.test(d.out()), 10_000);
      expect(d.out()).toMatch(/POLICY DROPS/);
      expect(d.out()).toMatch(/radio-a=\S*17/);
      phase = 'disconnected';
      events.push('session', 'WAN lost: t11 planted');
      await waitFor(
        'new state',
        () => /disconnected/.test(d.out()) && /WAN lost: t11 planted/.test(d.out()),
        10_000,
      );
      // An event too long for 80 columns is cut; after the resize it shows whole.
      const long = `long event ${'x'.repeat(80)} end-t11`;
      events.push('session', long);
      await waitFor('cut event', () => /long event x+…/.test(d.out()), 10_000);
      expect(d.out()).not.toContain('end-t11');
      d.clear();
      d.term.resize(120, 30);
      await waitFor('redraw at 120 columns', () => d.out().includes(long), 10_000);
      d.term.write('q');
      expect(await d.exited).toBe(0);
    } finally {
      phase = 'connected';
      d.term.kill();
    }
  });

  it('with NO_COLOR prints no escape codes but the documented cursor controls', {
    timeout: 60_000,
  }, async () => {
    const d = dashboard({ TERM: 'xterm-256color', NO_COLOR: '1' });
    try {
      await waitFor('frame', () => /radio-a/.test(d.out()), 30_000);
      d.term.write('q');
      expect(await d.exited).toBe(0);
      const rest = ['\u001b[H', '\u001b[2J', '\u001b[?25l', '\u001b[?25h'].reduce(
        (t, c) => t.replaceAll(c, ''),
        d.out(),
      );
      expect(rest).not.toContain('\u001b');
    } finally {
      d.term.kill();
    }
  });

  it('on a dumb 80x24 terminal: no escape codes at all, no line over 80 columns', {
    timeout: 60_000,
  }, async () => {
    const d = dashboard({ TERM: 'dumb', NO_COLOR: '' }, 80, 24);
    try {
      await waitFor('frame', () => /radio-a/.test(d.out()), 30_000);
      d.term.write('q');
      expect(await d.exited).toBe(0);
      expect(d.out()).not.toContain('\u001b');
      for (const line of d.out().split(/\r?\n/)) expect(line.length).toBeLessThanOrEqual(80);
    } finally {
      d.term.kill();
    }
  });
});
