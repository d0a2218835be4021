// The clock, VTEP and profile checks of `tether diag` on plain inputs: the control API's view
// as values, a scripted ping (the real one runs in test/e2e/lab-diag.test.ts) and the fake
// kernel's sysfs fixtures for the profile.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RunOptions, RunResult } from '../../../src/lib/exec.js';
import type { NodeLiveStatus } from '../../../src/node/control-api.js';
import { clockCheck, profileCheck, vtepChecks } from '../../../src/node/support/diag-net.js';
import { applyProfile } from '../../../src/profiles/apply.js';
import { machine, profile } from '../../fixtures/hw/scenario.js';

const rtt = (offsetMs: number, offsetErrorMs = 10) => ({
  srttMs: 20,
  lastRttMs: 20,
  offsetMs,
  offsetErrorMs,
  samples: 5,
  at: 't',
});
const live = (over: Partial<NodeLiveStatus>): NodeLiveStatus =>
  ({
    node: 'n1',
    site: 's1',
    controller: 'c:7443',
    pid: 1,
    startedAt: 't',
    session: { phase: 'connected', upstream: { kind: 'controller', address: 'c:7443' } },
    proxy: { role: 'off' },
    revision: 1,
    snapshotRevision: 1,
    networks: [],
    endpoints: [],
    counters: {},
    health: { ok: true, reasons: [] },
    ...over,
  }) as NodeLiveStatus;

describe('clock check', () => {
  it('passes, warns and fails on the controller offset beyond its error bound', () => {
    expect(clockCheck(live({ wan: { via: 'session', rtt: rtt(300) } })).verdict).toBe('pass');
    const w = clockCheck(live({ wan: { via: 'session', rtt: rtt(5000) } }));
    expect(w).toMatchObject({
      verdict: 'warn',
      detail: expect.stringMatching(/5\.0 s behind the controller/),
    });
    expect(w.remedy).toMatch(/chronyc/);
    const f = clockCheck(live({ wan: { via: 'proxy', rtt: rtt(-120_000) } }));
    expect(f).toMatchObject({
      verdict: 'fail',
      detail: expect.stringMatching(/120\.0 s ahead of the controller/),
    });
    // 1.5 s with ±1 s of uncertainty is not surely over the 1 s bound.
    expect(clockCheck(live({ wan: { via: 'session', rtt: rtt(1500, 1000) } })).verdict).toBe('pass');
  });
  it('through a site proxy it says the offset is against the proxy node; without echoes it says why', () => {
    const c = clockCheck(
      live({
        session: { phase: 'connected', upstream: { kind: 'proxy', address: 'p', node: 'n2' }, rtt: rtt(0) },
      }),
    );
    expect(c).toMatchObject({ verdict: 'pass', detail: expect.stringMatching(/site proxy on n2/) });
    expect(clockCheck(undefined)).toMatchObject({
      verdict: 'warn',
      detail: expect.stringMatching(/not answering/),
    });
    expect(clockCheck(live({}))).toMatchObject({
      verdict: 'warn',
      detail: expect.stringMatching(/no heartbeat echo/),
    });
  });
});

describe('VTEP checks', () => {
  const vtep = {
    ip: '10.201.0.11',
    ifname: 'lan0',
    mtu: 1500,
    vxlanPort: 4789,
    peers: [
      { vtep: '10.202.0.11', node: 's2n1', site: 's2', networks: ['red'] },
      { vtep: '10.203.0.11', node: 's3n1', site: 's3', networks: ['blue'] },
      { vtep: '10.204.0.11', node: 's4n1', site: 's4', networks: ['red'] },
      { vtep: '; rm -rf /', node: 'evil', networks: [] },
    ],
  };
  const ok = (n: number) => `2 packets transmitted, ${n} received`;
  it('names an unreachable peer, a lower path MTU (reported or bisected) and passes a clean path', async () => {
    const calls: string[][] = [];
    const runner = {
      run: async (cmd: string, args: readonly string[], _o?: RunOptions): Promise<RunResult> => {
        calls.push([cmd, ...args]);
        const peer = args[args.length - 1] as string;
        const si = args.indexOf('-s');
        const size = si >= 0 ? Number(args[si + 1]) : 56;
        if (peer === '10.203.0.11') return { code: 1, stdout: ok(0), stderr: '' };
        if (peer === '10.202.0.11' && size + 28 > 1400)
          return {
            code: 1,
            stdout: `From 10.201.0.1 icmp_seq=1 Frag needed and DF set (mtu = 1400)\n${ok(0)}`,
            stderr: '',
          };
        if (peer === '10.204.0.11' && size + 28 > 1300) return { code: 1, stdout: ok(0), stderr: '' };
        return { code: 0, stdout: ok(2), stderr: '' };
      },
    };
    const c = await vtepChecks(live({ vtep }), runner, 1000);
    expect(c.map((x) => [x.name, x.verdict])).toEqual([
      ['vtep s2n1', 'fail'],
      ['vtep s3n1', 'fail'],
      ['vtep s4n1', 'fail'],
    ]);
    expect(c[0]?.detail).toMatch(
      /path MTU to 10\.202\.0\.11 of s2n1 \(site s2\) is 1400, below the underlay MTU 1500/,
    );
    expect(c[0]?.remedy).toMatch(/underlayMtu to 1400/);
    expect(c[1]?.detail).toMatch(/does not answer/);
    expect(c[1]?.remedy).toMatch(/UDP 4789/);
    expect(c[2]?.detail).toMatch(/is 1300,/); // bisected
    // Only addresses that are IPv4 literals reach ping, always with DF for the size probes.
    expect(calls.every((a) => a[0] === 'ping' && !a.includes('; rm -rf /'))).toBe(true);
    expect(calls.filter((a) => a.includes('-s')).every((a) => a.includes('do'))).toBe(true);
    const clean = await vtepChecks(
      live({ vtep: { ...vtep, peers: [vtep.peers[0]!] } }),
      {
        run: async () => ({ code: 0, stdout: ok(2), stderr: '' }),
      },
      1000,
    );
    expect(clean).toEqual([
      {
        name: 'vtep s2n1',
        verdict: 'pass',
        detail: expect.stringMatching(/1500-byte packets with DF pass \(overlay MTU 1450\)/),
      },
    ]);
    expect(await vtepChecks(live({}), runner, 1000)).toEqual([]);
  });
});

describe('VTEP checks on whatever ping prints (fuzz)', () => {
  it('never throws, always one verdict per peer with a remedy on failure', async () => {
    const vtep = {
      ip: '10.201.0.11',
      ifname: 'lan0',
      mtu: 1500,
      vxlanPort: 4789,
      peers: [{ vtep: '10.202.0.11', node: 's2n1', networks: ['red'] }],
    };
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.integer({ min: -1, max: 2 }), fc.string({ maxLength: 300 })), {
          minLength: 1,
          maxLength: 16,
        }),
        async (answers) => {
          let i = 0;
          const runner = {
            run: async (): Promise<RunResult> => {
              const [code, stdout] = answers[i++ % answers.length] as [number, string];
              return { code, stdout, stderr: '' };
            },
          };
          const c = await vtepChecks(live({ vtep }), runner, 100);
          expect(c).toHaveLength(1);
          expect(['pass', 'fail']).toContain(c[0]?.verdict);
          if (c[0]?.verdict === 'fail') expect(c[0].remedy).toBeTruthy();
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('profile check', () => {
  it('pass with no profile, warn on a pending reboot, pass when converged, fail on drift', async () => {
    const k = machine('du-e810');
    expect(await profileCheck(k, k.runner)).toMatchObject({
      verdict: 'pass',
      detail: 'no profile applied on this node',
    });
    const du = profile('du');
    await applyProfile(du, { fs: k, runner: k.runner });
    expect(await profileCheck(k, k.runner)).toMatchObject({
      verdict: 'warn',
      detail: expect.stringMatching(/reboot pending/),
    });
    k.reboot();
    expect(await profileCheck(k, k.runner)).toMatchObject({
      verdict: 'warn',
      remedy: expect.stringMatching(/tether profile apply du/),
    });
    await applyProfile(du, { fs: k, runner: k.runner });
    expect(await profileCheck(k, k.runner)).toMatchObject({ verdict: 'pass' });
    await k.writeAttr('/sys/bus/pci/devices/0000:51:00.0/sriov_numvfs', '0');
    const d = await profileCheck(k, k.runner);
    expect(d).toMatchObject({ verdict: 'fail', detail: expect.stringMatching(/profile du drifted/) });
    expect(d.remedy).toMatch(/tether profile apply du/);
  });
});
