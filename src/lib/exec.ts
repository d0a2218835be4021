import { spawn } from 'node:child_process';
import { TetherError } from './errors.js';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Written to the child's stdin, then stdin is closed. */
  input?: string;
  /** Run inside this network namespace (`ip netns exec NAME …`). */
  netns?: string;
  /** Resolve with a non-zero code instead of throwing. */
  allowFailure?: boolean;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

/** The one port through which Tether runs external programs; tests substitute a fake. */
export interface CommandRunner {
  run(cmd: string, args: readonly string[], opts?: RunOptions): Promise<RunResult>;
}

export class ProcessRunner implements CommandRunner {
  run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const [file, argv] = opts.netns ? ['ip', ['netns', 'exec', opts.netns, cmd, ...args]] : [cmd, [...args]];
    return new Promise((resolve, reject) => {
      const child = spawn(file, argv, {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: opts.env ?? process.env,
        timeout: opts.timeoutMs,
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (b: Buffer) => out.push(b));
      child.stderr.on('data', (b: Buffer) => err.push(b));
      child.on('error', (e) =>
        reject(
          new TetherError(
            'TETHER_E_COMMAND',
            `cannot run ${file}: ${e.message}`,
            { cmd: file },
            { cause: e },
          ),
        ),
      );
      child.on('close', (code, signal) => {
        const res = {
          code: code ?? (signal ? 128 : 1),
          stdout: Buffer.concat(out).toString('utf8'),
          stderr: Buffer.concat(err).toString('utf8'),
        };
        if (res.code !== 0 && !opts.allowFailure) {
          reject(
            new TetherError(
              'TETHER_E_COMMAND',
              `${[file, ...argv].join(' ')} exited ${res.code}: ${res.stderr.trim() || res.stdout.trim()}`,
              { cmd: file, exitCode: res.code, stderr: res.stderr },
            ),
          );
          return;
        }
        resolve(res);
      });
      child.stdin.on('error', () => {
        /* child may exit before reading its input; the exit code tells the story */
      });
      child.stdin.end(opts.input ?? '');
    });
  }
}
