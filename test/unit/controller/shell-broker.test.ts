import { generateKeyPairSync } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ControllerMessage } from '../../../src/api/gen/tether/v1/ControllerMessage.js';
import type { ShellFrame__Output } from '../../../src/api/gen/tether/v1/ShellFrame.js';
import type { ShellServerMessage } from '../../../src/api/gen/tether/v1/ShellServerMessage.js';
import { AsciicastWriter } from '../../../src/controller/asciicast.js';
import type { Session } from '../../../src/controller/hub.js';
import { ShellBroker, type ShellBrokerOptions, type ShellCall } from '../../../src/controller/shell.js';
import { ShellAudit } from '../../../src/controller/shell-audit.js';
import { silentLogger } from '../../../src/lib/log.js';

/** In-memory hub and operator stream: the broker's own logic is what is under test here; the
 *  real hub and gRPC stream are covered by their own tests and the integration test. */
class FakeHub {
  readonly sent: { to: Session; msg: ControllerMessage }[] = [];
  readonly routes = new Map<string, Session>();
  onDetach(_fn: (s: Session) => void): void {}
  routeTo(node: string): Session | undefined {
    return this.routes.get(node);
  }
  sendShell(to: Session, msg: ControllerMessage): boolean {
    this.sent.push({ to, msg });
    return true;
  }
}

class FakeCall extends EventEmitter {
  readonly out: ShellServerMessage[] = [];
  ended = false;
  write(m: ShellServerMessage, cb?: () => void): boolean {
    this.out.push(m);
    cb?.();
    return true;
  }
  end(): void {
    this.ended = true;
  }
  pause(): void {}
  resume(): void {}
}

// A session is a large record; the broker reads only who it is.
const sess = (node: string, site: string, role: 'node' | 'proxy') =>
  ({ node, site, role, queued: 0 }) as unknown as Session;

const KEY = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  .privateKey.export({ type: 'pkcs8', format: 'pem' })
  .toString();

let dir: string;
let audit: ShellAudit;
let hub: FakeHub;
let broker: ShellBroker;
const sites: Record<string, string> = { n1: 'east', n2: 'east', n3: 'west' };

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tether-shell-'));
  audit = new ShellAudit(join(dir, 'shell'));
  hub = new FakeHub();
  const o: ShellBrokerOptions = {
    hub,
    audit,
    keyPem: KEY,
    certPem: 'not checked by the controller',
    log: silentLogger(),
    approvedSite: (n) => sites[n],
    idleMs: 60_000,
    maxMs: 600_000,
  };
  broker = new ShellBroker(o);
});

afterEach(() => {
  broker.stop();
  audit.close();
  rmSync(dir, { recursive: true, force: true });
});

function openShell(node: string): { call: FakeCall; id: string } {
  const call = new FakeCall();
  broker.open(call as unknown as ShellCall, { role: 'operator', name: 'alice' });
  call.emit('data', { msg: 'start', start: { node, reason: 'debug the disk', cols: 80, rows: 24 } });
  const id = call.out.find((m) => m.started)?.started?.session_id;
  if (!id) throw new Error(`no shell started: ${JSON.stringify(call.out)}`);
  return { call, id };
}

const data = (id: string, node: string, s: string): ShellFrame__Output =>
  ({ session_id: id, node, op: 'data', data: Buffer.from(s) }) as ShellFrame__Output;
const end = (id: string, node: string, exit: number): ShellFrame__Output =>
  ({
    session_id: id,
    node,
    op: 'end',
    end: { ending: 'exit', exit_code: exit, signal: 0, code: '', message: '' },
  }) as ShellFrame__Output;

describe('ShellBroker', () => {
  it('refuses a non-operator identity and writes nothing', () => {
    const call = new FakeCall();
    const errs: { details?: string }[] = [];
    call.on('error', (e: { details?: string }) => errs.push(e));
    broker.open(call as unknown as ShellCall, { role: 'admin', name: 'root' });
    expect(errs[0]?.details).toMatch(/admin identity "root" may not open a remote shell/);
    expect(audit.list()).toEqual([]);
  });

  it('refuses a start without a reason before any audit record or node frame', () => {
    hub.routes.set('n1', sess('n1', 'east', 'node'));
    const call = new FakeCall();
    const errs: { details?: string }[] = [];
    call.on('error', (e: { details?: string }) => errs.push(e));
    broker.open(call as unknown as ShellCall, { role: 'operator', name: 'alice' });
    call.emit('data', { msg: 'start', start: { node: 'n1', reason: '', cols: 80, rows: 24 } });
    expect(errs[0]?.details).toMatch(/reason/);
    expect(audit.list()).toEqual([]);
    expect(hub.sent).toEqual([]);
  });

  it('direct: output from the node reaches the operator, audit and recording; exit code recorded', () => {
    const n1 = sess('n1', 'east', 'node');
    hub.routes.set('n1', n1);
    const { call, id } = openShell('n1');
    expect(hub.sent[0]?.msg.shell?.open).toBeTruthy();
    expect(audit.get(id)).toMatchObject({
      operator: 'alice',
      node: 'n1',
      reason: 'debug the disk',
      path: 'direct',
    });
    broker.fromNode(n1, data(id, 'n1', 'hi\r\n'));
    broker.fromNode(n1, end(id, 'n1', 7));
    expect(call.out.some((m) => Buffer.from(m.output ?? []).toString() === 'hi\r\n')).toBe(true);
    expect(audit.get(id)).toMatchObject({ ending: 'exit', exitCode: 7, bytesOut: 4 });
    const cast = readFileSync(audit.recordingPath(id), 'utf8').trim().split('\n');
    expect(JSON.parse(cast[0] ?? '')).toMatchObject({ version: 2, width: 80, height: 24 });
    expect(JSON.parse(cast[1] ?? '')).toEqual([expect.any(Number), 'o', 'hi\r\n']);
  });

  it("drops a frame another node sends for someone else's shell: no output, no audit, no recording", () => {
    const n1 = sess('n1', 'east', 'node');
    const n3 = sess('n3', 'west', 'node');
    hub.routes.set('n1', n1);
    hub.routes.set('n3', n3);
    const { call, id } = openShell('n1');
    const before = call.out.length;
    // n3 knows (or guessed) n1's session id and speaks for it, with and without claiming n1.
    broker.fromNode(n3, data(id, 'n3', 'forged'));
    broker.fromNode(n3, data(id, 'n1', 'forged'));
    broker.fromNode(n3, end(id, 'n1', 0));
    // The right node but an unknown id, and a same-named node on another session object.
    broker.fromNode(n1, data('0f8e2b1c-aaaa-4222-8333-944455556666', 'n1', 'forged'));
    broker.fromNode(sess('n1', 'east', 'node'), data(id, 'n1', 'forged'));
    expect(call.out.length).toBe(before);
    expect(audit.get(id)).toMatchObject({ bytesOut: 0 });
    expect(audit.get(id)?.endedAt).toBeUndefined();
    expect(broker.count()).toBe(1);
    broker.fromNode(n1, end(id, 'n1', 0));
    expect(readFileSync(audit.recordingPath(id), 'utf8')).not.toContain('forged');
  });

  it("through a proxy: only that site's proxy naming the shell's node may speak for it", () => {
    const proxyEast = sess('px-east', 'east', 'proxy');
    const proxyWest = sess('px-west', 'west', 'proxy');
    hub.routes.set('n1', proxyEast);
    hub.routes.set('n2', proxyEast);
    const { call, id } = openShell('n1');
    expect(audit.get(id)?.path).toBe('proxy px-east');
    const before = call.out.length;
    broker.fromNode(proxyEast, data(id, 'n2', 'forged')); // another agent of the same site
    broker.fromNode(proxyWest, data(id, 'n1', 'forged')); // another site's proxy
    expect(call.out.length).toBe(before);
    broker.fromNode(proxyEast, data(id, 'n1', 'real'));
    expect(call.out.length).toBe(before + 1);
    broker.fromNode(proxyEast, end(id, 'n1', 0));
    const cast = readFileSync(audit.recordingPath(id), 'utf8');
    expect(cast).toContain('real');
    expect(cast).not.toContain('forged');
    expect(audit.get(id)).toMatchObject({ bytesOut: 4, exitCode: 0 });
  });

  it('ends a session whose node sends more than its credit window', () => {
    const n1 = sess('n1', 'east', 'node');
    hub.routes.set('n1', n1);
    // The operator's stream never takes anything: no credit comes back.
    const { call, id } = openShell('n1');
    call.write = (m: ShellServerMessage) => {
      call.out.push(m);
      return true;
    };
    const chunk = 'x'.repeat(64 * 1024);
    for (let i = 0; i < 5; i++) broker.fromNode(n1, data(id, 'n1', chunk));
    expect(audit.get(id)).toMatchObject({ ending: 'error', code: 'TETHER_E_TOO_LARGE' });
  });
});

describe('ShellAudit', () => {
  it('closes a session a controller crash left open as controller-restart', () => {
    const d = mkdtempSync(join(tmpdir(), 'tether-shell-audit-'));
    try {
      const a = new ShellAudit(d);
      const rec = {
        id: 'abcdefgh-1',
        operator: 'alice',
        node: 'n1',
        site: 'east',
        reason: 'why not',
        startedAt: new Date().toISOString(),
        path: 'direct',
        cols: 80,
        rows: 24,
        recording: a.recordingPath('abcdefgh-1'),
        bytesIn: 0,
        bytesOut: 0,
      };
      a.open(rec);
      a.close();
      const b = new ShellAudit(d);
      expect(b.get('abcdefgh-1')).toMatchObject({ ending: 'controller-restart', operator: 'alice' });
      b.end('abcdefgh-1', { ending: 'exit', exitCode: 0, bytesIn: 1, bytesOut: 1 });
      expect(b.get('abcdefgh-1')?.ending).toBe('controller-restart');
      b.close();
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});

describe('AsciicastWriter', () => {
  it('keeps a UTF-8 character split across chunks, records input and resize, stops at its limit', () => {
    const d = mkdtempSync(join(tmpdir(), 'tether-cast-'));
    try {
      const p = join(d, 'a.cast');
      const w = new AsciicastWriter(p, { width: 80, height: 24, title: 't', now: 1000 }, 400);
      const euro = Buffer.from('€');
      w.output(euro.subarray(0, 1), 1500);
      w.output(euro.subarray(1), 1600);
      w.input(Buffer.from('ls\r'), 2000);
      w.resize(100, 30, 2500);
      w.output(Buffer.from('y'.repeat(500)), 3000);
      w.output(Buffer.from('after'), 3100);
      w.close();
      expect(() => new AsciicastWriter(p, { width: 1, height: 1, title: 't' })).toThrow();
      const lines = readFileSync(p, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as unknown);
      expect(lines.slice(1)).toEqual([
        [0.6, 'o', '€'],
        [1, 'i', 'ls\r'],
        [1.5, 'r', '100x30'],
        [2, 'm', 'recording size limit reached'],
      ]);
      expect(w.truncated).toBe(true);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
