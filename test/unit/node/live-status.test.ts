import { describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import type { NodeStatusFile } from '../../../src/node/agent/daemon.js';
import { EventRing } from '../../../src/node/control-api.js';
import { eventFromLogLine, liveStatus } from '../../../src/node/live-status.js';

const ep = (name: string, node: string, ip: string): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind: 'Endpoint',
  metadata: { name },
  spec: { network: 'red', node, ip, mac: '02:00:00:00:00:01' },
});

const agent: NodeStatusFile = {
  pid: 1,
  node: 'n1',
  site: 's1',
  controller: 'c:7443',
  controllers: ['c:7443'],
  startedAt: 't0',
  updatedAt: 't1',
  session: {
    phase: 'connected',
    since: 't0',
    revision: 7,
    reconnects: 2,
    certNotAfter: 'x',
    upstream: 'proxy 10.0.0.2:7444',
  },
  cache: { revision: 7, snapshotRevision: 5, objects: 3 },
  certNotAfter: 'x',
  health: { ok: true, state: 'ok', reasons: [] },
  reconcile: { passes: 4 },
} as NodeStatusFile;

describe('live status', () => {
  it('labels endpoints by origin with the desired-state precedence and counts them per network', () => {
    const vn: TetherObject = {
      apiVersion: 'tether.dev/v1',
      kind: 'VirtualNetwork',
      metadata: { name: 'red' },
      spec: {},
      status: { vni: 4096 },
    };
    const s = liveStatus({
      agent,
      proxy: {
        active: false,
        leader: { node: 'n2', address: '10.0.0.2:7444' },
        revision: 0,
        agents: 0,
        siteLocal: 0,
      },
      slice: [vn, ep('n1.a', 'n1', '10.1.0.2'), ep('n2.b', 'n2', '10.1.0.3')],
      siteLocal: [ep('n2.b', 'n2', '10.1.0.3'), ep('n3.c', 'n3', '10.1.0.4')],
      local: [ep('n1.a', 'n1', '10.1.0.2')],
      counters: {},
    });
    expect(s.endpoints.map((e) => [e.name, e.origin])).toEqual([
      ['n1.a', 'local'],
      ['n2.b', 'slice'],
      ['n3.c', 'site-local'],
    ]);
    expect(s.networks).toEqual([{ name: 'red', vni: 4096, localEndpoints: 1, remoteEndpoints: 2 }]);
    expect(s.proxy).toEqual({ role: 'standby', activeNode: 'n2' });
    expect(s.session.upstream).toEqual({ kind: 'proxy', address: '10.0.0.2:7444' });
  });

  it('says "off" without a proxy role', () => {
    const s = liveStatus({ agent, proxy: undefined, slice: [], siteLocal: [], local: [], counters: {} });
    expect(s.proxy.role).toBe('off');
  });

  it('keeps warnings, errors and event lines in the ring, nothing else, and never throws on junk', () => {
    const ring = new EventRing(10);
    eventFromLogLine(ring, '{"level":30,"msg":"routine"}\n');
    eventFromLogLine(ring, '{"level":30,"event":"drift_repaired","msg":"fixed","changes":2}\n');
    eventFromLogLine(ring, '{"level":50,"msg":"boom","err":"x"}\n');
    for (const junk of ['', '{', '"level":50 not json', `{"level":40,"msg":"${'x'.repeat(20000)}"}`])
      eventFromLogLine(ring, junk);
    const evs = ring.since(0).events;
    expect(evs.map((e) => e.type)).toEqual(['drift_repaired', 'error']);
    expect(evs[0]!.fields).toEqual({ changes: 2 });
  });
});
