import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import type { ControllerConfig } from '../../../src/controller/config.js';
import { type Daemon, freePort, runTether, startTether, waitFor } from './proc.js';

export interface TestController {
  dataDir: string;
  addr: string;
  port: number;
  /** admin.yaml of this controller. */
  cfg: string;
  daemon: Daemon;
  /** Resolves with the exit code (or signal name) once the process is gone. */
  exited: Promise<number | string>;
}

/** `tether controller init` in `dataDir` on a free loopback port, with config overrides. */
export async function initTestController(
  dataDir: string,
  overrides: Partial<ControllerConfig> = {},
): Promise<{ addr: string; port: number; cfg: string }> {
  const port = await freePort();
  const addr = `127.0.0.1:${port}`;
  const init = await runTether([
    'controller',
    'init',
    '--data-dir',
    dataDir,
    '--listen',
    addr,
    '--advertise',
    addr,
  ]);
  if (init.code !== 0) throw new Error(`controller init failed: ${init.stderr}`);
  const file = join(dataDir, 'controller.yaml');
  const conf = parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  writeFileSync(file, stringify({ ...conf, ...overrides }));
  return { addr, port, cfg: join(dataDir, 'admin.yaml') };
}

/** Starts `tether controller start` (a real process we own by PID) and waits until it serves. */
export async function startTestController(
  dataDir: string,
  init: { addr: string; port: number; cfg: string },
  env: NodeJS.ProcessEnv = {},
): Promise<TestController> {
  const daemon = startTether(['controller', 'start', '--data-dir', dataDir], env);
  const exited = new Promise<number | string>((resolve) =>
    daemon.child.once('exit', (code, sig) => resolve(code ?? sig ?? -1)),
  );
  await waitFor(
    'controller to serve',
    async () => {
      if (daemon.child.exitCode !== null) throw new Error(`controller exited: ${daemon.log()}`);
      return (await runTether(['get', 'sites', '--config', init.cfg])).code === 0;
    },
    30_000,
    200,
  );
  return { dataDir, ...init, daemon, exited };
}
