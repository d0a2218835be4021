import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../lib/atomic.js';
import { fullJitterDelay } from '../lib/backoff.js';
import { asTetherError, TetherError } from '../lib/errors.js';
import { type BgpPeerState, BirdClient, parseProtocols } from './birdc.js';

/**
 * Supervises one BIRD process and applies configurations to it. BIRD's config lives in the
 * state directory (`bird.conf`, written atomically), its control socket is `bird.ctl` there.
 * A new config is written to `bird.conf.next`, checked (`configure check "…"` on the running
 * daemon, `bird -p` before the first start), and only then renamed over `bird.conf` and
 * loaded with `configure` — BIRD reconfigures in place, sessions whose settings did not
 * change stay up. A refused config leaves the running one, and the file, as they were.
 */
export interface BirdDaemonOptions {
  stateDir: string;
  /** The bird binary; default `bird` on PATH. */
  birdBin?: string;
  /** Run BIRD in this network namespace (`ip netns exec`). */
  netns?: string;
  /** Backoff of restarts after BIRD exits. */
  backoff?: { baseMs: number; capMs: number };
  onLog?: (line: string) => void;
}

export interface BirdStatus {
  running: boolean;
  pid?: number;
  /** sha256 (16 hex) of the config BIRD runs. */
  configHash?: string;
  restarts: number;
  peers: BgpPeerState[];
  /** Why the last apply or start failed; cleared by the next success. */
  error?: string;
}

const hash = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 16);

export class BirdDaemon {
  readonly confPath: string;
  readonly socketPath: string;
  readonly pidPath: string;
  private child: ChildProcess | undefined;
  private client: BirdClient | undefined;
  private stopped = false;
  private restarts = 0;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private error: string | undefined;
  private running: string | undefined;

  constructor(private readonly opts: BirdDaemonOptions) {
    this.confPath = join(opts.stateDir, 'bird.conf');
    this.socketPath = join(opts.stateDir, 'bird.ctl');
    this.pidPath = join(opts.stateDir, 'bird.pid');
  }

  /**
   * A BIRD left running on this state dir by a node daemon that was killed (-9: its child
   * outlives it) is ended with SIGKILL, which peers see as a restart (the TCP session drops
   * without a Cease), so they keep the routes while ours comes up with `-R`. Only a process
   * whose command line names our config is touched.
   */
  private async reapOrphan(): Promise<void> {
    let pid: number;
    try {
      pid = Number.parseInt(readFileSync(this.pidPath, 'utf8').trim(), 10);
    } catch {
      return;
    }
    if (!Number.isSafeInteger(pid) || pid <= 1 || pid === this.child?.pid) return;
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      return; // gone
    }
    if (!cmd.split('\0').includes(this.confPath)) return;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      return;
    }
    for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 20));
  }

  private get bin(): string {
    return this.opts.birdBin ?? 'bird';
  }

  /** Applies `text`: nothing when BIRD already runs it; otherwise check, write, configure (or start). */
  async apply(text: string): Promise<{ changed: boolean }> {
    try {
      if (this.running === text && this.child) {
        // What is wanted is what runs: an earlier refusal no longer stands.
        this.error = undefined;
        return { changed: false };
      }
      const next = `${this.confPath}.next`;
      writeFileAtomic(next, text, 0o640);
      if (this.child && (await this.connected())) {
        const check = await this.client!.command(`configure check "${next}"`);
        if (check.code >= 8000) throw refused(check.lines.map((l) => l.text).join('; '));
        writeFileAtomic(this.confPath, text, 0o640);
        const r = await this.client!.command('configure');
        if (r.code >= 8000) throw refused(r.lines.map((l) => l.text).join('; '));
      } else {
        await this.parseOnly(next);
        writeFileAtomic(this.confPath, text, 0o640);
        await this.start();
      }
      this.running = text;
      this.error = undefined;
      return { changed: true };
    } catch (e) {
      this.error = asTetherError(e).message;
      throw asTetherError(e);
    }
  }

  private async parseOnly(path: string): Promise<void> {
    const r = await runOnce(this.bin, ['-p', '-c', path], this.opts.netns);
    if (r.code !== 0) throw refused(r.output.trim());
  }

  /**
   * Starts BIRD on the config already on disk (a node restart finds it there). `recovery`
   * (`bird -R`): BIRD comes back as a graceful restart (RFC 4724), its Open says it kept its
   * forwarding state, so peers keep the routes they hold as stale until its End-of-RIB instead
   * of flushing them at the new session. Supervised restarts always use it.
   */
  async start(opts: { recovery?: boolean } = {}): Promise<void> {
    this.stopped = false;
    if (this.child) return;
    if (!existsSync(this.confPath))
      throw new TetherError('TETHER_E_STATE', `no BIRD config at ${this.confPath}`);
    this.running ??= readFileSync(this.confPath, 'utf8');
    await this.reapOrphan();
    const args = [
      '-f',
      ...(opts.recovery ? ['-R'] : []),
      '-c',
      this.confPath,
      '-s',
      this.socketPath,
      '-P',
      this.pidPath,
    ];
    const [file, argv] = this.opts.netns
      ? ['ip', ['netns', 'exec', this.opts.netns, this.bin, ...args]]
      : [this.bin, args];
    if (this.opts.netns) {
      const probe = await runOnce(this.bin, ['--version'], this.opts.netns);
      if (probe.code !== 0)
        throw new TetherError('TETHER_E_COMMAND', `cannot run ${this.bin}: ${probe.output.trim()}`);
    }
    const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (e) =>
        reject(new TetherError('TETHER_E_COMMAND', `cannot run ${this.bin}: ${e.message}`, {}, { cause: e })),
      );
    });
    this.child = child;
    const log = (b: Buffer) => this.opts.onLog?.(b.toString());
    child.stdout?.on('data', log);
    child.stderr?.on('data', log);
    child.once('exit', (code, signal) => {
      if (this.child === child) this.child = undefined;
      this.client?.close();
      this.client = undefined;
      if (this.stopped) return;
      this.error = `bird exited (${signal ?? code}); restarting`;
      this.restarts += 1;
      const delay = fullJitterDelay(this.attempt++, this.opts.backoff ?? { baseMs: 200, capMs: 30_000 });
      this.timer = setTimeout(() => {
        this.start({ recovery: true }).then(
          () => {
            this.error = undefined;
          },
          (e) => {
            this.error = asTetherError(e).message;
          },
        );
      }, delay);
    });
    // Ready when the control socket answers.
    const deadline = Date.now() + 10_000;
    while (!(await this.connected())) {
      if (!this.child) throw new TetherError('TETHER_E_COMMAND', `bird exited at start: ${this.error ?? ''}`);
      if (Date.now() > deadline)
        throw new TetherError('TETHER_E_TIMEOUT', 'bird did not open its control socket');
      await new Promise((r) => setTimeout(r, 50));
    }
    this.attempt = 0;
  }

  private async connected(): Promise<boolean> {
    if (this.client) return true;
    const c = new BirdClient(this.socketPath);
    try {
      await c.open();
      this.client = c;
      return true;
    } catch {
      c.close();
      return false;
    }
  }

  async status(): Promise<BirdStatus> {
    const st: BirdStatus = { running: Boolean(this.child), restarts: this.restarts, peers: [] };
    if (this.child?.pid) st.pid = this.child.pid;
    if (this.running) st.configHash = hash(this.running);
    if (this.error) st.error = this.error;
    if (this.child && (await this.connected())) {
      try {
        st.peers = parseProtocols(await this.client!.command('show protocols all'));
      } catch (e) {
        st.error = asTetherError(e).message;
      }
    }
    return st;
  }

  /**
   * Is any BGP session Established? `show protocols` without `all`: one line per protocol
   * instead of channels and route counters, what the HA monitor reads every 100 ms.
   */
  async sessionsUp(): Promise<boolean> {
    if (!this.child || !(await this.connected())) return false;
    return parseProtocols(await this.client!.command('show protocols')).some(
      (p) => p.bgpState === 'Established',
    );
  }

  /** A raw command for diagnostics and tests. */
  async command(cmd: string) {
    if (!(await this.connected())) throw new TetherError('TETHER_E_UNAVAILABLE', 'BIRD is not running');
    return this.client!.command(cmd);
  }

  /** Stops BIRD. `graceful`: `graceful restart` over the socket, so peers keep its routes (RFC 4724). */
  async stop(opts: { graceful?: boolean } = {}): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const child = this.child;
    if (!child) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    if (opts.graceful && (await this.connected()))
      await this.client!.command('graceful restart').catch(() => undefined);
    else child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
    this.client?.close();
    this.client = undefined;
  }
}

function refused(msg: string): TetherError {
  return new TetherError('TETHER_E_COMMAND', `BIRD refused the configuration: ${msg}`);
}

function runOnce(bin: string, args: string[], netns?: string): Promise<{ code: number; output: string }> {
  const [file, argv] = netns ? ['ip', ['netns', 'exec', netns, bin, ...args]] : [bin, args];
  return new Promise((resolve) => {
    const c = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    c.stdout.on('data', (b: Buffer) => (output += b.toString()));
    c.stderr.on('data', (b: Buffer) => (output += b.toString()));
    c.once('error', (e) => resolve({ code: 127, output: `cannot run ${bin}: ${e.message}` }));
    c.once('close', (code) => resolve({ code: code ?? 1, output }));
  });
}
