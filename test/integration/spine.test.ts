// The spine end to end over real TLS on loopback: a controller process, two node processes,
// enrollment with tokens, a VirtualNetwork reaching both nodes' disks, kill -9 of either side,
// and every refusal the issue lists. Each test sets up what it needs (beforeEach brings the
// controller up; runningNode() enrolls and starts a node if it is not), so the tests pass in
// any order (`vitest --sequence.shuffle`).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Admin, loadClientConfig } from '../../src/cli/admin.js';
import type { NodeStatusFile } from '../../src/node/agent/daemon.js';
import { readStateCache } from '../../src/node/cache.js';
import { type Daemon, enrollArgs, freePort, REPO, runTether, startTether, waitFor } from './support/proc.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-spine-'));
const ctlDir = join(dir, 'controller');
const otherCtlDir = join(dir, 'other-controller');
let port = 0;
let addr = '';
let controller: Daemon | undefined;
const nodes = new Map<string, Daemon>();
const cfg = () => join(ctlDir, 'admin.yaml');

function nodeDir(name: string): string {
  return join(dir, `node-${name}`);
}

function nodeStatus(name: string): NodeStatusFile | undefined {
  const p = join(nodeDir(name), 'status.json');
  return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as NodeStatusFile) : undefined;
}

function nodeCache(name: string): {
  revision: number;
  objects: Array<{ kind: string; metadata: { name: string } }>;
} {
  return readStateCache(join(nodeDir(name), 'cache.json'));
}

function running(d: Daemon | undefined): d is Daemon {
  return d !== undefined && d.child.exitCode === null && d.child.signalCode === null;
}

async function startController(): Promise<void> {
  controller = startTether(['controller', 'start', '--data-dir', ctlDir]);
  await waitFor(
    'controller to serve',
    async () => (await runTether(['get', 'sites', '--config', cfg()])).code === 0,
    30_000,
    200,
  );
}

function startNode(name: string): void {
  nodes.set(
    name,
    startTether(['node', 'run', '--state-dir', nodeDir(name), '--heartbeat', '1s', '--no-vrouter']),
  );
}

/** Makes `name` an enrolled node in `site` whose daemon runs and is connected, whatever
 *  ran before: enrolls it if it has no identity, starts it if it is not running. */
async function runningNode(name: string, site = 'site-a'): Promise<void> {
  if (!existsSync(join(nodeDir(name), 'identity.yaml'))) {
    const r = await enroll(name, await token(site));
    expect(r.code, r.stderr).toBe(0);
  }
  if (!running(nodes.get(name))) startNode(name);
  await waitFor(`${name} connected`, () => {
    const s = nodeStatus(name);
    return s?.pid === nodes.get(name)!.child.pid && s?.session.phase === 'connected';
  });
}

async function token(site: string, extra: string[] = []): Promise<string> {
  const r = await runTether(['token', 'create', '--site', site, '--config', cfg(), ...extra]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

async function enroll(name: string, tok: string, extra: string[] = []) {
  return runTether(enrollArgs(addr, tok, name, nodeDir(name), extra));
}

beforeAll(async () => {
  port = await freePort();
  addr = `127.0.0.1:${port}`;
  const init = await runTether([
    'controller',
    'init',
    '--data-dir',
    ctlDir,
    '--listen',
    addr,
    '--advertise',
    addr,
  ]);
  expect(init.code, init.stderr).toBe(0);
  // A second, unrelated controller identity: its CA and admin certificate are the forgeries.
  const other = await runTether([
    'controller',
    'init',
    '--data-dir',
    otherCtlDir,
    '--listen',
    '127.0.0.1:1',
    '--advertise',
    '127.0.0.1:1',
  ]);
  expect(other.code, other.stderr).toBe(0);
  await startController();
});

beforeEach(async () => {
  // A test that stopped or killed the controller and failed before restarting it must not
  // take the next one down with it.
  if (!running(controller)) await startController();
});

afterAll(async () => {
  for (const n of nodes.values()) await n.stop();
  await controller?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('spine over real TLS', () => {
  it('enrolls two nodes with tokens and delivers a VirtualNetwork to both disks at one revision', async () => {
    for (const n of ['n1', 'n2']) {
      if (!existsSync(join(nodeDir(n), 'identity.yaml'))) {
        const r = await enroll(n, await token('site-a'));
        expect(r.code, r.stderr).toBe(0);
        expect(r.stderr).toContain('controller CA verified');
      }
      const creds = readFileSync(join(nodeDir(n), 'credentials.json'));
      expect(creds.length).toBeGreaterThan(0);
      await runningNode(n);
    }
    const vn =
      'apiVersion: tether.dev/v1\nkind: VirtualNetwork\nmetadata:\n  name: red\nspec:\n  subnets: ["10.1.0.0/24"]\n';
    const applied = await runTether(['apply', '-f', '-', '--config', cfg()], { input: vn });
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toContain('virtualnetwork/red created');
    const rev = Number(/revision (\d+)/.exec(applied.stderr)?.[1]);
    for (const n of ['n1', 'n2']) {
      await waitFor(`${n} to hold revision ${rev}`, () => (nodeCache(n).revision >= rev ? true : undefined));
      expect(nodeCache(n).objects.some((o) => o.kind === 'VirtualNetwork' && o.metadata.name === 'red')).toBe(
        true,
      );
    }
    expect(nodeCache('n1').revision).toBe(nodeCache('n2').revision);
    const nodesOut = await runTether(['get', 'nodes', '-o', 'json', '--config', cfg()]);
    const list = JSON.parse(nodesOut.stdout) as {
      items: Array<{
        metadata: { name: string };
        status: { phase: string; session: { connected: boolean } };
      }>;
    };
    expect(
      list.items
        .filter((i) => ['n1', 'n2'].includes(i.metadata.name))
        .map((i) => [i.metadata.name, i.status.phase, i.status.session.connected]),
    ).toEqual([
      ['n1', 'Approved', true],
      ['n2', 'Approved', true],
    ]);
    const st = await runTether(['status', '--state-dir', nodeDir('n1'), '-o', 'json']);
    expect(JSON.parse(st.stdout)).toMatchObject({
      node: 'n1',
      site: 'site-a',
      daemon: 'running',
      session: 'connected',
    });
  });

  it('streams changes to a watching admin (tether get -w), from the listed revision on', async () => {
    const w = startTether(['get', 'vn', '-w', '-o', 'json', '--config', cfg()]);
    try {
      await waitFor('the watch to start', () => w.log().includes('watching VirtualNetwork from revision'));
      const vn =
        'apiVersion: tether.dev/v1\nkind: VirtualNetwork\nmetadata:\n  name: watched\nspec:\n  subnets: ["10.77.0.0/24"]\n';
      expect((await runTether(['apply', '-f', '-', '--config', cfg()], { input: vn })).code).toBe(0);
      expect((await runTether(['delete', 'vn', 'watched', '--config', cfg()])).code).toBe(0);
      const events = await waitFor('put and delete events', () => {
        const evs = w
          .log()
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map(
            (l) =>
              JSON.parse(l) as {
                type: string;
                revision: number;
                object: { metadata: { name: string }; status?: { vni?: number } };
              },
          )
          .filter((e) => e.object.metadata.name === 'watched');
        return evs.length >= 2 ? evs : undefined;
      });
      expect(events.map((e) => e.type)).toEqual(['put', 'delete']);
      expect(events[0]!.object.status?.vni).toBeGreaterThan(0);
      expect(events[1]!.revision).toBeGreaterThan(events[0]!.revision);
    } finally {
      await w.stop();
    }
  });

  it('tells systemd it is ready, reports status and feeds the watchdog from its own PID', async () => {
    const sock = join(dir, 'notify.sock');
    const receiver = spawn('python3', [join(REPO, 'test/integration/fixtures/sdnotify-receiver.py'), sock], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const lines: Array<{ pid?: number; data?: string; listening?: string }> = [];
    receiver.stdout.on('data', (b: Buffer) => {
      for (const l of b.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l));
    });
    try {
      await waitFor('notify receiver', () => lines.some((l) => l.listening));
      expect((await enroll('sd1', await token('site-a'))).code).toBe(0);
      const d = startTether(
        ['node', 'run', '--state-dir', nodeDir('sd1'), '--heartbeat', '1s', '--no-vrouter'],
        {
          NOTIFY_SOCKET: sock,
          WATCHDOG_USEC: '400000',
        },
      );
      nodes.set('sd1', d);
      await waitFor(
        'READY=1 and watchdog pings',
        () =>
          lines.filter((l) => l.data === 'WATCHDOG=1').length >= 3 && lines.some((l) => l.data === 'READY=1'),
      );
      const mine = lines.filter((l) => l.data);
      expect(mine.every((l) => l.pid === d.child.pid)).toBe(true);
      await waitFor('STATUS with the session state', () =>
        lines.some((l) => /^STATUS=connected, revision \d+/.test(l.data ?? '')),
      );
      await d.stop();
      expect(lines.some((l) => l.data === 'STOPPING=1')).toBe(true);
      nodes.delete('sd1');
    } finally {
      receiver.kill();
    }
  });

  it('keeps every accepted apply across kill -9 of the controller; nodes resume by delta', async () => {
    for (const n of ['n1', 'n2']) await runningNode(n);
    const before = new Map(['n1', 'n2'].map((n) => [n, nodeStatus(n)!.session.reconnects]));
    const admin = new Admin(loadClientConfig(cfg()), 3000);
    const accepted: Array<{ name: string; revision: number }> = [];
    let killed = false;
    const writer = (async () => {
      for (let i = 0; i < 400 && !killed; i++) {
        const name = `burst-${i}`;
        try {
          const r = await admin.apply({
            json: [
              Buffer.from(
                JSON.stringify({
                  apiVersion: 'tether.dev/v1',
                  kind: 'VirtualNetwork',
                  metadata: { name },
                  spec: { subnets: [`10.${(i % 200) + 2}.0.0/24`] },
                }),
              ),
            ],
            sources: [name],
            expect_revision: 0,
          });
          accepted.push({ name, revision: r.revision });
        } catch {
          // refused or cut off: not acknowledged, so not counted
        }
      }
    })();
    await waitFor('some applies to be accepted', () => accepted.length >= 20);
    await controller!.kill9();
    killed = true;
    await writer;
    admin.close();
    await startController();
    const after = await runTether(['get', 'vn', '-o', 'json', '--config', cfg()]);
    const names = new Set(
      (JSON.parse(after.stdout) as { items: Array<{ metadata: { name: string } }> }).items.map(
        (i) => i.metadata.name,
      ),
    );
    for (const a of accepted) expect(names.has(a.name), `${a.name} (revision ${a.revision}) lost`).toBe(true);
    const last = accepted[accepted.length - 1]!.revision;
    for (const n of ['n1', 'n2']) {
      const st = await waitFor(`${n} to reconnect`, () => {
        const s = nodeStatus(n);
        return s &&
          s.session.phase === 'connected' &&
          s.cache.revision >= last &&
          s.session.reconnects > before.get(n)!
          ? s
          : undefined;
      });
      expect(st.session.lastSync?.kind, `${n} should resume from its revision, not a snapshot`).toBe('delta');
    }
  });

  it('starts a kill -9ed node from its disk state with the controller stopped', async () => {
    await runningNode('n1');
    const before = nodeCache('n1');
    await nodes.get('n1')!.kill9();
    await controller!.stop();
    startNode('n1');
    const st = await waitFor('n1 to start headless', () => {
      const s = nodeStatus('n1');
      return s && s.pid === nodes.get('n1')!.child.pid ? s : undefined;
    });
    expect(st.cache.revision).toBe(before.revision);
    expect(st.cache.objects).toBe(before.objects.length);
    expect(['connecting', 'disconnected']).toContain(st.session.phase);
    await startController();
    await waitFor('n1 to reconnect', () => nodeStatus('n1')?.session.phase === 'connected');
  });
});

describe('refusals change nothing', () => {
  /** The store's head revision: unchanged means nothing was written. */
  async function revision(): Promise<number> {
    const admin = new Admin(loadClientConfig(cfg()), 15_000);
    try {
      return (await admin.list('')).revision;
    } finally {
      admin.close();
    }
  }

  it('refuses a reused single-use token', async () => {
    const t = await token('site-a');
    expect((await enroll('r1', t)).code).toBe(0);
    const again = await enroll('r2', t);
    expect(again.code).toBe(6);
    expect(again.stderr).toContain('already used');
    expect(existsSync(join(nodeDir('r2'), 'identity.yaml'))).toBe(false);
  });

  it('refuses an expired token', async () => {
    const created = await runTether([
      'token',
      'create',
      '--site',
      'site-a',
      '--ttl',
      '1s',
      '-o',
      'json',
      '--config',
      cfg(),
    ]);
    expect(created.code, created.stderr).toBe(0);
    const { token: t, expiresAt } = JSON.parse(created.stdout) as { token: string; expiresAt: string };
    // The controller judges expiry by its clock, which is this machine's.
    await waitFor('the token to expire', () => Date.now() > Date.parse(expiresAt), 10_000, 50);
    const r = await enroll('r3', t);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain('expired');
  });

  it('refuses a token for another site', async () => {
    const t = await token('site-b');
    const r = await enroll('r4', t, ['--site', 'site-a']);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain('site-b');
    const nodesOut = await runTether(['get', 'node', 'r4', '--config', cfg()]);
    expect(nodesOut.code).toBe(3);
  });

  it('refuses a controller whose CA does not match the token', async () => {
    const fp = loadClientConfig(join(otherCtlDir, 'admin.yaml')).caFingerprint;
    const real = await token('site-a');
    const forged = real.replace(/^T10[0-9a-f]{64}/, `T10${fp}`);
    const r = await enroll('r5', forged);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain('TETHER_E_CA_MISMATCH');
  });

  it('refuses a client certificate from another CA', async () => {
    // Trusts the real controller, but presents an admin certificate issued by another CA.
    const other = loadClientConfig(join(otherCtlDir, 'admin.yaml'));
    const real = loadClientConfig(cfg());
    const admin = new Admin({ ...other, ca: real.ca, server: addr }, 5000);
    await expect(admin.list('Site')).rejects.toMatchObject({ code: 'TETHER_E_UNAUTHENTICATED' });
    admin.close();
  });

  it('refuses a message over the size limit', async () => {
    const rev = await revision();
    const admin = new Admin(loadClientConfig(cfg()), 10_000);
    const huge = Buffer.alloc(5 * 1024 * 1024, 'x');
    await expect(admin.apply({ json: [huge], sources: ['huge'], expect_revision: 0 })).rejects.toMatchObject({
      code: 'TETHER_E_TOO_LARGE',
    });
    admin.close();
    expect(await revision()).toBe(rev);
  });

  it('refuses a resource that fails validation, naming the field and line', async () => {
    const bad =
      'apiVersion: tether.dev/v1\nkind: VirtualNetwork\nmetadata:\n  name: bad\nspec:\n  subnets: ["10.9.0.1/24"]\n';
    const r = await runTether(['apply', '-f', '-', '--config', cfg()], { input: bad });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('spec.subnets[0]');
    expect((await runTether(['get', 'vn', 'bad', '--config', cfg()])).code).toBe(3);
  });

  it("closes a revoked node's session within a second, exits 6, and is refused afterwards", async () => {
    // A node of its own: revoking n1/n2 would take them from the other tests.
    await runningNode('rv1');
    const exitOf = (d: Daemon) =>
      new Promise<number | string>((resolve) => {
        if (d.child.exitCode !== null || d.child.signalCode !== null)
          resolve(d.child.exitCode ?? d.child.signalCode!);
        else d.child.once('exit', (code, sig) => resolve(code ?? sig ?? -1));
      });
    const first = exitOf(nodes.get('rv1')!);
    const r = await runTether(['node', 'revoke', 'rv1', '--config', cfg()]);
    expect(r.code, r.stderr).toBe(0);
    await waitFor('rv1 to be cut off', () => nodeStatus('rv1')?.session.phase === 'revoked', 3000, 50);
    // Revoked: the daemon stops with exit 6, which the unit's RestartPreventExitStatus=6 honours.
    expect(await first).toBe(6);
    startNode('rv1');
    const again = nodes.get('rv1')!;
    await waitFor('rv1 to be refused', () => {
      const s = nodeStatus('rv1');
      return s && s.pid === again.child.pid && s.session.lastError && /revoked/.test(s.session.lastError);
    });
    expect(await exitOf(again)).toBe(6);
    expect(again.log()).toContain('TETHER_E_REVOKED');
  });
});
