// Remote shell end to end on loopback: a real controller process, a real `tether node run
// --no-vrouter` process whose pty runs a real shell, and an operator speaking Shell.Open.
// (The operator CLI `tether shell` is not built yet; the gRPC stream is what it will use.)
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pty from 'node-pty';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ShellClient } from '../../src/api/gen/tether/v1/Shell.js';
import type { ShellServerMessage__Output } from '../../src/api/gen/tether/v1/ShellServerMessage.js';
import { tetherProto } from '../../src/api/grpc.js';
import { loadClientConfig } from '../../src/cli/admin.js';
import { CHANNEL_OPTIONS, controllerCredentials } from '../../src/node/connect.js';
import { initTestController, startTestController, type TestController } from './support/controller.js';
import { type Daemon, enrollArgs, runTether, startTether, TETHER, waitFor } from './support/proc.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-shell-it-'));
const ctlDir = join(dir, 'controller');
const nodeDir = join(dir, 'node-sh1');
let ctl: TestController | undefined;
let node: Daemon | undefined;
const clients: ShellClient[] = [];

function shellClient(cfgPath: string): ShellClient {
  const c = loadClientConfig(cfgPath);
  const proto = tetherProto();
  const client = new proto.tether.v1.Shell(
    c.server,
    controllerCredentials(c.ca, { keyPem: c.key, certPem: c.cert }),
    CHANNEL_OPTIONS,
  ) as unknown as ShellClient;
  clients.push(client);
  return client;
}

/** Opens a shell and collects what comes back. */
function open(client: ShellClient, reason: string) {
  const call = client.Open();
  const got: ShellServerMessage__Output[] = [];
  let err: { details?: string } | undefined;
  call.on('data', (m: ShellServerMessage__Output) => got.push(m));
  call.on('error', (e: { details?: string }) => {
    err = e;
  });
  call.write({ start: { node: 'sh1', reason, cols: 80, rows: 24 } });
  const output = () =>
    got
      .filter((m) => m.output)
      .map((m) => Buffer.from(m.output!).toString())
      .join('');
  return { call, got, output, error: () => err };
}

beforeAll(async () => {
  const init = await initTestController(ctlDir, { heartbeatSeconds: 1 });
  ctl = await startTestController(ctlDir, init);
  const tok = await runTether(['token', 'create', '--site', 'shsite', '--config', init.cfg]);
  expect(tok.code, tok.stderr).toBe(0);
  const en = await runTether(enrollArgs(init.addr, tok.stdout.trim(), 'sh1', nodeDir));
  expect(en.code, en.stderr).toBe(0);
  node = startTether(['node', 'run', '--state-dir', nodeDir, '--heartbeat', '1s', '--no-vrouter']);
  await waitFor('sh1 connected', () => {
    const p = join(nodeDir, 'status.json');
    return (
      existsSync(p) &&
      (JSON.parse(readFileSync(p, 'utf8')) as { session: { phase: string } }).session.phase === 'connected'
    );
  });
  const op = await runTether([
    'controller',
    'operator',
    'alice',
    '--data-dir',
    ctlDir,
    '--out',
    join(dir, 'alice.yaml'),
  ]);
  expect(op.code, op.stderr).toBe(0);
}, 90_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await node?.stop();
  await ctl?.daemon.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('remote shell', () => {
  it('refuses an admin identity and an operator without a reason', { timeout: 30_000 }, async () => {
    const a = open(shellClient(join(ctlDir, 'admin.yaml')), 'look at the disk');
    await waitFor('admin refused', () => a.error() !== undefined);
    expect(a.error()?.details).toMatch(/admin identity .* may not open a remote shell/);
    const b = open(shellClient(join(dir, 'alice.yaml')), '');
    await waitFor('no reason refused', () => b.error() !== undefined);
    expect(b.error()?.details).toMatch(/needs a reason/);
  });

  it('gives an operator a shell: echo round-trips, resize shows in stty size, exit code audited, asciicast kept', {
    timeout: 60_000,
  }, async () => {
    const s = open(shellClient(join(dir, 'alice.yaml')), 'INC-1 check the link');
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
    const client = shellClient(join(dir, 'alice.yaml'));
    const recs = await new Promise<Record<string, unknown>[]>((resolve, reject) =>
      client.ListSessions({ node: 'sh1', limit: 10 }, (e, r) =>
        e || !r
          ? reject(e)
          : resolve(r.records.map((b) => JSON.parse(Buffer.from(b).toString()) as Record<string, unknown>)),
      ),
    );
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
    const term = pty.spawn(
      TETHER,
      ['shell', 'sh1', '--reason', 'INC-2 from the cli', '--config', join(dir, 'alice.yaml')],
      {
        cols: 80,
        rows: 24,
        env: process.env as Record<string, string>,
      },
    );
    let out = '';
    term.onData((d) => {
      out += d;
    });
    const exited = new Promise<number>((resolve) => term.onExit((e) => resolve(e.exitCode)));
    try {
      // The remote shell's first prompt: the CLI is in raw mode and forwarding by then.
      await waitFor('remote prompt', () => /[#$] ?$/.test(out.trimEnd() + ' '), 20_000);
      term.write('echo c""li\r');
      await waitFor('echo through the cli', () => /\bcli\r*\n/.test(out), 8000).catch((e: Error) => {
        throw new Error(`${e.message}; terminal so far: ${JSON.stringify(out)}`);
      });
      term.resize(100, 30);
      // SIGWINCH reaches the CLI on its own path, not in order with the typed input: ask
      // again until the remote pty has the new size.
      await waitFor(
        'stty size 30 100',
        () => {
          if (out.includes('30 100')) return true;
          term.write('stty size\r');
          return false;
        },
        20_000,
        500,
      );
      term.write('exit 4\r');
      expect(await exited).toBe(4);
    } finally {
      try {
        term.kill();
      } catch {
        /* already gone */
      }
    }
  });
});
