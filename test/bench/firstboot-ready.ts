// Discovery-to-Ready of first boot (docs/node.md "First boot"): a controller on loopback and
// N nodes, each running the real `tether node firstboot` process to Ready from a different
// source: a config drive (an ext4 image labelled TETHER on a loop device, mounted read-only),
// the kernel command line (base64url, from a file standing in for /proc/cmdline) and a local
// file. Time = the `ready` phase's end minus the `discover` phase's start, as persisted in
// firstboot.json (what `tether describe node` shows); process = the whole process lifetime
// including CLI start-up. No profile (reboots are excluded from the goal).
//   npm run bench (BENCH_ONLY=firstboot-ready) or: npx tsx test/bench/firstboot-ready.ts
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { stringify } from 'yaml';
import type { FirstBootState } from '../../src/node/bootstrap/firstboot.js';
import { initTestController, startTestController } from '../integration/support/controller.js';
import { runTether } from '../integration/support/proc.js';

const SOURCES = ['config-drive', 'cmdline', 'local-file'] as const;

export async function run(): Promise<Record<string, number | string>> {
  if (process.getuid?.() !== 0) return { skipped: 'needs root (loop devices, mount)' };
  const n = Number(process.env.FIRSTBOOT_NODES ?? 6);
  const dir = mkdtempSync(join(tmpdir(), 'tether-bench-firstboot-'));
  const data = join(dir, 'controller');
  const ctl = await startTestController(data, await initTestController(data));
  const loops: string[] = [];
  const res: Record<string, number | string> = { nodes: n };
  const times: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const source = SOURCES[i % SOURCES.length]!;
      const name = `bench-${i}`;
      const tok = await runTether(['token', 'create', '--site', 'bench', '--config', ctl.cfg]);
      const token = tok.stdout.trim();
      const text = stringify({
        apiVersion: 'tether.dev/v1',
        kind: 'Bootstrap',
        controllers: [ctl.addr],
        caFingerprint: token.slice(3, 67),
        token,
        site: 'bench',
        nodeName: name,
      });
      const cmdline = join(dir, `${name}.cmdline`);
      const local = join(dir, `${name}.local.yaml`);
      writeFileSync(cmdline, 'quiet\n');
      const args = ['--config-drive-label', `NONE${process.pid}`];
      if (source === 'config-drive') {
        const content = join(dir, `${name}-drive`);
        mkdirSync(content);
        writeFileSync(join(content, 'bootstrap.yaml'), text);
        const img = join(dir, `${name}.img`);
        execFileSync('truncate', ['-s', '8M', img]);
        execFileSync('mkfs.ext4', ['-q', '-F', '-L', 'TETHER', '-d', content, img]);
        const dev = execFileSync('losetup', ['-f', '--show', img], { encoding: 'utf8' }).trim();
        loops.push(dev);
        args.splice(0, 2, '--config-drive-device', dev);
      } else if (source === 'cmdline') {
        writeFileSync(cmdline, `quiet tether.bootstrap=${Buffer.from(text).toString('base64url')}\n`);
      } else writeFileSync(local, text);
      const t0 = performance.now();
      const r = await runTether([
        'node',
        'firstboot',
        '--state-dir',
        join(dir, name),
        '--local-file',
        local,
        '--image-config',
        join(dir, 'none.yaml'),
        '--cmdline',
        cmdline,
        '--no-dhcp',
        ...args,
      ]);
      const wall = (performance.now() - t0) / 1000;
      if (r.code !== 0) throw new Error(`${name} (${source}) failed: ${r.stderr}`);
      const st = JSON.parse(readFileSync(join(dir, name, 'firstboot.json'), 'utf8')) as FirstBootState;
      const start = Date.parse(st.phases[0]!.startedAt);
      const end = Date.parse(st.phases.at(-1)!.endedAt!);
      const s = (end - start) / 1000;
      times.push(s);
      res[`${name}_${source}_s`] = +s.toFixed(3);
      res[`${name}_process_s`] = +wall.toFixed(2);
      for (const p of st.phases)
        res[`${name}_${p.name}_ms`] = Date.parse(p.endedAt!) - Date.parse(p.startedAt);
    }
    times.sort((a, b) => a - b);
    res.median_discovery_to_ready_s = +times[Math.floor(times.length / 2)]!.toFixed(3);
    res.max_discovery_to_ready_s = +times.at(-1)!.toFixed(3);
    res.goal_s = 30;
  } finally {
    await ctl.daemon.stop();
    for (const l of loops) execFileSync('losetup', ['-d', l]);
    rmSync(dir, { recursive: true, force: true });
  }
  return res;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  run().then(
    (r) => {
      for (const [k, v] of Object.entries(r)) console.log(`${k.padEnd(34)} ${v}`);
    },
    (e: unknown) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
