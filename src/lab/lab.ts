import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify as stringifyYaml } from 'yaml';
import { parseToken } from '../api/token.js';
import { writeFileAtomic } from '../lib/atomic.js';
import { TetherError } from '../lib/errors.js';
import { type CommandRunner, ProcessRunner, type RunOptions, type RunResult } from '../lib/exec.js';
import { checkDelayMs, impairControl } from './impair.js';
import {
  allNodes,
  allWorkloads,
  LAB_NETWORKS,
  LAB_SUBNET,
  type LabNetwork,
  type LabOptions,
  type LabPlan,
  type NodePlan,
  planLab,
  plannedNamespaces,
  type SitePlan,
  UNDERLAY_MTU,
  vnNamespace,
  vnNamespaceRe,
  type WorkloadPlan,
} from './plan.js';
import {
  type LabProcess,
  type LabState,
  type LabWorkload,
  readLabState,
  stateFile,
  type WanImpairment,
  writeLabState,
} from './state.js';

export type Progress = (message: string) => void;

/** Seconds from the start of `discover` to the end of `ready` in a node's firstboot.json. */
export function firstBootSeconds(file: string): number {
  const st = JSON.parse(readFileSync(file, 'utf8')) as {
    phase?: string;
    phases?: Array<{ name: string; startedAt?: string; endedAt?: string }>;
  };
  const at = (name: string, k: 'startedAt' | 'endedAt') =>
    Date.parse(st.phases?.find((p) => p.name === name)?.[k] ?? '');
  const s = (at('ready', 'endedAt') - at('discover', 'startedAt')) / 1000;
  if (st.phase !== 'ready' || !Number.isFinite(s))
    throw new TetherError('TETHER_E_STATE', `first boot did not reach Ready (phase ${st.phase})`, { file });
  return s;
}

export interface LabBinaries {
  /** `bin/tether` (or anything that runs the tether CLI). */
  tether: string;
  /** `bin/tether-cni`. */
  cni: string;
}

export function defaultBinaries(): LabBinaries {
  const repo = fileURLToPath(new URL('../../', import.meta.url));
  return {
    tether: process.env.TETHER_LAB_TETHER ?? join(repo, 'bin', 'tether'),
    cni: process.env.TETHER_LAB_CNI ?? join(repo, 'bin', 'tether-cni'),
  };
}

export function defaultLabStateDir(name: string): string {
  return `/run/tether-lab/${name}`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function poll<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs: number,
  everyMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new TetherError(
        'TETHER_E_TIMEOUT',
        `timed out waiting for ${what}${last ? `: ${last instanceof Error ? last.message : String(last)}` : ''}`,
      );
    }
    await sleep(everyMs);
  }
}

/** Start time of PID from /proc (field 22), or undefined when there is no such process. */
export function procStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3 (state); field 22 is rest[19].
    if (rest[0] === 'Z' || rest[0] === 'X') return undefined;
    return rest[19];
  } catch {
    return undefined;
  }
}

export function processAlive(p: Pick<LabProcess, 'pid' | 'startTime'>): boolean {
  return procStartTime(p.pid) === p.startTime;
}

/** SIGTERM, wait, then SIGKILL; only if the PID is still the process we started. */
export async function stopProcess(p: LabProcess, graceMs = 8000): Promise<void> {
  if (!processAlive(p)) return;
  try {
    process.kill(p.pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (processAlive(p) && Date.now() < deadline) await sleep(50);
  if (processAlive(p)) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    while (processAlive(p)) await sleep(20);
  }
}

export async function listNetns(runner: CommandRunner = new ProcessRunner()): Promise<string[]> {
  const r = await runner.run('ip', ['-j', 'netns', 'list'], { allowFailure: true });
  if (r.code !== 0 || !r.stdout.trim()) return [];
  return (JSON.parse(r.stdout) as Array<{ name: string }>).map((n) => n.name);
}

interface CniResult {
  interfaces?: Array<{ name: string; mac?: string; sandbox?: string }>;
  ips?: Array<{ address: string; gateway?: string; interface?: number }>;
  code?: number;
  msg?: string;
}

export interface LabNodeStatus {
  name: string;
  site: string;
  ns: string;
  ip: string;
  pid?: number;
  alive: boolean;
  session: string;
  revision: number;
  vnNamespaces: string[];
}

export interface LabStatusView {
  name: string;
  stateDir: string;
  phase: LabState['phase'];
  error?: string;
  controller: { address: string; ns: string; adminConfig: string; pid?: number; alive: boolean };
  namespaces: Array<{ name: string; exists: boolean }>;
  processes: Array<{ role: string; name: string; pid: number; alive: boolean; ns: string; log: string }>;
  nodes: LabNodeStatus[];
  networks: LabState['networks'];
  workloads: LabWorkload[];
  wan: WanSiteStatus[];
}

export interface WanSiteStatus extends WanImpairment {
  site: string;
  /** Packets dropped by the site's cut and loss rules in the WAN router. */
  drops: { cut: number; loss: number };
  proxy: {
    address: string;
    pid?: number;
    alive: boolean;
    bytesToController?: number;
    bytesFromController?: number;
    connectionsOpen?: number;
    delayMs?: number;
  };
}

/**
 * A lab: one whole Tether deployment on this machine, in network namespaces, driven through
 * the real binaries (`tether controller start`, `tether node run`, `tether-cni`) exactly as an
 * integrator would run them. See docs/lab.md.
 */
export class Lab {
  readonly plan: LabPlan;
  state: LabState;
  readonly runner: CommandRunner;
  readonly bins: LabBinaries;
  private readonly progress: Progress;

  private constructor(
    plan: LabPlan,
    state: LabState,
    opts: { runner?: CommandRunner; bins?: LabBinaries; progress?: Progress },
  ) {
    this.plan = plan;
    this.state = state;
    this.runner = opts.runner ?? new ProcessRunner();
    this.bins = opts.bins ?? defaultBinaries();
    this.progress = opts.progress ?? (() => {});
  }

  /** Opens an existing lab from its state file. */
  static open(
    stateDir: string,
    opts: { runner?: CommandRunner; bins?: LabBinaries; progress?: Progress } = {},
  ): Lab {
    const state = readLabState(stateDir);
    if (!state) {
      throw new TetherError('TETHER_E_NOT_FOUND', `no lab state at ${stateFile(stateDir)}`, {
        file: stateFile(stateDir),
        expected: 'a lab brought up with `tether lab up` (same --name / --state-dir)',
      });
    }
    return new Lab(planLab(state.options), state, opts);
  }

  /** Builds the whole lab. On failure everything created so far is recorded: run `down`. */
  static async up(
    options: LabOptions,
    opts: { runner?: CommandRunner; bins?: LabBinaries; progress?: Progress; timeoutMs?: number } = {},
  ): Promise<Lab> {
    const plan = planLab(options);
    const runner = opts.runner ?? new ProcessRunner();
    if (process.getuid?.() !== 0) {
      throw new TetherError(
        'TETHER_E_PRECONDITION',
        'tether lab needs root (it creates network namespaces)',
        {
          expected: 'run as root',
        },
      );
    }
    const missing: string[] = [];
    for (const tool of ['ip', 'bridge', 'nft', 'nsenter', 'sysctl']) {
      const r = await runner
        .run('sh', ['-c', `command -v ${tool}`], { allowFailure: true })
        .catch(() => undefined);
      if (r?.code !== 0) missing.push(tool);
    }
    if (missing.length) {
      throw new TetherError('TETHER_E_PRECONDITION', `missing tools: ${missing.join(', ')}`, {
        expected: 'iproute2, nftables, util-linux and procps installed',
      });
    }
    if (existsSync(stateFile(options.stateDir))) {
      throw new TetherError(
        'TETHER_E_PRECONDITION',
        `a lab named ${options.name} already exists (${stateFile(options.stateDir)})`,
        { expected: `\`tether lab down --name ${options.name}\` first, or another --name` },
      );
    }
    const existing = new Set(await listNetns(runner));
    const clash = plannedNamespaces(plan).find((n) => existing.has(n));
    if (clash) {
      throw new TetherError('TETHER_E_PRECONDITION', `network namespace ${clash} already exists`, {
        expected:
          'a lab name whose namespaces are free (this lab does not touch namespaces it did not create)',
      });
    }
    let createdStateDir = false;
    if (existsSync(options.stateDir)) {
      if (readdirSync(options.stateDir).length > 0) {
        throw new TetherError('TETHER_E_PRECONDITION', `state directory ${options.stateDir} is not empty`, {
          field: '--state-dir',
          expected: 'a new or empty directory',
        });
      }
    } else {
      mkdirSync(options.stateDir, { recursive: true, mode: 0o700 });
      createdStateDir = true;
    }
    const state: LabState = {
      version: 1,
      name: options.name,
      options,
      phase: 'building',
      createdAt: new Date().toISOString(),
      createdStateDir,
      namespaces: [],
      netnsPrefixes: allNodes(plan).map((n) => n.netnsPrefix),
      processes: [],
      workloads: [],
      networks: {},
    };
    writeLabState(options.stateDir, state);
    const lab = new Lab(plan, state, { ...opts, runner });
    try {
      await lab.build(opts.timeoutMs ?? 120_000);
      lab.state.phase = 'up';
      lab.save();
      return lab;
    } catch (e) {
      lab.state.phase = 'failed';
      lab.state.error = e instanceof Error ? e.message : String(e);
      lab.save();
      throw e;
    }
  }

  save(): void {
    writeLabState(this.plan.stateDir, this.state);
  }

  // ------------------------------------------------------------------------------------
  // commands

  async sh(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    return this.runner.run(cmd, args, opts);
  }

  /** Runs a command inside one of the lab's namespaces (`ip netns exec`). */
  async exec(
    ns: string,
    cmd: string,
    args: readonly string[],
    opts: Omit<RunOptions, 'netns'> = {},
  ): Promise<RunResult> {
    return this.runner.run(cmd, args, { ...opts, netns: ns });
  }

  private async ip(ns: string, args: string): Promise<void> {
    await this.runner.run('ip', ['-n', ns, ...args.split(' ')]);
  }

  /** Runs the admin CLI against the lab's controller, from inside the central namespace. */
  async admin(args: readonly string[], input?: string, allowFailure = false): Promise<RunResult> {
    return this.exec(
      this.plan.central.ns,
      this.bins.tether,
      [...args, '--config', this.plan.central.adminConfig],
      {
        env: { ...process.env, NO_COLOR: '1' },
        ...(input !== undefined ? { input } : {}),
        allowFailure,
      },
    );
  }

  /** Applies resources (objects or YAML/JSON text) through the admin API. */
  async apply(docs: string | object | object[]): Promise<void> {
    const text =
      typeof docs === 'string'
        ? docs
        : (Array.isArray(docs) ? docs : [docs]).map((d) => JSON.stringify(d)).join('\n---\n');
    await this.admin(['apply', '-f', '-'], text);
  }

  async delete(kind: string, name: string): Promise<void> {
    await this.admin(['delete', kind, name]);
  }

  // ------------------------------------------------------------------------------------
  // lookups

  node(name: string): NodePlan {
    const n = allNodes(this.plan).find((x) => x.name === name);
    if (!n) throw new TetherError('TETHER_E_NOT_FOUND', `lab ${this.plan.name} has no node ${name}`);
    return n;
  }

  workload(name: string): LabWorkload {
    const w = this.state.workloads.find((x) => x.name === name);
    if (!w)
      throw new TetherError('TETHER_E_NOT_FOUND', `lab ${this.plan.name} has no attached workload ${name}`);
    return w;
  }

  workloadPlan(name: string): WorkloadPlan {
    const w = allWorkloads(this.plan).find((x) => x.name === name);
    if (!w) throw new TetherError('TETHER_E_NOT_FOUND', `lab ${this.plan.name} has no workload ${name}`);
    return w;
  }

  vni(network: LabNetwork): number {
    const v = this.state.networks[network]?.vni;
    if (v === undefined) throw new TetherError('TETHER_E_STATE', `network ${network} has no VNI yet`);
    return v;
  }

  /** The vRouter's namespace for `network` on `node`. */
  vnNs(node: string, network: LabNetwork): string {
    return vnNamespace(this.node(node), this.vni(network));
  }

  site(name: string): SitePlan {
    const s = this.plan.sites.find((x) => x.name === name);
    if (!s) {
      throw new TetherError('TETHER_E_INVALID', `lab ${this.plan.name} has no site ${name}`, {
        field: '--site',
        expected: this.plan.sites.map((x) => x.name).join(', '),
      });
    }
    return s;
  }

  nodeProcess(name: string): LabProcess | undefined {
    return this.state.processes.find((p) => p.role === 'node' && p.name === name);
  }

  // ------------------------------------------------------------------------------------
  // building

  private async addNs(ns: string): Promise<void> {
    this.state.namespaces.push(ns);
    this.save();
    await this.runner.run('ip', ['netns', 'add', ns]);
    await this.ip(ns, 'link set lo up');
  }

  private async veth(nsA: string, ifA: string, nsB: string, ifB: string): Promise<void> {
    await this.runner.run('ip', [
      '-n',
      nsA,
      'link',
      'add',
      ifA,
      'mtu',
      String(UNDERLAY_MTU),
      'type',
      'veth',
      'peer',
      'name',
      ifB,
      'netns',
      nsB,
    ]);
  }

  private async forwarding(ns: string): Promise<void> {
    await this.exec(ns, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
  }

  private async build(timeoutMs: number): Promise<void> {
    const p = this.plan;
    const say = this.progress;
    say(`lab ${p.name}: state in ${p.stateDir}`);
    say(`creating namespaces (${plannedNamespaces(p).length})`);
    for (const ns of plannedNamespaces(p)) await this.addNs(ns);

    say(`wiring the WAN: ${p.wan.ns} ↔ ${p.central.ns} and ${p.sites.length} site router(s)`);
    await this.forwarding(p.wan.ns);
    await this.veth(p.wan.ns, p.central.wanPort, p.central.ns, 'wan0');
    await this.ip(p.wan.ns, `addr add ${p.central.gateway}/30 dev ${p.central.wanPort}`);
    await this.ip(p.wan.ns, `link set ${p.central.wanPort} up`);
    await this.ip(p.central.ns, `addr add ${p.central.ip}/30 dev wan0`);
    await this.ip(p.central.ns, 'link set wan0 up');
    await this.ip(p.central.ns, `route add default via ${p.central.gateway}`);
    for (const s of p.sites) {
      say(`site ${s.name}: router ${s.ns} (WAN ${s.wanIp}, LAN ${s.lan})`);
      await this.forwarding(s.ns);
      await this.veth(p.wan.ns, s.wanPort, s.ns, 'wan0');
      await this.ip(p.wan.ns, `addr add ${s.wanPeer}/30 dev ${s.wanPort}`);
      await this.ip(p.wan.ns, `link set ${s.wanPort} up`);
      await this.ip(p.wan.ns, `route add ${s.lan} via ${s.wanIp}`);
      await this.ip(s.ns, `addr add ${s.wanIp}/30 dev wan0`);
      await this.ip(s.ns, 'link set wan0 up');
      await this.ip(s.ns, `route add default via ${s.wanPeer}`);
      // The router's LAN address lives on a veth whose peer is a br0 port, not on br0 itself
      // (see SitePlan.lanIf): routing into an L3 bridge segments GSO packets in software.
      await this.ip(s.ns, 'link add br0 type bridge');
      await this.ip(s.ns, 'link set br0 up');
      await this.veth(s.ns, s.lanIf, s.ns, s.lanPort);
      await this.ip(s.ns, `link set ${s.lanPort} master br0`);
      await this.ip(s.ns, `link set ${s.lanPort} up`);
      await this.ip(s.ns, `addr add ${s.routerIp}/24 dev ${s.lanIf}`);
      await this.ip(s.ns, `link set ${s.lanIf} up`);
      for (const n of s.nodes) {
        await this.veth(s.ns, n.routerPort, n.ns, n.lanIf);
        await this.ip(s.ns, `link set ${n.routerPort} master br0`);
        await this.ip(s.ns, `link set ${n.routerPort} up`);
        await this.ip(n.ns, `addr add ${n.ip}/24 dev ${n.lanIf}`);
        await this.ip(n.ns, `link set ${n.lanIf} up`);
        await this.ip(n.ns, `route add default via ${n.gateway}`);
      }
    }

    say(`controller: init in ${p.central.dataDir}, listening on ${p.central.address}`);
    mkdirSync(dirname(p.central.log), { recursive: true });
    await this.exec(p.central.ns, this.bins.tether, [
      'controller',
      'init',
      '--data-dir',
      p.central.dataDir,
      '--listen',
      p.central.address,
      '--advertise',
      p.central.address,
    ]);
    await this.startController();
    for (const site of p.sites) await this.startImpairProxy(site.name);

    // One single-use join token per node, as an operator would hand them out.
    const tokens = new Map<string, string>();
    for (const n of allNodes(p)) {
      const r = await this.admin(['token', 'create', '--site', n.site]);
      tokens.set(n.name, r.stdout.trim());
    }
    say(`join tokens created: ${allNodes(p).length} (one per node, bound to its site)`);
    // Every node comes up the way a shipped box does: `tether node firstboot` finds its
    // bootstrap.yaml on a config drive (here a directory), checks the controller's CA,
    // enrolls, and only then is the daemon started.
    const firstBoot = await Promise.all(
      allNodes(p).map(async (n) => {
        const token = tokens.get(n.name) ?? '';
        const drive = this.writeBootDir(n, token);
        say(`node ${n.name}: first boot in ${n.ns} (${n.ip}) from config drive ${drive}`);
        await this.exec(
          n.ns,
          this.bins.tether,
          [
            'node',
            'firstboot',
            '--state-dir',
            n.stateDir,
            '--config-drive-dir',
            drive,
            // No image default, no file left by hand, no kernel argument, no DHCP: the drive
            // is the only source, as on a box shipped blank with a config drive.
            '--image-config',
            join(n.bootDir, 'image-bootstrap.yaml'),
            '--local-file',
            join(n.bootDir, 'local-bootstrap.yaml'),
            '--cmdline',
            join(n.bootDir, 'cmdline'),
            '--no-dhcp',
            '--max-attempts',
            '5',
          ],
          { env: { ...process.env, NO_COLOR: '1' }, timeoutMs },
        );
        const took = firstBootSeconds(join(n.stateDir, 'firstboot.json'));
        say(`node ${n.name}: first boot Ready, discovery → Ready ${took.toFixed(3)} s`);
        await this.startNode(n.name);
        return [n.name, took] as const;
      }),
    );
    this.state.firstBootSeconds = Object.fromEntries(firstBoot);
    this.save();

    say(`applying VirtualNetworks red (localBreakout) and blue, both ${LAB_SUBNET}`);
    await this.apply([
      {
        apiVersion: 'tether.dev/v1',
        kind: 'VirtualNetwork',
        metadata: { name: 'red' },
        spec: { subnets: [LAB_SUBNET], localBreakout: true },
      },
      {
        apiVersion: 'tether.dev/v1',
        kind: 'VirtualNetwork',
        metadata: { name: 'blue' },
        spec: { subnets: [LAB_SUBNET] },
      },
    ]);
    await poll(
      'VNIs and site blocks for red and blue',
      async () => {
        const r = await this.admin(['get', 'vn', '-o', 'json']);
        const items = (
          JSON.parse(r.stdout) as {
            items: Array<{
              metadata: { name: string };
              status?: { vni?: number; siteBlocks?: Record<string, string> };
            }>;
          }
        ).items;
        for (const net of LAB_NETWORKS) {
          const it = items.find((i) => i.metadata.name === net);
          if (!it?.status?.vni) return undefined;
          if (p.sites.some((s) => !it.status?.siteBlocks?.[s.name])) return undefined;
          this.state.networks[net] = { vni: it.status.vni };
        }
        return true;
      },
      timeoutMs,
      300,
    );
    this.save();
    say(`networks: red VNI ${this.vni('red')}, blue VNI ${this.vni('blue')}`);

    await Promise.all(
      allNodes(p).map(async (n) => {
        for (const w of n.workloads) {
          await this.cniAdd(w.name, timeoutMs);
          const got = this.workload(w.name);
          say(`workload ${w.name} (${w.network}) attached on ${n.name}: ${got.ip} mac ${got.mac}`);
        }
      }),
    );
    say('waiting for every node to program its peers');
    await this.waitConverged(timeoutMs);
    say(`lab ${p.name} is up`);
  }

  /** Writes a node's config drive directory and stand-in kernel command line. */
  private writeBootDir(n: NodePlan, token: string): string {
    const drive = join(n.bootDir, 'config-drive');
    mkdirSync(drive, { recursive: true, mode: 0o700 });
    // bootstrap.yaml (docs/bootstrap.schema.json); the CA fingerprint is the one the token pins.
    const boot = {
      apiVersion: 'tether.dev/v1',
      kind: 'Bootstrap',
      controllers: [this.site(n.site).controllerAddress],
      caFingerprint: parseToken(token).caFingerprint,
      token,
      site: n.site,
      nodeName: n.name,
    };
    writeFileAtomic(
      join(drive, 'bootstrap.yaml'),
      `# tether lab: config drive of ${n.name}\n${stringifyYaml(boot)}`,
      0o600,
    );
    writeFileAtomic(join(n.bootDir, 'cmdline'), 'BOOT_IMAGE=/tether-lab ro quiet\n', 0o600);
    return drive;
  }

  // ------------------------------------------------------------------------------------
  // processes

  private spawnDaemon(
    role: LabProcess['role'],
    name: string,
    ns: string,
    argv: string[],
    log: string,
  ): LabProcess {
    mkdirSync(dirname(log), { recursive: true });
    const fd = openSync(log, 'a', 0o600);
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
    delete env.JOURNAL_STREAM;
    delete env.NOTIFY_SOCKET;
    // Controller and impairment proxies: `ip netns exec`. Nodes: `nsenter --net` so the namespaces their vRouter adds
    // are mounted in the machine's mount namespace, where `down` and the tests can see them
    // (`ip netns exec` gives its child a private mount namespace).
    const [cmd, args] =
      role === 'node'
        ? ['nsenter', [`--net=/run/netns/${ns}`, ...argv]]
        : ['ip', ['netns', 'exec', ns, ...argv]];
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', fd, fd], env });
    closeSync(fd);
    child.on('error', () => {
      /* reported through the missing PID / dead process */
    });
    child.unref();
    const pid = child.pid;
    const startTime = pid ? procStartTime(pid) : undefined;
    if (!pid || !startTime) {
      throw new TetherError(
        'TETHER_E_COMMAND',
        `could not start ${role} ${name} (${cmd} ${args.join(' ')})`,
        { log },
      );
    }
    const rec: LabProcess = { role, name, pid, startTime, ns, argv, log };
    this.state.processes = [
      ...this.state.processes.filter((x) => !(x.role === role && x.name === name)),
      rec,
    ];
    this.save();
    return rec;
  }

  private async startController(): Promise<void> {
    const c = this.plan.central;
    const proc = this.spawnDaemon(
      'controller',
      'controller',
      c.ns,
      [this.bins.tether, 'controller', 'start', '--data-dir', c.dataDir],
      c.log,
    );
    this.progress(`controller: started (pid ${proc.pid}), waiting for it to serve`);
    await poll(
      'the controller to serve',
      async () => {
        if (!processAlive(proc)) throw new Error(`controller exited; see ${c.log}`);
        return (await this.admin(['get', 'sites'], undefined, true)).code === 0 || undefined;
      },
      60_000,
      300,
    );
  }

  /** Starts the site's impairment proxy (central namespace) with the delay the state records. */
  async startImpairProxy(site: string): Promise<LabProcess> {
    const s = this.site(site);
    mkdirSync(dirname(s.impair.control), { recursive: true, mode: 0o700 });
    const proc = this.spawnDaemon(
      'impair',
      s.name,
      this.plan.central.ns,
      [
        this.bins.tether,
        'lab',
        'impair-proxy',
        '--listen',
        s.controllerAddress,
        '--target',
        this.plan.central.address,
        '--control',
        s.impair.control,
        '--delay',
        String(this.wanOf(site).delayMs),
      ],
      s.impair.log,
    );
    this.progress(
      `site ${s.name}: WAN impairment proxy ${s.controllerAddress} → ${this.plan.central.address} (pid ${proc.pid})`,
    );
    await poll(
      `the impairment proxy of ${s.name} to serve`,
      async () => {
        if (!processAlive(proc)) throw new Error(`impairment proxy exited; see ${s.impair.log}`);
        return (
          (await impairControl(s.impair.control, 'GET', '/v1/counters').catch(() => undefined)) !==
            undefined || undefined
        );
      },
      30_000,
      100,
    );
    return proc;
  }

  /** Starts `tether node run` for `name` (again), with the lab's flags. */
  async startNode(name: string): Promise<LabProcess> {
    const n = this.node(name);
    const argv = [
      this.bins.tether,
      'node',
      'run',
      '--state-dir',
      n.stateDir,
      '--underlay-if',
      n.lanIf,
      '--breakout-if',
      n.lanIf,
      '--netns-prefix',
      n.netnsPrefix,
      '--cni-socket',
      n.cniSocket,
      '--heartbeat',
      `${this.state.options.heartbeatSeconds ?? 1}s`,
      // The lab's WAN is a test bench: by default a cut is noticed in 3 s, not 90 s.
      '--wan-heartbeat',
      `${this.state.options.wanHeartbeatSeconds ?? 1}s`,
      '--proxy',
      this.state.options.proxy === false ? 'off' : 'on',
    ];
    const proc = this.spawnDaemon('node', n.name, n.ns, argv, n.log);
    this.progress(`node ${n.name}: tether node run started (pid ${proc.pid})`);
    await poll(
      `node ${n.name} to write its status`,
      async () => {
        if (!processAlive(proc)) throw new Error(`node ${n.name} exited; see ${n.log}`);
        const st = this.nodeStatusFile(n.name);
        return (st && st.pid === proc.pid) || undefined;
      },
      60_000,
      200,
    );
    return proc;
  }

  /** SIGTERM (then SIGKILL) to a node's `tether node run`. */
  async stopNode(name: string): Promise<void> {
    const p = this.nodeProcess(name);
    if (!p) return;
    await stopProcess(p);
    this.state.processes = this.state.processes.filter((x) => x !== p);
    this.save();
  }

  async restartNode(name: string): Promise<LabProcess> {
    await this.stopNode(name);
    return this.startNode(name);
  }

  nodeStatusFile(
    name: string,
  ): { pid: number; session: { phase: string }; cache: { revision: number; objects: number } } | undefined {
    const f = join(this.node(name).stateDir, 'status.json');
    try {
      return JSON.parse(readFileSync(f, 'utf8'));
    } catch {
      return undefined;
    }
  }

  // ------------------------------------------------------------------------------------
  // workloads (CNI, exactly as a runtime calls it)

  private cniEnv(w: WorkloadPlan, command: 'ADD' | 'DEL'): NodeJS.ProcessEnv {
    const labels = Object.entries(w.labels)
      .map(([k, v]) => `${k}:${v}`)
      .join(',');
    return {
      ...process.env,
      NO_COLOR: '1',
      CNI_COMMAND: command,
      CNI_CONTAINERID: w.containerId,
      CNI_NETNS: `/var/run/netns/${w.ns}`,
      CNI_IFNAME: w.ifname,
      CNI_PATH: dirname(this.bins.cni),
      CNI_ARGS: `IgnoreUnknown=1;TETHER_LABELS=${labels}`,
    };
  }

  private cniConfig(w: WorkloadPlan): string {
    return JSON.stringify({
      cniVersion: '1.0.0',
      name: `${this.plan.name}-${w.network}`,
      type: 'tether-cni',
      network: w.network,
      agentSocket: this.node(w.node).cniSocket,
    });
  }

  /** CNI ADD of a planned workload into its namespace (retries while the agent says "try later"). */
  async cniAdd(name: string, timeoutMs = 60_000): Promise<LabWorkload> {
    const w = this.workloadPlan(name);
    const n = this.node(w.node);
    const res = await poll(
      `CNI ADD of ${w.name}`,
      async () => {
        const r = await this.exec(n.ns, this.bins.cni, [], {
          env: this.cniEnv(w, 'ADD'),
          input: this.cniConfig(w),
          allowFailure: true,
        });
        const out = JSON.parse(r.stdout || '{}') as CniResult;
        if (r.code === 0) return out;
        if (out.code === 11) return undefined; // agent not ready or no block yet
        throw new TetherError(
          'TETHER_E_COMMAND',
          `tether-cni ADD ${w.name} failed: ${r.stdout.trim()} ${r.stderr.trim()}`,
        );
      },
      timeoutMs,
      300,
    );
    const ip = res.ips?.[0];
    // The container end carries the address; the host end is the other one (its `sandbox` is
    // the network namespace the vRouter moved it into).
    const cont = ip?.interface !== undefined ? res.interfaces?.[ip.interface] : undefined;
    const host = res.interfaces?.find((i) => i !== cont && i.name !== w.ifname);
    if (!host || !cont?.mac || !ip) {
      throw new TetherError(
        'TETHER_E_COMMAND',
        `tether-cni ADD ${w.name}: unexpected result ${JSON.stringify(res)}`,
      );
    }
    const rec: LabWorkload = {
      name: w.name,
      ns: w.ns,
      node: w.node,
      site: w.site,
      network: w.network,
      containerId: w.containerId,
      ifname: w.ifname,
      hostIfname: host.name,
      ip: ip.address.split('/')[0] ?? ip.address,
      mac: cont.mac.toLowerCase(),
      gateway: ip.gateway ?? '',
    };
    this.state.workloads = [...this.state.workloads.filter((x) => x.name !== w.name), rec];
    this.save();
    return rec;
  }

  /** CNI DEL of a workload (its namespace stays, empty). */
  async cniDel(name: string): Promise<void> {
    const w = this.workloadPlan(name);
    const n = this.node(w.node);
    const r = await this.exec(n.ns, this.bins.cni, [], {
      env: this.cniEnv(w, 'DEL'),
      input: this.cniConfig(w),
      allowFailure: true,
    });
    if (r.code !== 0) {
      throw new TetherError(
        'TETHER_E_COMMAND',
        `tether-cni DEL ${w.name} failed: ${r.stdout.trim()} ${r.stderr.trim()}`,
      );
    }
    this.state.workloads = this.state.workloads.filter((x) => x.name !== name);
    this.save();
  }

  // ------------------------------------------------------------------------------------
  // convergence and inspection

  /** MACs in a VXLAN device's forwarding table with their VTEP (`bridge fdb … dst`). */
  async vxlanFdb(ns: string, vni: number): Promise<Map<string, string>> {
    const r = await this.runner.run('bridge', ['-n', ns, '-j', 'fdb', 'show', 'dev', `tvx${vni}`], {
      allowFailure: true,
    });
    const out = new Map<string, string>();
    if (r.code !== 0 || !r.stdout.trim()) return out;
    for (const e of JSON.parse(r.stdout) as Array<{ mac: string; dst?: string }>) {
      if (e.dst) out.set(e.mac.toLowerCase(), e.dst);
    }
    return out;
  }

  /** Undefined when every node has every local workload in place and every remote one programmed. */
  async notConverged(): Promise<string | undefined> {
    const existing = new Set(await listNetns(this.runner));
    for (const n of allNodes(this.plan)) {
      for (const net of LAB_NETWORKS) {
        const vni = this.state.networks[net]?.vni;
        if (vni === undefined) return `network ${net} has no VNI`;
        const local = this.state.workloads.filter((w) => w.node === n.name && w.network === net);
        const remote = this.state.workloads.filter((w) => w.node !== n.name && w.network === net);
        if (local.length === 0 && remote.length === 0) continue;
        const ns = vnNamespace(n, vni);
        if (!existing.has(ns)) return `${ns} does not exist yet`;
        if (local.length) {
          const r = await this.runner.run('ip', ['-n', ns, '-j', 'link', 'show'], { allowFailure: true });
          const names = new Set(
            (JSON.parse(r.stdout || '[]') as Array<{ ifname: string }>).map((l) => l.ifname),
          );
          const missing = local.find((w) => !names.has(w.hostIfname));
          if (missing) return `${missing.hostIfname} (${missing.name}) not in ${ns} yet`;
        }
        const fdb = await this.vxlanFdb(ns, vni);
        for (const w of remote) {
          const vtep = this.node(w.node).ip;
          if (fdb.get(w.mac) !== vtep) return `${ns}: no forwarding entry ${w.mac} → ${vtep} (${w.name}) yet`;
        }
        if (remote.length) {
          const r = await this.runner.run('ip', ['-n', ns, '-j', 'neigh', 'show', 'dev', `tvx${vni}`], {
            allowFailure: true,
          });
          const neigh = new Map(
            (JSON.parse(r.stdout || '[]') as Array<{ dst: string; lladdr?: string }>).map((e) => [
              e.dst,
              e.lladdr?.toLowerCase(),
            ]),
          );
          // An address held twice in one network (nodes of one site, see docs/lab.md) has no single owner.
          const all = this.state.workloads.filter((w) => w.network === net);
          const unique = (w: LabWorkload) => all.filter((x) => x.ip === w.ip).length === 1;
          const wrong = remote.find((w) => unique(w) && neigh.get(w.ip) !== w.mac);
          if (wrong) return `${ns}: no neighbour entry ${wrong.ip} → ${wrong.mac} (${wrong.name}) yet`;
        }
        const remoteMacs = new Set(remote.map((w) => w.mac));
        const stale = [...fdb.keys()].find((m) => !remoteMacs.has(m));
        if (stale) return `${ns}: stale forwarding entry ${stale}`;
      }
    }
    return undefined;
  }

  async waitConverged(timeoutMs = 60_000): Promise<void> {
    let why: string | undefined;
    await poll(
      'the overlay to converge',
      async () => {
        why = await this.notConverged();
        if (why) throw new Error(why);
        return true;
      },
      timeoutMs,
      250,
    );
  }

  /** Ping from a namespace; resolves with the counts (never throws on loss). */
  async ping(
    fromNs: string,
    to: string,
    opts: { count?: number; intervalS?: number; waitS?: number } = {},
  ): Promise<{ transmitted: number; received: number; ok: boolean }> {
    const count = opts.count ?? 3;
    const r = await this.exec(
      fromNs,
      'ping',
      [
        '-n',
        '-q',
        '-c',
        String(count),
        '-i',
        String(opts.intervalS ?? 0.2),
        '-W',
        String(opts.waitS ?? 1),
        to,
      ],
      { allowFailure: true },
    );
    const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(r.stdout);
    const transmitted = Number(m?.[1] ?? 0);
    const received = Number(m?.[2] ?? 0);
    return { transmitted, received, ok: received > 0 };
  }

  // ------------------------------------------------------------------------------------
  // WAN impairment, per site: cut and loss are nft rules in the WAN router (one table per
  // site, so changing one site leaves the others alone); delay is the site's impairment proxy.

  wanOf(site: string): WanImpairment {
    return this.state.wan?.[site] ?? { cut: false, delayMs: 0, lossPct: 0 };
  }

  private sitesOrAll(site?: string): SitePlan[] {
    return site === undefined ? this.plan.sites : [this.site(site)];
  }

  private setWan(site: string, w: WanImpairment): void {
    this.state.wan = { ...(this.state.wan ?? {}), [site]: w };
    this.save();
  }

  /** Rewrites a site's table in the WAN router from the recorded impairment, atomically. */
  private async applyWanRules(s: SitePlan): Promise<void> {
    const w = this.wanOf(s.name);
    const c = this.plan.central.ip;
    const t = s.wanTable;
    const rules: string[] = [];
    if (w.cut) {
      rules.push(`iifname "${s.wanPort}" ip daddr ${c} counter name "cut_drops" drop`);
      rules.push(`oifname "${s.wanPort}" ip saddr ${c} counter name "cut_drops" drop`);
    }
    if (w.lossPct > 0) {
      rules.push(
        `iifname "${s.wanPort}" ip daddr ${c} numgen random mod 100 < ${w.lossPct} counter name "loss_drops" drop`,
      );
      rules.push(
        `oifname "${s.wanPort}" ip saddr ${c} numgen random mod 100 < ${w.lossPct} counter name "loss_drops" drop`,
      );
    }
    // `table {}` then `delete` makes the delete valid whether or not the table exists; the
    // whole file is one transaction.
    const body = rules.length
      ? `table inet ${t} {\n  counter cut_drops {}\n  counter loss_drops {}\n  chain forward {\n    type filter hook forward priority 0; policy accept;\n${rules.map((r) => `    ${r}\n`).join('')}  }\n}\n`
      : '';
    await this.exec(this.plan.wan.ns, 'nft', ['-f', '-'], {
      input: `table inet ${t} {}\ndelete table inet ${t}\n${body}`,
    });
  }

  /** Cuts the WAN of one site (or every site): the controller becomes unreachable from it. */
  async wanCut(site?: string): Promise<void> {
    for (const s of this.sitesOrAll(site)) {
      this.setWan(s.name, { ...this.wanOf(s.name), cut: true });
      await this.applyWanRules(s);
    }
  }

  /** Restores one site's WAN (or every site's) to clean: no cut, no loss, no delay. */
  async wanRestore(site?: string): Promise<void> {
    for (const s of this.sitesOrAll(site)) {
      this.setWan(s.name, { cut: false, delayMs: 0, lossPct: 0 });
      await this.applyWanRules(s);
      await impairControl(s.impair.control, 'PUT', '/v1/delay', { delayMs: 0 });
    }
  }

  /** Adds `ms` to each direction of the site's controller traffic (a round trip gains 2 × ms). */
  async wanDelay(site: string | undefined, ms: number): Promise<void> {
    checkDelayMs(ms, 'delay');
    for (const s of this.sitesOrAll(site)) {
      await impairControl(s.impair.control, 'PUT', '/v1/delay', { delayMs: ms });
      this.setWan(s.name, { ...this.wanOf(s.name), delayMs: ms });
    }
  }

  /** Drops `pct` percent of the packets between the site and the controller, at random. */
  async wanLoss(site: string | undefined, pct: number): Promise<void> {
    if (!Number.isInteger(pct) || pct < 0 || pct > 100) {
      throw new TetherError('TETHER_E_INVALID', `bad loss ${pct}`, {
        field: 'loss',
        expected: 'an integer percentage from 0 to 100',
      });
    }
    for (const s of this.sitesOrAll(site)) {
      this.setWan(s.name, { ...this.wanOf(s.name), lossPct: pct });
      await this.applyWanRules(s);
    }
  }

  /** Packets the site's cut and loss rules dropped so far (0 when it has no table). */
  async wanDrops(site: string): Promise<{ cut: number; loss: number }> {
    const s = this.site(site);
    const r = await this.exec(this.plan.wan.ns, 'nft', ['-j', 'list', 'table', 'inet', s.wanTable], {
      allowFailure: true,
    });
    const out = { cut: 0, loss: 0 };
    if (r.code !== 0) return out;
    for (const o of (
      JSON.parse(r.stdout) as { nftables: Array<{ counter?: { name: string; packets: number } }> }
    ).nftables) {
      if (o.counter?.name === 'cut_drops') out.cut = o.counter.packets;
      if (o.counter?.name === 'loss_drops') out.loss = o.counter.packets;
    }
    return out;
  }

  async wanStatus(): Promise<WanSiteStatus[]> {
    const res: WanSiteStatus[] = [];
    for (const s of this.plan.sites) {
      const p = this.state.processes.find((x) => x.role === 'impair' && x.name === s.name);
      const counters = await impairControl(s.impair.control, 'GET', '/v1/counters').catch(() => undefined);
      res.push({
        site: s.name,
        ...this.wanOf(s.name),
        drops: await this.wanDrops(s.name),
        proxy: {
          address: s.controllerAddress,
          ...(p ? { pid: p.pid } : {}),
          alive: p ? processAlive(p) : false,
          ...(counters
            ? {
                bytesToController: counters.bytesToTarget,
                bytesFromController: counters.bytesFromTarget,
                connectionsOpen: counters.connectionsOpen,
                delayMs: counters.delayMs,
              }
            : {}),
        },
      });
    }
    return res;
  }

  /** Every site cut (what the tests before per-site impairment called "the WAN cut"). */
  async cutWan(): Promise<void> {
    await this.wanCut();
  }

  async restoreWan(): Promise<void> {
    await this.wanRestore();
  }

  async wanIsCut(site?: string): Promise<boolean> {
    return this.sitesOrAll(site).every((s) => this.wanOf(s.name).cut);
  }

  // ------------------------------------------------------------------------------------
  // status and teardown

  async status(): Promise<LabStatusView> {
    const existing = new Set(await listNetns(this.runner));
    const ctl = this.state.processes.find((p) => p.role === 'controller');
    const nodes: LabNodeStatus[] = [];
    for (const n of allNodes(this.plan)) {
      const p = this.nodeProcess(n.name);
      const alive = p ? processAlive(p) : false;
      const st = this.nodeStatusFile(n.name);
      const re = vnNamespaceRe(n.netnsPrefix);
      nodes.push({
        name: n.name,
        site: n.site,
        ns: n.ns,
        ip: n.ip,
        ...(p ? { pid: p.pid } : {}),
        alive,
        session: alive ? (st?.session.phase ?? 'unknown') : 'not running',
        revision: st?.cache.revision ?? 0,
        vnNamespaces: [...existing].filter((x) => re.test(x)).sort(),
      });
    }
    return {
      name: this.plan.name,
      stateDir: this.plan.stateDir,
      phase: this.state.phase,
      ...(this.state.error ? { error: this.state.error } : {}),
      controller: {
        address: this.plan.central.address,
        ns: this.plan.central.ns,
        adminConfig: this.plan.central.adminConfig,
        ...(ctl ? { pid: ctl.pid } : {}),
        alive: ctl ? processAlive(ctl) : false,
      },
      namespaces: this.state.namespaces.map((name) => ({ name, exists: existing.has(name) })),
      processes: this.state.processes.map((p) => ({
        role: p.role,
        name: p.name,
        pid: p.pid,
        alive: processAlive(p),
        ns: p.ns,
        log: p.log,
      })),
      nodes,
      networks: this.state.networks,
      workloads: this.state.workloads,
      wan: await this.wanStatus(),
    };
  }

  /** Namespaces `down` would delete right now: the recorded ones plus the nodes' `<prefix>-vn<N>`. */
  async ownedNamespaces(): Promise<string[]> {
    const existing = await listNetns(this.runner);
    const res = this.state.netnsPrefixes.map((p) => vnNamespaceRe(p));
    const vn = existing.filter((n) => res.some((re) => re.test(n)));
    const recorded = [...this.state.namespaces].reverse().filter((n) => existing.includes(n));
    return [...vn, ...recorded];
  }

  /**
   * Removes exactly what `up` recorded: stops the processes by PID (nodes first, SIGTERM then
   * SIGKILL), deletes the vRouters' `<prefix>-vn<N>` namespaces and the recorded namespaces,
   * waits until they are gone, then removes the state directory.
   */
  async down(): Promise<void> {
    const say = this.progress;
    const procs = this.state.processes;
    const nodes = procs.filter((p) => p.role === 'node');
    if (nodes.length) say(`stopping ${nodes.length} node process(es)`);
    await Promise.all(nodes.map((p) => stopProcess(p)));
    const proxies = procs.filter((p) => p.role === 'impair');
    if (proxies.length) say(`stopping ${proxies.length} WAN impairment prox(y/ies)`);
    await Promise.all(proxies.map((p) => stopProcess(p)));
    for (const p of procs.filter((x) => x.role === 'controller')) {
      say(`stopping the controller (pid ${p.pid})`);
      await stopProcess(p);
    }
    this.state.processes = [];
    this.save();
    const doomed = await this.ownedNamespaces();
    say(`deleting ${doomed.length} namespace(s)`);
    for (const ns of doomed) {
      const r = await this.runner.run('ip', ['netns', 'del', ns], { allowFailure: true });
      if (r.code !== 0 && (await listNetns(this.runner)).includes(ns)) {
        throw new TetherError('TETHER_E_KERNEL', `could not delete namespace ${ns}: ${r.stderr.trim()}`);
      }
    }
    await poll(
      'the lab namespaces to disappear',
      async () => {
        const left = await listNetns(this.runner);
        return doomed.every((n) => !left.includes(n)) || undefined;
      },
      30_000,
      100,
    );
    // `ip netns del` only drops the name; the kernel frees the namespace (and its VXLAN
    // sockets) asynchronously. A short grace keeps an immediate `up` of the same lab from
    // racing the cleanup (DESIGN.md: recreating the same VNI at once can fail).
    await sleep(200);
    say(`removing ${this.plan.stateDir}`);
    if (this.state.createdStateDir) {
      rmSync(this.plan.stateDir, { recursive: true, force: true });
    } else {
      for (const f of ['controller', 'nodes', 'boot', 'logs', 'lab.json']) {
        rmSync(join(this.plan.stateDir, f), { recursive: true, force: true });
      }
    }
    say(`lab ${this.plan.name} is down`);
  }
}
