/**
 * Runs one VRouter.sync in its own process, so a test can kill -9 it half-way.
 * Usage: node --import tsx sync-child.ts DESIRED.json [ip|bridge]
 *
 * With a tool named, the first large batch of that tool (an entry batch: over 1,000 lines) is
 * fed only its first half; the child then prints one JSON line saying what it fed and keeps the
 * batch process waiting for the rest. The kill then lands at a known point inside a real
 * `ip -batch` / `bridge -batch` process, and the test can check the kernel's partial state.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { type CommandRunner, ProcessRunner, type RunOptions, type RunResult } from '../../../src/lib/exec.js';
import { silentLogger } from '../../../src/lib/log.js';
import { VRouter } from '../../../src/node/vrouter/agent.js';
import type { DesiredNodeNetwork } from '../../../src/node/vrouter/model.js';

export interface PausedReport {
  paused: string;
  /** Lines fed, and among them the entry lines by kind. */
  lines: number;
  neigh: number;
  self: number;
  master: number;
}

class PausingRunner implements CommandRunner {
  private paused = false;
  private readonly real = new ProcessRunner();
  constructor(private readonly tool: string) {}

  run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const lines = (opts.input ?? '').split('\n').filter((l) => l.trim());
    if (this.paused || cmd !== this.tool || !args.includes('-batch') || lines.length <= 1000)
      return this.real.run(cmd, args, opts);
    this.paused = true;
    const fed = lines.slice(0, Math.floor(lines.length / 2));
    const child = spawn(cmd, [...args], { stdio: ['pipe', 'ignore', 'ignore'] });
    child.stdin.write(`${fed.join('\n')}\n`, () => {
      const report: PausedReport = {
        paused: cmd,
        lines: fed.length,
        neigh: fed.filter((l) => l.startsWith('neigh replace')).length,
        self: fed.filter((l) => l.startsWith('fdb replace') && l.includes(' self')).length,
        master: fed.filter((l) => l.startsWith('fdb replace') && l.includes(' master')).length,
      };
      process.stdout.write(`${JSON.stringify(report)}\n`);
    });
    // Never resolves: the batch process waits for the rest of its input until the test kills us.
    return new Promise<RunResult>(() => undefined);
  }
}

const desired = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as DesiredNodeNetwork;
const pauseIn = process.argv[3];
const runner = pauseIn ? new PausingRunner(pauseIn) : new ProcessRunner();
const report = await new VRouter(runner, silentLogger()).sync(desired);
process.stdout.write(`${JSON.stringify({ ok: report.ok, ops: report.ops })}\n`);
