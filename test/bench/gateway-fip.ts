// 1,000 floating IP adds, then 1,000 removes, one apply each, through Tether's BIRD
// (BirdDaemon: configure check + configure in place) to a BIRD 2 site router in namespaces
// this benchmark creates. Per change: time from apply() to the router's table showing it
// (polled over the router's control socket). Session resets: the BGP session's "since"
// timestamp on both sides before and after (any reset changes it), and the router's state.
//   npm run bench (BENCH_ONLY=gateway-fip) or: npx tsx test/bench/gateway-fip.ts
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BirdClient, parseProtocols } from '../../src/bgp/birdc.js';
import { BirdDaemon } from '../../src/bgp/daemon.js';
import { renderBirdConfig } from '../../src/bgp/render.js';

type Result = Record<string, number | string>;
const N = Number(process.env.BENCH_FIPS ?? 1000);

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return +s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!.toFixed(1);
};

export async function run(): Promise<Result> {
  const id = `bf${randomBytes(2).toString('hex')}`;
  const node = `${id}-node`;
  const router = `${id}-rtr`;
  const dir = mkdtempSync(join(tmpdir(), 'tether-fipbench-'));
  const ip = (...a: string[]) => execFileSync('ip', a);
  let rtr: ChildProcess | undefined;
  let speaker: BirdDaemon | undefined;
  const rc = new BirdClient(join(dir, 'r.ctl'));
  try {
    for (const ns of [node, router]) {
      ip('netns', 'add', ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    ip('-n', node, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'dn0', 'netns', router);
    ip('-n', node, 'addr', 'add', '10.97.0.2/24', 'dev', 'up0');
    ip('-n', node, 'link', 'set', 'up0', 'up');
    ip('-n', router, 'addr', 'add', '10.97.0.1/24', 'dev', 'dn0');
    ip('-n', router, 'link', 'set', 'dn0', 'up');
    writeFileSync(
      join(dir, 'r.conf'),
      'router id 10.97.0.1;\nprotocol device {}\nprotocol bgp t { local as 65000; neighbor 10.97.0.2 as 65001; hold time 9; keepalive time 3; graceful restart on; ipv4 { import all; export none; }; }\ntimeformat protocol iso long;\n',
    );
    rtr = spawn(
      'ip',
      ['netns', 'exec', router, 'bird', '-f', '-c', join(dir, 'r.conf'), '-s', join(dir, 'r.ctl')],
      { stdio: 'ignore' },
    );
    speaker = new BirdDaemon({ stateDir: join(dir, 'node'), netns: node });
    const fips: string[] = [];
    const conf = () =>
      renderBirdConfig({
        routerId: '10.97.0.2',
        localAsn: 65001,
        peers: [{ name: 'rtr', address: '10.97.0.1', asn: 65000, holdSeconds: 9, keepaliveSeconds: 3 }],
        announce: ['198.51.100.0/24', ...fips.map((f) => `${f}/32`)],
        acceptDefaultRoute: false,
        gracefulRestartSeconds: 120,
        llgrStaleSeconds: 3600,
      });
    await speaker.apply(conf());
    for (let i = 0; ; i++) {
      try {
        await rc.open();
        break;
      } catch {
        if (i > 200) throw new Error('router BIRD did not start');
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const since = async () => {
      const r = parseProtocols(await rc.command('show protocols all t'))[0]!;
      const s = (await speaker!.status()).peers[0]!;
      return { router: `${r.since} ${r.bgpState}`, speaker: `${s.since} ${s.bgpState}` };
    };
    const has = async (prefix: string) =>
      (await rc.command(`show route ${prefix}`)).lines.some(
        (l) => l.code === 1007 && l.text.startsWith(prefix),
      );
    for (let i = 0; ; i++) {
      if ((await since()).router.endsWith('Established') && (await has('198.51.100.0/24'))) break;
      if (i > 600) throw new Error('session did not come up');
      await new Promise((r) => setTimeout(r, 50));
    }
    const before = await since();
    const addMs: number[] = [];
    const delMs: number[] = [];
    const wait = async (prefix: string, present: boolean, t0: number, out: number[]) => {
      for (;;) {
        if ((await has(prefix)) === present) break;
        if (performance.now() - t0 > 30_000)
          throw new Error(`${prefix} not ${present ? 'announced' : 'withdrawn'} in 30 s`);
      }
      out.push(performance.now() - t0);
    };
    const addrs = Array.from({ length: N }, (_, i) => `100.64.${i >> 8}.${i & 255}`);
    for (const a of addrs) {
      fips.push(a);
      const t0 = performance.now();
      await speaker.apply(conf());
      await wait(`${a}/32`, true, t0, addMs);
    }
    for (const a of addrs) {
      fips.splice(fips.indexOf(a), 1);
      const t0 = performance.now();
      await speaker.apply(conf());
      await wait(`${a}/32`, false, t0, delMs);
    }
    const after = await since();
    const rss = (pid: number | undefined) =>
      pid
        ? Math.round(
            Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024,
          )
        : 0;
    // `ip netns exec` execs bird in place: the child's pid is BIRD's.
    const birdPid = (await speaker.status()).pid;
    return {
      floatingIps: N,
      sessionResets: before.router === after.router && before.speaker === after.speaker ? 0 : 1,
      routerSessionBefore: before.router,
      routerSessionAfter: after.router,
      announceP50Ms: pct(addMs, 50),
      announceP99Ms: pct(addMs, 99),
      announceMaxMs: pct(addMs, 100),
      withdrawP50Ms: pct(delMs, 50),
      withdrawP99Ms: pct(delMs, 99),
      speakerRestarts: (await speaker.status()).restarts,
      birdRssMb: rss(birdPid),
    };
  } finally {
    rc.close();
    await speaker?.stop().catch(() => undefined);
    rtr?.kill('SIGTERM');
    for (const ns of [node, router]) {
      try {
        ip('netns', 'del', ns);
      } catch {}
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1]?.endsWith('gateway-fip.ts')) {
  run().then(
    (r) => console.log(r),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
