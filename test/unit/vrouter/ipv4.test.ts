import { describe, expect, it } from 'vitest';
import { cidrContains, formatCidr, formatIp, isMac, parseCidr, parseIp } from '../../../src/lib/ipv4.js';

describe('ipv4 helpers', () => {
  it.each([
    ['10.1.0.1', 0x0a010001],
    ['255.255.255.255', 0xffffffff],
    ['0.0.0.0', 0],
  ])('parses %s', (s, n) => expect(parseIp(s)).toBe(n));
  it.each([
    '',
    '10.1.0',
    '10.1.0.1.2',
    '256.0.0.1',
    '1..2.3',
    '1.2.3.4 ',
    'a.b.c.d',
    '1234.1.1.1',
    '.1.2.3',
    '1.2.3.',
  ])('rejects %j', (s) => expect(parseIp(s)).toBeUndefined());
  it('round-trips and handles CIDRs', () => {
    expect(formatIp(parseIp('192.168.77.2')!)).toBe('192.168.77.2');
    const c = parseCidr('10.1.0.77/24')!;
    expect(formatCidr(c)).toBe('10.1.0.0/24');
    expect(cidrContains(c, parseIp('10.1.0.200')!)).toBe(true);
    expect(cidrContains(c, parseIp('10.1.1.1')!)).toBe(false);
    expect(parseCidr('10.1.0.0/33')).toBeUndefined();
    expect(formatCidr(parseCidr('0.0.0.0/0')!)).toBe('0.0.0.0/0');
  });
  it('checks lower-case MACs', () => {
    expect(isMac('02:00:00:00:00:0a')).toBe(true);
    expect(isMac('02:00:00:00:00:0A')).toBe(false);
  });
});
