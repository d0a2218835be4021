/**
 * Runs one VRouter.sync in its own process, so a test can kill -9 it half-way.
 * Usage: node --import tsx sync-child.ts DESIRED.json
 */
import { readFileSync } from 'node:fs';
import { ProcessRunner } from '../../../src/lib/exec.js';
import { silentLogger } from '../../../src/lib/log.js';
import { VRouter } from '../../../src/node/vrouter/agent.js';
import type { DesiredNodeNetwork } from '../../../src/node/vrouter/model.js';

const desired = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as DesiredNodeNetwork;
const report = await new VRouter(new ProcessRunner(), silentLogger()).sync(desired);
process.stdout.write(`${JSON.stringify({ ok: report.ok, ops: report.ops })}\n`);
