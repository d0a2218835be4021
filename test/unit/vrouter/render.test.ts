import { describe, expect, it } from 'vitest';
import { parseBatchErrors, parseFdb, parseLinks, parseNftRuleset } from '../../../src/kernel/iproute2.js';
import { renderIpLines, renderNftScript } from '../../../src/kernel/render.js';
import type { KernelOp } from '../../../src/kernel/types.js';
import { toBatches } from '../../../src/kernel/types.js';

describe('rendering ops to ip/bridge batch lines', () => {
  const table: [KernelOp, string[]][] = [
    [
      {
        op: 'vxlan-add',
        netns: 'n',
        name: 'tvx7',
        vni: 7,
        local: '192.168.0.1',
        dev: 'ul0',
        dstport: 4789,
        mtu: 1450,
      },
      ['link add tvx7 mtu 1450 type vxlan id 7 local 192.168.0.1 dev ul0 dstport 4789 nolearning proxy'],
    ],
    [
      { op: 'veth-add', netns: 'n', name: 'tbo7', peer: 'tbo0', peerNetns: 't1-vn7', mtu: 1450 },
      ['link add tbo7 mtu 1450 type veth peer name tbo0 mtu 1450 netns t1-vn7'],
    ],
    [
      { op: 'link-set', netns: 'v', name: 'tvx7', mtu: 1450, master: 'tbr0', up: true, learning: false },
      ['link set dev tvx7 mtu 1450 master tbr0 up', 'link set dev tvx7 type bridge_slave learning off'],
    ],
    [
      { op: 'route-replace', netns: 'v', dst: 'default', via: '198.18.0.14', dev: 'tbo0' },
      ['route replace default via 198.18.0.14 dev tbo0 proto 183'],
    ],
    [
      { op: 'neigh-replace', netns: 'v', dev: 'tvx7', ip: '10.1.0.2', mac: '02:00:00:00:00:02' },
      ['neigh replace 10.1.0.2 lladdr 02:00:00:00:00:02 dev tvx7 nud permanent'],
    ],
    [
      {
        op: 'fdb-replace',
        netns: 'v',
        dev: 'tvx7',
        mac: '02:00:00:00:00:02',
        target: 'self',
        dst: '192.168.0.2',
      },
      ['fdb replace 02:00:00:00:00:02 dev tvx7 dst 192.168.0.2 self permanent'],
    ],
    [
      { op: 'fdb-replace', netns: 'v', dev: 'tvx7', mac: '02:00:00:00:00:02', target: 'master' },
      ['fdb replace 02:00:00:00:00:02 dev tvx7 master static'],
    ],
    [
      { op: 'fdb-del', netns: 'v', dev: 'tvx7', mac: '02:00:00:00:00:02', target: 'master' },
      ['fdb del 02:00:00:00:00:02 dev tvx7 master'],
    ],
  ];
  for (const [op, lines] of table) it(op.op, () => expect(renderIpLines(op)).toEqual(lines));

  it('renders an nft table replacement as one atomic file with its fingerprint', () => {
    const s = renderNftScript([
      {
        op: 'nft-table',
        netns: 'v',
        table: {
          family: 'bridge',
          name: 'tether_policy',
          fingerprint: 'abc',
          counters: ['p0r0'],
          sets: [{ name: 'p0r0_from', type: 'ipv4_addr', elements: ['10.1.0.2'] }],
          chains: [
            {
              name: 'forward',
              base: { type: 'filter', hook: 'forward', priority: 0 },
              rules: ['ether type ip counter name "p0r0" drop'],
            },
          ],
        },
      },
    ]);
    expect(s).toBe(
      [
        'table bridge tether_policy',
        'delete table bridge tether_policy',
        'table bridge tether_policy {',
        '  counter p0r0 { }',
        '  set p0r0_from { type ipv4_addr; elements = { 10.1.0.2 }; }',
        '  chain fingerprint {',
        '    counter comment "tether-fp:abc"',
        '  }',
        '  chain forward {',
        '    type filter hook forward priority 0; policy accept;',
        '    ether type ip counter name "p0r0" drop',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
  });
});

describe('parsing kernel output', () => {
  it('maps `Command failed -:N` back to the op that produced line N', () => {
    const ops: KernelOp[] = [
      { op: 'link-set', netns: 'v', name: 'x', up: true, learning: false },
      { op: 'neigh-del', netns: 'v', dev: 'x', ip: '10.0.0.1' },
    ];
    const stderr = 'RTNETLINK answers: No such file or directory\nCommand failed -:3\n';
    expect(parseBatchErrors(stderr, [0, 0, 1], ops)).toEqual([
      { index: 1, op: ops[1], message: 'RTNETLINK answers: No such file or directory' },
    ]);
  });

  it('reads vxlan details and bridge-port learning from `ip -d -j addr`', () => {
    const links = parseLinks([
      {
        ifname: 'tvx9',
        flags: ['BROADCAST', 'UP'],
        mtu: 1450,
        address: 'b2:7e:38:4a:31:66',
        master: 'tbr0',
        linkinfo: {
          info_kind: 'vxlan',
          info_data: { id: 9, local: '192.168.0.1', port: 4789, learning: false, proxy: true },
          info_slave_kind: 'bridge',
          info_slave_data: { learning: false },
        },
        addr_info: [{ family: 'inet6', local: 'fe80::1', prefixlen: 64, scope: 'link' }],
      },
    ]);
    expect(links).toEqual([
      {
        name: 'tvx9',
        kind: 'vxlan',
        mtu: 1450,
        mac: 'b2:7e:38:4a:31:66',
        up: true,
        master: 'tbr0',
        learning: false,
        vxlan: { vni: 9, local: '192.168.0.1', port: 4789, learning: false, proxy: true },
        addrs: [],
      },
    ]);
  });

  it('keeps only static bridge entries and self entries with a destination from `bridge -j fdb`', () => {
    expect(
      parseFdb([
        { mac: '02:00:00:00:00:01', ifname: 'tvx9', master: 'tbr0', state: 'static' },
        { mac: 'b2:7e:38:4a:31:66', ifname: 'tvx9', master: 'tbr0', state: 'permanent' },
        { mac: '02:00:00:00:00:01', ifname: 'tvx9', dst: '10.0.0.2', state: 'permanent' },
        { mac: '33:33:00:00:00:01', ifname: 'tbr0', state: 'permanent' },
        { mac: '02:00:00:00:00:99', ifname: 'h1', master: 'tbr0' },
      ]),
    ).toEqual([
      { dev: 'tvx9', mac: '02:00:00:00:00:01', target: 'master' },
      { dev: 'tvx9', mac: '02:00:00:00:00:01', target: 'self', dst: '10.0.0.2' },
    ]);
  });

  it('reads sets, counters and the fingerprint of wanted tables only from `nft -j list ruleset`', () => {
    const json = {
      nftables: [
        { metainfo: { version: '1.0.6' } },
        { table: { family: 'bridge', name: 'tether_policy', handle: 1 } },
        { table: { family: 'ip', name: 'foreign', handle: 2 } },
        { counter: { family: 'bridge', name: 'p0r0', table: 'tether_policy', packets: 3, bytes: 252 } },
        {
          set: { family: 'bridge', name: 's', table: 'tether_policy', type: 'ipv4_addr', elem: ['10.0.0.1'] },
        },
        { set: { family: 'ip', name: 's', table: 'foreign', type: 'ipv4_addr', elem: ['1.1.1.1'] } },
        {
          rule: { family: 'bridge', table: 'tether_policy', chain: 'fingerprint', comment: 'tether-fp:abc' },
        },
      ],
    };
    expect(
      parseNftRuleset(json as unknown as Parameters<typeof parseNftRuleset>[0], [
        { family: 'bridge', name: 'tether_policy' },
      ]),
    ).toEqual([
      {
        family: 'bridge',
        name: 'tether_policy',
        fingerprint: 'abc',
        sets: { s: ['10.0.0.1'] },
        counters: { p0r0: { packets: 3, bytes: 252 } },
      },
    ]);
  });

  it('groups consecutive ops of one tool and namespace into batches', () => {
    const b = toBatches([
      { op: 'netns-add', name: 'a' },
      { op: 'neigh-del', netns: 'a', dev: 'x', ip: '1.1.1.1' },
      { op: 'neigh-del', netns: 'a', dev: 'x', ip: '1.1.1.2' },
      { op: 'fdb-del', netns: 'a', dev: 'x', mac: '02:00:00:00:00:01', target: 'master' },
      { op: 'neigh-del', netns: 'a', dev: 'x', ip: '1.1.1.3' },
    ]);
    expect(b.map((x) => `${x.tool}@${x.netns ?? '-'}:${x.ops.length}`)).toEqual([
      'ip@-:1',
      'ip@a:2',
      'bridge@a:1',
      'ip@a:1',
    ]);
  });
});
