// Manual approval with backoff, certificate rotation over the live session, and dead-WAN
// detection by heartbeat, each against real processes over TLS on loopback. Each test
// enrolls and starts the nodes it uses, so they pass in any order.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { NodeStatusFile } from '../../src/node/agent/daemon.js';
import { type Daemon, enrollArgs, freePort, runTether, startTether, waitFor } from './support/proc.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-flows-'));
const ctlDir = join(dir, 'controller');
const cfg = join(ctlDir, 'admin.yaml');
let addr = '';
let controller: Daemon | undefined;
const started: Daemon[] = [];

const nodeDir = (n: string) => join(dir, `node-${n}`);
const status = (n: string): NodeStatusFile | undefined => {
  const p = join(nodeDir(n), 'status.json');
  return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as NodeStatusFile) : undefined;
};

async function token(site: string): Promise<string> {
  const r = await runTether(['token', 'create', '--site', site, '--config', cfg]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

/** Enrolls `name` (if it has no identity) and starts its daemon; resolves once connected. */
async function runningNode(name: string): Promise<Daemon> {
  if (!existsSync(join(nodeDir(name), 'identity.yaml'))) {
    const r = await runTether(enrollArgs(addr, await token('open'), name, nodeDir(name)));
    expect(r.code, r.stderr).toBe(0);
  }
  const d = startTether(['node', 'run', '--state-dir', nodeDir(name), '--heartbeat', '1s', '--no-vrouter']);
  started.push(d);
  await waitFor(`${name} connected`, () => {
    const s = status(name);
    return s !== undefined && s.pid === d.child.pid && s.session.phase === 'connected';
  });
  return d;
}

beforeAll(async () => {
  addr = `127.0.0.1:${await freePort()}`;
  expect(
    (await runTether(['controller', 'init', '--data-dir', ctlDir, '--listen', addr, '--advertise', addr]))
      .code,
  ).toBe(0);
  // Short certificates so rotation happens during the test: nodes renew at 75% of lifetime.
  const conf = parse(readFileSync(join(ctlDir, 'controller.yaml'), 'utf8')) as Record<string, unknown>;
  writeFileSync(
    join(ctlDir, 'controller.yaml'),
    stringify({ ...conf, nodeCertSeconds: 30, heartbeatSeconds: 1 }),
  );
  controller = startTether(['controller', 'start', '--data-dir', ctlDir]);
  await waitFor(
    'controller',
    async () => (await runTether(['get', 'sites', '--config', cfg])).code === 0,
    30_000,
    200,
  );
  const site =
    'apiVersion: tether.dev/v1\nkind: Site\nmetadata:\n  name: guarded\nspec:\n  approval: manual\n';
  expect((await runTether(['apply', '-f', '-', '--config', cfg], { input: site })).code).toBe(0);
});

afterAll(async () => {
  for (const d of started) await d.stop();
  await controller?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('manual approval', () => {
  it('makes a node wait with backoff, says so, and completes once approved', {
    timeout: 120_000,
  }, async () => {
    const t = await token('guarded');
    const impatient = await runTether([
      'node',
      'enroll',
      '--controller',
      addr,
      '--token',
      t,
      '--name',
      'g1',
      '--state-dir',
      nodeDir('g1'),
      '--wait',
      '2s',
    ]);
    expect(impatient.code).toBe(6);
    expect(impatient.stderr).toContain('waits for approval');
    expect(impatient.stderr).toMatch(/next attempt in \d/);
    expect(impatient.stderr).toContain('TETHER_E_PENDING_APPROVAL');
    const nodes = JSON.parse((await runTether(['get', 'nodes', '-o', 'json', '--config', cfg])).stdout) as {
      items: Array<{ metadata: { name: string }; status: { phase: string } }>;
    };
    expect(nodes.items.find((n) => n.metadata.name === 'g1')?.status.phase).toBe('Pending');
    // The same node retries with the same token (its key is new: a restart); only the
    // original request is recognised, so a patient node keeps its key by not restarting.
    const patient = startTether(enrollArgs(addr, await token('guarded'), 'g2', nodeDir('g2')));
    started.push(patient);
    await waitFor('g2 pending', async () =>
      (await runTether(['get', 'node', 'g2', '-o', 'json', '--config', cfg])).stdout.includes('Pending'),
    );
    expect((await runTether(['node', 'approve', 'g2', '--config', cfg])).code).toBe(0);
    await waitFor('g2 enrolled', () => existsSync(join(nodeDir('g2'), 'identity.yaml')), 60_000, 200);
    expect(patient.log()).toContain('enrolled');
  });
});

describe('live session', () => {
  it('rotates the certificate before 75% of its lifetime without dropping the session', {
    timeout: 120_000,
  }, async () => {
    expect((await runTether(enrollArgs(addr, await token('open'), 'r1', nodeDir('r1')))).code).toBe(0);
    const firstCert = JSON.parse(readFileSync(join(nodeDir('r1'), 'credentials.json'), 'utf8'))
      .certPem as string;
    const d = startTether(['node', 'run', '--state-dir', nodeDir('r1'), '--heartbeat', '1s', '--no-vrouter']);
    started.push(d);
    await waitFor('r1 connected', () => status('r1')?.session.phase === 'connected');
    const reconnects = status('r1')!.session.reconnects;
    await waitFor(
      'r1 to renew',
      () => JSON.parse(readFileSync(join(nodeDir('r1'), 'credentials.json'), 'utf8')).certPem !== firstCert,
      60_000,
      200,
    );
    const node = JSON.parse(
      (await runTether(['get', 'node', 'r1', '-o', 'json', '--config', cfg])).stdout,
    ) as { status: { certSerials: string[] } };
    expect(node.status.certSerials).toHaveLength(2);
    expect(status('r1')!.session.phase).toBe('connected');
    expect(status('r1')!.session.reconnects).toBe(reconnects);
    // The new certificate is accepted on a fresh session.
    await d.stop();
    const again = startTether([
      'node',
      'run',
      '--state-dir',
      nodeDir('r1'),
      '--heartbeat',
      '1s',
      '--no-vrouter',
    ]);
    started.push(again);
    await waitFor('r1 reconnected with the renewed certificate', () => {
      const s = status('r1');
      return s !== undefined && s.pid === again.child.pid && s.session.phase === 'connected';
    });
  });

  it('notices a dead controller by missing heartbeats, not TCP, and resumes when it returns', {
    timeout: 120_000,
  }, async () => {
    await runningNode('hb1');
    const pid = controller!.child.pid!;
    process.kill(pid, 'SIGSTOP'); // the TCP connection stays up; only heartbeats stop
    try {
      await waitFor(
        'hb1 to notice',
        () => {
          const s = status('hb1');
          return s && s.session.phase !== 'connected' && /heartbeat/.test(s.session.lastError ?? '');
        },
        20_000,
      );
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await waitFor('hb1 back', () => status('hb1')?.session.phase === 'connected', 60_000);
  });
});
