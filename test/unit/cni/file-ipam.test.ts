import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isTetherError } from '../../../src/lib/errors.js';
import { siteBlockOf } from '../../../src/node/cni/blocks.js';
import { FileIpam } from '../../../src/node/cni/file-ipam.js';
import type { LocalEndpoint, SiteBlock } from '../../../src/node/cni/registry.js';

let dir: string;
let file: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tether-ipam-'));
  file = join(dir, 'endpoints.json');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const blocks: Record<string, SiteBlock> = {
  // The site's block is the first /29 of the /24: .0 (network) and .1 (gateway) are never used.
  blue: { cidr: '10.1.0.0/29', gateway: '10.1.0.1', prefixLength: 24, mtu: 1450 },
  // A block at the end of the subnet: .255 is the broadcast address.
  red: { cidr: '10.2.0.252/30', gateway: '10.2.0.1', prefixLength: 24, mtu: 1450 },
  // Same addresses as blue, other tenant: overlapping is fine.
  green: { cidr: '10.1.0.0/29', gateway: '10.1.0.1', prefixLength: 24, mtu: 1400 },
};

function make(onChange?: (e: LocalEndpoint[]) => void): FileIpam {
  return new FileIpam({
    file,
    blockFor: (n) => blocks[n],
    onChange,
    now: () => new Date('2026-01-01T00:00:00Z'),
  });
}

const req = (containerId: string, network = 'blue', ifname = 'eth0') => ({
  network,
  containerId,
  ifname,
  hostIfname: `tc${containerId}`.slice(0, 15),
  netns: `/var/run/netns/${containerId}`,
});

describe('FileIpam', () => {
  it('allocates from the site block with the subnet prefix, gateway, mac and mtu', async () => {
    const ipam = make();
    const ep = await ipam.allocate(req('c1'));
    expect(ep).toMatchObject({
      network: 'blue',
      ip: '10.1.0.2',
      address: '10.1.0.2/24',
      prefixLength: 24,
      gateway: '10.1.0.1',
      mtu: 1450,
      block: '10.1.0.0/29',
      state: 'allocated',
      netns: '/var/run/netns/c1',
    });
    expect(ep.mac).toMatch(/^02(:[0-9a-f]{2}){5}$/);
  });

  it('is idempotent per (containerId, ifname)', async () => {
    const ipam = make();
    const a = await ipam.allocate(req('c1'));
    const b = await ipam.allocate(req('c1'));
    expect(b).toEqual(a);
    const c = await ipam.allocate(req('c1', 'blue', 'eth1'));
    expect(c.ip).not.toBe(a.ip);
    await expect(ipam.allocate(req('c1', 'green'))).rejects.toSatisfy((e) =>
      isTetherError(e, 'TETHER_E_CONFLICT'),
    );
  });

  it('never hands out network, broadcast or gateway; exhaustion is a clear error', async () => {
    const ipam = make();
    const ips: string[] = [];
    for (let i = 0; i < 6; i++) ips.push((await ipam.allocate(req(`c${i}`))).ip);
    expect(ips).toEqual(['10.1.0.2', '10.1.0.3', '10.1.0.4', '10.1.0.5', '10.1.0.6', '10.1.0.7']);
    const err = await ipam.allocate(req('c9')).catch((e: unknown) => e);
    expect(isTetherError(err, 'TETHER_E_EXHAUSTED')).toBe(true);
    expect(String((err as Error).message)).toContain('10.1.0.0/29');

    const red: string[] = [];
    for (let i = 0; i < 3; i++) red.push((await ipam.allocate(req(`r${i}`, 'red'))).ip);
    expect(red).toEqual(['10.2.0.252', '10.2.0.253', '10.2.0.254']);
    await expect(ipam.allocate(req('r9', 'red'))).rejects.toSatisfy((e) =>
      isTetherError(e, 'TETHER_E_EXHAUSTED'),
    );
  });

  it('keeps networks apart (overlapping addresses across tenants)', async () => {
    const ipam = make();
    expect((await ipam.allocate(req('c1', 'blue'))).ip).toBe('10.1.0.2');
    const g = await ipam.allocate(req('c2', 'green'));
    expect(g.ip).toBe('10.1.0.2');
    expect(g.mtu).toBe(1400);
  });

  it('unknown network (no block yet) is retryable UNAVAILABLE', async () => {
    await expect(make().allocate(req('c1', 'nope'))).rejects.toSatisfy((e) =>
      isTetherError(e, 'TETHER_E_UNAVAILABLE'),
    );
  });

  it('rejects an invalid block', async () => {
    blocks.bad = { cidr: '10.9.0.0/29', gateway: '10.1.0.1', prefixLength: 24, mtu: 1450 };
    await expect(make().allocate(req('c1', 'bad'))).rejects.toSatisfy((e) =>
      isTetherError(e, 'TETHER_E_STATE'),
    );
  });

  it('release frees the address, is idempotent, and the cursor avoids immediate reuse', async () => {
    const ipam = make();
    const a = await ipam.allocate(req('c1'));
    expect((await ipam.release({ containerId: 'c1', ifname: 'eth0' }))?.ip).toBe(a.ip);
    expect(await ipam.release({ containerId: 'c1', ifname: 'eth0' })).toBeUndefined();
    expect((await ipam.allocate(req('c2'))).ip).toBe('10.1.0.3');
    // wrong network: nothing released
    expect(await ipam.release({ containerId: 'c2', ifname: 'eth0', network: 'green' })).toBeUndefined();
    expect(ipam.get({ containerId: 'c2', ifname: 'eth0' })).toBeDefined();
  });

  it('wraps around the block and reuses released addresses when needed', async () => {
    const ipam = make();
    for (let i = 0; i < 6; i++) await ipam.allocate(req(`c${i}`));
    await ipam.release({ containerId: 'c1', ifname: 'eth0' });
    expect((await ipam.allocate(req('c9'))).ip).toBe('10.1.0.3');
  });

  it('markAttached records the state; unknown attachment is NOT_FOUND', async () => {
    const ipam = make();
    await ipam.allocate(req('c1'));
    const ep = await ipam.markAttached({ containerId: 'c1', ifname: 'eth0' });
    expect(ep.state).toBe('attached');
    expect(ep.attachedAt).toBe('2026-01-01T00:00:00.000Z');
    await expect(ipam.markAttached({ containerId: 'zz', ifname: 'eth0' })).rejects.toSatisfy((e) =>
      isTetherError(e, 'TETHER_E_NOT_FOUND'),
    );
  });

  it('persists before answering: a new instance sees every acknowledged change', async () => {
    const a = make();
    const e1 = await a.allocate(req('c1'));
    await a.allocate(req('c2'));
    await a.markAttached({ containerId: 'c1', ifname: 'eth0' });
    await a.release({ containerId: 'c2', ifname: 'eth0' });
    const b = make();
    expect(b.list()).toEqual([{ ...e1, state: 'attached', attachedAt: '2026-01-01T00:00:00.000Z' }]);
    expect((await b.allocate(req('c1'))).ip).toBe(e1.ip);
    // the cursor survived too: c2's released .3 is not reused at once
    expect((await b.allocate(req('c3'))).ip).toBe('10.1.0.4');
    expect(JSON.parse(readFileSync(file, 'utf8')).version).toBe(1);
  });

  it('a corrupt state file is a STATE error naming the file', () => {
    writeFileSync(file, '{nope');
    try {
      make();
      expect.unreachable();
    } catch (e) {
      expect(isTetherError(e, 'TETHER_E_STATE')).toBe(true);
      expect((e as Error).message).toContain(file);
    }
  });

  it('gc releases endpoints of the network the runtime no longer knows', async () => {
    const ipam = make();
    await ipam.allocate(req('c1'));
    await ipam.allocate(req('c2'));
    await ipam.allocate(req('c3', 'green'));
    const released = await ipam.gc('blue', [{ containerId: 'c1', ifname: 'eth0' }]);
    expect(released.map((e) => e.containerId)).toEqual(['c2']);
    expect(
      ipam
        .list()
        .map((e) => e.containerId)
        .sort(),
    ).toEqual(['c1', 'c3']);
  });

  it('calls onChange after each persisted change', async () => {
    const seen: number[] = [];
    const ipam = make((eps) => seen.push(eps.length));
    await ipam.allocate(req('c1'));
    await ipam.allocate(req('c1')); // idempotent: no change
    await ipam.markAttached({ containerId: 'c1', ifname: 'eth0' });
    await ipam.release({ containerId: 'c1', ifname: 'eth0' });
    expect(seen).toEqual([1, 1, 0]);
  });
});

describe('siteBlockOf', () => {
  const vn = (status: Record<string, unknown>, spec: Record<string, unknown> = {}) => ({
    apiVersion: 'tether.dev/v1',
    kind: 'VirtualNetwork',
    metadata: { name: 'blue' },
    spec: { subnets: ['10.1.0.0/24', '10.9.0.0/16'], ...spec },
    status,
  });
  it('maps status.siteBlocks[site] to a SiteBlock', () => {
    expect(siteBlockOf(vn({ siteBlocks: { east: '10.1.0.64/26' } }), 'east', 1450)).toEqual({
      cidr: '10.1.0.64/26',
      gateway: '10.1.0.1',
      prefixLength: 24,
      mtu: 1450,
    });
    expect(
      siteBlockOf(vn({ siteBlocks: { east: '10.9.4.0/24' } }, { gateway: '10.1.0.254' }), 'east', 1400),
    ).toEqual({
      cidr: '10.9.4.0/24',
      gateway: '10.1.0.254',
      prefixLength: 16,
      mtu: 1400,
    });
  });
  it('is undefined without a block for the site', () => {
    expect(siteBlockOf(vn({ siteBlocks: { west: '10.1.0.0/26' } }), 'east', 1450)).toBeUndefined();
    expect(siteBlockOf(vn({}), 'east', 1450)).toBeUndefined();
    expect(siteBlockOf(undefined, 'east', 1450)).toBeUndefined();
  });
});

describe('FileIpam static addresses (CNI ips / IP=)', () => {
  const code = async (p: Promise<unknown>): Promise<string | undefined> => {
    try {
      await p;
      return undefined;
    } catch (e) {
      return isTetherError(e) ? e.code : String(e);
    }
  };

  it('honours a free address of the block, persisted, without moving the round-robin cursor', async () => {
    const ipam = make();
    const ep = await ipam.allocate({ ...req('s1'), ip: '10.1.0.5', prefixLength: 24 });
    expect(ep).toMatchObject({ ip: '10.1.0.5', address: '10.1.0.5/24' });
    expect(make().get(req('s1'))?.ip).toBe('10.1.0.5');
    expect((await ipam.allocate(req('d1'))).ip).toBe('10.1.0.2');
    // A repeated ADD with the same static address is the same endpoint.
    expect((await ipam.allocate({ ...req('s1'), ip: '10.1.0.5' })).ip).toBe('10.1.0.5');
  });

  it.each([
    ['outside the node block', '10.1.0.9', undefined],
    ['the gateway', '10.1.0.1', undefined],
    ['the subnet network address', '10.1.0.0', undefined],
    ['in another subnet', '192.0.2.5', undefined],
    ['with another prefix length', '10.1.0.5', 16],
    ['not an address', '10.1.0', undefined],
  ])('refuses an address %s with TETHER_E_INVALID naming the block', async (_w, ip, prefixLength) => {
    const ipam = make();
    const r = { ...req('s1'), ip, ...(prefixLength ? { prefixLength } : {}) };
    expect(await code(ipam.allocate(r))).toBe('TETHER_E_INVALID');
    await ipam.allocate(r).catch((e: Error) => expect(e.message).toContain(ip));
    expect(ipam.list()).toEqual([]);
  });

  it('an address another attachment holds is TETHER_E_UNAVAILABLE naming the holder', async () => {
    const ipam = make();
    await ipam.allocate({ ...req('s1'), ip: '10.1.0.5' });
    const e = await ipam.allocate({ ...req('s2'), ip: '10.1.0.5' }).catch((x: Error) => x);
    expect(isTetherError(e) && e.code).toBe('TETHER_E_UNAVAILABLE');
    expect((e as Error).message).toContain('s1/eth0');
  });

  it('a held attachment asked for another address is refused, and keeps its own', async () => {
    const ipam = make();
    await ipam.allocate(req('s1'));
    expect(await code(ipam.allocate({ ...req('s1'), ip: '10.1.0.6' }))).toBe('TETHER_E_INVALID');
    expect(ipam.get(req('s1'))?.ip).toBe('10.1.0.2');
  });

  it('update() persists what the kernel decides (MAC, host namespace) and reports it', async () => {
    const seen: LocalEndpoint[][] = [];
    const ipam = make((e) => seen.push(e));
    await ipam.allocate(req('c1'));
    await ipam.update(req('c1'), { mac: '02:aa:bb:cc:dd:ee', hostNetns: '/var/run/netns/t1-vn4096' });
    expect(make().get(req('c1'))).toMatchObject({
      mac: '02:aa:bb:cc:dd:ee',
      hostNetns: '/var/run/netns/t1-vn4096',
    });
    expect(seen.at(-1)?.[0]?.mac).toBe('02:aa:bb:cc:dd:ee');
    const n = seen.length;
    await ipam.update(req('c1'), { mac: '02:aa:bb:cc:dd:ee' });
    expect(seen.length).toBe(n); // no change, no report
    expect(await code(ipam.update(req('nope'), { mac: '02:00:00:00:00:09' }))).toBe('TETHER_E_NOT_FOUND');
  });
});
