import { describe, expect, it } from 'vitest';
import { planWan } from '../../../src/node/bootstrap/wan.js';

describe('static WAN plan (bootstrap.yaml wan:)', () => {
  it('by MAC: the networkd file matches the MAC, the commands the resolved name', () => {
    const p = planWan(
      { mac: '52:54:00:AB:cd:01', address: '10.0.2.15/24', gateway: '10.0.2.2', dns: ['10.0.2.3'] },
      'enp0s2',
    );
    expect(p.commands).toEqual([
      ['link', 'set', 'enp0s2', 'up'],
      ['addr', 'replace', '10.0.2.15/24', 'dev', 'enp0s2'],
      ['route', 'replace', 'default', 'via', '10.0.2.2', 'dev', 'enp0s2'],
    ]);
    expect(p.networkFile).toContain('[Match]\nMACAddress=52:54:00:ab:cd:01\n');
    expect(p.networkFile).toContain(
      '[Network]\nDHCP=no\nAddress=10.0.2.15/24\nGateway=10.0.2.2\nDNS=10.0.2.3\n',
    );
    expect(p.resolvConf).toMatch(/\nnameserver 10\.0\.2\.3\n$/);
  });

  it('by name, no gateway, no DNS: an address only, and no resolver file', () => {
    const p = planWan({ interface: 'eno1', address: '198.51.100.10/24' }, 'eno1');
    expect(p.commands).toEqual([
      ['link', 'set', 'eno1', 'up'],
      ['addr', 'replace', '198.51.100.10/24', 'dev', 'eno1'],
    ]);
    expect(p.networkFile).toContain('[Match]\nName=eno1\n');
    expect(p.networkFile).not.toMatch(/Gateway=|DNS=/);
    expect(p.resolvConf).toBeUndefined();
  });
});
