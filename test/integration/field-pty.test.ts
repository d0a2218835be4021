import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pty from 'node-pty';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/lib/log.js';
import {
  type ControlApi,
  controlSocketPath,
  EventRing,
  startControlApi,
} from '../../src/node/control-api.js';
import { saveIdentity } from '../../src/node/identity.js';
import { TETHER } from './support/proc.js';

// `tether status` and `tether diag` driven in a real pseudo-terminal (node-pty): a TTY gets
// colour, NO_COLOR turns it off, exit codes are the documented ones.

let dir: string;
let api: ControlApi;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tether-s11pty-'));
  saveIdentity(dir, { name: 'n1', site: 's1', controllers: ['127.0.0.1:1'], caFingerprint: 'ab' }, 'ca', {
    keyPem: 'k',
    certPem: 'c',
  });
  api = await startControlApi({
    socketPath: controlSocketPath(dir),
    events: new EventRing(),
    log: silentLogger(),
    status: () => ({
      node: 'n1',
      site: 's1',
      controller: '127.0.0.1:1',
      pid: process.pid,
      startedAt: '2026-12-01T00:00:00.000Z',
      session: { phase: 'disconnected', lastError: 'connect ECONNREFUSED 127.0.0.1:1' },
      proxy: { role: 'off' },
      revision: 9,
      snapshotRevision: 9,
      networks: [{ name: 'red', vni: 4097, localEndpoints: 1, remoteEndpoints: 0 }],
      endpoints: [],
      counters: {},
      health: { ok: false, reasons: ['no session'] },
      gateway: {
        gateway: 'gw1',
        role: 'active' as never, // the role type is the gateway module's; any value renders
        running: true,
        restarts: 0,
        peers: {
          up1: {
            address: '192.0.2.1',
            asn: 65000,
            state: 'start',
            bgpState: 'Active',
            since: '2026-12-03T10:00:00Z',
            imported: 0,
            exported: 0,
          },
        },
        announced: 1,
        bound: [],
        unbound: [],
        updatedAt: '2026-12-03T10:00:00Z',
      },
    }),
  });
});

afterAll(async () => {
  await api.close();
  rmSync(dir, { recursive: true, force: true });
});

function inPty(args: string[], env: Record<string, string>): Promise<{ code: number; out: string }> {
  const base = { ...(process.env as Record<string, string>) };
  delete base.NO_COLOR;
  const term = pty.spawn(TETHER, args, { cols: 160, rows: 50, env: { ...base, TERM: 'xterm', ...env } });
  let out = '';
  term.onData((d) => {
    out += d;
  });
  return new Promise((resolve) => term.onExit((e) => resolve({ code: e.exitCode, out })));
}

describe('field tools in a real pty', () => {
  it('status renders the gateway and its BGP peers; exit 0 with a running daemon', async () => {
    const r = await inPty(['status', '--state-dir', dir], {});
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/gateway\s+gw1 \(active\), BIRD running/);
    expect(r.out).toMatch(/bgp up1\s+192\.0\.2\.1 AS65000 Active since/);
    expect(r.out).toMatch(/network red\s+VNI 4097/);
  }, 30_000);

  it('diag colours verdicts on a TTY, not with NO_COLOR, and exits 7 on a failure', async () => {
    const coloured = await inPty(['diag', '--state-dir', dir, '--timeout', '500'], {});
    expect(coloured.code).toBe(7);
    expect(coloured.out).toContain('\u001b[31mFAIL\u001b[0m');
    expect(coloured.out).toMatch(/session: session disconnected: connect ECONNREFUSED/);
    const plain = await inPty(['diag', '--state-dir', dir, '--timeout', '500'], { NO_COLOR: '1' });
    expect(plain.code).toBe(7);
    expect(plain.out).not.toContain('\u001b[');
    expect(plain.out).toMatch(/^FAIL {2}session/m);
    expect(plain.out).toMatch(/→ /);
  }, 30_000);
});
