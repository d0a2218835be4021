/**
 * Composition root of the `tether-cni` binary: reads the network config on stdin and the
 * CNI_* environment, wires the real ports (process runner, unix-socket agent client, file
 * system), prints the result or the CNI error object on stdout and exits 0 or 1.
 */
import { existsSync } from 'node:fs';
import { ProcessRunner } from '../lib/exec.js';
import { HttpAgentClient } from './agent.js';
import { runPlugin } from './plugin.js';
import { MAX_STDIN_BYTES } from './request.js';

/** Reads stdin, but stops one byte past the bound: parseRequest then refuses it (code 6). */
async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return '';
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of process.stdin) {
    chunks.push(c as Buffer);
    size += (c as Buffer).length;
    if (size > MAX_STDIN_BYTES) break;
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function main(): Promise<void> {
  let stdin = '';
  try {
    stdin = await readStdin();
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    process.stdout.write(
      `${JSON.stringify({ cniVersion: '1.1.0', code: 5, msg: 'cannot read stdin', details: msg })}\n`,
    );
    process.exitCode = 1;
    return;
  }
  const timeoutMs = Number(process.env.TETHER_CNI_AGENT_TIMEOUT_MS) || 10_000;
  const out = await runPlugin(stdin, process.env, {
    runner: new ProcessRunner(),
    agentFor: (socketPath) => new HttpAgentClient(socketPath, timeoutMs),
    pathExists: (p) => existsSync(p),
  });
  process.stdout.write(out.stdout);
  process.exitCode = out.exitCode;
}

await main();
