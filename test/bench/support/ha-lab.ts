// The gateway HA lab: a site router namespace (BIRD 2 or FRR 8.4 with bfdd) and two gateway
// node namespaces, each with a link to the router and one site-LAN link between them (the
// HA heartbeat). Each gateway runs ha-gateway.ts (Tether's BIRD + the HA monitor). The
// floating IP's dataplane on each gateway is, by default, the address on its loopback: what
// is measured then is the routing change alone. With `fip: 'real'` (node wiring only) the
// site LAN is a switch (a bridge in a namespace of its own) joining both gateway nodes and a
// third node E; all three run the vRouter (synced from this process, as fip-ha.test.ts does)
// and E hosts the workload that is the FloatingIP's endpoint: both gateways bind it (DNAT
// over VXLAN to E, the return path on E by the gateway's MAC) and the workload answers the
// pings. Used by test/integration/gateway/{ha,fip-failover}.test.ts and
// test/bench/gateway-failover.ts.
// Everything is named with a random prefix and removed by name; processes stopped by PID.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TetherObject } from '../../../src/api/resource.js';
import type { BirdConfig } from '../../../src/bgp/render.js';
import { IprouteKernel } from '../../../src/kernel/iproute2.js';
import { ProcessRunner } from '../../../src/lib/exec.js';
import { silentLogger } from '../../../src/lib/log.js';
import type { DurableState } from '../../../src/node/agent/session.js';
import { GatewayConsumer } from '../../../src/node/gateway/consumer.js';
import { withFipReturns } from '../../../src/node/gateway/model.js';
import { VRouter } from '../../../src/node/vrouter/agent.js';
import { type DesiredNodeNetwork, names } from '../../../src/node/vrouter/model.js';
import { network, OVERLAY_MTU, UNDERLAY_MTU } from '../../integration/vrouter/topo.js';
import { NetnsSet } from '../../support/netns.js';
import type { HaGatewayArgs } from './ha-gateway.js';
import type { HaNodeArgs } from './ha-node.js';
import type { HaSpoofArgs } from './ha-spoof.js';
import { REPO } from './proc.js';

export const FIP = '203.0.113.10';
export const BFD = { intervalMs: 300, multiplier: 3 };
const TSX = `${REPO}node_modules/tsx/dist/esm/index.mjs`;

export type RouterKind = 'bird' | 'frr';

export interface PingResult {
  sent: number;
  received: number;
  lost: number;
  /** Longest time between two answered pings (ms): the outage as the router's side saw it. */
  maxGapMs: number;
}

export type LabNode = 'gw-a' | 'gw-b' | 'site-c';

/** `loopback`: the floating IP is an address on each gateway's loopback (the routing change
 *  alone); `real`: a FloatingIP bound by both gateways to a workload on a third node. */
export type FipMode = 'loopback' | 'real';

/** The real mode's virtual network, workload and node E (its VTEP on the site LAN). */
const VNI = 730;
const WORKLOAD = { ip: '10.1.0.50', gateway: '10.1.0.1', mac: '02:00:0a:01:00:32', ifname: 'wl0' };
export const ECHO_PORT = 7000;

export class HaLab {
  private readonly topo = new NetnsSet('ha');
  readonly id = this.topo.id;
  readonly rtr = this.topo.name('rtr');
  readonly ns = { a: this.topo.name('ga'), b: this.topo.name('gb') };
  /** Real mode: the site LAN's switch, node E and E's workload. */
  readonly sw = this.topo.name('sw');
  readonly nodeE = this.topo.name('ne');
  readonly workload = this.topo.name('w');
  readonly up = { a: '10.96.1.2', b: '10.96.2.2' };
  readonly rtrIp = { a: '10.96.1.1', b: '10.96.2.1' };
  readonly lan = { a: '10.96.3.1', b: '10.96.3.2', e: '10.96.3.4' };
  /** Real mode: each node's vRouter plan (synced by build(), torn down by destroy()). */
  private readonly vr: Partial<Record<'a' | 'b' | 'e', DesiredNodeNetwork>> = {};
  private endpointNode: GatewayConsumer | undefined;
  private echo: ChildProcess | undefined;
  readonly dir = mkdtempSync(join(tmpdir(), 'tether-ha-'));
  private gws: Partial<Record<'a' | 'b', ChildProcess>> = {};
  private routerProc: ChildProcess | undefined;
  private frrPids: string[] = [];
  readonly events: Array<{ node: string; t: number; [k: string]: unknown }> = [];
  /** Node keys as enrolment makes them (ECDSA P-256): both gateway nodes, and `site-c`, an
   *  enrolled node of the same site the Gateway does not list. Private keys in files of the
   *  lab's directory (0600), public keys as the roster carries them (`Node.status.publicKey`). */
  private readonly keys = new Map<LabNode, { keyFile: string; spki: string }>();

  /** `monitor`: ha-gateway.ts (BIRD + HaMonitor); `node`: ha-node.ts, the gateway consumer and
   *  HA wiring of `tether node run` (GatewayConsumer + GatewayHa) from a slice. */
  constructor(
    readonly router: RouterKind,
    readonly mode: 'monitor' | 'node' = 'monitor',
    /** false: the baseline without BFD (BIRD router), only BGP's hold timer (9 s) ends a dead session. */
    readonly bfd = true,
    readonly fip: FipMode = 'loopback',
  ) {
    if (fip === 'real' && mode !== 'node')
      throw new Error("HaLab: a real FloatingIP needs the node wiring (mode 'node')");
  }

  /** Gateway node `n`'s (or site-c's) key: its private key file and public SPKI (base64). */
  nodeKey(n: LabNode): { keyFile: string; spki: string } {
    let k = this.keys.get(n);
    if (!k) {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      const keyFile = join(this.dir, `${n}.key`);
      writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
      k = { keyFile, spki: publicKey.export({ type: 'spki', format: 'der' }).toString('base64') };
      this.keys.set(n, k);
    }
    return k;
  }

  private ip(...a: string[]): string {
    return execFileSync('ip', a, { encoding: 'utf8' });
  }

  async build(): Promise<void> {
    await this.topo.add('rtr', 'ga', 'gb');
    for (const g of ['a', 'b'] as const) {
      await this.topo.veth(
        { ns: this.ns[g], ifname: 'up0', addrs: [`${this.up[g]}/24`] },
        { ns: this.rtr, ifname: `dn${g}`, addrs: [`${this.rtrIp[g]}/24`] },
      );
      // The floating IP's dataplane stand-in: both nodes answer for it (pre-installed).
      if (this.fip === 'loopback') this.ip('-n', this.ns[g], 'addr', 'add', `${FIP}/32`, 'dev', 'lo');
    }
    if (this.fip === 'real') await this.buildRealFip();
    // Otherwise the site LAN is one link between the gateway nodes: the HA heartbeat.
    else
      await this.topo.veth(
        { ns: this.ns.a, ifname: 'lan0', addrs: [`${this.lan.a}/24`] },
        { ns: this.ns.b, ifname: 'lan0', addrs: [`${this.lan.b}/24`] },
      );
    if (this.router === 'bird') this.startBirdRouter();
    else this.startFrrRouter();
    for (const g of ['a', 'b'] as const) this.startGateway(g);
  }

  /**
   * The real FloatingIP's dataplane, before the gateway processes start: the site LAN as a
   * switch (each node's `lan0` a plain veth whose peer is a port of the switch's bridge, so
   * no node holds its VTEP on a bridge device), E's workload attached as a CNI plugin would,
   * the three vRouters synced, and E's return path installed by a GatewayConsumer of its own
   * (E is in no Gateway's node list: that consumer only installs the return path).
   */
  private async buildRealFip(): Promise<void> {
    await this.topo.add('sw', 'ne', 'w');
    this.ip('-n', this.sw, 'link', 'add', 'br0', 'type', 'bridge');
    this.ip('-n', this.sw, 'link', 'set', 'br0', 'up');
    for (const [n, ns] of [
      ['a', this.ns.a],
      ['b', this.ns.b],
      ['e', this.nodeE],
    ] as const) {
      await this.topo.veth(
        { ns, ifname: 'lan0', addrs: [`${this.lan[n]}/24`] },
        { ns: this.sw, ifname: `p${n}` },
      );
      this.ip('-n', this.sw, 'link', 'set', `p${n}`, 'master', 'br0');
    }
    // The workload: its end configured in its namespace, the host end left in E's.
    this.ip(
      '-n',
      this.nodeE,
      'link',
      'add',
      WORKLOAD.ifname,
      'mtu',
      String(OVERLAY_MTU),
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      this.workload,
    );
    this.ip(
      '-n',
      this.workload,
      'link',
      'set',
      'eth0',
      'address',
      WORKLOAD.mac,
      'mtu',
      String(OVERLAY_MTU),
      'up',
    );
    this.ip('-n', this.workload, 'addr', 'add', `${WORKLOAD.ip}/24`, 'dev', 'eth0');
    this.ip('-n', this.workload, 'route', 'add', 'default', 'via', WORKLOAD.gateway);
    const slice = this.slice();
    const w = { id: this.workload, mac: WORKLOAD.mac, ip: WORKLOAD.ip, labels: {} };
    for (const n of ['a', 'b', 'e'] as const) {
      const red = network('red', VNI, { breakout: n !== 'e' });
      if (n === 'e') red.localEndpoints = [{ ...w, hostIfname: WORKLOAD.ifname }];
      else red.remoteEndpoints = [{ ...w, vtep: this.lan.e }];
      const d: DesiredNodeNetwork = {
        node: this.nodeName(n),
        netnsPrefix: `${this.id}${n}`,
        underlay: { ifname: 'lan0', vtepIp: this.lan[n], mtu: UNDERLAY_MTU, netns: this.nsOf(n) },
        ...(n === 'e' ? {} : { breakout: { uplinkIfname: 'up0' } }),
        networks: [red],
      };
      const planned = withFipReturns(d, this.nodeName(n), 'cell', slice);
      this.vr[n] = planned.desired;
      const r = await new VRouter(new ProcessRunner(), silentLogger()).sync(planned.desired);
      if (!r.ok) throw new Error(`vRouter of ${n}: ${JSON.stringify(r.failures)}`);
      if (n !== 'e') continue;
      const state: DurableState = {
        revision: 1,
        snapshotRevision: 1,
        list: (kind?: string) => (kind ? slice.filter((o) => o.kind === kind) : slice),
        get: (kind: string, name: string) => slice.find((o) => o.kind === kind && o.metadata.name === name),
        applyDelta: () => {},
        replace: () => ({ swept: 0 }),
      };
      this.endpointNode = new GatewayConsumer({
        node: 'node-e',
        site: 'cell',
        vtep: this.lan.e,
        stateDir: join(this.dir, 'node-e'),
        kernel: new IprouteKernel(new ProcessRunner()),
        log: silentLogger(),
        nodeNetns: this.nodeE,
        network: () => this.vr.e,
        localEndpoints: () => slice.filter((o) => o.kind === 'Endpoint'),
        fipReturns: () => planned.returns,
      });
      await this.endpointNode.apply(state);
    }
    // The workload's echo: who it saw the request come from.
    this.echo = spawn(
      'ip',
      [
        'netns',
        'exec',
        this.workload,
        'socat',
        `UDP-LISTEN:${ECHO_PORT},fork`,
        'SYSTEM:echo $SOCAT_PEERADDR',
      ],
      { stdio: 'ignore' },
    );
  }

  private nodeName(n: 'a' | 'b' | 'e'): string {
    return n === 'e' ? 'node-e' : `gw-${n}`;
  }

  private nsOf(n: 'a' | 'b' | 'e'): string {
    return n === 'e' ? this.nodeE : this.ns[n];
  }

  /**
   * Real mode: a UDP request from the router's side to the floating IP; the address the
   * workload saw it come from ('' when nothing answered within the tries).
   */
  clientSeen(tries = 10): string {
    for (let i = 0; i < tries; i++) {
      try {
        const r = execFileSync(
          'ip',
          ['netns', 'exec', this.rtr, 'socat', '-T1', '-', `UDP:${FIP}:${ECHO_PORT}`],
          { encoding: 'utf8', input: 'x\n', timeout: 5000, stdio: ['pipe', 'pipe', 'ignore'] },
        ).trim();
        if (r) return r;
      } catch {}
    }
    return '';
  }

  private startBirdRouter(): void {
    const conf = join(this.dir, 'router.conf');
    const peers = (['a', 'b'] as const)
      .map(
        (g) => `protocol bgp gw${g} {
  local ${this.rtrIp[g]} as 65000; neighbor ${this.up[g]} as 65001;
  hold time 9; keepalive time 3; connect retry time 1; error wait time 5, 60; bfd ${this.bfd ? 'on' : 'off'}; graceful restart on;
  ipv4 { import all; export none; };
}`,
      )
      .join('\n');
    writeFileSync(
      conf,
      `router id ${this.rtrIp.a};
protocol device {}
protocol kernel { ipv4 { import none; export all; }; }
protocol bfd { interface "dn*" { min rx interval ${BFD.intervalMs} ms; min tx interval ${BFD.intervalMs} ms; multiplier ${BFD.multiplier}; }; }
${peers}
`,
    );
    this.routerProc = spawn(
      'ip',
      ['netns', 'exec', this.rtr, 'bird', '-f', '-c', conf, '-s', join(this.dir, 'router.ctl')],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    this.routerProc.stderr!.on('data', (b: Buffer) => (this.routerLog += b.toString()));
  }

  routerLog = '';

  private startFrrRouter(): void {
    const d = join(this.dir, 'frr');
    mkdirSync(d);
    chmodSync(this.dir, 0o755);
    const uid = Number(execFileSync('id', ['-u', 'frr'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'frr'], { encoding: 'utf8' }).trim());
    chownSync(d, uid, gid);
    const nb = (['a', 'b'] as const)
      .map(
        (g) => ` neighbor ${this.up[g]} remote-as 65001
 neighbor ${this.up[g]} timers 3 9
 neighbor ${this.up[g]} timers connect 1
 neighbor ${this.up[g]} bfd profile ha`,
      )
      .join('\n');
    // One file per daemon: each parses only its own part.
    const files: Record<string, string> = {
      zebra: 'frr defaults traditional\n',
      bfdd: `frr defaults traditional
bfd
 profile ha
  detect-multiplier ${BFD.multiplier}
  receive-interval ${BFD.intervalMs}
  transmit-interval ${BFD.intervalMs}
`,
      bgpd: `frr defaults traditional
router bgp 65000
 bgp router-id ${this.rtrIp.a}
 no bgp ebgp-requires-policy
 bgp graceful-restart
${nb}
`,
    };
    for (const [f, text] of Object.entries(files)) {
      writeFileSync(join(d, `${f}.conf`), text);
      chownSync(join(d, `${f}.conf`), uid, gid);
    }
    const zs = join(d, 'zserv.api');
    const daemon = (bin: string, extra: string[]) => {
      execFileSync('ip', [
        'netns',
        'exec',
        this.rtr,
        `/usr/lib/frr/${bin}`,
        '-d',
        '-f',
        join(d, `${bin}.conf`),
        '-i',
        join(d, `${bin}.pid`),
        '--vty_socket',
        d,
        '-z',
        zs,
        ...extra,
      ]);
      this.frrPids.push(join(d, `${bin}.pid`));
    };
    daemon('zebra', []);
    daemon('bfdd', ['--bfdctl', join(d, 'bfdd.sock')]);
    daemon('bgpd', []);
  }

  private startGateway(g: 'a' | 'b'): void {
    const other = g === 'a' ? 'b' : 'a';
    const bird: BirdConfig = {
      routerId: this.up[g],
      localAsn: 65001,
      peers: [
        {
          name: 'rtr',
          address: this.rtrIp[g],
          asn: 65000,
          holdSeconds: 9,
          keepaliveSeconds: 3,
          ...(this.bfd ? { bfd: BFD } : {}),
        },
      ],
      announce: [`${FIP}/32`],
      acceptDefaultRoute: false,
      gracefulRestartSeconds: 120,
      llgrStaleSeconds: 0,
    };
    const args: HaGatewayArgs = {
      node: `gw-${g}`,
      gateway: 'gw',
      ranked: ['gw-a', 'gw-b'],
      peers: [{ node: `gw-${other}`, address: this.lan[other] }],
      bind: this.lan[g],
      port: 4791,
      stateDir: join(this.dir, `gw-${g}`),
      bird,
      keyFile: this.nodeKey(`gw-${g}`).keyFile,
      peerKeys: [{ node: `gw-${other}`, spki: this.nodeKey(`gw-${other}`).spki }],
      intervalMs: 100,
      deadAfterMs: 1000,
      preemptHoldMs: 3000,
    };
    const script = this.mode === 'node' ? 'ha-node.ts' : 'ha-gateway.ts';
    const argv = this.mode === 'node' ? this.nodeArgs(args) : args;
    const c = spawn(
      'ip',
      [
        'netns',
        'exec',
        this.ns[g],
        process.execPath,
        '--import',
        TSX,
        `${REPO}test/bench/support/${script}`,
        JSON.stringify(argv),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let buf = '';
    c.stdout!.on('data', (b: Buffer) => {
      buf += b.toString();
      let i = buf.indexOf('\n');
      while (i >= 0) {
        try {
          this.events.push({ node: `gw-${g}`, ...(JSON.parse(buf.slice(0, i)) as { t: number }) });
        } catch {}
        buf = buf.slice(i + 1);
        i = buf.indexOf('\n');
      }
    });
    this.gws[g] = c;
  }

  /** The Gateway object both modes share (site `cell`, both nodes, best first). */
  private gatewayObject(ranked: readonly string[] = ['gw-a', 'gw-b']): TetherObject {
    return {
      apiVersion: 'tether.dev/v1',
      kind: 'Gateway',
      metadata: { name: 'gw' },
      spec: {
        site: 'cell',
        nodes: [...ranked],
        localAsn: 65001,
        pool: [`${FIP}/32`],
        peers: (['a', 'b'] as const).map((x) => ({
          name: `rtr-${x}`,
          address: this.rtrIp[x],
          asn: 65000,
          holdSeconds: 9,
          keepaliveSeconds: 3,
          ...(this.bfd ? { bfd: { enabled: true, ...BFD } } : {}),
        })),
        // Real mode: the floating IP is announced because it is bound (its dataplane first).
        announce:
          this.fip === 'real'
            ? { prefixes: [], floatingIps: true, acceptDefaultRoute: false }
            : { prefixes: [`${FIP}/32`], floatingIps: false, acceptDefaultRoute: false },
        gracefulRestartSeconds: 120,
        llgrStaleSeconds: 0,
      },
    };
  }

  /**
   * The slice a gateway node's agent would hold for this lab: the Site, a Gateway listing both
   * nodes (best first) with one peer per node's router address (each node reaches only its
   * own: the other session stays down), and the site's Nodes (both gateway nodes with their
   * site-LAN address as VTEP, and site-c, which the Gateway does not list) with their public
   * keys, as the controller's roster carries them.
   */
  private nodeArgs(m: HaGatewayArgs): HaNodeArgs {
    const g = m.node === 'gw-a' ? 'a' : 'b';
    return {
      node: m.node,
      site: 'cell',
      slice: this.slice(),
      ...(this.vr[g] ? { network: this.vr[g] } : {}),
      bind: m.bind,
      port: m.port,
      stateDir: m.stateDir,
      keyFile: m.keyFile,
      intervalMs: m.intervalMs,
      deadAfterMs: m.deadAfterMs,
      preemptHoldMs: m.preemptHoldMs,
    };
  }

  /** The site's slice (real mode: with node E, its workload's Endpoint and the FloatingIP). */
  private slice(): TetherObject[] {
    const obj = (kind: string, name: string, spec: unknown, status?: unknown): TetherObject =>
      ({
        apiVersion: 'tether.dev/v1',
        kind,
        metadata: { name },
        spec,
        ...(status ? { status } : {}),
      }) as TetherObject;
    const out = [
      obj('Site', 'cell', {}),
      this.gatewayObject(),
      ...(['a', 'b'] as const).map((x) =>
        obj(
          'Node',
          `gw-${x}`,
          { site: 'cell' },
          { vtep: this.lan[x], publicKey: this.nodeKey(`gw-${x}`).spki },
        ),
      ),
      obj('Node', 'site-c', { site: 'cell' }, { vtep: '10.96.3.3', publicKey: this.nodeKey('site-c').spki }),
    ];
    if (this.fip === 'real')
      out.push(
        obj('Node', 'node-e', { site: 'cell' }, { vtep: this.lan.e }),
        obj('Endpoint', 'node-e.w', {
          network: 'red',
          node: 'node-e',
          site: 'cell',
          mac: WORKLOAD.mac,
          ip: WORKLOAD.ip,
          vtep: this.lan.e,
        }),
        obj('FloatingIP', 'f', {
          gateway: 'gw',
          address: FIP,
          network: 'red',
          target: { endpoint: 'node-e.w' },
        }),
      );
    return out;
  }

  /** The BIRD protocol of gateway g's session to the router. */
  private proto(g: 'a' | 'b'): string {
    return this.mode === 'node' ? `tp_rtr_${g}` : 'tp_rtr';
  }

  /** BGP state of gateway g's session to the router (its BIRD, `show protocols`). */
  gwBgpState(g: 'a' | 'b'): string {
    try {
      const r = execFileSync(
        'birdc',
        ['-s', join(this.dir, `gw-${g}`, 'bird.ctl'), 'show', 'protocols', this.proto(g)],
        // A BIRD still starting has no socket yet: birdc's complaint is not news.
        { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] },
      );
      return (
        new RegExp(`${this.proto(g)}\\s+BGP\\s+\\S+\\s+\\S+\\s+\\S+ \\S+\\s+(\\S+)`).exec(r)?.[1] ?? 'unknown'
      );
    } catch {
      return 'unknown';
    }
  }

  /**
   * Both sessions up. FRR's bgpd sends Cease/BFD Down when a session opens before its BFD
   * session is up, and BIRD then waits its error wait time (60 s) before trying again: the
   * lab restarts such a protocol once BFD had time to come up instead of waiting.
   */
  async settle(): Promise<void> {
    // BIRD's connect delay is 5 s: a restart is only worth it for a session still down later.
    for (let i = 0; i < 60; i++) {
      if (this.gwBgpState('a') === 'Established' && this.gwBgpState('b') === 'Established') return;
      await new Promise((r) => setTimeout(r, 500));
      if (i % 20 !== 19) continue;
      for (const g of ['a', 'b'] as const)
        if (this.gwBgpState(g) !== 'Established')
          try {
            execFileSync('birdc', ['-s', join(this.dir, `gw-${g}`, 'bird.ctl'), 'restart', this.proto(g)], {
              timeout: 2000,
            });
          } catch {}
    }
    throw new Error(
      `sessions not up: a ${this.gwBgpState('a')}, b ${this.gwBgpState('b')}; router process exit ${this.routerProc?.exitCode} ${this.routerLog.slice(-500)}`,
    );
  }

  /** The role gateway g announced last (from its role-change lines). */
  role(g: 'a' | 'b'): 'active' | 'standby' {
    const last = this.events.filter((e) => e.node === `gw-${g}` && typeof e.role === 'string').at(-1);
    return (last?.role as 'active' | 'standby' | undefined) ?? 'standby';
  }

  /** Next hop of the router's kernel route to the floating IP (what traffic follows). */
  nextHop(): string | undefined {
    const r = execFileSync('ip', ['-n', this.rtr, '-4', 'route', 'show', `${FIP}/32`], { encoding: 'utf8' });
    return /via (\S+)/.exec(r)?.[1];
  }

  /** AS path length of the router's best route, by next hop (BIRD or FRR). */
  async pathsSeen(): Promise<string> {
    if (this.router === 'bird') {
      return execFileSync(
        'birdc',
        ['-s', join(this.dir, 'router.ctl'), 'show', 'route', `${FIP}/32`, 'all'],
        {
          encoding: 'utf8',
        },
      );
    }
    return execFileSync(
      'vtysh',
      ['--vty_socket', join(this.dir, 'frr'), '-c', `show bgp ipv4 unicast ${FIP}/32`],
      {
        encoding: 'utf8',
      },
    );
  }

  /** BIRD's pid of gateway g (its -P file). */
  birdPid(g: 'a' | 'b'): number {
    return Number(readFileSync(join(this.dir, `gw-${g}`, 'bird.pid'), 'utf8').trim());
  }

  gatewayPid(g: 'a' | 'b'): number | undefined {
    return this.gws[g]?.pid;
  }

  /** Gateway g goes silent towards the router with its link still up (a dead or hung node
   *  behind a switch): everything it sends on its uplink is dropped, so only BFD can tell.
   *  Postrouting, not output: in the real mode the echo replies are forwarded (un-DNATed
   *  from the workload on E), and an output hook would let them through. */
  silence(g: 'a' | 'b'): void {
    execFileSync('ip', ['netns', 'exec', this.ns[g], 'nft', '-f', '-'], {
      input:
        'table ip tether_ha_lab { chain out { type filter hook postrouting priority 0; policy accept; oifname "up0" drop; }; }\n',
    });
  }

  unsilence(g: 'a' | 'b'): void {
    execFileSync('ip', ['netns', 'exec', this.ns[g], 'nft', 'delete', 'table', 'ip', 'tether_ha_lab']);
  }

  /** Starts gateway g's process again (after a kill -9). */
  restart(g: 'a' | 'b'): void {
    this.startGateway(g);
  }

  /**
   * A forger in gateway g's namespace, from g's own LAN address and heartbeat port (g must be
   * dead: its port free), claiming g is up and active, signed with the key of `signer` (g's
   * own: the control; site-c's: an enrolled node of the site the Gateway does not list).
   * Resolves once it sends; call the returned stop.
   */
  async spoof(g: 'a' | 'b', signer: LabNode): Promise<() => Promise<void>> {
    const other = g === 'a' ? 'b' : 'a';
    const args: HaSpoofArgs = {
      gateway: 'gw',
      node: `gw-${g}`,
      bind: this.lan[g],
      to: this.lan[other],
      port: 4791,
      keyFile: this.nodeKey(signer).keyFile,
    };
    const c = spawn(
      'ip',
      [
        'netns',
        'exec',
        this.ns[g],
        process.execPath,
        '--import',
        TSX,
        `${REPO}test/bench/support/ha-spoof.ts`,
        JSON.stringify(args),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    this.spoofers.add(c);
    await new Promise<void>((resolve, reject) => {
      c.stdout!.once('data', () => resolve());
      c.once('exit', (code) => reject(new Error(`spoofer exited (${code})`)));
    });
    return async () => {
      if (c.exitCode !== null) return;
      const done = new Promise<void>((r) => c.once('close', () => r()));
      c.kill('SIGTERM');
      await done;
      this.spoofers.delete(c);
    };
  }

  private readonly spoofers = new Set<ChildProcess>();

  /** Gateway g's last heartbeat counters (ha-node.ts prints them once a second). */
  heartbeats(g: 'a' | 'b'): { accepted: number; dropped: Record<string, number> } | undefined {
    const last = this.events.filter((e) => e.node === `gw-${g}` && e.heartbeats !== undefined).at(-1);
    return last?.heartbeats as { accepted: number; dropped: Record<string, number> } | undefined;
  }

  linkDown(g: 'a' | 'b'): void {
    this.ip('-n', this.ns[g], 'link', 'set', 'up0', 'down');
  }

  linkUp(g: 'a' | 'b'): void {
    this.ip('-n', this.ns[g], 'link', 'set', 'up0', 'up');
  }

  /** A ping every 10 ms from the router's side to the floating IP, until stop(). */
  ping(): { stop: () => Promise<PingResult> } {
    const c = spawn('ip', ['netns', 'exec', this.rtr, 'ping', '-n', '-D', '-i', '0.01', '-W', '1', FIP], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let text = '';
    c.stdout!.on('data', (b: Buffer) => (text += b.toString()));
    return {
      stop: async () => {
        const done = new Promise<void>((r) => c.once('close', () => r()));
        c.kill('SIGINT');
        await done;
        const seqs: Array<{ seq: number; t: number }> = [];
        for (const m of text.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from [\d.]+: icmp_seq=(\d+)/gm))
          seqs.push({ seq: Number(m[2]), t: Number(m[1]) * 1000 });
        const sent = Number(/(\d+) packets transmitted/.exec(text)?.[1] ?? 0);
        const received = new Set(seqs.map((s) => s.seq)).size;
        let maxGapMs = 0;
        for (let i = 1; i < seqs.length; i++) maxGapMs = Math.max(maxGapMs, seqs[i]!.t - seqs[i - 1]!.t);
        return { sent, received, lost: sent - received, maxGapMs: Math.round(maxGapMs) };
      },
    };
  }

  async destroy(): Promise<void> {
    for (const c of this.spoofers) if (c.exitCode === null) c.kill('SIGKILL');
    for (const g of ['a', 'b'] as const) {
      const c = this.gws[g];
      if (c && c.exitCode === null) {
        const done = new Promise<void>((r) => c.once('close', () => r()));
        c.kill('SIGTERM');
        await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
      }
      // A BIRD left behind by a SIGKILLed gateway process: ours, by its pid file.
      try {
        process.kill(this.birdPid(g), 'SIGKILL');
      } catch {}
    }
    this.routerProc?.kill('SIGTERM');
    this.echo?.kill('SIGTERM');
    await this.endpointNode?.stop().catch(() => undefined);
    // Real mode: the vRouters' namespaces, by the names their plans gave them.
    for (const d of Object.values(this.vr)) {
      await new VRouter(new ProcessRunner(), silentLogger()).teardown(d).catch(() => undefined);
      for (const n of d.networks)
        try {
          execFileSync('ip', ['netns', 'del', names.vnNetns(d.netnsPrefix, n.vni)], { stdio: 'ignore' });
        } catch {}
    }
    for (const f of this.frrPids)
      try {
        process.kill(Number(readFileSync(f, 'utf8').trim()), 'SIGTERM');
      } catch {}
    await this.topo.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function until(what: string, f: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await f()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export type Fault = 'silence' | 'sigstop-bird' | 'kill9';

export interface FailoverResult {
  router: RouterKind;
  fault: Fault;
  fip: FipMode;
  /** Pings every 10 ms from the router's side through the floating IP, fault to recovery. */
  failover: PingResult;
  /** Fault to the router's kernel route pointing at the standby (undefined: it never moved). */
  routeMovedMs: number | undefined;
  /** The standby's HA role after the failover, the old active's after it came back. */
  standbyRole: string;
  /** The old active back (fault undone): pings through the preempt back to it. */
  recovery: PingResult;
  preemptedBack: boolean;
  /** Real mode: the client address the workload saw for a request sent after the failover
   *  (the router's address on the link it used: which gateway the flow came through). */
  seenDuring?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One failover: A active, a ping running, the fault on A; wait for the router to move (or,
 * for kill -9 with graceful restart, for the pings to keep flowing), then undo the fault and
 * wait for A to take the role back (preempt after the hold).
 */
export async function failover(lab: HaLab, fault: Fault): Promise<FailoverResult> {
  await lab.settle();
  await until(
    'gw-a active with the router on it',
    () => lab.role('a') === 'active' && lab.nextHop() === lab.up.a,
    60_000,
  );
  await until('gw-b standby', () => lab.role('b') === 'standby', 10_000);
  const p = lab.ping();
  await sleep(1000);
  const t0 = Date.now();
  let birdPid = 0;
  if (fault === 'silence') lab.silence('a');
  else if (fault === 'sigstop-bird') {
    birdPid = lab.birdPid('a');
    process.kill(birdPid, 'SIGSTOP');
  } else {
    birdPid = lab.birdPid('a');
    process.kill(lab.gatewayPid('a')!, 'SIGKILL');
    process.kill(birdPid, 'SIGKILL');
  }
  let routeMovedMs: number | undefined;
  try {
    await until('router on gw-b', () => lab.nextHop() === lab.up.b, fault === 'kill9' ? 3000 : 15_000);
    routeMovedMs = Date.now() - t0;
  } catch {
    // kill -9: the router keeps gw-a's routes as stale (graceful restart), gw-a still forwards.
  }
  if (routeMovedMs !== undefined) await until('gw-b active', () => lab.role('b') === 'active', 10_000);
  await sleep(1500);
  const seenDuring = lab.fip === 'real' ? lab.clientSeen() : undefined;
  const failoverPing = await p.stop();
  const standbyRole = lab.role('b');

  const q = lab.ping();
  if (fault === 'silence') lab.unsilence('a');
  else if (fault === 'sigstop-bird') process.kill(birdPid, 'SIGCONT');
  else lab.restart('a');
  let preemptedBack = true;
  try {
    await until(
      'gw-a active again, the router back on it',
      () => lab.role('a') === 'active' && lab.role('b') === 'standby' && lab.nextHop() === lab.up.a,
      90_000,
    );
  } catch {
    preemptedBack = false;
  }
  await sleep(1000);
  const recovery = await q.stop();
  return {
    router: lab.router,
    fault,
    fip: lab.fip,
    failover: failoverPing,
    routeMovedMs,
    standbyRole,
    recovery,
    preemptedBack,
    ...(seenDuring !== undefined ? { seenDuring } : {}),
  };
}
