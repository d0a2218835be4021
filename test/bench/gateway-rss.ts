/**
 * Memory of a gateway node: the real `tether node run` (bundle, with the node unit's
 * environment read from installer/systemd/tether-node.service as proxy-rss does: NODE_OPTIONS,
 * MALLOC_*, and TETHER_NODE_FLAGS (lite mode) on node's own command line, as /usr/bin/tether
 * puts them) in a 1-site lab (src/lab), its site's Gateway announcing 10,000
 * prefixes through the BIRD it supervises to a BIRD 2 site router in the site router's
 * namespace. Reported: the node daemon's VmRSS before the Gateway exists (same run, same
 * daemon), after (settled), BIRD's VmRSS, and the sum against the goal (≤ 90 MB); and a
 * baseline by hand: a BIRD started from the same bird.conf outside Tether, in a namespace of
 * its own with the same session to the same router (so it holds the same 10,000 routes).
 *
 * Needs root, bird, and dist/tether.mjs (`npm run bundle`; built here when missing).
 * Usage: `npx tsx test/bench/gateway-rss.ts` (BENCH_GW_PREFIXES, BENCH_GW_SETTLE_S;
 * BENCH_UNIT_FLAGS=0 runs without the unit's environment).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BirdClient } from '../../src/bgp/birdc.js';
import { defaultLabStateDir, Lab } from '../../src/lab/index.js';
import { BUNDLE, REPO, rssKiB, shellQuote, sleep, unitEnv, unitNodeFlags, waitFor } from './support/proc.js';

type Result = Record<string, number | string>;
const N = Number(process.env.BENCH_GW_PREFIXES ?? 10_000);
const SETTLE_S = Number(process.env.BENCH_GW_SETTLE_S ?? 20);
const MB = (kib: number) => +(kib / 1024).toFixed(1);

function prefixes(n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(`10.${100 + Math.floor(i / 250)}.${i % 250}.0/24`);
  return out;
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    const c = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim();
    if (c) out.push(...c.split(/\s+/).map(Number));
  }
  return out;
}

export async function run(): Promise<Result> {
  const r: Result = { prefixes: N };
  if (!existsSync(BUNDLE)) execFileSync('npm', ['run', 'bundle'], { cwd: REPO, stdio: 'ignore' });
  const dir = mkdtempSync(join(tmpdir(), 'tether-gwrss-'));
  // The node daemon as the unit runs it (installer/systemd/tether-node.service), through a
  // wrapper that does what /usr/bin/tether does with TETHER_NODE_FLAGS.
  const env = unitEnv();
  const wrapper = join(dir, 'tether');
  writeFileSync(
    wrapper,
    `#!/bin/sh\nexport NODE_ENV=production${Object.entries(env)
      .map(([k, v]) => ` ${k}=${shellQuote(v)}`)
      .join('')}\nexec ${[process.execPath, ...unitNodeFlags(env), BUNDLE].map(shellQuote).join(' ')} "$@"\n`,
  );
  r.unitEnv = Object.entries(env)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  chmodSync(wrapper, 0o755);
  process.env.TETHER_LAB_TETHER = wrapper;
  const name = `gr${randomBytes(2).toString('hex')}`;
  const handNs = `${name}-hand`;
  let lab: Lab | undefined;
  let routerBird: ChildProcess | undefined;
  let handBird: ChildProcess | undefined;
  try {
    lab = await Lab.up({
      name,
      sites: 1,
      nodesPerSite: 1,
      workloadsPerNode: 0,
      stateDir: defaultLabStateDir(name),
      proxy: false,
    });
    const site = lab.site('s1');
    const n = lab.node('s1n1');
    const nodePid = lab.nodeProcess('s1n1')!.pid;
    // What the measured process runs with: node's own flags (the wrapper execs in place).
    const argv = readFileSync(`/proc/${nodePid}/cmdline`, 'utf8').split('\0').slice(1);
    r.node_flags = argv
      .slice(
        0,
        Math.max(
          0,
          argv.findIndex((a) => !a.startsWith('--')),
        ),
      )
      .join(' ');
    const HAND_IP = site.lan.replace(/\.0\/24$/, '.250');
    // The site router: BIRD in the site router's namespace, peering with the node and with
    // the hand-run BIRD of the baseline.
    writeFileSync(
      join(dir, 'router.conf'),
      `router id ${site.routerIp};
protocol device {}
protocol bgp from_tether {
  local ${site.routerIp} as 65000; neighbor ${n.ip} as 65001;
  hold time 90; keepalive time 30; graceful restart on; long lived graceful restart on;
  ipv4 { import all; export none; };
}
protocol bgp from_hand {
  local ${site.routerIp} as 65000; neighbor ${HAND_IP} as 65001;
  hold time 90; keepalive time 30; graceful restart on; long lived graceful restart on;
  ipv4 { import all; export none; };
}
`,
    );
    routerBird = spawn(
      'ip',
      ['netns', 'exec', site.ns, 'bird', '-f', '-c', join(dir, 'router.conf'), '-s', join(dir, 'router.ctl')],
      { stdio: 'ignore' },
    );
    const rc = new BirdClient(join(dir, 'router.ctl'));
    await waitFor('router BIRD', () =>
      rc.open().then(
        () => true,
        () => false,
      ),
    );
    const count = async (proto: string) => {
      const x = await rc.command(`show route count protocol ${proto}`);
      const m = /(\d+) of \d+ routes/.exec(x.lines.map((l) => l.text).join('\n'));
      return m ? Number(m[1]) : 0;
    };

    await sleep(SETTLE_S * 1000);
    const idle = rssKiB(nodePid);
    r.node_rss_no_gateway_MB = MB(idle.rss);

    const t0 = Date.now();
    await lab.apply({
      apiVersion: 'tether.dev/v1',
      kind: 'Gateway',
      metadata: { name: 's1-gw' },
      spec: {
        site: 's1',
        localAsn: 65001,
        pool: ['203.0.113.0/24'],
        peers: [{ name: 'rtr', address: site.routerIp, asn: 65000 }],
        announce: { prefixes: prefixes(N) },
      },
    });
    await waitFor(
      'router holds every prefix from Tether',
      async () => (await count('from_tether')) === N,
      180_000,
      250,
    );
    r.apply_to_all_announced_s = +((Date.now() - t0) / 1000).toFixed(1);
    // The status path end to end: BIRD → node daemon → controller → `tether get gateways`.
    await waitFor(
      'tether get gateways shows the session',
      async () => /Established/.test((await lab!.admin(['get', 'gateways'])).stdout),
      60_000,
      500,
    );
    const got = (await lab.admin(['get', 'gateways'])).stdout.trim().split('\n');
    console.error(got.join('\n'));
    r.get_gateways = got[1] ?? '';
    await sleep(SETTLE_S * 1000);
    const bird = childrenOf(nodePid).find((p) => readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'bird');
    if (!bird) throw new Error('no bird child of the node daemon');
    const nodeRss = rssKiB(nodePid);
    const birdRss = rssKiB(bird);
    r.node_rss_gateway_MB = MB(nodeRss.rss);
    r.node_hwm_gateway_MB = MB(nodeRss.hwm);
    r.bird_rss_tether_MB = MB(birdRss.rss);
    r.node_plus_bird_MB = MB(nodeRss.rss + birdRss.rss);
    r.goal = 'node daemon + BIRD <= 90 MB';
    r.goal_met = nodeRss.rss + birdRss.rss <= 90 * 1024 ? 'yes' : 'no';

    // Baseline by hand: the same bird.conf, BIRD run directly, same router, same routes.
    const conf = readFileSync(join(n.stateDir, 'gateway', 'bird.conf'), 'utf8').replace(
      /router id [\d.]+;/,
      `router id ${HAND_IP};`,
    );
    writeFileSync(join(dir, 'hand.conf'), conf);
    const ip = (...a: string[]) => execFileSync('ip', a);
    ip('netns', 'add', handNs);
    ip(
      'link',
      'add',
      `${name}h0`,
      'netns',
      handNs,
      'type',
      'veth',
      'peer',
      'name',
      `${name}h1`,
      'netns',
      site.ns,
    );
    ip('-n', site.ns, 'link', 'set', `${name}h1`, 'master', 'br0', 'up');
    ip('-n', handNs, 'addr', 'add', `${HAND_IP}/24`, 'dev', `${name}h0`);
    ip('-n', handNs, 'link', 'set', `${name}h0`, 'up');
    ip('-n', handNs, 'link', 'set', 'lo', 'up');
    handBird = spawn(
      'ip',
      ['netns', 'exec', handNs, 'bird', '-f', '-c', join(dir, 'hand.conf'), '-s', join(dir, 'hand.ctl')],
      { stdio: 'ignore' },
    );
    await waitFor(
      'router holds every prefix from the hand-run BIRD',
      async () => (await count('from_hand')) === N,
      180_000,
      250,
    );
    await sleep(SETTLE_S * 1000);
    const handPid =
      childrenOf(handBird.pid!).find((p) => readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'bird') ??
      handBird.pid!;
    r.bird_rss_by_hand_MB = MB(rssKiB(handPid).rss);
    rc.close();
    return r;
  } finally {
    handBird?.kill('SIGTERM');
    routerBird?.kill('SIGTERM');
    await lab?.down();
    try {
      execFileSync('ip', ['netns', 'del', handNs], { stdio: 'ignore' });
    } catch {
      /* not created */
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  run().then(
    (r) => {
      console.log(JSON.stringify(r, null, 2));
      process.exit(0);
    },
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
