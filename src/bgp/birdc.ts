import { connect, type Socket } from 'node:net';
import { TetherError } from '../lib/errors.js';

/**
 * A client for BIRD's control socket (the protocol birdc speaks, sysdep/unix and
 * client/client.c of BIRD): the server greets with `0001 BIRD x.y ready.`; every reply is
 * lines `DDDD-text` (more follows), ` text` (continuation of the previous code) and ends with
 * one `DDDD text` line. Codes 0xxx are success, 1xxx table data, 8xxx run-time errors and
 * 9xxx parse errors. One command at a time, in order.
 */
export interface BirdReply {
  /** The final line's code. */
  code: number;
  /** Every line's text (code stripped), in order, with the code it belongs to. */
  lines: { code: number; text: string }[];
}

export class BirdClient {
  private sock: Socket | undefined;
  private buf = '';
  private lines: { code: number; text: string; final: boolean }[] = [];
  private waiter: (() => void) | undefined;
  private lastCode = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private closed: Error | undefined;

  constructor(
    private readonly path: string,
    private readonly timeoutMs = 10_000,
  ) {}

  async open(): Promise<string> {
    this.sock = await new Promise<Socket>((resolve, reject) => {
      const s = connect(this.path);
      s.once('connect', () => resolve(s));
      s.once('error', (e) =>
        reject(
          new TetherError(
            'TETHER_E_UNAVAILABLE',
            `BIRD control socket ${this.path}: ${e.message}`,
            {},
            { cause: e },
          ),
        ),
      );
    });
    this.sock.setEncoding('utf8');
    this.sock.on('data', (d: string) => this.onData(d));
    this.sock.on('close', () => {
      this.closed = new TetherError('TETHER_E_UNAVAILABLE', `BIRD closed its control socket ${this.path}`);
      this.waiter?.();
    });
    this.sock.on('error', () => undefined);
    const hello = await this.readReply();
    if (hello.code !== 1) throw new TetherError('TETHER_E_COMMAND', `unexpected BIRD greeting ${hello.code}`);
    return hello.lines[0]?.text ?? '';
  }

  close(): void {
    this.sock?.destroy();
    this.sock = undefined;
  }

  /** Sends one command line and resolves with its whole reply (errors are in `code`). */
  command(cmd: string): Promise<BirdReply> {
    if (/[\r\n]/.test(cmd)) throw new TetherError('TETHER_E_INTERNAL', 'a BIRD command is one line');
    const run = async () => {
      if (!this.sock) throw new TetherError('TETHER_E_UNAVAILABLE', 'BIRD control socket not open');
      this.sock.write(`${cmd}\n`);
      return this.readReply();
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private onData(d: string): void {
    this.buf += d;
    let nl = this.buf.indexOf('\n');
    while (nl >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      const m = /^(\d{4})([ -])(.*)$/.exec(line);
      if (m) {
        this.lastCode = Number(m[1]);
        this.lines.push({ code: this.lastCode, text: m[3]!, final: m[2] === ' ' });
      } else {
        // " text": continuation with the previous line's code.
        this.lines.push({
          code: this.lastCode,
          text: line.startsWith(' ') ? line.slice(1) : line,
          final: false,
        });
      }
      nl = this.buf.indexOf('\n');
    }
    this.waiter?.();
  }

  private async readReply(): Promise<BirdReply> {
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      const end = this.lines.findIndex((l) => l.final);
      if (end >= 0) {
        const got = this.lines.splice(0, end + 1);
        return { code: got[end]!.code, lines: got.map(({ code, text }) => ({ code, text })) };
      }
      if (this.closed) throw this.closed;
      const left = deadline - Date.now();
      if (left <= 0)
        throw new TetherError('TETHER_E_TIMEOUT', `BIRD did not answer within ${this.timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          this.waiter = undefined;
          resolve();
        };
      });
    }
  }
}

export interface BgpPeerState {
  protocol: string;
  /** `up`, `down`, `start`, … (BIRD's protocol state). */
  proto: string;
  /** BGP state: Idle, Connect, Active, OpenSent, OpenConfirm, Established. */
  bgpState: string;
  /** When the protocol last changed state (ISO, with `timeformat protocol iso long`). */
  since: string;
  imported: number;
  exported: number;
  lastError?: string;
  neighborAddress?: string;
}

/** Parses `show protocols all` (codes 1002 table rows, 1006 details) into BGP peers. */
export function parseProtocols(reply: BirdReply): BgpPeerState[] {
  const out: BgpPeerState[] = [];
  let cur: BgpPeerState | undefined;
  for (const l of reply.lines) {
    if (l.code === 2002) continue; // header
    if (l.code === 1002) {
      // name proto table state since(two words in iso long) info
      const m =
        /^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?|\S+)\s*(.*)$/.exec(
          l.text,
        );
      cur = undefined;
      if (m && m[2] === 'BGP') {
        cur = {
          protocol: m[1]!,
          proto: m[4]!,
          since: m[5]!,
          bgpState: m[6]!.trim() || m[4]!,
          imported: 0,
          exported: 0,
        };
        out.push(cur);
      }
      continue;
    }
    if (!cur || l.code !== 1006) continue;
    const t = l.text.trim();
    let m = /^BGP state:\s+(\S+)/.exec(t);
    if (m) cur.bgpState = m[1]!;
    m = /^Routes:\s+(\d+) imported,(?: (\d+) filtered,)? (\d+) exported/.exec(t);
    if (m) {
      cur.imported = Number(m[1]);
      cur.exported = Number(m[3]);
    }
    m = /^Last error:\s+(.*)$/.exec(t);
    if (m) cur.lastError = m[1]!;
    m = /^Neighbor address:\s+(\S+)/.exec(t);
    if (m) cur.neighborAddress = m[1]!;
  }
  return out;
}
