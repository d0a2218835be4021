import { readFileSync } from 'node:fs';
import * as pty from 'node-pty';
import type { ShellFrame, ShellFrame__Output } from '../api/gen/tether/v1/ShellFrame.js';
import { type CheckedFrame, checkFrame, SHELL_LIMITS, verifyShellOpen } from '../api/shell.js';
import { asTetherError, TetherError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';

export interface ShellUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

/** The user's passwd entry (the appliance has no NSS beyond files). */
export function lookupUser(name: string, passwd = '/etc/passwd'): ShellUser {
  let text = '';
  try {
    text = readFileSync(passwd, 'utf8');
  } catch (e) {
    throw new TetherError('TETHER_E_STATE', `cannot read ${passwd}: ${(e as Error).message}`, {
      file: passwd,
    });
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length >= 7 && f[0] === name) {
      return {
        name,
        uid: Number(f[2]),
        gid: Number(f[3]),
        home: f[5] || '/',
        shell: f[6] || '/bin/sh',
      };
    }
  }
  throw new TetherError('TETHER_E_STATE', `shell user "${name}" does not exist`, {
    file: passwd,
    expected: 'an existing user for --shell-user',
  });
}

export interface ShellHostOptions {
  node: string;
  site: string;
  /** The CA the node enrolled with: only a controller certificate of it may open a shell. */
  caPem: () => string;
  log: Logger;
  /** The user shells run as (default root on the appliance). */
  user: string;
  passwdFile?: string;
  now?: () => number;
}

interface Running {
  id: string;
  term: pty.IPty;
  send: (f: ShellFrame) => void;
  credit: number;
  /** Output the window did not let through yet (at most one read's worth: the pty is paused). */
  pending: Buffer[];
  paused: boolean;
  /** Set once the controller ended the session: nothing more is sent for it. */
  closed: boolean;
  exited: { exitCode: number; signal: number } | undefined;
  max: NodeJS.Timeout;
}

const CLEAN_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Open requests already used (a replay of one, e.g. through a site proxy, spawns nothing). */
const SEEN_LIMIT = 1024;

/**
 * Runs remote shells on this node (docs/shell.md): a real pseudo-terminal (node-pty) per
 * session, started only for an open request the controller signed for this node and site,
 * as the configured user with a clean environment. Output goes upstream only as far as the
 * controller's credit allows; past it the pty is paused, so the shell's writes block.
 */
export class ShellHost {
  private readonly sessions = new Map<string, Running>();
  private readonly seen = new Set<string>();
  private readonly now: () => number;

  constructor(private readonly o: ShellHostOptions) {
    this.now = o.now ?? Date.now;
  }

  count(): number {
    return this.sessions.size;
  }

  /** A shell frame from our upstream; `send` writes one back on the same session. */
  frame(f: ShellFrame__Output, send: (f: ShellFrame) => void): void {
    let c: CheckedFrame;
    try {
      c = checkFrame(f);
    } catch (e) {
      this.o.log.warn({ err: asTetherError(e).message }, 'bad shell frame dropped');
      return;
    }
    if (f.node && f.node !== this.o.node) {
      this.o.log.warn({ session: c.id, for: f.node.slice(0, 80) }, 'shell frame for another node dropped');
      return;
    }
    if (c.op === 'open') {
      this.open(c, send);
      return;
    }
    const r = this.sessions.get(c.id);
    if (!r) return;
    switch (c.op) {
      case 'data':
        r.term.write(c.data);
        return;
      case 'resize':
        r.term.resize(c.cols, c.rows);
        return;
      case 'credit':
        r.credit = Math.min(r.credit + c.credit, SHELL_LIMITS.windowBytes);
        this.flush(r);
        return;
      case 'end':
        r.closed = true;
        this.o.log.info({ session: r.id, ending: c.ending }, 'remote shell closed by the controller');
        this.kill(r);
        return;
    }
  }

  /** The session to the upstream ended: its shells have no one to talk to. */
  disconnected(): void {
    for (const r of [...this.sessions.values()]) {
      r.closed = true;
      this.kill(r);
    }
  }

  private open(c: Extract<CheckedFrame, { op: 'open' }>, send: (f: ShellFrame) => void): void {
    const refuse = (e: unknown) => {
      const err = asTetherError(e);
      this.o.log.warn({ session: c.id, code: err.code, err: err.message }, 'remote shell refused');
      send({
        session_id: c.id,
        node: this.o.node,
        end: { ending: 'refused', exit_code: -1, signal: 0, code: err.code, message: err.message },
      });
    };
    try {
      if (this.sessions.has(c.id) || this.seen.has(c.id))
        throw new TetherError('TETHER_E_PERMISSION', 'shell open request was already used', {
          field: 'shell.session_id',
        });
      const body = verifyShellOpen(c.open, this.o.caPem(), {
        node: this.o.node,
        site: this.o.site,
        now: this.now(),
        id: c.id,
      });
      if (this.sessions.size >= SHELL_LIMITS.maxSessionsPerNode)
        throw new TetherError('TETHER_E_PRECONDITION', `this node already runs ${this.sessions.size} shells`);
      this.seen.add(c.id);
      if (this.seen.size > SEEN_LIMIT) this.seen.delete(this.seen.values().next().value as string);
      const user = lookupUser(this.o.user, this.o.passwdFile);
      const self = process.getuid?.() ?? -1;
      if (self !== 0 && self !== user.uid)
        throw new TetherError(
          'TETHER_E_PERMISSION',
          `the node daemon cannot start a shell as "${user.name}"`,
          {
            expected: 'the daemon runs as root, or --shell-user is its own user',
          },
        );
      const term = pty.spawn(user.shell, ['-l'], {
        name: 'xterm-256color',
        cols: body.cols,
        rows: body.rows,
        cwd: user.home,
        // Nothing of the daemon's environment (tokens, proxies, debugging switches) leaks in.
        env: {
          TERM: 'xterm-256color',
          HOME: user.home,
          USER: user.name,
          LOGNAME: user.name,
          SHELL: user.shell,
          PATH: CLEAN_PATH,
          LANG: 'C.UTF-8',
          TETHER_SHELL_SESSION: body.id,
          TETHER_SHELL_OPERATOR: body.operator,
        },
        encoding: null,
        ...(self === 0 ? { uid: user.uid, gid: user.gid } : {}),
      });
      const r: Running = {
        id: c.id,
        term,
        send,
        credit: body.window,
        pending: [],
        paused: false,
        closed: false,
        exited: undefined,
        // The controller enforces the maximum too; this holds if it never says so.
        max: setTimeout(() => this.kill(r), (body.maxSeconds + 5) * 1000),
      };
      this.sessions.set(c.id, r);
      this.o.log.warn(
        {
          event: 'shell_open',
          session: c.id,
          operator: body.operator,
          reason: body.reason,
          user: user.name,
          pid: term.pid,
        },
        'remote shell started',
      );
      term.onData((d: string | Buffer) => {
        const b = typeof d === 'string' ? Buffer.from(d, 'utf8') : d;
        r.pending.push(b);
        this.flush(r);
      });
      term.onExit(({ exitCode, signal }) => {
        r.exited = { exitCode, signal: signal ?? 0 };
        // node-pty may report the exit before the last read: let pending reads land first.
        setTimeout(() => this.flush(r), 50);
      });
    } catch (e) {
      refuse(e);
    }
  }

  /** Sends what the window allows; pauses the pty while output waits; ends after the exit
   *  once everything is out. */
  private flush(r: Running): void {
    while (r.pending.length && r.credit > 0 && !r.closed) {
      const head = r.pending[0]!;
      const n = Math.min(head.length, r.credit, SHELL_LIMITS.maxFrameBytes);
      r.send({ session_id: r.id, node: this.o.node, data: head.subarray(0, n) });
      r.credit -= n;
      if (n === head.length) r.pending.shift();
      else r.pending[0] = head.subarray(n);
    }
    const wait = r.pending.length > 0 && !r.closed;
    if (wait && !r.paused && !r.exited) {
      r.term.pause();
      r.paused = true;
    } else if (!wait && r.paused && !r.exited) {
      r.term.resume();
      r.paused = false;
    }
    if (r.exited && (!wait || r.closed)) this.ended(r);
  }

  private ended(r: Running): void {
    if (!this.sessions.has(r.id)) return;
    this.sessions.delete(r.id);
    clearTimeout(r.max);
    const ex = r.exited ?? { exitCode: -1, signal: 0 };
    this.o.log.warn(
      { event: 'shell_end', session: r.id, exitCode: ex.exitCode, signal: ex.signal },
      'remote shell ended',
    );
    if (r.closed) return;
    r.send({
      session_id: r.id,
      node: this.o.node,
      end: {
        ending: ex.signal ? 'signal' : 'exit',
        exit_code: ex.exitCode,
        signal: ex.signal,
        code: '',
        message: '',
      },
    });
  }

  private kill(r: Running): void {
    try {
      r.term.kill('SIGHUP');
    } catch {
      /* already gone */
    }
    if (r.closed) {
      // Nothing more goes upstream; forget it now (the exit, when it comes, finds nothing).
      this.sessions.delete(r.id);
      clearTimeout(r.max);
    }
  }
}
