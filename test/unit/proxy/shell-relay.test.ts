import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ControllerMessage } from '../../../src/api/gen/tether/v1/ControllerMessage.js';
import type { ShellFrame, ShellFrame__Output } from '../../../src/api/gen/tether/v1/ShellFrame.js';
import { SHELL_LIMITS } from '../../../src/api/shell.js';
import { silentLogger } from '../../../src/lib/log.js';
import { type AgentPeer, ProxyCore } from '../../../src/node/proxy/core.js';
import { addShellDrops, noShellDrops, ShellRelay } from '../../../src/node/proxy/shell-relay.js';
import { type NodeCreds, network, nodeSummary, sitePki } from '../../integration/support/site.js';

const ID = 'sess-0001-abcd';
const out = (f: Partial<ShellFrame__Output> & { op: ShellFrame__Output['op'] }) => f as ShellFrame__Output;
const open = (id = ID, node = 'n2') =>
  out({
    session_id: id,
    node,
    op: 'open',
    open: { payload: Buffer.from('{"id":"x"}'), signature: Buffer.from([1, 2, 3]), cert_pem: 'PEM' },
  });
const data = (bytes: number, id = ID, node = 'n2') =>
  out({ session_id: id, node, op: 'data', data: Buffer.alloc(bytes, 0x61) });
const credit = (n: number, id = ID, node = 'n2') => out({ session_id: id, node, op: 'credit', credit: n });
const end = (id = ID, node = 'n2') =>
  out({
    session_id: id,
    node,
    op: 'end',
    end: { ending: 'exit', exit_code: 0, signal: 0, code: '', message: '' },
  });

function relay(attached = new Set(['n2', 'n3'])) {
  const toAgent: Array<[string, ShellFrame]> = [];
  const toController: ShellFrame[] = [];
  const r = new ShellRelay({
    log: silentLogger(),
    toAgent: (node, f) => {
      if (!attached.has(node)) return false;
      toAgent.push([node, f]);
      return true;
    },
    toController: (f) => {
      toController.push(f);
      return true;
    },
  });
  return { r, toAgent, toController, attached };
}

describe('ShellRelay', () => {
  it('relays the open unchanged to the named agent and its output upstream named by the agent', () => {
    const { r, toAgent, toController } = relay();
    const o = open();
    r.fromController(o);
    expect(toAgent).toHaveLength(1);
    expect(toAgent[0]![0]).toBe('n2');
    expect(Buffer.from(toAgent[0]![1].open!.signature as Buffer)).toEqual(Buffer.from([1, 2, 3]));
    expect(Buffer.from(toAgent[0]![1].open!.payload as Buffer).toString()).toBe('{"id":"x"}');
    // The agent may leave `node` empty or lie: the relay names it by its certificate.
    r.fromAgent('n2', data(5, ID, 'someone-else'));
    expect(toController).toHaveLength(1);
    expect(toController[0]!.node).toBe('n2');
    expect(Buffer.from(toController[0]!.data as Buffer).toString()).toBe('aaaaa');
    r.fromController(out({ session_id: ID, node: 'n2', op: 'resize', resize: { cols: 100, rows: 40 } }));
    expect(toAgent.at(-1)![1].resize).toEqual({ cols: 100, rows: 40 });
    r.fromAgent('n2', end());
    expect(r.count()).toBe(0);
    expect(toController.at(-1)!.end!.ending).toBe('exit');
  });

  it("drops an agent's frames for a shell it does not run, and frames an agent may not send", () => {
    const { r, toController } = relay();
    r.fromController(open());
    r.fromAgent('n3', data(3));
    r.fromAgent('n3', end());
    r.fromAgent('n2', data(3, 'sess-unknown-1'));
    r.fromAgent('n2', credit(1000));
    r.fromAgent('n2', out({ session_id: ID, node: 'n2', op: 'resize', resize: { cols: 1, rows: 1 } }));
    expect(toController).toEqual([]);
    expect(r.count()).toBe(1);
    expect(r.dropped.notOwner).toBe(2);
    expect(r.dropped.notAllowed).toBe(2);
  });

  it('drops controller frames for a shell not opened to that node, and a second open of one id', () => {
    const { r, toAgent } = relay();
    r.fromController(open());
    r.fromController(data(3, ID, 'n3'));
    r.fromController(data(3, 'sess-unknown-1', 'n2'));
    r.fromController(open(ID, 'n3'));
    expect(toAgent).toHaveLength(1);
    r.fromController(out({ session_id: ID, node: '', op: 'data', data: Buffer.from('x') }));
    expect(toAgent).toHaveLength(1);
  });

  it('ends the shell upstream when the agent is not attached or stops reading', () => {
    const { r, toController, attached } = relay();
    r.fromController(open(ID, 'n9'));
    expect(toController).toHaveLength(1);
    expect(toController[0]!.end).toMatchObject({ ending: 'node-lost', code: 'TETHER_E_UNAVAILABLE' });
    expect(r.count()).toBe(0);
    r.fromController(open());
    attached.delete('n2'); // its queue is over the bound from here on
    r.fromController(data(10));
    expect(toController.at(-1)!.end!.ending).toBe('node-lost');
    expect(r.count()).toBe(0);
  });

  it('enforces the credit window end to end: output beyond it ends the shell on both sides', () => {
    const { r, toAgent, toController } = relay();
    r.fromController(open());
    for (let sent = 0; sent < SHELL_LIMITS.windowBytes; sent += SHELL_LIMITS.maxFrameBytes)
      r.fromAgent('n2', data(SHELL_LIMITS.maxFrameBytes));
    expect(toController.every((f) => f.data)).toBe(true);
    r.fromController(credit(1000));
    r.fromAgent('n2', data(1000));
    expect(toController.at(-1)!.data).toBeDefined();
    r.fromAgent('n2', data(1));
    expect(toController.at(-1)!.end).toMatchObject({ ending: 'error', code: 'TETHER_E_TOO_LARGE' });
    expect(toAgent.at(-1)![1].end).toMatchObject({ ending: 'error' });
    expect(r.count()).toBe(0);
  });

  it('refuses more than maxSessionsPerNode shells of one node', () => {
    const { r, toAgent, toController } = relay();
    for (let i = 0; i < SHELL_LIMITS.maxSessionsPerNode + 1; i++) r.fromController(open(`sess-000${i}-aaaa`));
    expect(toAgent).toHaveLength(SHELL_LIMITS.maxSessionsPerNode);
    expect(toController[0]!.end).toMatchObject({ ending: 'refused', code: 'TETHER_E_PRECONDITION' });
  });

  it('ends the shells of an agent that left (upstream) and of a lost WAN session (downstream)', () => {
    const { r, toAgent, toController } = relay();
    r.fromController(open('sess-0001-aaaa', 'n2'));
    r.fromController(open('sess-0002-aaaa', 'n3'));
    r.agentGone('n2');
    expect(toController.map((f) => [f.node, f.end?.ending])).toEqual([['n2', 'node-lost']]);
    r.uplinkGone();
    expect(toAgent.at(-1)).toMatchObject([
      'n3',
      { session_id: 'sess-0002-aaaa', end: { ending: 'node-lost' } },
    ]);
    expect(r.count()).toBe(0);
  });

  it('never throws on any frame from either side, and never relays a frame of an unknown shell', () => {
    const bytes = fc.uint8Array({ maxLength: SHELL_LIMITS.maxFrameBytes + 10 });
    const frame = fc.record({
      session_id: fc.oneof(fc.constant(ID), fc.string({ maxLength: 70 })),
      node: fc.oneof(fc.constant('n2'), fc.constant('n3'), fc.string({ maxLength: 300 })),
      op: fc.constantFrom('open', 'data', 'resize', 'credit', 'end', undefined, 'bogus'),
      data: bytes,
      credit: fc.oneof(fc.integer(), fc.double(), fc.constant(Number.NaN)),
      resize: fc.record({ cols: fc.integer(), rows: fc.integer() }),
      open: fc.record({ payload: bytes, signature: bytes, cert_pem: fc.string({ maxLength: 100 }) }),
      end: fc.record({
        ending: fc.string({ maxLength: 20 }),
        exit_code: fc.integer(),
        signal: fc.integer(),
        code: fc.string({ maxLength: 60 }),
        message: fc.string({ maxLength: 600 }),
      }),
    });
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), frame), { maxLength: 30 }), (steps) => {
        const { r, toAgent, toController } = relay();
        const opened = new Map<string, string>();
        for (const [fromController, f] of steps) {
          const ff = f as unknown as ShellFrame__Output;
          if (fromController) {
            const n = toAgent.length;
            r.fromController(ff);
            if (toAgent.length > n && toAgent.at(-1)?.[1].open) opened.set(ff.session_id, ff.node);
          } else r.fromAgent('n2', ff);
        }
        // Nothing reached an agent or the controller for a session never opened to that node.
        for (const [node, g] of toAgent) expect(opened.get(g.session_id ?? '')).toBe(node);
        for (const g of toController) if (!g.end) expect(opened.get(g.session_id ?? '')).toBe('n2');
      }),
      { numRuns: 300 },
    );
  });
});

// ------------------------------------------------------------- through the core's sessions

let n1: NodeCreds;
let n2: NodeCreds;
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
beforeAll(async () => {
  const pki = await sitePki('s1');
  n1 = await pki.node('n1');
  n2 = await pki.node('n2');
});
const peer = (c: NodeCreds): AgentPeer => ({
  node: c.name,
  site: c.site,
  serial: c.serial,
  certPem: c.certPem,
});
const hello = (node: string) => ({
  node_name: node,
  held_revision: 0,
  version: '',
  boot_id: 'b',
  underlay_ip: '',
  role: '',
  heartbeat_ms: 0,
});
class Link {
  msgs: ControllerMessage[] = [];
  /** Off: the transport takes nothing (an agent that stopped reading). */
  reading = true;
  write(m: ControllerMessage, written?: () => void) {
    this.msgs.push(m);
    if (this.reading) written?.();
  }
  end() {}
  shells() {
    return this.msgs.filter((m) => m.shell).map((m) => m.shell!);
  }
}

function site(sendQueueBytes?: number) {
  const dir = mkdtempSync(join(tmpdir(), 'tether-shell-relay-'));
  dirs.push(dir);
  const c = new ProxyCore({
    dir,
    node: 'n1',
    site: 's1',
    log: silentLogger(),
    siteAgentsDelayMs: 0,
    reportIntervalMs: 0,
    ...(sendQueueBytes ? { sendQueueBytes } : {}),
  });
  c.applySnapshot(10, [
    nodeSummary(n1, '192.0.2.1'),
    nodeSummary(n2, '192.0.2.2'),
    network('red', '10.1.0.0/24', { n1: '10.1.0.0/28', n2: '10.1.0.16/28' }, ['s1']),
  ]);
  const wan: ShellFrame[] = [];
  c.uplink = {
    up: true,
    siteAgents: () => {},
    relay: () => {},
    relayGateway: () => {},
    relayShell: (f) => {
      wan.push(f);
      return true;
    },
  };
  const a1 = new Link();
  const a2 = new Link();
  const s1 = c.open(a1, peer(n1), hello('n1'));
  const s2 = c.open(a2, peer(n2), hello('n2'));
  return { c, wan, a1, a2, s1, s2 };
}

describe('ProxyCore shell relay', () => {
  it("carries a shell between the WAN and the agent's session; another agent cannot speak for it", () => {
    const { c, wan, a1, a2, s1, s2 } = site();
    c.shellFromController(open());
    expect(a2.shells().map((f) => f.open !== undefined)).toEqual([true]);
    expect(a1.shells()).toEqual([]);
    c.message(s1, { msg: 'shell', shell: data(4, ID, 'n2') });
    expect(wan).toEqual([]);
    c.message(s2, { msg: 'shell', shell: data(4, ID, 'n2') });
    expect(wan.map((f) => f.node)).toEqual(['n2']);
    c.detach(s2);
    expect(wan.at(-1)!.end).toMatchObject({ ending: 'node-lost' });
    expect(c.shells.count()).toBe(0);
  });

  it('ends the shell of an agent that stops reading instead of queueing its input without bound', () => {
    const { c, wan, a2 } = site(64 * 1024);
    c.shellFromController(open());
    a2.reading = false;
    for (let i = 0; i < 4 && c.shells.count() > 0; i++)
      c.shellFromController(data(SHELL_LIMITS.maxFrameBytes));
    expect(c.shells.count()).toBe(0);
    expect(wan.at(-1)!.end).toMatchObject({ ending: 'node-lost', code: 'TETHER_E_UNAVAILABLE' });
    const before = a2.msgs.length;
    c.shellFromController(data(10));
    expect(a2.msgs.length).toBe(before);
  });

  it('ends relayed shells at the agents when the WAN session goes down', () => {
    const { c, a2 } = site();
    c.shellFromController(open());
    c.onUplinkDown();
    expect(a2.shells().at(-1)!.end).toMatchObject({ ending: 'node-lost' });
  });
});

describe('shell drop counts', () => {
  it('add per reason, leaving both operands as they were (a takeover carries them over)', () => {
    const a = { bad: 1, notOwner: 2, notAttached: 3, notAllowed: 4 };
    const b = { bad: 10, notOwner: 20, notAttached: 30, notAllowed: 40 };
    expect(addShellDrops(a, b)).toEqual({ bad: 11, notOwner: 22, notAttached: 33, notAllowed: 44 });
    expect(a.bad).toBe(1);
    expect(addShellDrops(noShellDrops(), a)).toEqual(a);
    // A fresh set each call: one relay's counting does not move another's.
    const z = noShellDrops();
    z.bad++;
    expect(noShellDrops().bad).toBe(0);
  });
});
