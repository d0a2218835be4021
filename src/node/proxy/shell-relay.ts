import type { ShellFrame, ShellFrame__Output } from '../../api/gen/tether/v1/ShellFrame.js';
import { type CheckedFrame, checkFrame, SHELL_LIMITS } from '../../api/shell.js';
import { asTetherError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';

export interface ShellRelayOptions {
  log: Logger;
  /** Writes a frame to the attached agent `node` of this site; false when it is not attached
   *  or its send queue is over its bound (the relay then ends the shell). */
  toAgent: (node: string, f: ShellFrame) => boolean;
  /** Writes a frame on the WAN session; false when it is down. */
  toController: (f: ShellFrame) => boolean;
}

interface Relayed {
  id: string;
  node: string;
  /** Output bytes the agent may still send (the controller's window as seen here). */
  credit: number;
}

const NAME = /^[a-z0-9.-]{1,253}$/;

/** Frames the relay dropped, by reason: `bad` (failed the frame checks), `notOwner` (for no
 *  shell relayed to that node), `notAttached` (the agent was gone or not reading: the shell
 *  ended), `notAllowed` (an op that side may not send, or a second open). */
export interface ShellDropCounts {
  bad: number;
  notOwner: number;
  notAttached: number;
  notAllowed: number;
}

export function noShellDrops(): ShellDropCounts {
  return { bad: 0, notOwner: 0, notAttached: 0, notAllowed: 0 };
}

/** a + b per reason (the site proxy carries a finished core's counts over a takeover). */
export function addShellDrops(a: ShellDropCounts, b: ShellDropCounts): ShellDropCounts {
  return {
    bad: a.bad + b.bad,
    notOwner: a.notOwner + b.notOwner,
    notAttached: a.notAttached + b.notAttached,
    notAllowed: a.notAllowed + b.notAllowed,
  };
}

/** A frame built again from its checked fields: nothing a peer added travels further. */
export function frameOf(c: CheckedFrame, node: string): ShellFrame {
  const base = { session_id: c.id, node };
  switch (c.op) {
    case 'open':
      return {
        ...base,
        open: { payload: c.open.payload, signature: c.open.signature, cert_pem: c.open.certPem },
      };
    case 'data':
      return { ...base, data: c.data };
    case 'resize':
      return { ...base, resize: { cols: c.cols, rows: c.rows } };
    case 'credit':
      return { ...base, credit: c.credit };
    case 'end':
      return {
        ...base,
        end: {
          ending: c.ending,
          exit_code: c.exitCode,
          signal: c.signal,
          code: c.code,
          message: c.message,
        },
      };
  }
}

function endFrame(id: string, node: string, ending: string, code: string, message: string): ShellFrame {
  return { session_id: id, node, end: { ending, exit_code: -1, signal: 0, code, message } };
}

/**
 * The site proxy's part of remote shells (docs/shell.md, docs/proxy.md): frames from the
 * controller go to the attached agent they name, frames from an agent go upstream named by
 * its certificate, and only for a shell the controller opened to that agent through this
 * proxy. The proxy cannot open a shell itself (the node verifies the controller's signature
 * on the open; the relay passes it unchanged). It holds no output of its own: the agent may
 * send only what the controller's credit allows (checked here too, so one agent cannot make
 * the WAN session queue more than its window), and input to an agent that stops reading
 * ends the shell instead of piling up in its send queue.
 */
export class ShellRelay {
  private readonly shells = new Map<string, Relayed>();
  /** Dropped frames since start, by reason (status, tests). */
  readonly dropped: ShellDropCounts = noShellDrops();

  constructor(private readonly o: ShellRelayOptions) {}

  count(): number {
    return this.shells.size;
  }

  /** Shells relayed now to `node`. */
  ids(node: string): string[] {
    return [...this.shells.values()].filter((r) => r.node === node).map((r) => r.id);
  }

  /** A shell frame from the controller (on the WAN session). */
  fromController(f: ShellFrame__Output): void {
    let c: CheckedFrame;
    try {
      c = checkFrame(f);
    } catch (e) {
      this.dropped.bad++;
      this.o.log.warn({ err: asTetherError(e).message }, 'bad shell frame from controller dropped');
      return;
    }
    const node = typeof f.node === 'string' ? f.node : '';
    if (!NAME.test(node)) {
      this.dropped.bad++;
      this.o.log.warn({ session: c.id }, 'shell frame from controller names no node; dropped');
      return;
    }
    if (c.op === 'open') {
      if (this.shells.has(c.id)) {
        this.dropped.notAllowed++;
        this.o.log.warn({ session: c.id, node }, 'second shell open for one session dropped');
        return;
      }
      if (this.ids(node).length >= SHELL_LIMITS.maxSessionsPerNode) {
        this.o.toController(
          endFrame(
            c.id,
            node,
            'refused',
            'TETHER_E_PRECONDITION',
            `node "${node}" already runs ${SHELL_LIMITS.maxSessionsPerNode} shells through its site proxy`,
          ),
        );
        return;
      }
      this.shells.set(c.id, { id: c.id, node, credit: SHELL_LIMITS.windowBytes });
    } else {
      const r = this.shells.get(c.id);
      if (!r || r.node !== node) {
        // An end for a shell the agent already ended crosses it on the way: not worth a line.
        if (c.op !== 'end') {
          this.dropped.notOwner++;
          this.o.log.warn({ session: c.id, node, op: c.op }, 'shell frame for no relayed shell dropped');
        }
        return;
      }
      if (c.op === 'credit') r.credit = Math.min(r.credit + c.credit, SHELL_LIMITS.windowBytes);
      if (c.op === 'end') this.shells.delete(c.id);
    }
    if (this.o.toAgent(node, frameOf(c, node))) return;
    if (c.op === 'end') return;
    this.dropped.notAttached++;
    this.shells.delete(c.id);
    this.o.log.warn(
      { session: c.id, node, op: c.op },
      'shell agent not attached or not reading; shell ended',
    );
    this.o.toController(
      endFrame(
        c.id,
        node,
        'node-lost',
        'TETHER_E_UNAVAILABLE',
        `node "${node}" is not attached to its site proxy or not reading`,
      ),
    );
  }

  /** A shell frame from the agent `node` (its certificate's name) on its session to us. */
  fromAgent(node: string, f: ShellFrame__Output): void {
    let c: CheckedFrame;
    try {
      c = checkFrame(f);
    } catch (e) {
      this.dropped.bad++;
      this.o.log.warn({ node, err: asTetherError(e).message }, 'bad shell frame from agent dropped');
      return;
    }
    const r = this.shells.get(c.id);
    if (!r || r.node !== node) {
      if (c.op !== 'end') {
        this.dropped.notOwner++;
        this.o.log.warn(
          { node, session: c.id, op: c.op },
          'shell frame for a shell this agent does not run dropped',
        );
      }
      return;
    }
    if (c.op !== 'data' && c.op !== 'end') {
      this.dropped.notAllowed++;
      this.o.log.warn({ node, session: c.id, op: c.op }, 'shell frame an agent may not send dropped');
      return;
    }
    if (c.op === 'data') {
      r.credit -= c.data.length;
      if (r.credit < 0) {
        this.shells.delete(c.id);
        const msg = 'node sent more output than its flow-control window';
        this.o.toAgent(node, endFrame(c.id, node, 'error', 'TETHER_E_TOO_LARGE', msg));
        this.o.toController(endFrame(c.id, node, 'error', 'TETHER_E_TOO_LARGE', msg));
        return;
      }
    } else this.shells.delete(c.id);
    this.o.toController(frameOf(c, node));
  }

  /** The agent's session ended: the controller hears that its shells are gone. */
  agentGone(node: string): void {
    for (const id of this.ids(node)) {
      this.shells.delete(id);
      this.o.toController(
        endFrame(id, node, 'node-lost', 'TETHER_E_UNAVAILABLE', "the node's session to its site proxy ended"),
      );
    }
  }

  /** The WAN session ended: the controller ended these shells already; so do the agents. */
  uplinkGone(): void {
    for (const r of [...this.shells.values()]) {
      this.shells.delete(r.id);
      this.o.toAgent(
        r.node,
        endFrame(
          r.id,
          r.node,
          'node-lost',
          'TETHER_E_UNAVAILABLE',
          'the site proxy lost its controller session',
        ),
      );
    }
  }
}
