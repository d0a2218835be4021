// Resident memory of one real, idle `tether node run` connected to a controller: enrolled
// with a real join token through the CLI, measured once its status file says 'connected'.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { NodeStatusFile } from '../../../src/node/agent/daemon.js';
import { type Flavor, rssKiB, runNode, sleep, spawnNode, tetherArgv, waitFor } from './proc.js';

export interface NodeDaemonMemory {
  rssKiB: number;
  hwmKiB: number;
  connectMs: number;
}

export async function measureNodeDaemon(opts: {
  flavor: Flavor;
  address: string;
  adminConfig: string;
  site: string;
  name: string;
  workDir: string;
  settleMs?: number;
}): Promise<NodeDaemonMemory> {
  const argv = tetherArgv(opts.flavor);
  const stateDir = join(opts.workDir, `node-${opts.name}`);
  mkdirSync(opts.workDir, { recursive: true });
  const tok = await runNode([...argv, 'token', 'create', '--site', opts.site, '--config', opts.adminConfig]);
  if (tok.code !== 0) throw new Error(`token create failed: ${tok.stderr}`);
  const token = tok.stdout.trim();
  const en = await runNode([
    ...argv,
    'node',
    'enroll',
    '--controller',
    opts.address,
    '--token',
    token,
    '--name',
    opts.name,
    '--state-dir',
    stateDir,
  ]);
  if (en.code !== 0) throw new Error(`node enroll failed: ${en.stderr}`);
  const t0 = Date.now();
  const child = spawnNode([...argv, 'node', 'run', '--no-vrouter', '--state-dir', stateDir], {
    logFile: join(opts.workDir, `node-${opts.name}.log`),
  });
  try {
    const statusPath = join(stateDir, 'status.json');
    await waitFor(
      `node ${opts.name} (${opts.flavor}) to connect`,
      () => {
        if (!existsSync(statusPath)) return false;
        const st = JSON.parse(readFileSync(statusPath, 'utf8')) as NodeStatusFile;
        return st.pid === child.pid && st.session.phase === 'connected';
      },
      60_000,
      50,
    );
    const connectMs = Date.now() - t0;
    await sleep(opts.settleMs ?? 5000);
    const m = rssKiB(child.pid);
    return { rssKiB: m.rss, hwmKiB: m.hwm, connectMs };
  } finally {
    await child.stop();
  }
}
