import { describe, expect, it } from 'vitest';
import type { AddRequest, AgentClient, AgentEndpoint, AttachmentKey } from '../../../src/cni/agent.js';
import { runPlugin } from '../../../src/cni/plugin.js';
import { hostIfnameFor } from '../../../src/cni/result.js';
import { CNI_CODES, CniError } from '../../../src/cni/spec.js';
import type { CommandRunner, RunOptions, RunResult } from '../../../src/lib/exec.js';

interface Call {
  cmd: string;
  args: readonly string[];
  input?: string;
}

/** Records commands; answers from a script of (matcher → result). */
class FakeRunner implements CommandRunner {
  calls: Call[] = [];
  constructor(private readonly answer: (c: Call) => Partial<RunResult> = () => ({})) {}
  async run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const call: Call = { cmd, args, ...(opts.input ? { input: opts.input } : {}) };
    this.calls.push(call);
    return { code: 0, stdout: '', stderr: '', ...this.answer(call) };
  }
}

class FakeAgent implements AgentClient {
  eps = new Map<string, AgentEndpoint>();
  log: string[] = [];
  down = false;
  failAttach: string | undefined;
  adds: AddRequest[] = [];
  private gate(): void {
    if (this.down) throw new CniError(CNI_CODES.TRY_AGAIN_LATER, 'node agent unreachable');
  }
  async add(r: AddRequest): Promise<AgentEndpoint> {
    this.gate();
    this.log.push(`add ${r.containerId}`);
    this.adds.push(r);
    const held = this.eps.get(`${r.containerId}/${r.ifname}`);
    if (held) return { ...held };
    const ep: AgentEndpoint = {
      network: r.network,
      containerId: r.containerId,
      ifname: r.ifname,
      hostIfname: r.hostIfname,
      address: '10.1.0.2/24',
      ip: '10.1.0.2',
      prefixLength: 24,
      gateway: '10.1.0.1',
      mac: '02:00:00:00:00:02',
      mtu: r.mtu ?? 1450,
      netns: r.netns,
      state: 'allocated',
    };
    this.eps.set(`${r.containerId}/${r.ifname}`, ep);
    return ep;
  }
  async attached(k: AttachmentKey): Promise<AgentEndpoint> {
    this.gate();
    this.log.push(`attached ${k.containerId}`);
    if (this.failAttach) throw new CniError(CNI_CODES.KERNEL_FAILED, this.failAttach);
    const ep = this.eps.get(`${k.containerId}/${k.ifname}`)!;
    ep.state = 'attached';
    ep.hostNetns = VN_NS;
    return ep;
  }
  async del(k: AttachmentKey): Promise<AgentEndpoint | undefined> {
    this.gate();
    this.log.push(`del ${k.containerId}`);
    const ep = this.eps.get(`${k.containerId}/${k.ifname}`);
    this.eps.delete(`${k.containerId}/${k.ifname}`);
    return ep;
  }
  async check(k: AttachmentKey): Promise<AgentEndpoint | undefined> {
    this.gate();
    return this.eps.get(`${k.containerId}/${k.ifname}`);
  }
  async gc(): Promise<AgentEndpoint[]> {
    this.gate();
    return [];
  }
  async status(): Promise<void> {
    this.gate();
  }
}

const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'pods', type: 'tether-cni', network: 'blue' });
const env = (cmd: string) => ({
  CNI_COMMAND: cmd,
  CNI_CONTAINERID: 'c1',
  CNI_NETNS: '/var/run/netns/p1',
  CNI_IFNAME: 'eth0',
});
const host = hostIfnameFor('c1', 'eth0');
const VN_NS = '/var/run/netns/t1-vn4096';

/** Answers the reads of a healthy attachment: container end, default route, host end in its VN namespace. */
const healthy =
  (
    addr = '10.1.0.2',
    mac = '02:00:00:00:00:02',
    hostLink = `[{"ifname":"${host}","flags":["UP","LOWER_UP"],"master":"tbr0"}]`,
  ) =>
  (c: Call): Partial<RunResult> => {
    const line = [c.cmd, ...c.args].join(' ');
    if (line === `nsenter --net=${VN_NS} ip -j link show dev ${host}`) return { stdout: hostLink };
    if (c.cmd === 'nsenter' && c.args.includes('-j'))
      return {
        stdout:
          `[{"ifname":"eth0","mtu":1450,"flags":["UP"],"address":"${mac}","addr_info":[{"family":"inet","local":"${addr}","prefixlen":24}]}]\n` +
          '[{"dst":"default","gateway":"10.1.0.1","dev":"eth0"}]\n',
      };
    return {};
  };
const writes = (r: FakeRunner) =>
  r.calls.filter((c) => c.args.includes('-batch') && !c.args.includes('-j')).length +
  r.calls.filter((c) => c.args.includes('del')).length;

function deps(runner: CommandRunner, agent: AgentClient, exists = true) {
  return { runner, agentFor: () => agent, pathExists: () => exists };
}

describe('runPlugin ADD', () => {
  it('runs exactly two batched commands and prints the result', async () => {
    const runner = new FakeRunner();
    const agent = new FakeAgent();
    const out = await runPlugin(conf, env('ADD'), deps(runner, agent));
    expect(out.exitCode).toBe(0);
    expect(runner.calls.map((c) => [c.cmd, ...c.args].join(' '))).toEqual([
      'ip -batch -',
      'nsenter --net=/var/run/netns/p1 ip -batch -',
    ]);
    expect(runner.calls[0]?.input).toMatch(
      new RegExp(
        `^link add ${host} mtu 1450 address 02(:[0-9a-f]{2}){5} type veth peer name eth0 address 02:00:00:00:00:02 mtu 1450 netns /var/run/netns/p1\nlink set ${host} up\n$`,
      ),
    );
    expect(runner.calls[1]?.input).toBe(
      'link set eth0 up\naddr replace 10.1.0.2/24 dev eth0\nroute replace default via 10.1.0.1 dev eth0\n',
    );
    expect(agent.log).toEqual(['add c1', 'attached c1']);
    const result = JSON.parse(out.stdout);
    expect(result.ips).toEqual([{ address: '10.1.0.2/24', gateway: '10.1.0.1', interface: 1 }]);
  });

  it('missing namespace → code 3, nothing allocated', async () => {
    const agent = new FakeAgent();
    const out = await runPlugin(conf, env('ADD'), deps(new FakeRunner(), agent, false));
    expect(JSON.parse(out.stdout)).toMatchObject({ code: CNI_CODES.CONTAINER_UNKNOWN });
    expect(agent.log).toEqual([]);
  });

  it('agent down → code 11', async () => {
    const agent = new FakeAgent();
    agent.down = true;
    const out = await runPlugin(conf, env('ADD'), deps(new FakeRunner(), agent));
    expect(out.exitCode).toBe(1);
    expect(JSON.parse(out.stdout)).toMatchObject({ cniVersion: '1.0.0', code: 11 });
  });

  it('retries once over a leftover host end ("File exists")', async () => {
    let first = true;
    const runner = new FakeRunner((c) => {
      if (c.args[0] === '-batch' && first) {
        first = false;
        return { code: 1, stderr: 'RTNETLINK answers: File exists\nCommand failed -:1\n' };
      }
      return {};
    });
    const out = await runPlugin(conf, env('ADD'), deps(runner, new FakeAgent()));
    expect(out.exitCode).toBe(0);
    expect(runner.calls.map((c) => c.args.join(' '))).toEqual([
      '-batch -',
      `link del ${host}`,
      '-batch -',
      '--net=/var/run/netns/p1 ip -batch -',
    ]);
  });

  it('kernel failure → code 101, the address is released and the host end removed', async () => {
    const runner = new FakeRunner((c) =>
      c.cmd === 'nsenter'
        ? { code: 1, stderr: 'Error: Nexthop has invalid gateway.\nCommand failed -:3\n' }
        : {},
    );
    const agent = new FakeAgent();
    const out = await runPlugin(conf, env('ADD'), deps(runner, agent));
    expect(JSON.parse(out.stdout)).toMatchObject({ code: CNI_CODES.KERNEL_FAILED });
    expect(JSON.parse(out.stdout).msg).toContain('invalid gateway');
    expect(agent.log).toEqual(['add c1', 'del c1']);
    expect(runner.calls.at(-1)?.args).toEqual(['link', 'del', host]);
  });
});

describe('runPlugin DEL', () => {
  it('deletes the host end then releases; already gone is success', async () => {
    const runner = new FakeRunner(() => ({ code: 1, stderr: 'Cannot find device "tc…"' }));
    const agent = new FakeAgent();
    const out = await runPlugin(conf, { ...env('DEL'), CNI_NETNS: '' }, deps(runner, agent));
    expect(out).toEqual({ exitCode: 0, stdout: '' });
    expect(agent.log).toEqual(['del c1']);
  });

  it('agent down → code 11 so the runtime retries (the address is not leaked silently)', async () => {
    const agent = new FakeAgent();
    agent.down = true;
    const out = await runPlugin(conf, env('DEL'), deps(new FakeRunner(), agent));
    expect(JSON.parse(out.stdout)).toMatchObject({ code: 11 });
  });
});

describe('runPlugin CHECK', () => {
  const inspect = (addr: string) => (c: Call) =>
    c.cmd === 'nsenter'
      ? {
          stdout:
            `[{"ifname":"eth0","mtu":1450,"flags":["UP"],"address":"02:00:00:00:00:02","addr_info":[{"family":"inet","local":"${addr}","prefixlen":24}]}]\n` +
            '[{"dst":"default","gateway":"10.1.0.1","dev":"eth0"}]\n',
        }
      : {};

  it('passes when the container matches the agent record and the host end is a port in its VN namespace', async () => {
    const agent = new FakeAgent();
    await agent.add({ network: 'blue', containerId: 'c1', ifname: 'eth0', netns: '/x', hostIfname: host });
    await agent.attached({ containerId: 'c1', ifname: 'eth0' });
    const runner = new FakeRunner(healthy());
    const out = await runPlugin(conf, env('CHECK'), deps(runner, agent));
    expect(out).toEqual({ exitCode: 0, stdout: '' });
    // The host end is looked for where the vRouter keeps it, never in the node namespace.
    expect(runner.calls.map((c) => [c.cmd, ...c.args].join(' '))).toContain(
      `nsenter --net=${VN_NS} ip -j link show dev ${host}`,
    );
  });

  it.each([
    ['missing from its namespace', ''],
    ['down', `[{"ifname":"x","flags":[],"master":"tbr0"}]`],
    ['not a bridge port', `[{"ifname":"x","flags":["UP"]}]`],
  ])('fails with 103 when the host end is %s', async (_why, hostLink) => {
    const agent = new FakeAgent();
    await agent.add({ network: 'blue', containerId: 'c1', ifname: 'eth0', netns: '/x', hostIfname: host });
    await agent.attached({ containerId: 'c1', ifname: 'eth0' });
    const out = await runPlugin(
      conf,
      env('CHECK'),
      deps(new FakeRunner(healthy('10.1.0.2', '02:00:00:00:00:02', hostLink)), agent),
    );
    expect(JSON.parse(out.stdout)).toMatchObject({
      code: CNI_CODES.CHECK_FAILED,
      msg: expect.stringContaining(host),
    });
  });

  it('fails with code 103 when the address differs', async () => {
    const agent = new FakeAgent();
    await agent.add({ network: 'blue', containerId: 'c1', ifname: 'eth0', netns: '/x', hostIfname: host });
    const out = await runPlugin(conf, env('CHECK'), deps(new FakeRunner(inspect('10.1.0.9')), agent));
    expect(JSON.parse(out.stdout)).toMatchObject({ code: CNI_CODES.CHECK_FAILED });
  });

  it('fails when the agent has no record', async () => {
    const out = await runPlugin(conf, env('CHECK'), deps(new FakeRunner(), new FakeAgent()));
    expect(JSON.parse(out.stdout)).toMatchObject({ code: CNI_CODES.CHECK_FAILED });
  });
});

describe('runPlugin ADD as a runtime chains and retries it', () => {
  it("puts the host end's namespace in its sandbox", async () => {
    const out = await runPlugin(conf, env('ADD'), deps(new FakeRunner(), new FakeAgent()));
    const r = JSON.parse(out.stdout);
    expect(r.interfaces[0]).toMatchObject({ name: host, sandbox: VN_NS });
    expect(r.interfaces[1]).toMatchObject({ name: 'eth0', sandbox: '/var/run/netns/p1' });
  });

  it.each([
    ['as it was', '02:00:00:00:00:02'],
    ['with a MAC a chained plugin changed', '02:aa:bb:cc:dd:ee'],
  ])(
    'a repeated ADD of a working attachment (%s) answers the same result and writes nothing',
    async (_w, mac) => {
      const agent = new FakeAgent();
      const first = await runPlugin(conf, env('ADD'), deps(new FakeRunner(), agent));
      const runner = new FakeRunner(healthy('10.1.0.2', mac));
      const again = await runPlugin(conf, env('ADD'), deps(runner, agent));
      expect(again.exitCode).toBe(0);
      expect(JSON.parse(again.stdout).ips).toEqual(JSON.parse(first.stdout).ips);
      expect(writes(runner)).toBe(0);
      expect(agent.log).toEqual(['add c1', 'attached c1', 'add c1']);
    },
  );

  it('a repeated ADD of a broken attachment rebuilds it', async () => {
    const agent = new FakeAgent();
    await runPlugin(conf, env('ADD'), deps(new FakeRunner(), agent));
    // The container end is gone (a new namespace at the same path).
    const runner = new FakeRunner((c) =>
      c.args.includes('-j') ? { code: 1, stderr: 'Device "eth0" does not exist.' } : {},
    );
    const again = await runPlugin(conf, env('ADD'), deps(runner, agent));
    expect(again.exitCode).toBe(0);
    expect(runner.calls.map((c) => [c.cmd, ...c.args].join(' '))).toContain('ip -batch -');
  });

  it('rolls back (interface and address) when the agent says the interface is not wired', async () => {
    const agent = new FakeAgent();
    agent.failAttach = 'blue: workload c1/eth0 is not wired: host end not found';
    const runner = new FakeRunner();
    const out = await runPlugin(conf, env('ADD'), deps(runner, agent));
    expect(JSON.parse(out.stdout)).toMatchObject({
      code: CNI_CODES.KERNEL_FAILED,
      msg: expect.stringContaining('not wired'),
    });
    expect(runner.calls.map((c) => [c.cmd, ...c.args].join(' '))).toContain(`ip link del ${host}`);
    expect(agent.log.at(-1)).toBe('del c1');
    expect(agent.eps.size).toBe(0);
  });

  it.each([
    [{ runtimeConfig: { ips: ['10.1.0.40/24'] } }, {}, { ip: '10.1.0.40', prefixLength: 24 }],
    [{ args: { cni: { ips: ['10.1.0.41'] } } }, {}, { ip: '10.1.0.41' }],
    [{}, { CNI_ARGS: 'IP=10.1.0.42;K8S_POD_NAME=x' }, { ip: '10.1.0.42' }],
  ])('passes a static address to the agent (%j %j)', async (extra, envExtra, want) => {
    const agent = new FakeAgent();
    const c = JSON.stringify({ ...JSON.parse(conf), ...extra });
    const out = await runPlugin(c, { ...env('ADD'), ...envExtra }, deps(new FakeRunner(), agent));
    expect(out.exitCode).toBe(0);
    expect(agent.adds[0]).toMatchObject(want);
  });

  it.each([
    [{ runtimeConfig: { ips: ['fd00::5/64'] } }, {}],
    [{ runtimeConfig: { ips: ['10.1.0.40', '10.1.0.41'] } }, {}],
    [{ runtimeConfig: { ips: '10.1.0.40' } }, {}],
    [{}, { CNI_ARGS: 'IP=10.1.0.300' }],
    [{ runtimeConfig: { ips: ['10.1.0.40/33'] } }, {}],
  ])(
    'refuses a static address it cannot give (%j %j) with code 7, nothing allocated',
    async (extra, envExtra) => {
      const agent = new FakeAgent();
      const c = JSON.stringify({ ...JSON.parse(conf), ...extra });
      const out = await runPlugin(c, { ...env('ADD'), ...envExtra }, deps(new FakeRunner(), agent));
      expect(JSON.parse(out.stdout)).toMatchObject({ code: CNI_CODES.INVALID_CONFIG });
      expect(agent.log).toEqual([]);
    },
  );

  it('hands port mappings (portMappings capability) to the node, normalised', async () => {
    const agent = new FakeAgent();
    const c = JSON.stringify({
      ...JSON.parse(conf),
      runtimeConfig: {
        portMappings: [
          { hostPort: 8080, containerPort: 80, protocol: 'TCP', hostIP: '' },
          { hostPort: 5353, containerPort: 53, protocol: 'udp', hostIP: '10.0.1.11' },
        ],
      },
    });
    const out = await runPlugin(c, env('ADD'), deps(new FakeRunner(), agent));
    expect(out.exitCode).toBe(0);
    expect(agent.adds[0]?.portMappings).toEqual([
      { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
      { hostPort: 5353, containerPort: 53, protocol: 'udp', hostIP: '10.0.1.11' },
    ]);
  });

  it.each([
    [{ hostPort: 0, containerPort: 80, protocol: 'tcp' }, 'hostPort'],
    [{ hostPort: 80, containerPort: 70000, protocol: 'tcp' }, 'containerPort'],
    [{ hostPort: 80, containerPort: 80, protocol: 'sctp' }, 'protocol'],
    [{ hostPort: 80, containerPort: 80, protocol: 'tcp', hostIP: '::' }, 'hostIP'],
    ['8080:80', '[0]'],
  ])(
    'refuses a port mapping it cannot honour (%j) with code 7 naming %s, nothing allocated',
    async (m, field) => {
      const agent = new FakeAgent();
      const c = JSON.stringify({ ...JSON.parse(conf), runtimeConfig: { portMappings: [m] } });
      const out = await runPlugin(c, env('ADD'), deps(new FakeRunner(), agent));
      expect(JSON.parse(out.stdout)).toMatchObject({
        code: CNI_CODES.INVALID_CONFIG,
        msg: expect.stringContaining(field),
      });
      expect(agent.log).toEqual([]);
    },
  );
});

describe('runPlugin VERSION/STATUS', () => {
  it('VERSION lists supported versions', async () => {
    const out = await runPlugin(
      '{"cniVersion":"1.1.0"}',
      { CNI_COMMAND: 'VERSION' },
      deps(new FakeRunner(), new FakeAgent()),
    );
    expect(JSON.parse(out.stdout)).toEqual({
      cniVersion: '1.1.0',
      supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],
    });
  });
  it('STATUS with the agent down → code 50', async () => {
    const agent = new FakeAgent();
    agent.down = true;
    const c = JSON.stringify({ cniVersion: '1.1.0', name: 'pods', type: 'tether-cni', network: 'blue' });
    const out = await runPlugin(c, { CNI_COMMAND: 'STATUS' }, deps(new FakeRunner(), agent));
    expect(JSON.parse(out.stdout)).toMatchObject({ code: 50 });
  });
});
