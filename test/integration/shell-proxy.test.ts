// Remote shell to a node behind its site proxy, on loopback: a real controller, a real
// `tether node run --no-vrouter` in the proxy role (a-px, 127.0.0.1) and a second real node
// (b-sh, 127.0.0.2) that syncs through it, an operator on Shell.Open and `tether shell` in a
// real pty. A third enrolled node of the site (c-ev) speaks to the proxy itself and tries to
// inject output into b-sh's shell.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pty from 'node-pty';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ShellClient } from '../../src/api/gen/tether/v1/Shell.js';
import type { ShellServerMessage__Output } from '../../src/api/gen/tether/v1/ShellServerMessage.js';
import { tetherProto } from '../../src/api/grpc.js';
import { loadClientConfig } from '../../src/cli/admin.js';
import { siteProxyUpstream, type UpstreamCall } from '../../src/node/agent/upstream.js';
import { CHANNEL_OPTIONS, controllerCredentials } from '../../src/node/connect.js';
import { loadIdentity } from '../../src/node/identity.js';
import { initTestController, startTestController, type TestController } from './support/controller.js';
import {
  type Daemon,
  enrollArgs,
  freePort,
  runTether,
  startTether,
  TETHER,
  waitFor,
} from './support/proc.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-shell-px-it-'));
const ctlDir = join(dir, 'controller');
const pxDir = join(dir, 'node-a-px');
const shDir = join(dir, 'node-b-sh');
const evDir = join(dir, 'node-c-ev');
let ctl: TestController | undefined;
let proxyPort = 0;
const daemons: Daemon[] = [];
const clients: ShellClient[] = [];
const calls: UpstreamCall[] = [];

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

function open(client: ShellClient, reason: string) {
  const call = client.Open();
  const got: ShellServerMessage__Output[] = [];
  let err: { details?: string } | undefined;
  call.on('data', (m: ShellServerMessage__Output) => got.push(m));
  call.on('error', (e: { details?: string }) => {
    err = e;
  });
  call.write({ start: { node: 'b-sh', reason, cols: 80, rows: 24 } });
  const output = () =>
    got
      .filter((m) => m.output)
      .map((m) => Buffer.from(m.output!).toString())
      .join('');
  return { call, got, output, error: () => err };
}

const status = (d: string) => {
  const p = join(d, 'status.json');
  try {
    return existsSync(p)
      ? (JSON.parse(readFileSync(p, 'utf8')) as { session: Record<string, unknown> })
      : undefined;
  } catch {
    return undefined; // caught mid-write
  }
};

beforeAll(async () => {
  const init = await initTestController(ctlDir, { heartbeatSeconds: 1 });
  ctl = await startTestController(ctlDir, init);
  proxyPort = await freePort();
  for (const [name, d] of [
    ['a-px', pxDir],
    ['b-sh', shDir],
    ['c-ev', evDir],
  ] as const) {
    const tok = await runTether(['token', 'create', '--site', 'pxsite', '--config', init.cfg]);
    expect(tok.code, tok.stderr).toBe(0);
    const en = await runTether(enrollArgs(init.addr, tok.stdout.trim(), name, d));
    expect(en.code, en.stderr).toBe(0);
  }
  const run = (d: string, addr: string) =>
    startTether([
      'node',
      'run',
      '--state-dir',
      d,
      '--heartbeat',
      '1s',
      '--no-vrouter',
      '--proxy',
      'on',
      '--proxy-port',
      String(proxyPort),
      '--proxy-address',
      addr,
    ]);
  daemons.push(run(pxDir, '127.0.0.1'));
  await waitFor('a-px connected', () => status(pxDir)?.session.phase === 'connected', 60_000);
  daemons.push(run(shDir, '127.0.0.2'));
  // b-sh ranks after a-px, so it follows a-px's proxy once the election has run.
  await waitFor(
    'b-sh synced through the site proxy',
    () => {
      const s = status(shDir)?.session;
      return s?.phase === 'connected' && JSON.stringify(s.upstream ?? '').includes('proxy');
    },
    90_000,
  );
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
}, 180_000);

afterAll(async () => {
  for (const c of calls) c.cancel();
  for (const c of clients) c.close();
  for (const d of daemons.reverse()) await d.stop();
  await ctl?.daemon.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('remote shell through the site proxy', () => {
  it('echo, resize and exit through the proxy; audited as proxied and recorded; an injected frame of another node is dropped', {
    timeout: 120_000,
  }, async () => {
    // The controller learns that b-sh sits behind a-px from the proxy's SiteAgents: retry
    // the open until it routes there.
    let s = open(shellClient(join(dir, 'alice.yaml')), 'INC-7 behind the proxy');
    const id = await waitFor(
      'shell started through the proxy',
      () => {
        const st = s.got.find((m) => m.started)?.started;
        if (st) return st.session_id;
        if (s.error()) s = open(shellClient(join(dir, 'alice.yaml')), 'INC-7 behind the proxy');
        return undefined;
      },
      60_000,
      1000,
    );
    s.call.write({ input: Buffer.from('echo p""x\r') });
    await waitFor('echo output', () => /\bpx\r?\n/.test(s.output()), 30_000);

    // c-ev, Approved in the same site, attaches to the proxy and claims b-sh's shell.
    const ev = siteProxyUpstream(loadIdentity(evDir), `127.0.0.1:${proxyPort}`).open();
    calls.push(ev);
    let evSynced = false;
    ev.on('data', (m) => {
      if (m.snapshot_end || m.delta) evSynced = true;
    });
    ev.on('error', () => {});
    ev.write({
      hello: {
        node_name: 'c-ev',
        held_revision: 0,
        version: '',
        boot_id: 'ev',
        underlay_ip: '',
        role: '',
        heartbeat_ms: 1000,
      },
    });
    await waitFor('c-ev attached to the proxy', () => evSynced, 30_000);
    for (const node of ['b-sh', 'c-ev'])
      ev.write({ shell: { session_id: id, node, data: Buffer.from('FORGED-OUTPUT\r\n') } });
    ev.write({
      shell: {
        session_id: id,
        node: 'b-sh',
        end: { ending: 'exit', exit_code: 9, signal: 0, code: '', message: '' },
      },
    });
    // The real shell still answers, and nothing of c-ev's reached the operator.
    s.call.write({ resize: { cols: 100, rows: 30 } });
    s.call.write({ input: Buffer.from('stty size\r') });
    await waitFor('stty size through the proxy', () => s.output().includes('30 100'), 30_000);
    expect(s.output()).not.toContain('FORGED');
    expect(s.got.find((m) => m.end)).toBeUndefined();

    s.call.write({ input: Buffer.from('exit 3\r') });
    const end = await waitFor('end', () => s.got.find((m) => m.end)?.end, 30_000);
    expect(end).toMatchObject({ ending: 'exit', exit_code: 3 });
    const text = readFileSync(join(ctlDir, 'shell', 'recordings', `${id}.cast`), 'utf8');
    expect(text).toMatch(/px/);
    expect(text).toContain('30 100');
    expect(text).not.toContain('FORGED');
    const client = shellClient(join(dir, 'alice.yaml'));
    const recs = await new Promise<Record<string, unknown>[]>((resolve, reject) =>
      client.ListSessions({ node: 'b-sh', limit: 10 }, (e, r) =>
        e || !r
          ? reject(e)
          : resolve(r.records.map((b) => JSON.parse(Buffer.from(b).toString()) as Record<string, unknown>)),
      ),
    );
    expect(recs.find((r) => r.id === id)).toMatchObject({
      operator: 'alice',
      node: 'b-sh',
      site: 'pxsite',
      reason: 'INC-7 behind the proxy',
      path: 'proxy a-px',
      ending: 'exit',
      exitCode: 3,
    });
  });

  it('`tether shell b-sh` in a real pty through the proxy: echo, resize, remote exit code', {
    timeout: 90_000,
  }, async () => {
    const term = pty.spawn(
      TETHER,
      ['shell', 'b-sh', '--reason', 'INC-8 cli via proxy', '--config', join(dir, 'alice.yaml')],
      { cols: 80, rows: 24, env: process.env as Record<string, string> },
    );
    let out = '';
    term.onData((d) => {
      out += d;
    });
    const exited = new Promise<number>((resolve) => term.onExit((e) => resolve(e.exitCode)));
    try {
      await waitFor('remote prompt', () => /[#$] ?$/.test(`${out.trimEnd()} `), 30_000);
      term.write('echo c""li\r');
      await waitFor('echo through the cli', () => /\bcli\r*\n/.test(out), 20_000).catch((e: Error) => {
        throw new Error(`${e.message}; terminal so far: ${JSON.stringify(out)}`);
      });
      term.resize(100, 30);
      await waitFor(
        'stty size 30 100',
        () => {
          if (out.includes('30 100')) return true;
          term.write('stty size\r');
          return false;
        },
        30_000,
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
