import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SystemdNotifier, watchdogInterval } from '../../src/lib/sdnotify.js';

/**
 * SystemdNotifier against a real AF_UNIX datagram notify socket: a python3 receiver stands
 * in for systemd (one line per datagram, with the sender PID from SCM_CREDENTIALS) and a
 * child node process uses the real sd-notify native binding.
 */
const repo = join(import.meta.dirname, '../..');
const fixtures = join(import.meta.dirname, 'fixtures');
const dir = mkdtempSync(join(tmpdir(), 'tether-sdnotify-'));
const sock = join(dir, 'notify.sock');

interface Datagram {
  pid: number | null;
  data: string;
}

let receiver: ChildProcess;
const received: Datagram[] = [];

beforeAll(async () => {
  receiver = spawn('python3', [join(fixtures, 'sdnotify-receiver.py'), sock], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let buf = '';
  await new Promise<void>((resolve, reject) => {
    receiver.on('exit', (code) => reject(new Error(`receiver exited (${code})`)));
    receiver.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const msg = JSON.parse(buf.slice(0, nl)) as Datagram | { listening: string };
        buf = buf.slice(nl + 1);
        if ('listening' in msg) resolve();
        else received.push(msg);
        nl = buf.indexOf('\n');
      }
    });
  });
});

afterAll(() => {
  receiver?.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
});

interface ChildReport {
  pid: number;
  started: boolean;
  healthyCalls: number;
  intervalMs: number | null;
}

/** Runs the fixture child; returns its report and the datagrams it sent, in order. */
async function runChild(
  env: Record<string, string>,
  viaShell = false,
): Promise<{ report: ChildReport; got: string[]; pids: Array<number | null> }> {
  const base = { ...process.env };
  delete base.NOTIFY_SOCKET;
  delete base.WATCHDOG_USEC;
  delete base.WATCHDOG_PID;
  const args = ['--import', 'tsx', join(fixtures, 'sdnotify-child.ts')];
  // With viaShell the child learns its own PID as WATCHDOG_PID (exec keeps the PID).
  const child = viaShell
    ? spawn('sh', ['-c', `WATCHDOG_PID=$$ exec "${process.execPath}" "$@"`, 'sh', ...args], {
        cwd: repo,
        env: { ...base, ...env },
        stdio: ['ignore', 'pipe', 'inherit'],
      })
    : spawn(process.execPath, args, {
        cwd: repo,
        env: { ...base, ...env },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  expect(code).toBe(0);
  const report = JSON.parse(out.trim()) as ChildReport;
  // Datagrams sit in the socket before the child exits; wait until the receiver printed
  // the last one (STOPPING=1) when the child talked to it at all.
  if (env.NOTIFY_SOCKET) {
    await vi.waitFor(
      () => expect(received.some((d) => d.pid === report.pid && d.data === 'STOPPING=1')).toBe(true),
      { timeout: 5000, interval: 20 },
    );
  }
  const mine = received.filter((d) => d.pid === report.pid);
  return { report, got: mine.map((d) => d.data), pids: mine.map((d) => d.pid) };
}

describe('SystemdNotifier over a real notify socket', () => {
  it('sends READY, STATUS, watchdog pings while healthy and none after', async () => {
    const { report, got } = await runChild({
      NOTIFY_SOCKET: sock,
      WATCHDOG_USEC: '200000',
      HEALTHY_PINGS: '4',
      AFTER_TICKS: '5',
    });
    expect(report).toMatchObject({ started: true, intervalMs: 100 });
    // healthy() was asked at least 4 + 1 + (more while waiting) times, but only the first
    // four answers were "yes".
    expect(report.healthyCalls).toBeGreaterThanOrEqual(6);
    expect(got).toEqual([
      'READY=1',
      'STATUS=x',
      'WATCHDOG=1',
      'WATCHDOG=1',
      'WATCHDOG=1',
      'WATCHDOG=1',
      'STATUS=unhealthy',
      'STOPPING=1',
    ]);
  });

  it('every datagram carries the daemon PID itself (what NotifyAccess=main requires)', async () => {
    const { report, got } = await runChild({
      NOTIFY_SOCKET: sock,
      WATCHDOG_USEC: '100000',
      HEALTHY_PINGS: '2',
    });
    expect(got.length).toBe(6);
    expect(received.filter((d) => d.pid === null)).toEqual([]);
    expect(report.intervalMs).toBe(50);
  });

  it('runs the watchdog when WATCHDOG_PID is our PID', async () => {
    const { report, got } = await runChild(
      { NOTIFY_SOCKET: sock, WATCHDOG_USEC: '200000', HEALTHY_PINGS: '1', AFTER_TICKS: '2' },
      true,
    );
    expect(report.started).toBe(true);
    expect(got).toEqual(['READY=1', 'STATUS=x', 'WATCHDOG=1', 'STATUS=unhealthy', 'STOPPING=1']);
  });

  it('no watchdog when WATCHDOG_PID names another process', async () => {
    const { report, got } = await runChild({
      NOTIFY_SOCKET: sock,
      WATCHDOG_USEC: '200000',
      WATCHDOG_PID: '1',
    });
    expect(report).toMatchObject({ started: false, healthyCalls: 0, intervalMs: null });
    expect(got).toEqual(['READY=1', 'STATUS=x', 'STOPPING=1']);
  });

  it('no watchdog without WATCHDOG_USEC', async () => {
    const { report, got } = await runChild({ NOTIFY_SOCKET: sock });
    expect(report.started).toBe(false);
    expect(got).toEqual(['READY=1', 'STATUS=x', 'STOPPING=1']);
  });

  it('is a silent no-op without NOTIFY_SOCKET', async () => {
    const before = received.length;
    const { report, got } = await runChild({ WATCHDOG_USEC: '200000' });
    expect(report.started).toBe(false);
    expect(got).toEqual([]);
    expect(received.length).toBe(before);
  });
});

describe('SystemdNotifier logic (fake backend, fake timers)', () => {
  it('parses WATCHDOG_USEC and WATCHDOG_PID like sd_watchdog_enabled', () => {
    expect(watchdogInterval({ WATCHDOG_USEC: '200000' }, 42)).toBe(100);
    expect(watchdogInterval({ WATCHDOG_USEC: '200000', WATCHDOG_PID: '42' }, 42)).toBe(100);
    expect(watchdogInterval({ WATCHDOG_USEC: '200000', WATCHDOG_PID: '43' }, 42)).toBeUndefined();
    expect(watchdogInterval({ WATCHDOG_USEC: '0' }, 42)).toBeUndefined();
    expect(watchdogInterval({ WATCHDOG_USEC: 'soon' }, 42)).toBeUndefined();
    expect(watchdogInterval({}, 42)).toBeUndefined();
    expect(watchdogInterval({ WATCHDOG_USEC: '1' }, 42)).toBe(1);
  });

  it('skips pings while unhealthy, reports it once, resumes when healthy again', () => {
    vi.useFakeTimers();
    try {
      const sent: string[] = [];
      const unhealthy: unknown[] = [];
      const n = new SystemdNotifier({
        env: { NOTIFY_SOCKET: '/nonexistent', WATCHDOG_USEC: '1000000' },
        pid: 7,
        backend: { notify: (s) => sent.push(s) },
        onUnhealthy: (r) => unhealthy.push(r),
      });
      const answers = [true, false, false, true];
      let i = 0;
      expect(
        n.startWatchdog(() => {
          const a = answers[i++];
          if (a === undefined) throw new Error('wedged');
          return a;
        }),
      ).toBe(true);
      expect(sent).toEqual(['WATCHDOG=1']);
      vi.advanceTimersByTime(500 * 3);
      expect(sent).toEqual(['WATCHDOG=1', 'WATCHDOG=1']);
      expect(unhealthy).toEqual(['healthy() returned false']);
      vi.advanceTimersByTime(500 * 3);
      expect(sent).toHaveLength(2);
      expect(unhealthy).toHaveLength(2);
      expect(String(unhealthy[1])).toMatch(/wedged/);
      n.stopping();
      vi.advanceTimersByTime(5000);
      expect(sent).toEqual(['WATCHDOG=1', 'WATCHDOG=1', 'STOPPING=1']);
    } finally {
      vi.useRealTimers();
    }
  });

  it('keeps STATUS on one line and sends nothing when disabled', () => {
    const sent: string[] = [];
    const on = new SystemdNotifier({
      env: { NOTIFY_SOCKET: '@x' },
      backend: { notify: (s) => sent.push(s) },
    });
    on.status('line one\nREADY=1');
    expect(sent).toEqual(['STATUS=line one READY=1']);
    const off = new SystemdNotifier({ env: {}, backend: { notify: (s) => sent.push(s) } });
    off.ready();
    off.status('x');
    expect(off.startWatchdog(() => true)).toBe(false);
    off.stopping();
    expect(sent).toHaveLength(1);
  });
});
