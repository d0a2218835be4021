// Remote shell end to end on loopback: a real controller process, a real `tether node run
// --no-vrouter` process whose pty runs a real shell, an operator speaking Shell.Open and
// `tether shell` in a real pty.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestController } from './support/controller.js';
import { type Daemon, startTether, waitFor } from './support/proc.js';
import {
  createOperator,
  nodeStatusFile,
  openShell,
  ptyShellRoundTrip,
  ShellClients,
  shellController,
  shellRecords,
} from './support/shell.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-shell-it-'));
const ctlDir = join(dir, 'controller');
const nodeDir = join(dir, 'node-sh1');
const alice = join(dir, 'alice.yaml');
let ctl: TestController | undefined;
let node: Daemon | undefined;
const clients = new ShellClients();

beforeAll(async () => {
  ctl = await shellController(ctlDir, 'shsite', [['sh1', nodeDir]]);
  node = startTether(['node', 'run', '--state-dir', nodeDir, '--heartbeat', '1s', '--no-vrouter']);
  await waitFor('sh1 connected', () => nodeStatusFile(nodeDir)?.session.phase === 'connected');
  await createOperator(ctlDir, 'alice', alice);
}, 90_000);

afterAll(async () => {
  clients.close();
  await node?.stop();
  await ctl?.daemon.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('remote shell', () => {
  it('refuses an admin identity and an operator without a reason', { timeout: 30_000 }, async () => {
    const a = openShell(clients.client(join(ctlDir, 'admin.yaml')), 'sh1', 'look at the disk');
    await waitFor('admin refused', () => a.error() !== undefined);
    expect(a.error()?.details).toMatch(/admin identity .* may not open a remote shell/);
    const b = openShell(clients.client(alice), 'sh1', '');
    await waitFor('no reason refused', () => b.error() !== undefined);
    expect(b.error()?.details).toMatch(/needs a reason/);
  });

  it('gives an operator a shell: echo round-trips, resize shows in stty size, exit code audited, asciicast kept', {
    timeout: 60_000,
  }, async () => {
    const s = openShell(clients.client(alice), 'sh1', 'INC-1 check the link');
    const id = (await waitFor('started', () => s.got.find((m) => m.started)?.started)).session_id;
    s.call.write({ input: Buffer.from('echo h""i\r') });
    await waitFor('echo output', () => /\bhi\r?\n/.test(s.output()));
    s.call.write({ resize: { cols: 100, rows: 30 } });
    s.call.write({ input: Buffer.from('stty size\r') });
    await waitFor('stty size', () => s.output().includes('30 100'));
    s.call.write({ input: Buffer.from('exit 3\r') });
    const end = await waitFor('end', () => s.got.find((m) => m.end)?.end);
    expect(end).toMatchObject({ ending: 'exit', exit_code: 3 });
    const cast = join(ctlDir, 'shell', 'recordings', `${id}.cast`);
    const text = readFileSync(cast, 'utf8');
    expect(text).toContain('"o"');
    expect(text).toMatch(/hi/);
    // The audit as an operator reads it (Shell.ListSessions), records are JSON.
    const recs = await shellRecords(clients.client(alice), 'sh1');
    expect(recs.find((r) => r.id === id)).toMatchObject({
      operator: 'alice',
      node: 'sh1',
      reason: 'INC-1 check the link',
      path: 'direct',
      ending: 'exit',
      exitCode: 3,
    });
  });

  it('`tether shell` in a real pty: echo, resize on SIGWINCH, exits with the remote exit code', {
    timeout: 60_000,
  }, async () => {
    const code = await ptyShellRoundTrip({
      node: 'sh1',
      reason: 'INC-2 from the cli',
      cfg: alice,
      promptMs: 20_000,
      echoMs: 8000,
      resizeMs: 20_000,
    });
    expect(code).toBe(4);
  });
});
