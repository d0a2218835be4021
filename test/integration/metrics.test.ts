// Prometheus end to end on loopback: a real controller process and a real `tether node run
// --no-vrouter` process with metrics on, scraped over HTTP; promtool lints the scrape; every
// metric name a shipped Grafana dashboard queries must be exported; a real prometheus scrapes
// both and answers a dashboard query.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initTestController, startTestController, type TestController } from './support/controller.js';
import {
  type Daemon,
  enrollArgs,
  freePort,
  REPO,
  runProcess,
  runTether,
  startTether,
  waitFor,
} from './support/proc.js';

const MAX_SCRAPE_BYTES = 4 * 1024 * 1024;
const MAX_DASHBOARD_BYTES = 1024 * 1024;
const MAX_QUERIES = 1000;
const PROMQL_KEYWORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'bool',
  'offset',
  'and',
  'or',
  'unless',
  'inf',
  'nan',
]);

/** Family names of a Prometheus text scrape (from `# TYPE` lines) plus histogram series names. */
function exportedNames(text: string): Set<string> {
  if (text.length > MAX_SCRAPE_BYTES) throw new Error(`scrape is ${text.length} bytes`);
  const names = new Set<string>();
  for (const line of text.split('\n', 200_000)) {
    const m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)$/.exec(line);
    if (!m) continue;
    names.add(m[1]!);
    if (m[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m[1] + s);
  }
  return names;
}

/** Metric names a PromQL expression selects: strings, label matchers, ranges, grouping
 *  clauses, function calls, keywords and numbers removed; what is left are metric names. */
function promqlMetricNames(expr: string): string[] {
  if (expr.length > 4096) throw new Error('expression over 4096 characters');
  const s = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\w+/g, ' ');
  const out: string[] = [];
  for (const m of s.matchAll(/(?<![a-zA-Z0-9_:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?!\s*\(|[a-zA-Z0-9_:])/g)) {
    if (PROMQL_KEYWORDS.has(m[1]!.toLowerCase())) continue;
    out.push(m[1]!);
  }
  return out;
}

/** Every `expr` of every panel of a dashboard JSON (bounded: size, panels, queries). */
function dashboardQueries(json: string): string[] {
  if (json.length > MAX_DASHBOARD_BYTES) throw new Error(`dashboard is ${json.length} bytes`);
  const d = JSON.parse(json) as { panels?: Array<{ targets?: Array<{ expr?: unknown }> }> };
  const out: string[] = [];
  for (const p of (d.panels ?? []).slice(0, 200))
    for (const t of (p.targets ?? []).slice(0, 50)) if (typeof t.expr === 'string') out.push(t.expr);
  if (out.length > MAX_QUERIES) throw new Error('too many queries');
  return out;
}

const DASH_DIR = join(REPO, 'deploy/grafana/dashboards');
const dir = mkdtempSync(join(tmpdir(), 'tether-metrics-it-'));
const ctlDir = join(dir, 'controller');
const nodeDir = join(dir, 'node-m1');
let ctl: TestController | undefined;
let node: Daemon | undefined;
let ctlMetrics = 0;
let nodeMetricsPort = 0;

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: r.status, body: await r.text() };
}

beforeAll(async () => {
  ctlMetrics = await freePort();
  const init = await initTestController(ctlDir, {
    heartbeatSeconds: 1,
    metricsListen: `127.0.0.1:${ctlMetrics}`,
  });
  ctl = await startTestController(ctlDir, init);
  const tok = await runTether(['token', 'create', '--site', 'msite', '--config', init.cfg]);
  expect(tok.code, tok.stderr).toBe(0);
  const en = await runTether(enrollArgs(init.addr, tok.stdout.trim(), 'm1', nodeDir));
  expect(en.code, en.stderr).toBe(0);
  nodeMetricsPort = await freePort();
  node = startTether([
    'node',
    'run',
    '--state-dir',
    nodeDir,
    '--heartbeat',
    '1s',
    '--no-vrouter',
    '--proxy',
    'off',
    '--metrics-listen',
    `127.0.0.1:${nodeMetricsPort}`,
  ]);
  await waitFor('m1 connected', () => {
    const p = join(nodeDir, 'status.json');
    return (
      existsSync(p) &&
      (JSON.parse(readFileSync(p, 'utf8')) as { session: { phase: string } }).session.phase === 'connected'
    );
  });
}, 90_000);

afterAll(async () => {
  await node?.stop();
  await ctl?.daemon.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('metrics', () => {
  it('controller and node serve /metrics, /livez and /readyz', { timeout: 30_000 }, async () => {
    const c = await get(ctlMetrics, '/metrics');
    expect(c.status).toBe(200);
    expect(c.body).toMatch(/^tether_controller_sessions\{role="node"\} 1$/m);
    expect(c.body).toMatch(/^tether_controller_enrollments_total\{result="approved"\} 1$/m);
    expect((await get(ctlMetrics, '/readyz')).status).toBe(200);
    expect((await get(ctlMetrics, '/livez')).status).toBe(200);
    await waitFor('node ready', async () => (await get(nodeMetricsPort, '/readyz')).status === 200, 15_000);
    const n = await get(nodeMetricsPort, '/metrics');
    expect(n.body).toMatch(/^tether_node_session_state\{state="connected"\} 1$/m);
    expect(n.body).toMatch(/^tether_node_info\{node="m1",site="msite",/m);
    expect(n.body).toMatch(/^tether_node_cert_expiry_timestamp_seconds \d/m);
    // The profile state of this host (no profile applied here): families present, no VFs.
    expect(n.body).toMatch(/^tether_node_profile_reboot_pending 0$/m);
    expect(n.body).toMatch(/^# TYPE tether_node_sriov_vfs gauge$/m);
    // Heartbeat echoes from the controller (1 s heartbeats): a round trip and a clock offset.
    await waitFor(
      'a WAN RTT sample',
      async () =>
        /^tether_node_wan_rtt_seconds\{session="agent"\} \d/m.test(
          (await get(nodeMetricsPort, '/metrics')).body,
        ),
      15_000,
    );
    const r = await get(nodeMetricsPort, '/metrics');
    const off = /^tether_node_clock_offset_seconds\{session="agent"\} (\S+)$/m.exec(r.body);
    expect(Math.abs(Number(off?.[1]))).toBeLessThan(1); // one machine, one clock
  });

  it('promtool check metrics passes on both scrapes', { timeout: 30_000 }, async (t) => {
    if (!existsSync('/usr/bin/promtool')) t.skip();
    for (const port of [ctlMetrics, nodeMetricsPort]) {
      const body = (await get(port, '/metrics')).body;
      const r = await runProcess('promtool', ['check', 'metrics'], { input: body, timeoutMs: 20_000 });
      expect(r.code, `${r.stdout}${r.stderr}`).toBe(0);
    }
  });

  it('every metric a dashboard queries is exported', { timeout: 30_000 }, async () => {
    const exported = new Set([
      ...exportedNames((await get(ctlMetrics, '/metrics')).body),
      ...exportedNames((await get(nodeMetricsPort, '/metrics')).body),
    ]);
    const files = readdirSync(DASH_DIR).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThanOrEqual(2);
    let checked = 0;
    for (const f of files) {
      for (const q of dashboardQueries(readFileSync(join(DASH_DIR, f), 'utf8'))) {
        const names = promqlMetricNames(q);
        expect(names.length, `${f}: ${q} names no metric`).toBeGreaterThan(0);
        for (const name of names) {
          expect(exported.has(name), `${f}: ${q} uses ${name}, which is not exported`).toBe(true);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(10);
  });

  it('the PromQL name extractor finds the metric and never throws on bounded input', () => {
    expect(
      promqlMetricNames('histogram_quantile(0.99, sum by (le) (rate(a_b_bucket{x="y(z)"}[5m])))'),
    ).toEqual(['a_b_bucket']);
    expect(promqlMetricNames('count((m - time()) < 7 * 86400) and on (instance) n offset 5m')).toEqual([
      'm',
      'n',
    ]);
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (s) => {
        expect(Array.isArray(promqlMetricNames(s))).toBe(true);
      }),
    );
  });

  it('a real prometheus scrapes both targets and answers a dashboard query', {
    timeout: 60_000,
  }, async (t) => {
    if (!existsSync('/usr/bin/prometheus')) t.skip();
    const port = await freePort();
    const cfg = join(dir, 'prometheus.yml');
    writeFileSync(
      cfg,
      `global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: tether-controller\n    static_configs: [{targets: ['127.0.0.1:${ctlMetrics}']}]\n  - job_name: tether-node\n    static_configs: [{targets: ['127.0.0.1:${nodeMetricsPort}']}]\n`,
    );
    const prom = spawn(
      'prometheus',
      [
        `--config.file=${cfg}`,
        `--storage.tsdb.path=${join(dir, 'tsdb')}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdio: 'ignore' },
    );
    try {
      const api = async (path: string) => JSON.parse((await get(port, path)).body) as { data: unknown };
      await waitFor(
        'both targets up',
        async () => {
          const d = (await api('/api/v1/targets')).data as { activeTargets: Array<{ health: string }> };
          return d.activeTargets.length === 2 && d.activeTargets.every((x) => x.health === 'up');
        },
        40_000,
        500,
      );
      const q = encodeURIComponent('sum by (role) (tether_controller_sessions)');
      const r = (await api(`/api/v1/query?query=${q}`)).data as {
        result: Array<{ metric: { role: string }; value: [number, string] }>;
      };
      expect(r.result.find((x) => x.metric.role === 'node')?.value[1]).toBe('1');
    } finally {
      prom.kill('SIGTERM');
      await new Promise((resolve) => prom.once('exit', resolve));
    }
  });
});
