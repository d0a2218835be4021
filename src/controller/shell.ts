import { randomUUID } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import type { ShellClientMessage__Output } from '../api/gen/tether/v1/ShellClientMessage.js';
import type { ShellFrame, ShellFrame__Output } from '../api/gen/tether/v1/ShellFrame.js';
import type { ShellServerMessage } from '../api/gen/tether/v1/ShellServerMessage.js';
import {
  type CheckedFrame,
  checkData,
  checkFrame,
  checkReason,
  checkSize,
  SHELL_LIMITS,
  type ShellOpenBody,
  signShellOpen,
} from '../api/shell.js';
import { toGrpcError } from '../api/status.js';
import { asTetherError, TetherError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { Identity } from '../lib/pki.js';
import { AsciicastWriter } from './asciicast.js';
import type { Session, SessionHub } from './hub.js';
import type { ShellAudit, ShellEndFields, ShellSessionRecord } from './shell-audit.js';

export type ShellCall = grpc.ServerDuplexStream<ShellClientMessage__Output, ShellServerMessage>;

export interface ShellBrokerOptions {
  /** Only what the broker uses of the hub (tests give it an in-memory one). */
  hub: Pick<SessionHub, 'onDetach' | 'routeTo' | 'sendShell'>;
  audit: ShellAudit;
  /** The controller's server key and certificate: they sign every open request. */
  keyPem: string;
  certPem: string;
  log: Logger;
  /** Site of an Approved node, else undefined. */
  approvedSite: (node: string) => string | undefined;
  /** No operator input for this long ends the session. */
  idleMs: number;
  /** A session ends after this long whatever happens. */
  maxMs: number;
  /** The first message (start) must come within this long. */
  startTimeoutMs?: number;
}

/** Operator input waits (the operator's stream is paused) while the node's session holds more. */
const INPUT_HIGH_WATER = 1024 * 1024;
const INPUT_LOW_WATER = 256 * 1024;
/** Credit goes back to the node in pieces of at least this much (fewer frames). */
const CREDIT_STEP = SHELL_LIMITS.windowBytes / 4;

interface Live {
  rec: ShellSessionRecord;
  call: ShellCall;
  route: Session;
  /** Output bytes the node may still send. */
  credit: number;
  /** Output bytes delivered to the operator since the last credit frame. */
  returned: number;
  cast: AsciicastWriter;
  idle: NodeJS.Timeout | undefined;
  max: NodeJS.Timeout;
  paused: NodeJS.Timeout | undefined;
  done: boolean;
}

/**
 * Relays remote shells between operators (the Shell service) and nodes (their own outbound
 * session, or their site proxy's): checks who may open one, writes the audit record before
 * anything runs, signs the open request the node verifies, records the session as asciicast,
 * enforces the idle timeout and maximum length, and bounds every buffer by flow control:
 * the node may send only the output the operator's stream has taken (a credit window), so a
 * flood of output never piles up here.
 */
export class ShellBroker {
  private readonly live = new Map<string, Live>();

  constructor(private readonly o: ShellBrokerOptions) {
    o.hub.onDetach((s) => {
      for (const l of [...this.live.values()])
        if (l.route === s)
          this.finish(l, {
            ending: 'node-lost',
            code: 'TETHER_E_UNAVAILABLE',
            message: 'the node session carrying the shell ended',
          });
    });
  }

  /** Open sessions (status, tests). */
  count(): number {
    return this.live.size;
  }

  /** The Shell.Open handler; `who` is the caller's checked identity. */
  open(call: ShellCall, who: Identity): void {
    const refuse = (e: unknown) => call.emit('error', toGrpcError(asTetherError(e)));
    if (who.role !== 'operator') {
      refuse(
        new TetherError(
          'TETHER_E_PERMISSION',
          `the ${who.role} identity "${who.name}" may not open a remote shell`,
          {
            expected: 'an operator identity (`tether controller operator NAME` issues one)',
          },
        ),
      );
      return;
    }
    let started = false;
    const startTimer = setTimeout(() => {
      if (!started) refuse(new TetherError('TETHER_E_TIMEOUT', 'no shell start request'));
    }, this.o.startTimeoutMs ?? 10_000);
    let live: Live | undefined;
    call.on('data', (m: ShellClientMessage__Output) => {
      if (!started) {
        started = true;
        clearTimeout(startTimer);
        try {
          live = this.start(call, who.name, m);
        } catch (e) {
          refuse(e);
        }
        return;
      }
      if (!live || live.done) return;
      try {
        this.fromOperator(live, m);
      } catch (e) {
        const err = asTetherError(e);
        this.finish(live, { ending: 'error', code: err.code, message: err.message });
      }
    });
    const gone = () => {
      clearTimeout(startTimer);
      if (live && !live.done) this.finish(live, { ending: 'closed', message: 'the operator disconnected' });
    };
    call.on('end', gone);
    call.on('cancelled', gone);
    call.on('error', gone);
    call.on('close', gone);
  }

  private start(call: ShellCall, operator: string, m: ShellClientMessage__Output): Live {
    if (m.msg !== 'start' || !m.start)
      throw new TetherError('TETHER_E_INVALID', 'first message must be start', {
        field: 'msg',
        expected: 'start',
      });
    const st = m.start;
    const reason = checkReason(st.reason);
    const { cols, rows } = checkSize(st.cols, st.rows, 'start');
    const node = st.node;
    const site = /^[a-z0-9.-]{1,253}$/.test(node) ? this.o.approvedSite(node) : undefined;
    if (!site)
      throw new TetherError('TETHER_E_NOT_FOUND', `no approved node "${node.slice(0, 80)}"`, {
        field: 'start.node',
      });
    const route = this.o.hub.routeTo(node);
    if (!route)
      throw new TetherError('TETHER_E_UNAVAILABLE', `node "${node}" has no live session to the controller`, {
        field: 'start.node',
        expected: 'a connected node (tether get nodes shows its session)',
      });
    if ([...this.live.values()].filter((l) => l.rec.node === node).length >= SHELL_LIMITS.maxSessionsPerNode)
      throw new TetherError(
        'TETHER_E_PRECONDITION',
        `node "${node}" already runs ${SHELL_LIMITS.maxSessionsPerNode} shells`,
      );
    const id = randomUUID();
    const now = Date.now();
    const rec: ShellSessionRecord = {
      id,
      operator,
      node,
      site,
      reason,
      startedAt: new Date(now).toISOString(),
      path: route.role === 'proxy' ? `proxy ${route.node}` : 'direct',
      cols,
      rows,
      recording: this.o.audit.recordingPath(id),
      bytesIn: 0,
      bytesOut: 0,
    };
    // On disk before the node hears of it: no shell runs without its audit record.
    this.o.audit.open(rec);
    const cast = new AsciicastWriter(rec.recording, {
      width: cols,
      height: rows,
      title: `${operator}@${node}: ${reason}`,
      now,
    });
    const maxSeconds = Math.max(1, Math.round(this.o.maxMs / 1000));
    const live: Live = {
      rec,
      call,
      route,
      credit: SHELL_LIMITS.windowBytes,
      returned: 0,
      cast,
      idle: undefined,
      max: setTimeout(
        () =>
          this.finish(live, {
            ending: 'max-duration',
            message: `session reached its maximum of ${maxSeconds} s`,
          }),
        this.o.maxMs,
      ),
      paused: undefined,
      done: false,
    };
    this.live.set(id, live);
    this.touch(live);
    const body: ShellOpenBody = {
      id,
      node,
      site,
      operator,
      reason,
      cols,
      rows,
      issuedAt: now,
      expiresAt: now + SHELL_LIMITS.openValidityMs,
      maxSeconds,
      window: SHELL_LIMITS.windowBytes,
    };
    this.o.log.warn(
      { event: 'shell_open', session: id, operator, node, site, reason, path: rec.path },
      'remote shell opened',
    );
    if (!this.toNode(live, { open: signShellOpen(body, this.o.keyPem, this.o.certPem) })) return live;
    call.write({
      started: {
        session_id: id,
        node,
        idle_timeout_seconds: Math.round(this.o.idleMs / 1000),
        max_seconds: maxSeconds,
      },
    });
    return live;
  }

  private fromOperator(l: Live, m: ShellClientMessage__Output): void {
    switch (m.msg) {
      case 'input': {
        const data = checkData(m.input!, 'input');
        this.touch(l);
        l.rec.bytesIn += data.length;
        l.cast.input(data);
        this.toNode(l, { data });
        // Typing cannot outrun a slow node: the operator's stream waits while its session
        // holds much (grpc flow control then pushes back to the operator's terminal).
        if (l.route.queued > INPUT_HIGH_WATER && !l.paused) {
          l.call.pause();
          l.paused = setInterval(() => {
            if (l.done || l.route.queued < INPUT_LOW_WATER) {
              clearInterval(l.paused);
              l.paused = undefined;
              if (!l.done) l.call.resume();
            }
          }, 20);
        }
        return;
      }
      case 'resize': {
        const { cols, rows } = checkSize(m.resize?.cols, m.resize?.rows, 'resize');
        this.touch(l);
        l.cast.resize(cols, rows);
        this.toNode(l, { resize: { cols, rows } });
        return;
      }
      case 'close':
        this.finish(l, { ending: 'closed', message: 'the operator closed the session' });
        return;
      default:
        throw new TetherError('TETHER_E_INVALID', 'unexpected shell message', {
          field: 'msg',
          expected: 'input, resize or close',
        });
    }
  }

  /**
   * A shell frame from a node session. Only the node that runs the session may speak for it:
   * on its own session the certificate's node, on a proxy's the proxy of that node's site
   * naming the node. Anything else is dropped (and logged).
   */
  fromNode(from: Session, f: ShellFrame__Output): void {
    let c: CheckedFrame;
    try {
      c = checkFrame(f);
    } catch (e) {
      this.o.log.warn(
        { node: from.node, err: asTetherError(e).message },
        'bad shell frame from node dropped',
      );
      return;
    }
    const l = this.live.get(c.id);
    const mayspeak =
      l !== undefined &&
      l.route === from &&
      (from.role === 'node' ? from.node === l.rec.node : from.site === l.rec.site && f.node === l.rec.node);
    if (!l || !mayspeak) {
      if (c.op !== 'end')
        this.o.log.warn(
          { node: from.node, session: c.id, op: c.op },
          'shell frame for no session of this node dropped',
        );
      return;
    }
    if (l.done) return;
    switch (c.op) {
      case 'data': {
        l.credit -= c.data.length;
        if (l.credit < 0) {
          this.finish(l, {
            ending: 'error',
            code: 'TETHER_E_TOO_LARGE',
            message: 'node sent more output than its flow-control window',
          });
          return;
        }
        l.rec.bytesOut += c.data.length;
        l.cast.output(c.data);
        const n = c.data.length;
        l.call.write({ output: c.data }, () => {
          // Taken by the operator's HTTP/2 stream: the node may send that much more.
          if (l.done) return;
          l.returned += n;
          if (l.returned >= CREDIT_STEP) {
            const credit = l.returned;
            l.returned = 0;
            l.credit += credit;
            this.toNode(l, { credit });
          }
        });
        return;
      }
      case 'end':
        this.finish(
          l,
          {
            ending: c.ending,
            exitCode: c.exitCode,
            signal: c.signal,
            ...(c.code ? { code: c.code } : {}),
            ...(c.message ? { message: c.message } : {}),
          },
          false,
        );
        return;
      default:
        this.o.log.warn(
          { node: from.node, session: c.id, op: c.op },
          'shell frame a node may not send dropped',
        );
    }
  }

  /** Ends every session (controller shutdown). */
  stop(): void {
    for (const l of [...this.live.values()])
      this.finish(l, { ending: 'closed', code: 'TETHER_E_UNAVAILABLE', message: 'controller shutting down' });
  }

  private touch(l: Live): void {
    if (l.idle) clearTimeout(l.idle);
    l.idle = setTimeout(
      () =>
        this.finish(l, {
          ending: 'idle-timeout',
          message: `no input for ${Math.round(this.o.idleMs / 1000)} s`,
        }),
      this.o.idleMs,
    );
  }

  private toNode(l: Live, op: Omit<ShellFrame, 'session_id' | 'node'>): boolean {
    const frame: ShellFrame = { session_id: l.rec.id, node: l.rec.node, ...op };
    if (this.o.hub.sendShell(l.route, { shell: frame })) return true;
    if (!l.done)
      this.finish(
        l,
        {
          ending: 'node-lost',
          code: 'TETHER_E_UNAVAILABLE',
          message: "the node's session is gone or not reading",
        },
        false,
      );
    return false;
  }

  /** Ends a session once: audit end record on disk, recording closed, operator told, node told
   *  (unless the end came from it). */
  private finish(l: Live, f: Omit<ShellEndFields, 'bytesIn' | 'bytesOut'>, tellNode = true): void {
    if (l.done) return;
    l.done = true;
    this.live.delete(l.rec.id);
    if (l.idle) clearTimeout(l.idle);
    clearTimeout(l.max);
    if (l.paused) clearInterval(l.paused);
    if (tellNode)
      this.o.hub.sendShell(l.route, {
        shell: {
          session_id: l.rec.id,
          node: l.rec.node,
          end: {
            ending: f.ending ?? 'closed',
            exit_code: -1,
            signal: 0,
            code: f.code ?? '',
            message: f.message ?? '',
          },
        },
      });
    try {
      l.cast.close();
    } catch (e) {
      this.o.log.error({ session: l.rec.id, err: (e as Error).message }, 'cannot close shell recording');
    }
    let rec: ShellSessionRecord | undefined = l.rec;
    try {
      rec = this.o.audit.end(l.rec.id, { ...f, bytesIn: l.rec.bytesIn, bytesOut: l.rec.bytesOut });
    } catch (e) {
      this.o.log.error(
        { session: l.rec.id, err: asTetherError(e).message },
        'cannot write shell audit end record',
      );
    }
    this.o.log.warn(
      {
        event: 'shell_end',
        session: l.rec.id,
        operator: l.rec.operator,
        node: l.rec.node,
        ending: f.ending,
        exitCode: f.exitCode,
        bytesIn: l.rec.bytesIn,
        bytesOut: l.rec.bytesOut,
      },
      'remote shell ended',
    );
    try {
      l.call.write({
        end: {
          ending: rec?.ending ?? f.ending ?? 'closed',
          exit_code: f.exitCode ?? -1,
          signal: f.signal ?? 0,
          code: f.code ?? '',
          message: f.message ?? '',
        },
      });
      l.call.end();
    } catch {
      /* the operator's stream may be gone already */
    }
  }
}
