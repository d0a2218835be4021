// A site proxy in a process of its own, so that a test can kill -9 it. Reads its options
// (JSON) from argv[2]; the agent's cached slice (roster, seed) from the file `agentSlice`.
import { existsSync, readFileSync } from 'node:fs';
import type { TetherObject } from '../../../src/api/resource.js';
import { silentLogger } from '../../../src/lib/log.js';
import { ControllerSet } from '../../../src/node/controllers.js';
import { SiteProxy, type SiteProxyOptions } from '../../../src/node/proxy/proxy.js';

// JSON cannot carry the ControllerSet: the options name the replicas as a list of addresses.
const o = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as Omit<
  SiteProxyOptions,
  'log' | 'controllers'
> & {
  agentSlicePath: string;
  controllers: string[];
};
const slice = () =>
  existsSync(o.agentSlicePath)
    ? (JSON.parse(readFileSync(o.agentSlicePath, 'utf8')) as { revision: number; objects: TetherObject[] })
    : undefined;
const p = new SiteProxy({
  ...o,
  controllers: new ControllerSet(o.controllers),
  log: silentLogger(),
  agentSlice: slice,
});
await p.start();
setInterval(() => process.stdout.write(`${JSON.stringify(p.status())}\n`), 50).unref();
process.stdin.resume();
process.on('SIGTERM', () => void p.stop().then(() => process.exit(0)));
