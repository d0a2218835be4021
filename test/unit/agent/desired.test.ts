// Desired state from the slice, the SiteLocal set and the node's own endpoints.

import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import { silentLogger } from '../../../src/lib/log.js';
import { SiteLocalSet } from '../../../src/node/agent/site-local.js';
import { StateCache } from '../../../src/node/cache.js';
import { desiredObjects, NodeNetworking } from '../../../src/node/networking.js';
import { desiredFromResources } from '../../../src/node/vrouter/resources.js';
import { tempDir } from './support.js';

const vn: TetherObject = {
  apiVersion: 'tether.dev/v1',
  kind: 'VirtualNetwork',
  metadata: { name: 'red' },
  spec: { subnets: ['10.1.0.0/24'] },
  status: { vni: 4096 },
};
const ep = (
  name: string,
  node: string,
  ip: string,
  mac: string,
  extra: Record<string, unknown> = {},
): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind: 'Endpoint',
  metadata: { name },
  spec: { network: 'red', node, site: 'a', ip, mac, vtep: `192.0.2.${ip.split('.')[3]}`, ...extra },
});

function remote(objects: TetherObject[]) {
  const d = desiredFromResources({
    nodeName: 'n1',
    site: 'a',
    objects,
    underlay: { ifname: 'ul0', vtepIp: '192.0.2.1', mtu: 1500 },
    netnsPrefix: 't1',
  });
  return d.networks[0]!.remoteEndpoints.map((e) => `${e.id}@${e.ip}/${e.mac}`).sort();
}

describe('desiredObjects', () => {
  it('forwards to SiteLocal endpoints like slice endpoints', () => {
    const objs = desiredObjects({
      node: 'n1',
      slice: [vn, ep('n3.x', 'n3', '10.1.0.30', '02:00:00:00:00:30')],
      siteLocal: [ep('n2.w', 'n2', '10.1.0.20', '02:00:00:00:00:20')],
      local: [],
    });
    expect(remote(objs)).toEqual(['n2.w@10.1.0.20/02:00:00:00:00:20', 'n3.x@10.1.0.30/02:00:00:00:00:30']);
  });

  it('a slice Endpoint wins over a SiteLocal one by name, by IP and by MAC in the same network', () => {
    const objs = desiredObjects({
      node: 'n1',
      slice: [
        vn,
        ep('n2.w', 'n2', '10.1.0.21', '02:00:00:00:00:21'),
        ep('n4.y', 'n4', '10.1.0.40', '02:00:00:00:00:40'),
      ],
      siteLocal: [
        ep('n2.w', 'n2', '10.1.0.20', '02:00:00:00:00:20'), // same name: slice copy wins
        ep('n5.ip', 'n5', '10.1.0.40', '02:00:00:00:00:50'), // IP held in the slice
        ep('n5.mac', 'n5', '10.1.0.51', '02:00:00:00:00:40'), // MAC held in the slice
        ep('n5.ok', 'n5', '10.1.0.52', '02:00:00:00:00:52'),
      ],
      local: [],
    });
    expect(remote(objs)).toEqual([
      'n2.w@10.1.0.21/02:00:00:00:00:21',
      'n4.y@10.1.0.40/02:00:00:00:00:40',
      'n5.ok@10.1.0.52/02:00:00:00:00:52',
    ]);
  });

  it('a node the SiteLocal set speaks for is forwarded to as it reported itself at the site: re-addressed, added, deleted', () => {
    const objs = desiredObjects({
      node: 'n1',
      slice: [
        vn,
        ep('n2.w', 'n2', '10.1.0.18', '02:00:00:00:00:20'), // re-addressed at the site
        ep('n2.gone', 'n2', '10.1.0.19', '02:00:00:00:00:19'), // deleted at the site
        ep('n3.x', 'n3', '10.1.0.30', '02:00:00:00:00:30'), // another node: slice stands
      ],
      siteLocal: [
        ep('n2.w', 'n2', '10.1.0.20', '02:00:00:00:00:20'),
        ep('n2.new', 'n2', '10.1.0.21', '02:00:00:00:00:21'),
      ],
      siteLocalNodes: ['n2', 'n1'],
      local: [],
    });
    expect(remote(objs)).toEqual([
      'n2.new@10.1.0.21/02:00:00:00:00:21',
      'n2.w@10.1.0.20/02:00:00:00:00:20',
      'n3.x@10.1.0.30/02:00:00:00:00:30',
    ]);
  });

  it("the node's own endpoints always win: over the slice's echo and over SiteLocal claims", () => {
    const own = ep('n1.me', 'n1', '10.1.0.10', '02:00:00:00:00:10', { hostIfname: 'veth-me' });
    const objs = desiredObjects({
      node: 'n1',
      slice: [vn, ep('n1.me', 'n1', '10.1.0.99', '02:00:00:00:00:99', { hostIfname: 'old' })],
      siteLocal: [
        ep('n1.fake', 'n1', '10.1.0.11', '02:00:00:00:00:11'), // names this node: ignored
        ep('n2.clash', 'n2', '10.1.0.10', '02:00:00:00:00:12'), // our IP
      ],
      local: [own],
    });
    const d = desiredFromResources({
      nodeName: 'n1',
      site: 'a',
      objects: objs,
      underlay: { ifname: 'ul0', vtepIp: '192.0.2.1', mtu: 1500 },
      netnsPrefix: 't1',
    });
    expect(d.networks[0]!.localEndpoints.map((e) => `${e.id}@${e.ip}`)).toEqual(['me@10.1.0.10']);
    expect(d.networks[0]!.remoteEndpoints).toEqual([]);
  });
});

describe('NodeNetworking desired state with a SiteLocal set restored from disk', () => {
  it('a restarted node forwards to the SiteLocal endpoints it persisted, with no upstream', () => {
    const t = tempDir('tether-desired-');
    try {
      const cache = new StateCache(join(t.dir, 'cache.json'));
      cache.replace(3, [vn]);
      // Before the "reboot": the proxy's set is written.
      new SiteLocalSet(join(t.dir, 'site-local.json')).replace(1, [
        ep('n2.w', 'n2', '10.1.0.20', '02:00:00:00:00:20'),
      ]);
      // After it: everything is read back from disk.
      const restored = new SiteLocalSet(join(t.dir, 'site-local.json'));
      const net = new NodeNetworking({
        stateDir: t.dir,
        node: 'n1',
        site: 'a',
        underlay: { ifname: 'ul0', vtepIp: '192.0.2.1', mtu: 1500 },
        netnsPrefix: 't1',
        cniSocket: join(t.dir, 'cni.sock'),
        runner: {
          run: async () => {
            throw new Error('no kernel in this test');
          },
        },
        log: silentLogger(),
        siteLocal: () => restored.list(),
      });
      const d = net.desired(new StateCache(join(t.dir, 'cache.json')));
      expect(d.networks[0]!.remoteEndpoints.map((e) => `${e.id}@${e.vtep}`)).toEqual(['n2.w@192.0.2.20']);
    } finally {
      t.cleanup();
    }
  });
});
