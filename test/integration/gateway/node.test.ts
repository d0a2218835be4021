/**
 * The gateway as `tether node run` drives it (GatewayConsumer, the reconcile consumer), against
 * real site routers in namespaces this test creates: a BIRD 2 router and an FRR 8.4 bgpd.
 * Gateway/Site objects in the node's slice → BIRD config in the state dir, applied only when
 * changed; session state read back into the node's status; a refused config, a bad peer and a
 * missing BIRD binary as clear status with the previous config kept; graceful restart across
 * a Tether restart and a BIRD restart (the routers' routes counted throughout); long-lived
 * graceful restart across an outage longer than the GR time, its stale time the Site's
 * autonomy budget. GR 120 s as in production; for LLGR GR 3 s and autonomy 12 s, so it runs in seconds.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import { BirdClient } from '../../../src/bgp/birdc.js';
import { IprouteKernel } from '../../../src/kernel/iproute2.js';
import { ProcessRunner } from '../../../src/lib/exec.js';
import { silentLogger } from '../../../src/lib/log.js';
import type { DurableState } from '../../../src/node/agent/session.js';
import { GatewayConsumer, type GatewayNodeStatus } from '../../../src/node/gateway/consumer.js';
import { NetnsSet } from '../../support/netns.js';
import { runProcess, waitFor } from '../support/proc.js';

const isRoot = process.getuid?.() === 0;
const sh = new ProcessRunner();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class MemState implements DurableState {
  revision = 1;
  snapshotRevision = 1;
  constructor(public objects: TetherObject[]) {}
  list(kind?: string) {
    return kind ? this.objects.filter((o) => o.kind === kind) : this.objects;
  }
  get(kind: string, name: string) {
    return this.objects.find((o) => o.kind === kind && o.metadata.name === name);
  }
  applyDelta() {}
  replace() {
    return { swept: 0 };
  }
}

describe.skipIf(!isRoot)('the gateway consumer of tether node run, against BIRD 2 and FRR routers', () => {
  const topo = new NetnsSet('gn');
  const node = topo.name('node');
  const router = topo.name('rtr');
  const dir = mkdtempSync(join(tmpdir(), 'tether-gwnode-'));
  const routerDir = join(dir, 'router');
  const frrDir = join(dir, 'frr');
  const stateDir = join(dir, 'state', 'gateway');
  const NODE_IP = '10.97.0.2';
  const BIRD_RTR = '10.97.0.1';
  const FRR_RTR = '10.97.0.3';
  // The production GR time; the LLGR test shortens it so the outage outlasts it in seconds.
  const GR_SECONDS = 120;
  const SHORT_GR_SECONDS = 3;
  const AUTONOMY_SECONDS = 12;
  let routerBird: ChildProcess | undefined;
  let rc: BirdClient;
  let gw: GatewayConsumer;

  const site: TetherObject = {
    apiVersion: 'tether.dev/v1',
    kind: 'Site',
    metadata: { name: 'cell1' },
    spec: { autonomySeconds: AUTONOMY_SECONDS },
  };
  const peers = [
    { name: 'bird-rtr', address: BIRD_RTR, asn: 65000, holdSeconds: 9, keepaliveSeconds: 3 },
    { name: 'frr-rtr', address: FRR_RTR, asn: 65002, holdSeconds: 9, keepaliveSeconds: 3 },
  ];
  const gateway = (over: Record<string, unknown> = {}): TetherObject => ({
    apiVersion: 'tether.dev/v1',
    kind: 'Gateway',
    metadata: { name: 'cell1-gw' },
    spec: {
      site: 'cell1',
      localAsn: 65001,
      pool: ['203.0.113.0/28'],
      peers,
      announce: {
        prefixes: ['198.51.100.0/24', '198.51.101.0/24'],
        floatingIps: true,
        acceptDefaultRoute: false,
      },
      gracefulRestartSeconds: GR_SECONDS,
      ...over,
    },
  });
  const state = new MemState([site, gateway()]);
  const consumer = (over: Partial<ConstructorParameters<typeof GatewayConsumer>[0]> = {}) =>
    new GatewayConsumer({
      node: 'n1',
      site: 'cell1',
      vtep: NODE_IP,
      stateDir,
      kernel: new IprouteKernel(sh),
      log: silentLogger(),
      nodeNetns: node,
      birdBackoff: { baseMs: 50, capMs: 200 },
      ...over,
    });

  const routerRoutes = async (): Promise<string[]> => {
    const r = await rc.command('show route protocol from_tether');
    return r.lines
      .filter((l) => l.code === 1007)
      .map((l) => l.text.split(/\s+/)[0]!)
      .filter((p) => /\//.test(p))
      .sort();
  };
  const frrRoutes = async (): Promise<string[]> => {
    const r = await runProcess('vtysh', ['--vty_socket', frrDir, '-c', 'show bgp ipv4 unicast json']);
    const j = JSON.parse(r.stdout || '{}') as { routes?: Record<string, unknown> };
    return Object.keys(j.routes ?? {})
      .filter((p) => p.startsWith('198.51.'))
      .sort();
  };
  const status = async (c = gw): Promise<GatewayNodeStatus> => (await c.refreshStatus())!;
  const established = async (c = gw) => {
    const s = await status(c);
    return s.peers['bird-rtr']?.bgpState === 'Established' && s.peers['frr-rtr']?.bgpState === 'Established';
  };

  beforeAll(async () => {
    await topo.add('node', 'rtr');
    await topo.veth(
      { ns: node, ifname: 'up0', addrs: [`${NODE_IP}/24`] },
      { ns: router, ifname: 'dn0', addrs: [`${BIRD_RTR}/24`, `${FRR_RTR}/24`] },
    );
    await sh.run('mkdir', ['-p', routerDir, frrDir]);
    await sh.run('chmod', ['0755', dir]);
    // The site router keeps a restarting peer's routes (GR), then as long-lived stale (LLGR)
    // for the time the peer advertises.
    writeFileSync(
      join(routerDir, 'bird.conf'),
      `router id ${BIRD_RTR};
protocol device {}
protocol static upstream { ipv4; route 172.16.0.0/16 blackhole; }
protocol bgp from_tether {
  local ${BIRD_RTR} as 65000; neighbor ${NODE_IP} as 65001; strict bind yes;
  hold time 9; keepalive time 3;
  graceful restart on; long lived graceful restart on;
  ipv4 { import all; export where proto = "upstream"; };
}
`,
    );
    routerBird = spawn(
      'ip',
      [
        'netns',
        'exec',
        router,
        'bird',
        '-f',
        '-c',
        join(routerDir, 'bird.conf'),
        '-s',
        join(routerDir, 'bird.ctl'),
      ],
      { stdio: 'ignore' },
    );
    chownSync(
      frrDir,
      Number((await sh.run('id', ['-u', 'frr'])).stdout.trim()),
      Number((await sh.run('id', ['-g', 'frr'])).stdout.trim()),
    );
    writeFileSync(
      join(frrDir, 'bgpd.conf'),
      `router bgp 65002
 bgp router-id ${FRR_RTR}
 no bgp ebgp-requires-policy
 bgp graceful-restart
 neighbor ${NODE_IP} remote-as 65001
 neighbor ${NODE_IP} update-source ${FRR_RTR}
 neighbor ${NODE_IP} timers 3 9
 address-family ipv4 unicast
  network 172.17.0.0/16
 exit-address-family
`,
    );
    await sh.run('ip', [
      'netns',
      'exec',
      router,
      '/usr/lib/frr/bgpd',
      '-f',
      join(frrDir, 'bgpd.conf'),
      '-i',
      join(frrDir, 'bgpd.pid'),
      '--vty_socket',
      frrDir,
      '-Z',
      '-n',
      '-l',
      FRR_RTR,
      '-d',
    ]);
    rc = new BirdClient(join(routerDir, 'bird.ctl'));
    await waitFor('router BIRD socket', () =>
      rc.open().then(
        () => true,
        () => false,
      ),
    );
    gw = consumer();
    await gw.start();
  }, 60_000);

  afterAll(async () => {
    await gw?.bird.stop();
    rc?.close();
    routerBird?.kill('SIGTERM');
    try {
      process.kill(Number(readFileSync(join(frrDir, 'bgpd.pid'), 'utf8')), 'SIGTERM');
    } catch {}
    await topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the slice becomes BIRD config in the state dir (LLGR stale time = the Site autonomy budget); sessions and counts in the status', async () => {
    const out = await gw.apply(state);
    expect(out.changes.join()).toMatch(/BIRD config/);
    const conf = readFileSync(join(stateDir, 'bird.conf'), 'utf8');
    expect(conf).toContain(`graceful restart time ${GR_SECONDS};`);
    expect(conf).toContain(`long lived stale time ${AUTONOMY_SECONDS};`);
    await waitFor('both sessions established', () => established(), 30_000);
    await waitFor('routers learned both prefixes', async () => {
      return (await routerRoutes()).length === 2 && (await frrRoutes()).length === 2;
    });
    await waitFor('counts read back', async () => {
      const s = await status();
      return s.peers['bird-rtr']!.imported === 1 && s.peers['frr-rtr']!.imported === 1;
    });
    const s = await status();
    expect(s).toMatchObject({ gateway: 'cell1-gw', role: 'active', running: true, announced: 2 });
    expect(s.peers['bird-rtr']).toMatchObject({ address: BIRD_RTR, asn: 65000, exported: 2 });
    expect(s.error).toBeUndefined();
  }, 60_000);

  it('an unchanged slice does not touch BIRD; a new prefix is configured in place without a session reset', async () => {
    const before = (await status()).peers;
    expect((await gw.apply(state)).changes).toEqual([]);
    state.objects = [
      site,
      gateway({
        announce: {
          prefixes: ['198.51.100.0/24', '198.51.101.0/24', '198.51.102.0/24'],
          floatingIps: true,
          acceptDefaultRoute: false,
        },
      }),
    ];
    expect((await gw.apply(state)).changes.join()).toMatch(/BIRD config/);
    await waitFor('router learned the third', async () => (await routerRoutes()).length === 3);
    const after = (await status()).peers;
    expect(after['bird-rtr']!.since).toBe(before['bird-rtr']!.since);
    expect(after['frr-rtr']!.since).toBe(before['frr-rtr']!.since);
  }, 30_000);

  it('a config BIRD refuses: clear status and error, previous config kept and running', async () => {
    const good = readFileSync(join(stateDir, 'bird.conf'), 'utf8');
    const okState = state.objects;
    // A hold time of 1 s (BGP allows 0 or 3 and more): BIRD's parser refuses it.
    state.objects = [
      site,
      gateway({ peers: [{ ...peers[0]!, holdSeconds: 1, keepaliveSeconds: 1 }, peers[1]!] }),
    ];
    await expect(gw.apply(state)).rejects.toThrow(/BIRD refused the configuration/);
    expect(readFileSync(join(stateDir, 'bird.conf'), 'utf8')).toBe(good);
    const s = await status();
    expect(s.error).toMatch(/refused/);
    expect(s.peers['bird-rtr']!.bgpState).toBe('Established');
    expect(await routerRoutes()).toHaveLength(3);
    state.objects = okState;
    await gw.apply(state);
    expect((await status()).error).toBeUndefined();
  }, 30_000);

  it('a bad peer: not established in the status, the other sessions unaffected', async () => {
    const okState = state.objects;
    state.objects = [
      site,
      gateway({
        peers: [
          ...peers,
          { name: 'nobody', address: '10.97.0.99', asn: 65099, holdSeconds: 9, keepaliveSeconds: 3 },
        ],
        announce: {
          prefixes: ['198.51.100.0/24', '198.51.101.0/24', '198.51.102.0/24'],
          floatingIps: true,
          acceptDefaultRoute: false,
        },
      }),
    ];
    await gw.apply(state);
    await sleep(1000);
    const s = await status();
    expect(s.peers.nobody!.bgpState).not.toBe('Established');
    expect(s.peers['bird-rtr']!.bgpState).toBe('Established');
    state.objects = okState;
    await gw.apply(state);
  }, 30_000);

  it('a missing BIRD binary: clear error in the status, nothing else changed', async () => {
    const other = new GatewayConsumer({
      node: 'n1',
      site: 'cell1',
      vtep: NODE_IP,
      stateDir: join(dir, 'missing'),
      kernel: new IprouteKernel(sh),
      log: silentLogger(),
      birdBin: join(dir, 'no-such-bird'),
    });
    await expect(other.apply(state)).rejects.toThrow(/cannot run .*no-such-bird/);
    const s = await status(other);
    expect(s.running).toBe(false);
    expect(s.error).toMatch(/cannot run/);
    expect(s.peers['bird-rtr']!.bgpState).toBe('Idle');
    expect(await established()).toBe(true);
  });

  it('graceful restart across a Tether restart: both routers keep every route while the node daemon is away', async () => {
    await waitFor(
      '3 routes',
      async () => (await routerRoutes()).length === 3 && (await frrRoutes()).length === 3,
    );
    await gw.stop(); // the node daemon stopping: BIRD leaves with `graceful restart`
    const during: number[] = [];
    const frrDuring: number[] = [];
    for (let i = 0; i < 4; i++) {
      during.push((await routerRoutes()).length);
      frrDuring.push((await frrRoutes()).length);
      await sleep(250);
    }
    // The node daemon again: BIRD starts from its config on disk before the first pass.
    gw = consumer();
    await gw.start();
    await gw.apply(state);
    // Sampled until both sessions are back and have sent End-of-RIB (a flush would show as
    // a dip here).
    let settled = 0;
    const deadline = Date.now() + 30_000;
    while (settled < 5 && Date.now() < deadline) {
      during.push((await routerRoutes()).length);
      frrDuring.push((await frrRoutes()).length);
      if (await established()) settled++;
      await sleep(200);
    }
    expect(settled).toBe(5);
    expect(during.length).toBeGreaterThan(8);
    expect(new Set(during)).toEqual(new Set([3]));
    expect(new Set(frrDuring)).toEqual(new Set([3]));
  }, 60_000);

  it('graceful restart across a BIRD restart (killed): the supervisor restarts it and the routers keep the routes', async () => {
    const st = (await status()).restarts;
    const pid = (await gw.bird.status()).pid!;
    process.kill(pid, 'SIGKILL');
    const during: number[] = [];
    const frrDuring: number[] = [];
    const deadline = Date.now() + 30_000;
    let settled = 0;
    while (Date.now() < deadline) {
      during.push((await routerRoutes()).length);
      frrDuring.push((await frrRoutes()).length);
      const s = await status();
      if (s.restarts === st + 1 && (await established())) settled++;
      if (settled >= 5) break;
      await sleep(200);
    }
    expect(await established()).toBe(true);
    expect(during.length).toBeGreaterThan(1);
    expect(new Set(during)).toEqual(new Set([3]));
    expect(new Set(frrDuring)).toEqual(new Set([3]));
  }, 60_000);

  it('a BIRD left behind by a node daemon killed with -9 is replaced at the next start; the routers keep the routes', async () => {
    await gw.stop();
    // What a SIGKILLed node daemon leaves: its BIRD, still running on the state dir.
    await sh.run('ip', [
      'netns',
      'exec',
      node,
      'bird',
      '-R',
      '-c',
      join(stateDir, 'bird.conf'),
      '-s',
      join(stateDir, 'bird.ctl'),
      '-P',
      join(stateDir, 'bird.pid'),
    ]);
    const orphan = Number(readFileSync(join(stateDir, 'bird.pid'), 'utf8').trim());
    expect(existsSync(`/proc/${orphan}`)).toBe(true);
    gw = consumer();
    await gw.start();
    await gw.apply(state);
    const during: number[] = [];
    let settled = 0;
    const deadline = Date.now() + 30_000;
    while (settled < 5 && Date.now() < deadline) {
      during.push((await routerRoutes()).length);
      if (await established()) settled++;
      await sleep(200);
    }
    expect(existsSync(`/proc/${orphan}`)).toBe(false);
    expect((await gw.bird.status()).pid).not.toBe(orphan);
    expect(settled).toBe(5);
    expect(new Set(during)).toEqual(new Set([3]));
  }, 60_000);

  it('long-lived graceful restart: an outage longer than the GR time keeps the routes (LLGR stale), until the autonomy budget runs out', async () => {
    const before = state.objects;
    state.objects = [
      site,
      gateway({
        gracefulRestartSeconds: SHORT_GR_SECONDS,
        announce: (before.find((o) => o.kind === 'Gateway')!.spec as { announce: unknown }).announce,
      }),
    ];
    await gw.apply(state);
    expect(readFileSync(join(stateDir, 'bird.conf'), 'utf8')).toContain(
      `graceful restart time ${SHORT_GR_SECONDS};`,
    );
    // A changed GR time is a new capability: the sessions re-open with it.
    await sleep(1000);
    await waitFor('sessions with the short GR time', () => established(), 30_000);
    await waitFor('3 routes', async () => (await routerRoutes()).length === 3, 30_000);
    await gw.stop();
    const t0 = Date.now();
    // Past the GR time: the BIRD router still holds them, now long-lived stale.
    await sleep((SHORT_GR_SECONDS + 3) * 1000);
    expect(await routerRoutes()).toHaveLength(3);
    const stale = await rc.command('show route protocol from_tether all');
    expect(stale.lines.map((l) => l.text).join('\n')).toMatch(/llgr_stale|\(65535,\s*6\)|65535, 6/i);
    // Past GR + LLGR stale time (the Site's autonomySeconds): withdrawn.
    await waitFor(
      'routes flushed after the stale time',
      async () => (await routerRoutes()).length === 0,
      30_000,
    );
    const gone = (Date.now() - t0) / 1000;
    expect(gone).toBeGreaterThanOrEqual(SHORT_GR_SECONDS + AUTONOMY_SECONDS - 1);
    gw = consumer();
    await gw.start();
    await gw.apply(state);
    await waitFor('back', async () => (await routerRoutes()).length === 3, 30_000);
  }, 90_000);
});
