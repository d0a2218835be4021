/**
 * A cross-node floating IP with two gateway nodes, on the real kernel: gateway nodes A and C
 * (each with its own uplink to the site router), the workload on node B. The router first
 * routes the floating IP to A, then (a failover, done here by replacing the router's route)
 * to C. Each flow's replies go back through the gateway it came in by (B marks the
 * connection by the gateway's MAC), with nothing installed at the failover and no centre.
 * The workload's own new outbound flows follow the active gateway: B hears the gateway
 * nodes' signed HA heartbeats (real UDP sockets in the node namespaces) and re-plans its mark.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import { IprouteKernel } from '../../../src/kernel/iproute2.js';
import { silentLogger } from '../../../src/lib/log.js';
import type { DurableState } from '../../../src/node/agent/session.js';
import { GatewayConsumer } from '../../../src/node/gateway/consumer.js';
import { type FipReturn, withFipReturns } from '../../../src/node/gateway/model.js';
import { VRouter } from '../../../src/node/vrouter/agent.js';
import { type DesiredNodeNetwork, names } from '../../../src/node/vrouter/model.js';
import type { FollowNodeArgs } from '../support/gateway-follow-node.js';
import { REPO } from '../support/proc.js';
import {
  isRoot,
  local,
  network,
  nodeDesired,
  remote,
  Topo,
  UNDERLAY_MTU,
  type Workload,
} from '../vrouter/topo.js';

const obj = (kind: string, name: string, spec: Record<string, unknown>, status?: object): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind,
  metadata: { name },
  spec,
  ...(status ? { status: status as Record<string, unknown> } : {}),
});

describe.skipIf(!isRoot)('a cross-node floating IP with two gateway nodes (real kernel)', () => {
  const topo = new Topo('fh');
  const nodeC = `${topo.id}-nodeC`;
  const vtepC = '192.168.78.3';
  const routerIpC = '10.98.0.1';
  const uplinkC = '10.98.0.2';
  let w: Workload;
  const dir = mkdtempSync(join(tmpdir(), 'tether-fipha-'));
  const procs: ChildProcess[] = [];
  let objects: TetherObject[] = [];
  const state: DurableState = {
    revision: 1,
    snapshotRevision: 1,
    list: () => objects,
    get: (k, n) => objects.find((o) => o.kind === k && o.metadata.name === n),
    applyDelta: () => {},
    replace: () => ({ swept: 0 }),
  };
  const desired: Record<'a' | 'b' | 'c', DesiredNodeNetwork | undefined> = {
    a: undefined,
    b: undefined,
    c: undefined,
  };
  let retB: FipReturn[] = [];
  const consumers: GatewayConsumer[] = [];

  const ask = async (port: number, proto: 'UDP' | 'TCP') => {
    for (let i = 0; i < 30; i++) {
      const r = await topo.runner.run('socat', ['-T1', '-', `${proto}:203.0.113.5:${port}`], {
        netns: topo.router,
        input: 'x\n',
        allowFailure: true,
      });
      if (r.stdout.trim()) return r.stdout.trim();
    }
    return '';
  };

  // The HA side of each node, in its own namespace (test/integration/support/gateway-follow-node.ts).
  const nodes: Partial<Record<'a' | 'b' | 'c', { proc: ChildProcess; events: Record<string, unknown>[] }>> =
    {};
  const startNode = (n: 'a' | 'b' | 'c') => {
    const ns = { a: topo.nodeA, b: topo.nodeB, c: nodeC }[n];
    const args: FollowNodeArgs = {
      node: `node-${n}`,
      site: 's1',
      slice: objects,
      bind: { a: topo.vtepA, b: topo.vtepB, c: vtepC }[n],
      keyFile: join(dir, `key-${n}.pem`),
      stateDir: join(dir, `follow-${n}`),
      timers: { intervalMs: 100, deadAfterMs: 1000, preemptHoldMs: 2000 },
      ...(n === 'b'
        ? { consumer: { vtep: topo.vtepB, nodeNetns: topo.nodeB, network: desired.b!, returns: retB } }
        : {}),
    };
    const proc = spawn(
      'ip',
      [
        'netns',
        'exec',
        ns,
        process.execPath,
        '--import',
        `${REPO}node_modules/tsx/dist/esm/index.mjs`,
        `${REPO}test/integration/support/gateway-follow-node.ts`,
        JSON.stringify(args),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const events: Record<string, unknown>[] = [];
    let buf = '';
    proc.stdout!.on('data', (b: Buffer) => {
      buf += b.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        try {
          events.push(JSON.parse(buf.slice(0, i)) as Record<string, unknown>);
        } catch {}
        buf = buf.slice(i + 1);
      }
    });
    nodes[n] = { proc, events };
  };
  const until = async (what: string, f: () => boolean, ms = 30_000) => {
    for (let t = 0; t < ms && !f(); t += 50) await new Promise((r) => setTimeout(r, 50));
    if (!f()) throw new Error(`timed out waiting for ${what}`);
  };
  /** B applied its floating IP dataplane with `active` as the gateway it heard. */
  const appliedWith = (active: string) => () =>
    nodes.b!.events.some((e) => e.applied === true && e.active === active);
  const askOut = async (port: number) => {
    for (let i = 0; i < 30; i++) {
      const r = await topo.runner.run('socat', ['-T1', '-', `UDP:${topo.siteNet}:${port}`], {
        netns: w.ns,
        input: 'x\n',
        allowFailure: true,
      });
      if (r.stdout.trim()) return r.stdout.trim();
    }
    return '';
  };
  /** Conntrack lines of a namespace for the workload's flow to the router's side on `port`. */
  const flows = async (netns: string, port: number) =>
    (await topo.runner.run('cat', ['/proc/net/nf_conntrack'], { netns })).stdout
      .split('\n')
      .filter(
        (l) =>
          l.includes(`src=${w.ip} `) && l.includes(`dst=${topo.siteNet} `) && l.includes(`dport=${port} `),
      );

  beforeAll(async () => {
    await topo.build({ router: true });
    // Node C: underlay to A (routed to B through A), its own uplink to the router.
    await topo.addNs(nodeC);
    const sh = (ns: string, ...args: string[]) => topo.sh('ip', ['-n', ns, ...args]);
    await sh(
      topo.nodeA,
      'link',
      'add',
      'ul1',
      'mtu',
      String(UNDERLAY_MTU),
      'type',
      'veth',
      'peer',
      'name',
      'ul0',
      'netns',
      nodeC,
    );
    await sh(topo.nodeA, 'addr', 'add', '192.168.78.1/24', 'dev', 'ul1');
    await sh(topo.nodeA, 'link', 'set', 'ul1', 'up');
    await sh(nodeC, 'addr', 'add', `${vtepC}/24`, 'dev', 'ul0');
    await sh(nodeC, 'link', 'set', 'ul0', 'up');
    await sh(nodeC, 'route', 'add', '192.168.77.0/24', 'via', '192.168.78.1');
    await sh(topo.nodeB, 'route', 'add', '192.168.78.0/24', 'via', topo.vtepA);
    await topo.sh('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1'], topo.nodeA);
    await sh(nodeC, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'dn1', 'netns', topo.router);
    await sh(nodeC, 'addr', 'add', `${uplinkC}/24`, 'dev', 'up0');
    await sh(nodeC, 'link', 'set', 'up0', 'up');
    await sh(topo.router, 'addr', 'add', `${routerIpC}/24`, 'dev', 'dn1');
    await sh(topo.router, 'link', 'set', 'dn1', 'up');
    await sh(topo.router, 'route', 'add', '203.0.113.5/32', 'via', topo.uplinkA);

    w = await topo.addWorkload('b', 'red', '10.1.0.50', '10.1.0.1');
    // Each node's own key, as its credentials hold it; the roster carries the public half.
    const spki: Record<string, string> = {};
    for (const n of ['a', 'b', 'c']) {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      writeFileSync(join(dir, `key-${n}.pem`), privateKey.export({ type: 'pkcs8', format: 'pem' }), {
        mode: 0o600,
      });
      spki[n] = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
    }
    objects = [
      obj('Gateway', 'gw', {
        site: 's1',
        nodes: ['node-a', 'node-c'],
        localAsn: 65001,
        pool: ['203.0.113.0/28'],
        peers: [{ name: 'rtr', address: topo.routerIp, asn: 65000, holdSeconds: 9, keepaliveSeconds: 3 }],
        announce: { prefixes: [], floatingIps: true, acceptDefaultRoute: false },
        gracefulRestartSeconds: 120,
      }),
      obj('Node', 'node-a', { site: 's1' }, { vtep: topo.vtepA, publicKey: spki.a }),
      obj('Node', 'node-b', { site: 's1' }, { vtep: topo.vtepB, publicKey: spki.b }),
      obj('Node', 'node-c', { site: 's1' }, { vtep: vtepC, publicKey: spki.c }),
      obj('Endpoint', 'node-b.r', {
        network: 'red',
        node: 'node-b',
        site: 's1',
        mac: w.mac,
        ip: w.ip,
        vtep: topo.vtepB,
      }),
      obj('FloatingIP', 'r', {
        gateway: 'gw',
        address: '203.0.113.5',
        network: 'red',
        target: { endpoint: 'node-b.r' },
      }),
    ];
    const redGw = () => {
      const n = network('red', 710, { breakout: true });
      n.remoteEndpoints = [remote(w, topo.vtepB)];
      return n;
    };
    desired.a = withFipReturns(nodeDesired(topo, 'a', [redGw()], true), 'node-a', 's1', objects).desired;
    const c: DesiredNodeNetwork = {
      node: 'node-c',
      netnsPrefix: `${topo.id}c`,
      underlay: { ifname: 'ul0', vtepIp: vtepC, mtu: UNDERLAY_MTU, netns: nodeC },
      breakout: { uplinkIfname: 'up0' },
      networks: [redGw()],
    };
    desired.c = withFipReturns(c, 'node-c', 's1', objects).desired;
    const redB = network('red', 710);
    redB.localEndpoints = [local(w)];
    const planB = withFipReturns(nodeDesired(topo, 'b', [redB]), 'node-b', 's1', objects);
    desired.b = planB.desired;
    retB = planB.returns;
    for (const d of Object.values(desired)) {
      const r = await new VRouter(topo.runner, silentLogger()).sync(d!);
      expect(r.ok, JSON.stringify(r.failures)).toBe(true);
    }
    for (const [n, ns, vtep] of [
      ['a', topo.nodeA, topo.vtepA],
      ['b', topo.nodeB, topo.vtepB],
      ['c', nodeC, vtepC],
    ] as const)
      consumers.push(
        new GatewayConsumer({
          node: `node-${n}`,
          site: 's1',
          vtep,
          stateDir: join(dir, `gateway-${n}`),
          kernel: new IprouteKernel(topo.runner),
          log: silentLogger(),
          nodeNetns: ns,
          network: () => desired[n],
          localEndpoints: () => (n === 'b' ? objects.filter((o) => o.kind === 'Endpoint') : []),
          fipReturns: () => (n === 'b' ? retB : []),
        }),
      );
    for (const g of consumers) await g.apply(state).catch(() => undefined); // BIRD has no router here
    // The router's side of the workload's own flows: an address behind it, reached by both.
    await sh(nodeC, 'route', 'add', '172.31.255.0/24', 'via', routerIpC);
    for (const port of [7100, 7101, 7102])
      procs.push(
        spawn(
          'ip',
          [
            'netns',
            'exec',
            topo.router,
            'socat',
            `UDP-LISTEN:${port},bind=${topo.siteNet},fork`,
            'SYSTEM:echo $SOCAT_PEERADDR',
          ],
          { stdio: 'ignore' },
        ),
      );
    for (const spec of ['UDP-LISTEN:7000,fork', 'TCP-LISTEN:7001,fork,reuseaddr']) {
      const c = spawn('ip', ['netns', 'exec', w.ns, 'socat', spec, 'SYSTEM:echo $SOCAT_PEERADDR'], {
        stdio: 'ignore',
      });
      procs.push(c);
    }
  }, 120_000);

  afterAll(async () => {
    for (const g of consumers) await g.bird.stop();
    for (const p of procs) p.kill();
    for (const n of Object.values(nodes)) n?.proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    for (const d of Object.values(desired))
      if (d) await new VRouter(topo.runner, silentLogger()).teardown(d).catch(() => undefined);
    await topo.destroyPrefixed([`${topo.id}a`, `${topo.id}b`, `${topo.id}c`]);
    await topo.destroy();
  });

  it('flows through either gateway reach the workload with the real client address, and their replies return through that gateway', async () => {
    expect(retB[0]?.hops.map((h) => h.node)).toEqual(['node-a', 'node-c']);
    expect(await ask(7001, 'TCP')).toBe(topo.routerIp);
    expect(await ask(7000, 'UDP')).toBe(topo.routerIp);
    // Failover: the router now sends the floating IP to C. Nothing is installed anywhere.
    await topo.sh('ip', ['-n', topo.router, 'route', 'replace', '203.0.113.5/32', 'via', uplinkC]);
    // A TCP handshake only completes when its SYN-ACK meets C's conntrack (un-DNAT): a reply
    // sent to A would be a SYN-ACK A never saw the SYN of (invalid, never NATed).
    expect(await ask(7001, 'TCP')).toBe(routerIpC);
    expect(await ask(7000, 'UDP')).toBe(routerIpC);
    const ct = await topo.runner.run('cat', ['/proc/net/nf_conntrack'], {
      netns: names.vnNetns(desired.b!.netnsPrefix, 710),
    });
    const marks = (src: string) =>
      new Set(
        ct.stdout
          .split('\n')
          .filter((l) => l.includes(`src=${src} `) && l.includes('dport=7001'))
          .map((l) => /mark=(\d+)/.exec(l)?.[1]),
      );
    expect(marks(topo.routerIp)).toEqual(new Set([String(0x74670001)]));
    expect(marks(routerIpC)).toEqual(new Set([String(0x74670002)]));
  }, 120_000);

  it("the workload's own new outbound flows follow the active gateway B hears (A stopped: through C; A back: through A); open flows keep their mark", async () => {
    const redA = names.vnNetns(desired.a!.netnsPrefix, 710);
    const redB = names.vnNetns(desired.b!.netnsPrefix, 710);
    const redC = names.vnNetns(desired.c!.netnsPrefix, 710);
    const routeFipTo = (via: string) =>
      topo.sh('ip', ['-n', topo.router, 'route', 'replace', '203.0.113.5/32', 'via', via]);
    startNode('b');
    startNode('a');
    startNode('c');
    await until('B to hear node-a active and apply', appliedWith('node-a'));
    await routeFipTo(topo.uplinkA);
    expect(await askOut(7100)).toBe('203.0.113.5');
    expect((await flows(redA, 7100)).length).toBeGreaterThan(0);
    expect(await flows(redC, 7100)).toHaveLength(0);

    // A's node daemon is gone (killed): C takes over and says so; B hears it and re-plans.
    nodes.a!.proc.kill('SIGKILL');
    await until('B to hear node-c active and apply', appliedWith('node-c'));
    const moved = nodes.b!.events.find((e) => e.applied === true && e.active === 'node-c');
    expect(String(moved?.changes)).toMatch(/nft-table/);
    // The router follows the BGP announcements (here by hand, as in the test above).
    await routeFipTo(uplinkC);
    expect(await askOut(7101)).toBe('203.0.113.5');
    expect((await flows(redC, 7101)).length).toBeGreaterThan(0);
    expect(await flows(redA, 7101)).toHaveLength(0);
    // B: the flow opened before keeps A's mark (its replies still go back through A), the new
    // one has C's.
    const mark = async (port: number) =>
      new Set((await flows(redB, port)).map((l) => /mark=(\d+)/.exec(l)?.[1]));
    expect(await mark(7100)).toEqual(new Set([String(0x74670001)]));
    expect(await mark(7101)).toEqual(new Set([String(0x74670002)]));

    // A returns (a restarted daemon: it listens, then takes the role back): B follows it.
    const before = nodes.b!.events.length;
    startNode('a');
    await until(
      'B to hear node-a active again and apply',
      () => nodes.b!.events.slice(before).some((e) => e.applied === true && e.active === 'node-a'),
      60_000,
    );
    await routeFipTo(topo.uplinkA);
    expect(await askOut(7102)).toBe('203.0.113.5');
    expect((await flows(redA, 7102)).length).toBeGreaterThan(0);
    expect(await flows(redC, 7102)).toHaveLength(0);
    expect(await mark(7102)).toEqual(new Set([String(0x74670001)]));
    // Nothing B heard was refused: the heartbeats were the gateways' own.
    expect(nodes.b!.events.some((e) => 'error' in e)).toBe(false);
  }, 180_000);
});
