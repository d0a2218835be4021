import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseRules, parseTableRoutes } from '../../../src/kernel/iproute2.js';
import { renderIpLines } from '../../../src/kernel/render.js';

describe('policy routing read-back and rendering (the floating IP return path)', () => {
  it('reads fwmark rules and numbered-table routes as iproute2 6.1 prints them', () => {
    // `ip -j rule show` / `ip -j route show table all proto 183` of a return path.
    const rules = JSON.parse(
      '[{"priority":0,"src":"all","table":"local"},{"priority":7400,"src":"all","fwmark":"0x74670001","table":"746701"},{"priority":7401,"src":"all","fwmark":"0x74670002/0xffffffff","table":"746702"},{"priority":32766,"src":"all","table":"main"}]',
    );
    expect(parseRules(rules)).toEqual([
      { priority: 7400, fwmark: 0x74670001, table: 746701 },
      { priority: 7401, fwmark: 0x74670002, table: 746702 },
    ]);
    const routes = JSON.parse(
      '[{"dst":"default","gateway":"169.254.116.1","dev":"tbr0","table":"746701","flags":["onlink"]},{"dst":"10.1.0.0/24","dev":"tbr0"}]',
    );
    expect(parseTableRoutes(routes)).toEqual([
      { dst: 'default', via: '169.254.116.1', dev: 'tbr0', table: 746701, onlink: true },
    ]);
  });
  it('renders what it reads back', () => {
    expect(
      renderIpLines({ op: 'rule-add', netns: 'x', priority: 7400, fwmark: 0x74670001, table: 746701 }),
    ).toEqual(['rule add priority 7400 fwmark 0x74670001 table 746701']);
    expect(
      renderIpLines({
        op: 'route-replace',
        netns: 'x',
        dst: 'default',
        via: '169.254.116.1',
        dev: 'tbr0',
        onlink: true,
        table: 746701,
      }),
    ).toEqual(['route replace default via 169.254.116.1 dev tbr0 onlink table 746701 proto 183']);
  });
  it('fuzz: arbitrary JSON never throws and yields only well-formed entries', () => {
    const entry = fc.dictionary(
      fc.constantFrom('priority', 'fwmark', 'table', 'dst', 'dev', 'gateway', 'flags'),
      fc.oneof(
        fc.string({ maxLength: 12 }),
        fc.integer(),
        fc.constant(null),
        fc.array(fc.string(), { maxLength: 3 }),
      ),
    );
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 20 }), (arr) => {
        // biome-ignore lint/suspicious/noExplicitAny: the point is input of any shape
        const rules = parseRules(arr as any);
        for (const r of rules)
          expect(Number.isSafeInteger(r.fwmark) && Number.isSafeInteger(r.table)).toBe(true);
        // biome-ignore lint/suspicious/noExplicitAny: as above
        for (const r of parseTableRoutes(arr as any)) expect(Number.isSafeInteger(r.table)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});
