import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/lib/log.js';
import { VRouter } from '../../../src/node/vrouter/agent.js';
import type { DesiredPolicy } from '../../../src/node/vrouter/model.js';
import { isRoot, local, network, nodeDesired, remote, Topo, type Workload } from './topo.js';

if (!isRoot) console.warn('skipping vRouter policy integration tests: they need root (network namespaces)');

describe.skipIf(!isRoot)('vRouter NetworkPolicy on the real kernel', () => {
  const topo = new Topo('vp');
  let web: Workload;
  let db: Workload;
  let web2: Workload;
  let other: Workload;
  const vrA = () => new VRouter(topo.runner, silentLogger());

  const denyWebDb: DesiredPolicy = {
    name: 'protect-db',
    defaultAction: 'allow',
    rules: [
      {
        name: 'web-to-db',
        action: 'deny',
        from: { matchLabels: { app: 'web' } },
        to: { matchLabels: { app: 'db' } },
      },
    ],
  };
  const onlyWebToDb: DesiredPolicy = {
    name: 'zero-trust',
    defaultAction: 'deny',
    rules: [
      {
        name: 'web-to-db',
        action: 'allow',
        from: { matchLabels: { app: 'web' } },
        to: { matchLabels: { app: 'db' } },
      },
    ],
  };

  const desired = (node: 'a' | 'b', policies: DesiredPolicy[]) => {
    const n = network('red', 300);
    const mine = topo.workloads.filter((w) => w.node === node);
    const theirs = topo.workloads.filter((w) => w.node !== node);
    n.localEndpoints = mine.map(local);
    n.remoteEndpoints = theirs.map((w) => remote(w, node === 'a' ? topo.vtepB : topo.vtepA));
    n.policies = policies;
    return nodeDesired(topo, node, [n]);
  };
  const syncBoth = async (policies: DesiredPolicy[]) => {
    for (const node of ['a', 'b'] as const) {
      const r = await vrA().sync(desired(node, policies));
      expect(r.ok, JSON.stringify(r.failures)).toBe(true);
    }
  };

  beforeAll(async () => {
    await topo.build();
    web = await topo.addWorkload('a', 'web', '10.1.0.21', '10.1.0.1', { app: 'web' });
    web2 = await topo.addWorkload('a', 'web2', '10.1.0.22', '10.1.0.1', { app: 'web' });
    db = await topo.addWorkload('b', 'db', '10.1.0.31', '10.1.0.1', { app: 'db' });
    other = await topo.addWorkload('b', 'other', '10.1.0.41', '10.1.0.1', { app: 'other' });
    await syncBoth([]);
  });

  afterAll(async () => {
    await vrA()
      .teardown(desired('a', []))
      .catch(() => undefined);
    await vrA()
      .teardown(desired('b', []))
      .catch(() => undefined);
    await topo.destroyPrefixed([`${topo.id}a`, `${topo.id}b`]);
    await topo.destroy();
  });

  it('a deny policy between two labelled groups blocks traffic, its drop counter rises, removing it restores traffic', async () => {
    expect(await topo.ping(web, db.ip, 2)).toBe(true);
    await syncBoth([denyWebDb]);
    const before = (await vrA().counters(desired('a', [denyWebDb])))[0]!;
    expect(before).toMatchObject({ network: 'red', policy: 'protect-db', rule: 'web-to-db' });
    expect(await topo.ping(web, db.ip, 2)).toBe(false);
    expect(await topo.ping(web2, db.ip)).toBe(false);
    // not selected by the rule: still allowed
    expect(await topo.ping(web, other.ip)).toBe(true);
    const after = (await vrA().counters(desired('a', [denyWebDb])))[0]!;
    expect(after.packets).toBeGreaterThan(before.packets);
    await syncBoth([]);
    expect(await topo.ping(web, db.ip, 2)).toBe(true);
  });

  it('a default-deny policy lets only the allowed pair talk (replies included) and counts the rest', async () => {
    await syncBoth([onlyWebToDb]);
    expect(await topo.ping(web, db.ip, 2)).toBe(true);
    expect(await topo.ping(web, other.ip)).toBe(false);
    expect(await topo.ping(other, db.ip)).toBe(false);
    const counters = await vrA().counters(desired('b', [onlyWebToDb]));
    const deflt = counters.find((c) => c.rule === '(default)');
    expect(deflt?.packets ?? 0).toBeGreaterThan(0);
    await syncBoth([]);
    expect(await topo.ping(other, db.ip)).toBe(true);
  });

  it('an endpoint joining a selected group is enforced by updating the set, keeping counters', async () => {
    await syncBoth([denyWebDb]);
    expect(await topo.ping(web, db.ip)).toBe(false);
    const c1 = (await vrA().counters(desired('a', [denyWebDb])))[0]!.packets;
    other.labels = { app: 'db' };
    await syncBoth([denyWebDb]);
    expect(await topo.ping(web, other.ip)).toBe(false);
    const c2 = (await vrA().counters(desired('a', [denyWebDb])))[0]!.packets;
    expect(c2).toBeGreaterThan(c1);
    other.labels = { app: 'other' };
    await syncBoth([]);
  });

  it('a port-scoped deny blocks only that TCP port', async () => {
    const noPg: DesiredPolicy = {
      name: 'no-postgres',
      defaultAction: 'allow',
      rules: [
        {
          name: 'web-pg',
          action: 'deny',
          from: { matchLabels: { app: 'web' } },
          to: { matchLabels: { app: 'db' } },
          ports: [{ protocol: 'tcp', port: 5432 }],
        },
      ],
    };
    // A TCP server inside the db workload namespace (Node itself; killed by pid below).
    const server = spawn(
      'ip',
      [
        'netns',
        'exec',
        db.ns,
        process.execPath,
        '-e',
        "const n=require('net');for(const p of [5432,8080])n.createServer(s=>{s.on('error',()=>{});s.end('ok')}).listen(p,'0.0.0.0')",
      ],
      { stdio: 'ignore' },
    );
    const tcp = (port: number) =>
      topo.try('timeout', ['2', 'bash', '-c', `exec 3<>/dev/tcp/${db.ip}/${port}`], web.ns);
    try {
      let up = false;
      for (let i = 0; i < 50 && !up; i++) {
        up = await tcp(8080);
        if (!up) await new Promise((r) => setTimeout(r, 100));
      }
      expect(up).toBe(true);
      expect(await tcp(5432)).toBe(true);
      await syncBoth([noPg]);
      expect(await tcp(5432)).toBe(false);
      expect(await tcp(8080)).toBe(true);
      expect(await topo.ping(web, db.ip)).toBe(true);
      const [c] = await vrA().counters(desired('a', [noPg]));
      expect(c?.packets ?? 0).toBeGreaterThan(0);
      await syncBoth([]);
      expect(await tcp(5432)).toBe(true);
    } finally {
      server.kill('SIGKILL');
    }
  });
});
