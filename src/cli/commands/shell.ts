import type { Command } from 'commander';
import type { ShellClient } from '../../api/gen/tether/v1/Shell.js';
import type { ShellServerMessage__Output } from '../../api/gen/tether/v1/ShellServerMessage.js';
import { tetherProto } from '../../api/grpc.js';
import { checkReason, SHELL_LIMITS } from '../../api/shell.js';
import { fromGrpcError } from '../../api/status.js';
import { ERROR_CODES, type ErrorCode, TetherError } from '../../lib/errors.js';
import { CHANNEL_OPTIONS, controllerCredentials } from '../../node/connect.js';
import { loadClientConfig, resolveClientConfigPath } from '../admin.js';

/** `tether shell NODE --reason TEXT` (docs/shell.md): an operator's terminal on a node,
 *  relayed and recorded by the controller. Exits with the remote shell's exit code. */
export function registerShell(program: Command): void {
  program
    .command('shell')
    .description('open an audited, recorded remote shell on a node (operator identity, --reason required)')
    .argument('<node>', 'node name')
    .option('--reason <text>', 'why (kept in the audit record): 3 to 500 printable characters')
    .option('--config <file>', 'operator client config (tether controller operator NAME)')
    .action(async (node: string, o: { reason?: string; config?: string }) => {
      const reason = checkReason(o.reason);
      const cfg = loadClientConfig(resolveClientConfigPath(o.config));
      const client = new (tetherProto().tether.v1.Shell)(
        cfg.server,
        controllerCredentials(cfg.ca, { keyPem: cfg.key, certPem: cfg.cert }),
        CHANNEL_OPTIONS,
      ) as unknown as ShellClient;
      try {
        process.exitCode = await run(client, node, reason);
      } finally {
        client.close();
      }
    });
}

const size = () => ({
  cols: Math.min(Math.max(process.stdout.columns || 80, SHELL_LIMITS.minCols), SHELL_LIMITS.maxCols),
  rows: Math.min(Math.max(process.stdout.rows || 24, SHELL_LIMITS.minRows), SHELL_LIMITS.maxRows),
});

function run(client: ShellClient, node: string, reason: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const call = client.Open();
    const stdin = process.stdin;
    const raw = stdin.isTTY === true;
    const onInput = (b: Buffer) => {
      for (let off = 0; off < b.length; off += SHELL_LIMITS.maxFrameBytes)
        call.write({ input: b.subarray(off, off + SHELL_LIMITS.maxFrameBytes) });
    };
    const onResize = () => call.write({ resize: size() });
    const restore = () => {
      stdin.off('data', onInput);
      process.stdout.off('resize', onResize);
      if (raw) stdin.setRawMode(false);
      stdin.pause();
    };
    let done = false;
    call.on('data', (m: ShellServerMessage__Output) => {
      if (m.output) process.stdout.write(m.output);
      if (m.started) {
        if (raw) stdin.setRawMode(true);
        stdin.on('data', onInput);
        stdin.resume();
        process.stdout.on('resize', onResize);
      }
      if (m.end && !done) {
        done = true;
        restore();
        call.end();
        const e = m.end;
        if (e.ending === 'exit') resolve(Math.max(0, e.exit_code));
        else if (e.ending === 'signal') resolve(128 + Math.max(0, e.signal));
        else
          reject(
            new TetherError(
              e.code in ERROR_CODES ? (e.code as ErrorCode) : 'TETHER_E_UNAVAILABLE',
              `remote shell ended: ${e.ending}${e.message ? ` (${e.message})` : ''}`,
            ),
          );
      }
    });
    call.on('error', (err) => {
      if (done) return;
      done = true;
      restore();
      reject(fromGrpcError(err, 'controller'));
    });
    call.on('end', () => {
      if (done) return;
      done = true;
      restore();
      reject(new TetherError('TETHER_E_UNAVAILABLE', 'the controller closed the shell stream'));
    });
    call.write({ start: { node, reason, ...size() } });
  });
}
