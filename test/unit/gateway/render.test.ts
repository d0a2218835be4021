import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type BirdConfig, renderBirdConfig } from '../../../src/bgp/render.js';

const base: BirdConfig = {
  routerId: '10.99.0.2',
  localAsn: 65001,
  peers: [
    {
      name: 'r1',
      address: '10.99.0.1',
      asn: 65000,
      holdSeconds: 90,
      keepaliveSeconds: 30,
      bfd: { intervalMs: 300, multiplier: 3 },
    },
  ],
  announce: ['198.51.100.0/24', '203.0.113.5/32'],
  acceptDefaultRoute: true,
  gracefulRestartSeconds: 120,
  llgrStaleSeconds: 3600,
};

describe('bird.conf rendering', () => {
  it('matches the golden file (GR 120 s, LLGR stale time, BFD 300 ms x 3, default route to the kernel)', () => {
    expect(renderBirdConfig(base)).toBe(readFileSync(new URL('golden/bird.conf', import.meta.url), 'utf8'));
  });

  it('is the same text whatever the order of peers and prefixes, and duplicates collapse', () => {
    const p2 = { name: 'r2', address: '10.99.0.3', asn: 65000, holdSeconds: 9, keepaliveSeconds: 3 };
    const a = renderBirdConfig({
      ...base,
      peers: [base.peers[0]!, p2],
      announce: ['203.0.113.5/32', '198.51.100.0/24'],
    });
    const b = renderBirdConfig({
      ...base,
      peers: [p2, base.peers[0]!],
      announce: ['198.51.100.0/24', '203.0.113.5/32', '198.51.100.0/24'],
    });
    expect(a).toBe(b);
  });

  it('LLGR off at stale time 0; no BFD protocol without a BFD peer; no default route unless accepted', () => {
    const t = renderBirdConfig({
      ...base,
      llgrStaleSeconds: 0,
      acceptDefaultRoute: false,
      peers: [{ ...base.peers[0]!, bfd: undefined as never }],
    });
    expect(t).not.toMatch(/long lived/);
    expect(t).not.toMatch(/protocol bfd|bfd \{/);
    expect(t).toMatch(/export none;/);
  });

  it.each([
    ['routerId', { routerId: '1.2.3.4; protocol x {}' }],
    ['peer name', { peers: [{ ...base.peers[0]!, name: 'r1 { }' }] }],
    ['peer address', { peers: [{ ...base.peers[0]!, address: '10.0.0.1 as 1; }' }] }],
    ['prefix', { announce: ['10.0.0.0/8 blackhole; }'] }],
    ['number', { localAsn: Number.NaN }],
  ])('refuses an unsafe %s instead of writing it into the config', (_w, over) => {
    expect(() => renderBirdConfig({ ...base, ...(over as Partial<BirdConfig>) })).toThrow(/unsafe/);
  });
});
