import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/lib/log.js';
import { VRouter } from '../../../src/node/vrouter/agent.js';
import { type DesiredPolicy, names } from '../../../src/node/vrouter/model.js';
import { waitFor } from '../support/proc.js';
import { isRoot, local, network, nodeDesired, Topo, type Workload } from './topo.js';

if (!isRoot)
  console.warn('skipping vRouter local breakout integration tests: they need root (network namespaces)');

describe.skipIf(!isRoot)('vRouter local breakout on the real kernel', () => {
  const topo = new Topo('vb');
  let redW: Workload;
  let blueW: Workload;
  const desired = (breakout = true, redPolicies: DesiredPolicy[] = []) => {
    const red = network('red', 410, { breakout });
    red.localEndpoints = [local(redW)];
    red.policies = redPolicies;
    const blue = network('blue', 420, { breakout });
    blue.localEndpoints = [local(blueW)];
    return nodeDesired(topo, 'a', [red, blue], true);
  };

  beforeAll(async () => {
    await topo.build({ router: true });
    // Same address in two networks on the same node.
    redW = await topo.addWorkload('a', 'red', '10.1.0.50', '10.1.0.1');
    blueW = await topo.addWorkload('a', 'blue', '10.1.0.50', '10.1.0.1');
    const r = await new VRouter(topo.runner, silentLogger()).sync(desired());
    expect(r.ok, JSON.stringify(r.failures)).toBe(true);
  });

  afterAll(async () => {
    await new VRouter(topo.runner, silentLogger()).teardown(desired()).catch(() => undefined);
    await topo.destroyPrefixed([`${topo.id}a`]);
    await topo.destroy();
  });

  it('workloads of red and blue with the same address both reach the site router at the same time', async () => {
    const [a, b] = await Promise.all([
      topo.runner.run('ping', ['-c', '10', '-i', '0.1', '-W', '1', topo.siteNet], {
        netns: redW.ns,
        allowFailure: true,
      }),
      topo.runner.run('ping', ['-c', '10', '-i', '0.1', '-W', '1', topo.siteNet], {
        netns: blueW.ns,
        allowFailure: true,
      }),
    ]);
    expect(a.stdout).toMatch(/10 packets transmitted, 10 received/);
    expect(b.stdout).toMatch(/10 packets transmitted, 10 received/);
  });

  it('identical UDP 5-tuples from red and blue at the same time both get their own replies', async () => {
    // UDP echo server behind the site router; it answers with the sender's payload.
    const echo = spawn(
      'ip',
      [
        'netns',
        'exec',
        topo.router,
        process.execPath,
        '-e',
        "const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send(m,r.port,r.address));s.bind(9999,'" +
          topo.siteNet +
          "',()=>process.stdout.write('ready'))",
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    let ready = '';
    echo.stdout.on('data', (b: Buffer) => {
      ready += b.toString();
    });
    // its own name back (conntrack entries of the two networks must not be confused).
    const client = (w: Workload, word: string) =>
      topo.runner.run(
        process.execPath,
        [
          '-e',
          `const s=require('dgram').createSocket('udp4');let n=0;` +
            `s.on('message',m=>{process.stdout.write(String(m));process.exit(0)});` +
            `s.bind(40000,'${w.ip}',()=>{const t=setInterval(()=>{if(++n>20)process.exit(1);s.send('${word}',9999,'${topo.siteNet}')},100)})`,
        ],
        { netns: w.ns, allowFailure: true },
      );
    try {
      await waitFor('the UDP echo server behind the site router', () => ready.includes('ready'), 10_000, 20);
      const [a, b] = await Promise.all([client(redW, 'red'), client(blueW, 'blue')]);
      expect(a).toMatchObject({ code: 0, stdout: 'red' });
      expect(b).toMatchObject({ code: 0, stdout: 'blue' });
    } finally {
      echo.kill('SIGKILL');
    }
  });

  it('keeps connection tracking apart per network (one conntrack entry per network, distinct transit sources)', async () => {
    // Inside each network namespace the workload address is translated to that network's own transit address.
    const t = JSON.parse(
      await topo.sh(
        'nft',
        ['-j', 'list', 'table', 'ip', names.vnNatTable],
        names.vnNetns(`${topo.id}a`, 410),
      ),
    ) as { nftables: Record<string, unknown>[] };
    expect(JSON.stringify(t)).toContain('snat');
    const redT = desired().networks[0]!.breakoutTransit!.vnIp;
    const blueT = desired().networks[1]!.breakoutTransit!.vnIp;
    expect(redT).not.toBe(blueT);
  });

  it('turning breakout off removes the path and Tether objects; turning it on restores it', async () => {
    const off = await new VRouter(topo.runner, silentLogger()).sync(desired(false));
    expect(off.ok).toBe(true);
    expect(await topo.ping(redW, topo.siteNet)).toBe(false);
    const nodeLinks = await topo.sh('ip', ['-n', topo.nodeA, '-br', 'link']);
    expect(nodeLinks).not.toMatch(/tbo410/);
    const tables = await topo.sh('nft', ['list', 'tables'], topo.nodeA);
    expect(tables).not.toContain(names.nodeNatTable(`${topo.id}a`));
    const on = await new VRouter(topo.runner, silentLogger()).sync(desired());
    expect(on.ok).toBe(true);
    expect(await topo.ping(redW, topo.siteNet, 2)).toBe(true);
    expect(await topo.ping(blueW, topo.siteNet, 2)).toBe(true);
  });

  it('with a default-deny policy on red (br_netfilter on): breakout NAT and the anycast gateway still work', async () => {
    const zeroTrust: DesiredPolicy = {
      name: 'zt',
      defaultAction: 'deny',
      rules: [
        {
          name: 'none-of-these',
          action: 'allow',
          from: { matchLabels: { app: 'x' } },
          to: { matchLabels: { app: 'y' } },
        },
      ],
    };
    const r = await new VRouter(topo.runner, silentLogger()).sync(desired(true, [zeroTrust]));
    expect(r.ok, JSON.stringify(r.failures)).toBe(true);
    const ns = names.vnNetns(`${topo.id}a`, 410);
    expect((await topo.sh('sysctl', ['-n', 'net.bridge.bridge-nf-call-iptables'], ns)).trim()).toBe('1');
    expect(await topo.sh('nft', ['list', 'table', 'inet', names.vnPolicyTable], ns)).toContain('ct original');
    expect(await topo.ping(redW, topo.siteNet, 3)).toBe(true);
    expect(await topo.ping(redW, '10.1.0.1', 2)).toBe(true);
    // blue (no policy) is untouched by it.
    const blueNs = names.vnNetns(`${topo.id}a`, 420);
    expect((await topo.sh('sysctl', ['-n', 'net.bridge.bridge-nf-call-iptables'], blueNs)).trim()).toBe('0');
    expect(await topo.ping(blueW, topo.siteNet, 2)).toBe(true);
    const off = await new VRouter(topo.runner, silentLogger()).sync(desired());
    expect(off.ok).toBe(true);
  });
});
