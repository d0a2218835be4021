// Node daemon RSS in the site-proxy role: a real `tether node run --no-vrouter` (bundle when
// built, else tsx) holding 10,000 remote endpoints in its slice, once directly connected with
// `--proxy off` (the baseline) and once as its site's active proxy with 20 agents attached
// (its own plus 19 over TLS from this process), both in the same run against the same
// upstream (test/integration/support/site.ts: a gRPC TLS server speaking NodeSession.Sync).
// Then the resync cost: bytes the proxy receives to catch up after 1% of the endpoints
// changed while it was away, against the bytes of the full snapshot, and the seconds from the
// WAN's return until the controller has every agent's ack of its head.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TetherObject } from '../../src/api/resource.js';
import { certFingerprint } from '../../src/lib/pki.js';
import { saveIdentity } from '../../src/node/identity.js';
import { freePort } from '../integration/support/proc.js';
import {
  endpoint,
  FakeController,
  type NodeCreds,
  network,
  nodeSummary,
  sitePki,
  TestAgent,
  until,
} from '../integration/support/site.js';
import {
  anonKiB,
  bundleExists,
  cpuMs,
  REPO,
  rssKiB,
  sleep,
  spawnNode,
  tetherArgv,
  unitEnv,
} from './support/proc.js';

const REMOTE = Number(process.env.BENCH_PROXY_ENDPOINTS ?? 10_000);
const AGENTS = Number(process.env.BENCH_PROXY_AGENTS ?? 20);
/** Seconds after the sync of the second (settled) reading. */
const SETTLE_S = Math.max(6, Number(process.env.BENCH_PROXY_SETTLE_S ?? 20));

function remote(i: number, gen = 0): TetherObject {
  const ip = `10.${100 + Math.floor(i / 65536)}.${Math.floor(i / 256) % 256}.${i % 256}`;
  const mac = `02:01:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}:${gen.toString(16).padStart(2, '0')}`;
  return endpoint(`far${i % 50}`, `w${i}`, 'red', ip, mac, `192.0.2.${1 + (i % 50)}`, 's2');
}

export async function run(): Promise<Record<string, number | string>> {
  // The bundle is what ships (and costs ~40 MB less than tsx); BENCH_FLAVOR=tsx runs source.
  const flavor = process.env.BENCH_FLAVOR === 'tsx' ? 'tsx' : 'bundle';
  if (flavor === 'bundle' && !bundleExists())
    execFileSync('npm', ['run', 'bundle'], { cwd: REPO, stdio: 'inherit' });
  const work = mkdtempSync(join(tmpdir(), 'tether-bench-proxy-'));
  const pki = await sitePki('s1');
  const creds = new Map<string, NodeCreds>();
  for (let i = 1; i <= AGENTS; i++) creds.set(`n${i}`, await pki.node(`n${i}`));
  const ctl = new FakeController(pki, creds);
  await ctl.start();
  const blocks: Record<string, string> = {};
  for (let i = 1; i <= AGENTS; i++) blocks[`n${i}`] = `10.1.${i}.0/28`;
  ctl.apply([
    ...[...creds.values()].map((c, i) => nodeSummary(c, i === 0 ? '127.0.0.1' : `127.0.1.${i}`)),
    network('red', '10.0.0.0/8', blocks, ['s1', 's2']),
  ]);
  for (let i = 0; i < REMOTE; i += 1000)
    ctl.apply(Array.from({ length: Math.min(1000, REMOTE - i) }, (_, k) => remote(i + k)));
  // BENCH_DAEMON_ENV="K=V …": more environment for the daemon (trying a setting before it
  // goes into the unit). A value may hold spaces (NODE_OPTIONS): it ends where the next
  // UPPER_CASE= name begins.
  const daemonEnv = {
    ...unitEnv(),
    ...Object.fromEntries(
      (process.env.BENCH_DAEMON_ENV ?? '')
        .trim()
        .split(/\s+(?=[A-Z_][A-Z0-9_]*=)/)
        .filter((kv) => kv.includes('='))
        .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    ),
  };
  const out: Record<string, number | string> = {
    flavor,
    unitEnv: Object.entries(daemonEnv)
      .map(([k, v]) => `${k}=${v}`)
      .join(' '),
    remoteEndpoints: REMOTE,
    agents: AGENTS,
  };
  const agents: TestAgent[] = [];
  let hb: NodeJS.Timeout | undefined;
  try {
    const modes = ['direct (--proxy off)', `proxy, ${AGENTS} agents`] as const;
    // BENCH_PROXY_MODE=proxy|direct runs one of the two (quick iterations; a recorded result
    // needs both, in the same run).
    const only = process.env.BENCH_PROXY_MODE;
    for (const mode of modes) {
      const proxy = mode !== 'direct (--proxy off)';
      if (only && only !== (proxy ? 'proxy' : 'direct')) continue;
      const stateDir = join(work, proxy ? 'proxy' : 'direct');
      mkdirSync(stateDir, { recursive: true });
      const c = creds.get('n1')!;
      saveIdentity(
        stateDir,
        {
          name: 'n1',
          site: 's1',
          controllers: [`127.0.0.1:${ctl.port}`],
          caFingerprint: certFingerprint(pki.ca.certPem),
        },
        pki.ca.certPem,
        { keyPem: c.keyPem, certPem: c.certPem },
      );
      const port = await freePort();
      const memFile = join(work, `${proxy ? 'proxy' : 'direct'}.mem.json`);
      // BENCH_HEAPSNAP_DIR=dir: a heap snapshot of the daemon after the measurement (analysis).
      const snapDir = process.env.BENCH_HEAPSNAP_DIR;
      const snapFile = snapDir ? join(snapDir, `${proxy ? 'proxy' : 'direct'}.heapsnapshot`) : undefined;
      // node's own command line: the unit's TETHER_NODE_FLAGS (the wrapper puts them there:
      // V8 flags that NODE_OPTIONS refuses, like --lite-mode), then BENCH_NODE_ARGS (trials).
      const args = [
        ...`${daemonEnv.TETHER_NODE_FLAGS ?? ''} ${process.env.BENCH_NODE_ARGS ?? ''}`
          .split(/\s+/)
          .filter(Boolean),
        '--import',
        `${REPO}test/bench/support/mem-probe.mjs`,
        ...tetherArgv(flavor),
        'node',
        'run',
        '--no-vrouter',
        '--state-dir',
        stateDir,
        ...(proxy
          ? ['--proxy', 'on', '--proxy-port', String(port), '--proxy-address', '127.0.0.1']
          : ['--proxy', 'off']),
      ];
      const child = spawnNode(args, {
        logFile: join(work, `${proxy ? 'proxy' : 'direct'}.log`),
        env: {
          NODE_OPTIONS: '',
          ...daemonEnv,
          TETHER_BENCH_MEM: memFile,
          ...(snapFile ? { TETHER_BENCH_HEAPSNAP: snapFile } : {}),
        },
      });
      try {
        const statusPath = join(stateDir, 'status.json');
        await until(
          `${mode}: node synced`,
          () => {
            if (!existsSync(statusPath)) return false;
            try {
              const st = JSON.parse(readFileSync(statusPath, 'utf8')) as {
                cache: { revision: number };
                session: { phase: string };
              };
              return st.session.phase === 'connected' && st.cache.revision === ctl.revision;
            } catch {
              return false;
            }
          },
          120_000,
        );
        if (proxy) {
          await until('the proxy WAN session', () => ctl.hellos.some((h) => h?.role === 'proxy'), 30_000);
          const t0 = Date.now();
          for (let i = 2; i <= AGENTS; i++) {
            const a = new TestAgent(creds.get(`n${i}`)!, pki.ca.certPem);
            agents.push(a);
            a.connect(`127.0.0.1:${port}`);
          }
          await until(
            'the other agents synced',
            () => agents.every((a) => a.revision === ctl.revision),
            180_000,
          );
          out[`${mode}: ${AGENTS - 1} agents synced from nothing, ms`] = Date.now() - t0;
          // What the start, the WAN snapshot and the 19 agents' snapshots cost the daemon.
          out[`${mode}: daemon CPU to here, ms`] = cpuMs(child.pid);
          // Like real agents (--heartbeat 5s): the proxy ends a session silent for 3 intervals.
          hb = setInterval(() => {
            for (const a of agents) a.heartbeat();
          }, 5000);
          // The node's own agent syncs through its proxy too: 20 agents attached.
          await until('own agent on the proxy', () =>
            ctl.siteAgents.some((m) => m.agents.some((x) => x.node === 'n1' && x.connected)),
          );
        }
        // VmRSS 5 s after the sync (the earlier rows of BENCHMARKS.md), then once settled: what
        // a burst left behind (caches with a lifetime, garbage V8 collects when idle) is gone.
        const measure = (label: string) => {
          const m = rssKiB(child.pid);
          out[`${label}: VmRSS MB`] = +(m.rss / 1024).toFixed(1);
          out[`${label}: VmHWM MB`] = +(m.hwm / 1024).toFixed(1);
          const a = anonKiB(child.pid);
          out[`${label}: malloc heap (brk) MB`] = +(a.brk / 1024).toFixed(1);
          out[`${label}: other anon (V8 pages, large blocks) MB`] = +(a.anon / 1024).toFixed(1);
          let u: Record<string, number>;
          try {
            u = JSON.parse(readFileSync(memFile, 'utf8')) as Record<string, number>;
          } catch {
            return; // not written yet, or caught mid-write (it is rewritten every second)
          }
          for (const k of ['heapTotal', 'heapUsed', 'external', 'arrayBuffers', 'rssAnon', 'rssFile'])
            out[`${label}: ${k} MB`] = +((u[k] ?? 0) / 1048576).toFixed(1);
        };
        await sleep(5000);
        measure(mode);
        await sleep(SETTLE_S * 1000 - 5000);
        measure(`${mode}, ${SETTLE_S} s`);
        if (snapFile) {
          process.kill(child.pid, 'SIGUSR2');
          // writeHeapSnapshot creates the file first: done once its size stops changing.
          for (let last = -1; ; await sleep(1000)) {
            const n = existsSync(snapFile) ? statSync(snapFile).size : 0;
            if (n > 0 && n === last) break;
            last = n;
          }
        }
        out[`${mode}: daemon CPU when settled, ms`] = cpuMs(child.pid);
        if (proxy) {
          // Resync bytes: the proxy is away while 1% of the endpoints change, then resumes.
          const full = ctl.list('Endpoint').reduce((n, o) => n + JSON.stringify(o).length, 0);
          ctl.cut();
          const changed = Math.max(1, Math.floor(REMOTE / 100));
          const before = ctl.revision;
          for (let i = 0; i < changed; i++) ctl.apply([remote(i * 100, 1)]);
          const bytes0 = ctl.sentBytes;
          // Seconds: from the WAN's return to the controller seeing every agent of the site
          // ack its head (the proxy's SiteAgents), split at the proxy's new WAN hello (before
          // it: the reconnect backoff; after it: the catch-up itself).
          const hellos0 = ctl.hellos.length;
          const acks0 = ctl.siteAgents.length;
          const tRestore = Date.now();
          const cpu0 = cpuMs(child.pid);
          await ctl.restore();
          await until(
            'the proxy back on the WAN',
            () => ctl.hellos.slice(hellos0).some((h) => h?.role === 'proxy'),
            120_000,
          );
          const tHello = Date.now();
          const siteAcked = () => {
            const acked = new Map<string, number>();
            for (const m of ctl.siteAgents.slice(acks0))
              for (const x of m.agents) acked.set(x.node, Math.max(acked.get(x.node) ?? 0, Number(x.acked)));
            return [...creds.keys()].every((n) => (acked.get(n) ?? 0) >= ctl.revision);
          };
          await until('every agent of the site acked the head at the controller', siteAcked, 120_000);
          const tDone = Date.now();
          out['resync: daemon CPU, ms'] = cpuMs(child.pid) - cpu0;
          await until(
            'proxy and agents resynced',
            () => {
              try {
                const st = JSON.parse(readFileSync(join(stateDir, 'status.json'), 'utf8')) as {
                  cache: { revision: number };
                };
                return st.cache.revision === ctl.revision && agents.every((a) => a.revision === ctl.revision);
              } catch {
                return false;
              }
            },
            120_000,
          );
          out['resync: WAN back → proxy hello, s'] = +((tHello - tRestore) / 1000).toFixed(2);
          out['resync: proxy hello → all 20 agents acked at the controller, s'] = +(
            (tDone - tHello) /
            1000
          ).toFixed(2);
          out['resync: WAN back → site in sync, s'] = +((tDone - tRestore) / 1000).toFixed(2);
          out['resync: endpoints changed'] = changed;
          out['resync: revisions missed'] = ctl.revision - before;
          out['resync: bytes to the proxy'] = ctl.sentBytes - bytes0;
          out['resync: bytes of a full snapshot (JSON)'] = full;
        }
      } catch (e) {
        const log = join(work, `${proxy ? 'proxy' : 'direct'}.log`);
        const tail = existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-15).join('\n') : '';
        throw new Error(`${(e as Error).message}\n${tail}`);
      } finally {
        clearInterval(hb);
        for (const a of agents.splice(0)) a.close();
        await child.stop();
      }
    }
  } finally {
    ctl.stop();
    rmSync(work, { recursive: true, force: true });
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  run().then(
    (r) => console.log(r),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
