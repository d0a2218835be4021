/**
 * Tether's BIRD against real site routers (BIRD 2 and FRR bgpd) in network namespaces this
 * test creates: session up, prefixes both ways, withdraw without a session reset, graceful
 * restart across a BIRD restart with the router keeping the routes, and the three failure
 * cases (bad peer, missing binary, refused config) leaving the previous config running.
 */
import { spawn } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BirdClient } from '../../../src/bgp/birdc.js';
import { BirdDaemon } from '../../../src/bgp/daemon.js';
import { type BirdConfig, peerProtocol, renderBirdConfig } from '../../../src/bgp/render.js';
import { ProcessRunner } from '../../../src/lib/exec.js';
import { NetnsSet } from '../../support/netns.js';
import { runProcess, waitFor } from '../support/proc.js';

const isRoot = process.getuid?.() === 0;
const sh = new ProcessRunner();

describe.skipIf(!isRoot)('BIRD as the gateway speaker, against BIRD 2 and FRR site routers', () => {
  const topo = new NetnsSet('bg');
  const node = topo.name('node');
  const router = topo.name('rtr');
  const dir = mkdtempSync(join(tmpdir(), 'tether-bgp-'));
  const routerDir = join(dir, 'router');
  const frrDir = join(dir, 'frr');
  let speaker: BirdDaemon;
  let routerBird: ReturnType<typeof spawn> | undefined;
  let rc: BirdClient;
  const NODE_IP = '10.98.0.2';
  const BIRD_RTR = '10.98.0.1';
  const FRR_RTR = '10.98.0.3';

  const config = (over: Partial<BirdConfig> = {}): BirdConfig => ({
    routerId: NODE_IP,
    localAsn: 65001,
    peers: [
      { name: 'bird-rtr', address: BIRD_RTR, asn: 65000, holdSeconds: 9, keepaliveSeconds: 3 },
      { name: 'frr-rtr', address: FRR_RTR, asn: 65002, holdSeconds: 9, keepaliveSeconds: 3 },
    ],
    announce: ['198.51.100.0/24', '203.0.113.5/32'],
    acceptDefaultRoute: true,
    gracefulRestartSeconds: 120,
    llgrStaleSeconds: 3600,
    ...over,
  });

  /** Routes the BIRD router learned from Tether's speaker. */
  const routerRoutes = async (): Promise<string[]> => {
    const r = await rc.command('show route protocol from_tether');
    return r.lines
      .filter((l) => l.code === 1007)
      .map((l) => l.text.split(/\s+/)[0]!)
      .filter((p) => /\//.test(p));
  };
  const frrRoutes = async (): Promise<string[]> => {
    const r = await runProcess('vtysh', ['--vty_socket', frrDir, '-c', 'show bgp ipv4 unicast json']);
    const j = JSON.parse(r.stdout || '{}') as { routes?: Record<string, unknown> };
    return Object.keys(j.routes ?? {}).sort();
  };
  const peer = async (name: string) =>
    (await speaker.status()).peers.find((p) => p.protocol === peerProtocol(name));

  beforeAll(async () => {
    await topo.add('node', 'rtr');
    await topo.veth(
      { ns: node, ifname: 'up0', addrs: [`${NODE_IP}/24`] },
      { ns: router, ifname: 'dn0', addrs: [`${BIRD_RTR}/24`, `${FRR_RTR}/24`] },
    );

    // BIRD as a site router: announces a default route and a site network back.
    await sh.run('mkdir', ['-p', routerDir, frrDir]);
    await sh.run('chmod', ['0755', dir]); // bgpd runs as frr and must reach its directory
    writeFileSync(
      join(routerDir, 'bird.conf'),
      `router id ${BIRD_RTR};
protocol device {}
protocol static upstream { ipv4; route 0.0.0.0/0 blackhole; route 172.16.0.0/16 blackhole; }
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
    // FRR bgpd as the other site router, alone (no zebra, no kernel), as its frr user.
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

    speaker = new BirdDaemon({ stateDir: join(dir, 'tether'), netns: node });
    await speaker.apply(renderBirdConfig(config()));
    rc = new BirdClient(join(routerDir, 'bird.ctl'));
    await waitFor('router BIRD socket', () =>
      rc.open().then(
        () => true,
        () => false,
      ),
    );
  }, 60_000);

  afterAll(async () => {
    await speaker?.stop();
    rc?.close();
    routerBird?.kill('SIGTERM');
    try {
      process.kill(Number(readFileSync(join(frrDir, 'bgpd.pid'), 'utf8')), 'SIGTERM');
    } catch {}
    await topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('sessions come up with both routers and prefixes flow both ways', async () => {
    await waitFor(
      'BIRD router session',
      async () => (await peer('bird-rtr'))?.bgpState === 'Established',
      30_000,
    );
    await waitFor('FRR session', async () => (await peer('frr-rtr'))?.bgpState === 'Established', 30_000);
    await waitFor(
      'BIRD router learned both',
      async () => (await routerRoutes()).sort().join() === '198.51.100.0/24,203.0.113.5/32',
    );
    await waitFor('FRR learned both', async () => {
      const r = await frrRoutes();
      return r.includes('198.51.100.0/24') && r.includes('203.0.113.5/32');
    });
    await waitFor(
      'received from both',
      async () => (await peer('bird-rtr'))!.imported === 2 && (await peer('frr-rtr'))!.imported === 1,
    );
    expect((await peer('bird-rtr'))!.exported).toBe(2);
    // The learned default route reaches the node's kernel (acceptDefaultRoute).
    await waitFor('default route in the node kernel', async () =>
      (await sh.run('ip', ['-n', node, 'route', 'show', 'default'])).stdout.includes(`via ${BIRD_RTR}`),
    );
  }, 60_000);

  it('a withdrawn floating IP leaves both routers; no session resets; an unchanged config is not re-applied', async () => {
    const before = [(await peer('bird-rtr'))!.since, (await peer('frr-rtr'))!.since];
    expect((await speaker.apply(renderBirdConfig(config()))).changed).toBe(false);
    expect((await speaker.apply(renderBirdConfig(config({ announce: ['198.51.100.0/24'] })))).changed).toBe(
      true,
    );
    await waitFor('BIRD router withdrew', async () => (await routerRoutes()).join() === '198.51.100.0/24');
    await waitFor('FRR withdrew', async () => !(await frrRoutes()).includes('203.0.113.5/32'));
    expect([(await peer('bird-rtr'))!.since, (await peer('frr-rtr'))!.since]).toEqual(before);
    expect((await peer('bird-rtr'))!.bgpState).toBe('Established');
  }, 60_000);

  it('a config BIRD refuses is reported and the previous one keeps running', async () => {
    const good = readFileSync(speaker.confPath, 'utf8');
    const bad = renderBirdConfig(
      config({
        peers: [{ name: 'bird-rtr', address: BIRD_RTR, asn: 65000, holdSeconds: 1, keepaliveSeconds: 1 }],
      }),
    );
    await expect(speaker.apply(bad)).rejects.toThrow(/BIRD refused the configuration/);
    expect(readFileSync(speaker.confPath, 'utf8')).toBe(good);
    const st = await speaker.status();
    expect(st.error).toMatch(/refused/);
    expect(st.peers.find((p) => p.protocol === peerProtocol('bird-rtr'))!.bgpState).toBe('Established');
  });

  it('a bad peer shows in the status as not established; a missing BIRD binary is a clear error', async () => {
    await speaker.apply(
      renderBirdConfig(
        config({
          announce: ['198.51.100.0/24'],
          peers: [
            ...config().peers,
            { name: 'nobody', address: '10.98.0.99', asn: 65099, holdSeconds: 9, keepaliveSeconds: 3 },
          ],
        }),
      ),
    );
    const p = await waitFor('bad peer state', () => peer('nobody'));
    expect(p.bgpState).not.toBe('Established');
    expect((await peer('bird-rtr'))!.bgpState).toBe('Established');
    const missing = new BirdDaemon({ stateDir: join(dir, 'missing'), birdBin: join(dir, 'no-such-bird') });
    await expect(missing.apply(renderBirdConfig(config()))).rejects.toThrow(/cannot run .*no-such-bird/);
    expect((await missing.status()).error).toMatch(/cannot run/);
  }, 30_000);

  it('graceful restart: the routers keep the routes while BIRD restarts, then the session returns', async () => {
    await speaker.apply(renderBirdConfig(config({ announce: ['198.51.100.0/24', '203.0.113.5/32'] })));
    await waitFor('announced', async () => (await routerRoutes()).length === 2);
    await speaker.stop({ graceful: true });
    const during: number[] = [];
    // Count the router's routes while Tether's BIRD is down (GR keeps them as stale).
    for (let i = 0; i < 5; i++) {
      during.push((await routerRoutes()).length);
      await new Promise((r) => setTimeout(r, 200));
    }
    const frrDuring = (await frrRoutes()).filter(
      (p) => p === '198.51.100.0/24' || p === '203.0.113.5/32',
    ).length;
    await speaker.start();
    await waitFor('session back', async () => (await peer('bird-rtr'))?.bgpState === 'Established', 30_000);
    expect(during).toEqual([2, 2, 2, 2, 2]);
    expect(frrDuring).toBe(2);
    await waitFor('routes after restart', async () => (await routerRoutes()).length === 2);
  }, 60_000);

  it('BIRD killed under it: the supervisor restarts it from the config on disk and the sessions return', async () => {
    const st = await speaker.status();
    expect(st.pid).toBeDefined();
    process.kill(st.pid!, 'SIGKILL');
    await waitFor(
      'restarted',
      async () => {
        const s = await speaker.status();
        return s.restarts === st.restarts + 1 && s.running && s.pid !== st.pid;
      },
      30_000,
    );
    await waitFor(
      'session back after the kill',
      async () => (await peer('bird-rtr'))?.bgpState === 'Established',
      30_000,
    );
    expect((await speaker.status()).error).toBeUndefined();
  }, 60_000);
});
