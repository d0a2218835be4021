// Set-up shared by the remote-shell tests (shell.test.ts direct, shell-proxy.test.ts through
// a site proxy): a real controller with enrolled nodes, an operator identity, operator gRPC
// clients on Shell, and `tether shell` in a real pty.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as pty from 'node-pty';
import type { ShellClient } from '../../../src/api/gen/tether/v1/Shell.js';
import type { ShellServerMessage__Output } from '../../../src/api/gen/tether/v1/ShellServerMessage.js';
import { tetherProto } from '../../../src/api/grpc.js';
import { loadClientConfig } from '../../../src/cli/admin.js';
import { CHANNEL_OPTIONS, controllerCredentials } from '../../../src/node/connect.js';
import { initTestController, startTestController, type TestController } from './controller.js';
import { enrollArgs, runTether, TETHER, waitFor } from './proc.js';

/**
 * A controller (1 s heartbeats) on loopback with `nodes` enrolled in `site`, each into its
 * state directory; the nodes are not started.
 */
export async function shellController(
  ctlDir: string,
  site: string,
  nodes: ReadonlyArray<readonly [name: string, stateDir: string]>,
): Promise<TestController> {
  const init = await initTestController(ctlDir, { heartbeatSeconds: 1 });
  const ctl = await startTestController(ctlDir, init);
  for (const [name, d] of nodes) {
    const tok = await runTether(['token', 'create', '--site', site, '--config', init.cfg]);
    if (tok.code !== 0) throw new Error(`token create failed: ${tok.stderr}`);
    const en = await runTether(enrollArgs(init.addr, tok.stdout.trim(), name, d));
    if (en.code !== 0) throw new Error(`enroll of ${name} failed: ${en.stderr}`);
  }
  return ctl;
}

/** `tether controller operator NAME`: writes the operator's client config to `out`. */
export async function createOperator(ctlDir: string, name: string, out: string): Promise<string> {
  const op = await runTether(['controller', 'operator', name, '--data-dir', ctlDir, '--out', out]);
  if (op.code !== 0) throw new Error(`controller operator failed: ${op.stderr}`);
  return out;
}

/** A node's status.json, or undefined while it is absent or caught mid-write. */
export function nodeStatusFile(stateDir: string): { session: Record<string, unknown> } | undefined {
  const p = join(stateDir, 'status.json');
  try {
    return existsSync(p)
      ? (JSON.parse(readFileSync(p, 'utf8')) as { session: Record<string, unknown> })
      : undefined;
  } catch {
    return undefined;
  }
}

/** Shell clients of one test file, closed together in its afterAll. */
export class ShellClients {
  private readonly all: ShellClient[] = [];

  /** A Shell client with the identity of the client config `cfgPath`. */
  client(cfgPath: string): ShellClient {
    const c = loadClientConfig(cfgPath);
    const proto = tetherProto();
    const client = new proto.tether.v1.Shell(
      c.server,
      controllerCredentials(c.ca, { keyPem: c.key, certPem: c.cert }),
      CHANNEL_OPTIONS,
    ) as unknown as ShellClient;
    this.all.push(client);
    return client;
  }

  close(): void {
    for (const c of this.all) c.close();
  }
}

export interface OpenedShell {
  call: ReturnType<ShellClient['Open']>;
  got: ShellServerMessage__Output[];
  /** All output so far, as text. */
  output(): string;
  error(): { details?: string } | undefined;
}

/** Shell.Open to `node` (80×24) and what comes back. */
export function openShell(client: ShellClient, node: string, reason: string): OpenedShell {
  const call = client.Open();
  const got: ShellServerMessage__Output[] = [];
  let err: { details?: string } | undefined;
  call.on('data', (m: ShellServerMessage__Output) => got.push(m));
  call.on('error', (e: { details?: string }) => {
    err = e;
  });
  call.write({ start: { node, reason, cols: 80, rows: 24 } });
  const output = () =>
    got
      .filter((m) => m.output)
      .map((m) => Buffer.from(m.output!).toString())
      .join('');
  return { call, got, output, error: () => err };
}

/** The audit records of `node` (Shell.ListSessions), as JSON. */
export function shellRecords(client: ShellClient, node: string): Promise<Record<string, unknown>[]> {
  return new Promise((resolve, reject) =>
    client.ListSessions({ node, limit: 10 }, (e, r) =>
      e || !r
        ? reject(e)
        : resolve(r.records.map((b) => JSON.parse(Buffer.from(b).toString()) as Record<string, unknown>)),
    ),
  );
}

/**
 * `tether shell NODE` in a real pty: waits for the remote prompt, echoes, resizes to 100×30
 * until `stty size` shows it, then `exit 4`; resolves with the CLI's exit code.
 */
export async function ptyShellRoundTrip(o: {
  node: string;
  reason: string;
  cfg: string;
  promptMs: number;
  echoMs: number;
  resizeMs: number;
}): Promise<number> {
  const term = pty.spawn(TETHER, ['shell', o.node, '--reason', o.reason, '--config', o.cfg], {
    cols: 80,
    rows: 24,
    env: process.env as Record<string, string>,
  });
  let out = '';
  term.onData((d) => {
    out += d;
  });
  const exited = new Promise<number>((resolve) => term.onExit((e) => resolve(e.exitCode)));
  try {
    // The remote shell's first prompt: the CLI is in raw mode and forwarding by then.
    await waitFor('remote prompt', () => /[#$] ?$/.test(`${out.trimEnd()} `), o.promptMs);
    term.write('echo c""li\r');
    await waitFor('echo through the cli', () => /\bcli\r*\n/.test(out), o.echoMs).catch((e: Error) => {
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
      o.resizeMs,
      500,
    );
    term.write('exit 4\r');
    return await exited;
  } finally {
    try {
      term.kill();
    } catch {
      /* already gone */
    }
  }
}
