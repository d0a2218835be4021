// The controller feeds systemd's watchdog only while it is healthy: a real controller
// process, a real AF_UNIX datagram socket as NOTIFY_SOCKET, and a data directory on a
// small tmpfs of the test's own that is filled up so the store cannot take writes.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initTestController, startTestController, type TestController } from './support/controller.js';
import { REPO, runTether, waitFor } from './support/proc.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-ctl-watchdog-'));
const mnt = join(dir, 'small');
const sock = join(dir, 'notify.sock');
let mounted = false;
let receiver: ChildProcess | undefined;
const got: Array<{ pid: number | null; data: string }> = [];

beforeAll(async () => {
  mkdirSync(mnt);
  // Our own mount on our own directory; unmounted by path in afterAll.
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tether-test', mnt]);
  mounted = true;
  receiver = spawn('python3', [join(REPO, 'test/integration/fixtures/sdnotify-receiver.py'), sock], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let buf = '';
  let listening = false;
  receiver.stdout!.on('data', (b: Buffer) => {
    buf += b.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const m = JSON.parse(buf.slice(0, nl)) as { pid: number | null; data: string } | { listening: string };
      buf = buf.slice(nl + 1);
      if ('listening' in m) listening = true;
      else got.push(m);
    }
  });
  await waitFor('notify receiver', () => listening);
});

afterAll(() => {
  receiver?.kill('SIGTERM');
  if (mounted) execFileSync('umount', [mnt]);
  rmSync(dir, { recursive: true, force: true });
});

/** Fills the file system under `path` until not one more page fits. */
function fill(path: string): void {
  const fd = openSync(path, 'w');
  try {
    for (let chunk = 1 << 20; chunk >= 512; chunk >>= 1) {
      const b = Buffer.alloc(chunk);
      for (;;) {
        try {
          writeSync(fd, b);
        } catch {
          break;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
}

describe('controller watchdog', () => {
  let c: TestController | undefined;
  afterAll(async () => {
    await c?.daemon.stop();
  });

  it('stops feeding the watchdog while the store cannot write, and resumes once it can', {
    timeout: 120_000,
  }, async () => {
    const dataDir = join(mnt, 'controller');
    c = await startTestController(dataDir, await initTestController(dataDir), {
      NOTIFY_SOCKET: sock,
      WATCHDOG_USEC: '400000',
    });
    const pid = c.daemon.child.pid!;
    const mine = () => got.filter((m) => m.pid === pid).map((m) => m.data);
    await waitFor('READY=1 and watchdog pings', () => {
      const d = mine();
      return d.includes('READY=1') && d.filter((x) => x === 'WATCHDOG=1').length >= 3;
    });
    const filler = join(mnt, 'filler');
    fill(filler);
    await waitFor('STATUS=unhealthy naming the store', () =>
      mine().some((x) => /^STATUS=unhealthy: store .* write failed/.test(x)),
    );
    const atUnhealthy = mine().length;
    // While it stays full the controller still serves reads (one CLI round trip spans
    // several 200 ms watchdog intervals) but sends no WATCHDOG=1.
    const read = await runTether(['get', 'sites', '--config', c.cfg]);
    expect(read.code, read.stderr).toBe(0);
    expect(mine().slice(atUnhealthy)).not.toContain('WATCHDOG=1');
    rmSync(filler);
    await waitFor('STATUS back to serving, then pings again', () => {
      const after = mine().slice(atUnhealthy);
      const back = after.findIndex((x) => x.startsWith('STATUS=serving'));
      return back >= 0 && after.slice(back).includes('WATCHDOG=1');
    });
    expect(mine().slice(atUnhealthy).indexOf('WATCHDOG=1')).toBeGreaterThan(
      mine()
        .slice(atUnhealthy)
        .findIndex((x) => x.startsWith('STATUS=serving')),
    );
  });
});
