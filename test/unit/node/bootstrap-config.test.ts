// bootstrap.yaml: the published schema is the one the code uses; bad files get
// file:line:field errors like resources and profiles; size is bounded before parsing; the
// DHCP option decoders and the first-boot report checks hold on any input (fast-check).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { fromReport, toReport } from '../../../src/api/firstboot.js';
import { describeError, isTetherError } from '../../../src/lib/errors.js';
import { BOOTSTRAP_SCHEMA, MAX_BOOTSTRAP_BYTES, parseBootstrap } from '../../../src/node/bootstrap/config.js';
import { configFromUris, parseOption43, parseOption143 } from '../../../src/node/bootstrap/discover.js';

const FP = 'ef'.repeat(32);
const TOKEN = `T10${FP}::abc123.${'x'.repeat(32)}`;
const good = {
  apiVersion: 'tether.dev/v1',
  kind: 'Bootstrap',
  controllers: ['ctl.example.net:7443', '192.0.2.1:7443'],
  caFingerprint: FP,
  token: TOKEN,
  site: 'cell-042',
  profile: 'du',
  wan: { interface: 'eno1', address: '198.51.100.10/24', gateway: '198.51.100.1', dns: ['198.51.100.53'] },
};

const fails = (text: string) => {
  try {
    parseBootstrap(text, 'bootstrap.yaml');
  } catch (e) {
    if (!isTetherError(e)) throw e;
    return e;
  }
  throw new Error('accepted');
};

describe('bootstrap.yaml', () => {
  it('publishes the schema the code uses (docs/bootstrap.schema.json)', () => {
    const file = JSON.parse(readFileSync(join(__dirname, '../../../docs/bootstrap.schema.json'), 'utf8'));
    expect(file).toEqual(JSON.parse(JSON.stringify(BOOTSTRAP_SCHEMA)));
  });

  it('accepts a complete file; `sha256:` before the fingerprint is allowed', () => {
    expect(parseBootstrap(stringify(good), 'b.yaml')).toEqual(good);
    expect(
      parseBootstrap(stringify({ ...good, caFingerprint: `sha256:${FP}` }), 'b.yaml').caFingerprint,
    ).toBe(FP);
  });

  it.each([
    ['a missing token', { token: undefined }, 'token', /is required/, /join token/],
    ['a site that is no DNS label', { site: 'Cell_42' }, 'site', /pattern/, /DNS label/],
    [
      'a controller without a port',
      { controllers: ['ctl.example.net'] },
      'controllers[0]',
      /pattern/,
      /HOST:PORT/,
    ],
    [
      'a port out of range',
      { controllers: ['192.0.2.1:99999'] },
      'controllers[0]',
      /out of range/,
      /1‥65535/,
    ],
    ['an unknown field', { proxy: true }, 'proxy', /not a known field/, /controllers/],
    [
      'a bad WAN address',
      { wan: { interface: 'eno1', address: '198.51.100.10' } },
      'wan.address',
      /format/,
      /prefix/,
    ],
    [
      'a gateway off the subnet',
      { wan: { ...good.wan, gateway: '203.0.113.1' } },
      'wan.gateway',
      /not inside/,
      /WAN subnet/,
    ],
    [
      'a WAN that names no port',
      { wan: { address: '198.51.100.10/24' } },
      'wan',
      /names no port/,
      /wan\.mac/,
    ],
    [
      'a WAN that names its port twice',
      { wan: { ...good.wan, mac: '52:54:00:12:34:56' } },
      'wan.mac',
      /twice/,
      /exactly one/,
    ],
    [
      'a malformed WAN MAC',
      { wan: { mac: '52:54:00:12:34', address: '198.51.100.10/24' } },
      'wan.mac',
      /pattern/,
      /six hex pairs/,
    ],
    [
      'a fingerprint the token does not carry',
      { caFingerprint: 'aa'.repeat(32) },
      'caFingerprint',
      /does not match/,
      /T10/,
    ],
  ])('%s: names file, line and field', (_what, over, field, message, expected) => {
    const obj = Object.fromEntries(Object.entries({ ...good, ...over }).filter(([, v]) => v !== undefined));
    const text = stringify(obj);
    const e = fails(text);
    expect(e.code).toBe('TETHER_E_INVALID');
    expect(e.details.file).toBe('bootstrap.yaml');
    expect(e.details.field).toBe(field);
    expect(e.message).toMatch(message);
    expect(e.details.expected).toMatch(expected);
    const top = field.split(/[.[]/)[0]!;
    const line = text.split('\n').findIndex((l) => l.startsWith(`${top}:`)) + 1;
    // A missing field is reported at the document; a present one at its own line (or its item's).
    if (line > 0) expect(e.details.line).toBeGreaterThanOrEqual(line);
    expect(describeError(e)).toMatch(/^bootstrap\.yaml:\d+/);
  });

  it('lists every problem, not only the first', () => {
    const e = fails(stringify({ ...good, site: 'X', token: 'nope', extra: 1 }));
    const fields = (e.details.issues as Array<{ field: string }>).map((i) => i.field).sort();
    expect(fields).toEqual(['extra', 'site', 'token']);
    expect(e.message).toMatch(/3 errors/);
  });

  it('refuses more than one document, a non-mapping, bad YAML and oversize input before parsing', () => {
    expect(fails(`${stringify(good)}---\n${stringify(good)}`).message).toMatch(/2 YAML documents/);
    expect(fails('- a\n- b\n').details.field).toBe('(document)');
    expect(fails('site: [\n').code).toBe('TETHER_E_PARSE');
    const big = `${stringify(good)}#${'x'.repeat(MAX_BOOTSTRAP_BYTES)}\n`;
    const e = fails(big);
    expect(e.code).toBe('TETHER_E_TOO_LARGE');
    expect(e.details.expected).toMatch(String(MAX_BOOTSTRAP_BYTES));
  });

  it('fuzz: any text is a config or a TetherError naming the file, never another exception', () => {
    const yamlish = fc.oneof(
      fc.string({ maxLength: 400 }),
      fc.jsonValue({ maxDepth: 6 }).map((v) => stringify(v)),
      fc
        .record(
          {
            controllers: fc.array(fc.string({ maxLength: 30 }), { maxLength: 10 }),
            caFingerprint: fc.oneof(
              fc.constant(FP),
              fc.string({ unit: fc.constantFrom(...'0123456789abcdefg'), maxLength: 70 }),
            ),
            token: fc.oneof(fc.constant(TOKEN), fc.string({ maxLength: 120 })),
            site: fc.string({ maxLength: 70 }),
            wan: fc.record(
              { interface: fc.string(), mac: fc.string(), address: fc.string(), gateway: fc.string() },
              { requiredKeys: [] },
            ),
          },
          { requiredKeys: [] },
        )
        .map((r) => stringify({ apiVersion: 'tether.dev/v1', kind: 'Bootstrap', ...r })),
      fc.nat({ max: 5000 }).map((n) => `${'['.repeat(n)}${']'.repeat(n)}`),
      fc.nat({ max: 3000 }).map((n) => `a: ${'- '.repeat(n)}x\n`),
    );
    fc.assert(
      fc.property(yamlish, (text) => {
        try {
          parseBootstrap(text, 'fuzz.yaml');
        } catch (e) {
          if (!isTetherError(e)) throw e;
          expect(['TETHER_E_INVALID', 'TETHER_E_PARSE', 'TETHER_E_TOO_LARGE']).toContain(e.code);
          expect(describeError(e)).toMatch(/^fuzz\.yaml/);
        }
      }),
      { numRuns: 400 },
    );
  });
});

describe('DHCP options', () => {
  it('option 143 is a list of 16-bit length + URI; option 43 carries URIs in sub-option 1', () => {
    const uris = ['tether://a:1', 'tether://b:2'];
    const o143 = Buffer.concat(uris.map((u) => Buffer.concat([Buffer.from([0, u.length]), Buffer.from(u)])));
    expect(parseOption143(o143.toString('hex'))).toEqual(uris);
    const o43 = Buffer.concat([
      Buffer.from([2, 1, 9]),
      Buffer.from([1, uris[0]!.length]),
      Buffer.from(uris[0]!),
      Buffer.from([255]),
    ]);
    expect(parseOption43(o43.toString('hex'))).toEqual([uris[0]]);
  });

  it('fuzz: decoders never throw and never read past the end', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        const hex = Buffer.from(b).toString('hex');
        for (const u of [...parseOption143(hex), ...parseOption43(hex)])
          expect(u.length).toBeLessThanOrEqual(b.length);
      }),
      { numRuns: 500 },
    );
  });

  it("tether:// URIs become a checked configuration; `ca` defaults to the token's", () => {
    const c = configFromUris(
      [`tether://192.0.2.9:7443?token=${TOKEN}&site=s1&name=n1`, 'tether://192.0.2.10:7443'],
      'opt',
    );
    expect(c).toMatchObject({
      controllers: ['192.0.2.9:7443', '192.0.2.10:7443'],
      caFingerprint: FP,
      site: 's1',
      nodeName: 'n1',
    });
    for (const bad of [['https://x:1'], [`tether://x:1?token=${TOKEN}`], ['::::']]) {
      let err: unknown;
      try {
        configFromUris(bad, 'DHCP option 143 on eth0');
      } catch (e) {
        err = e;
      }
      expect(isTetherError(err, 'TETHER_E_INVALID')).toBe(true);
      expect(describeError(err as never)).toMatch(/^DHCP option 143 on eth0/);
    }
  });
});

describe('first-boot reports (what the controller accepts from a node)', () => {
  const at = '2026-01-01T00:00:00.000Z';
  const later = '2026-01-01T00:00:02.500Z';
  const body = {
    seq: 3,
    phase: 'enroll' as const,
    phases: [
      { name: 'discover' as const, startedAt: at, endedAt: later, attempts: 1 },
      { name: 'enroll' as const, startedAt: later, attempts: 2 },
    ],
    lastError: { phase: 'enroll', code: 'TETHER_E_UNAVAILABLE', message: 'down', at: later },
    reboots: 0,
    updatedAt: later,
  };
  it('round-trips and computes the time per phase', () => {
    const out = fromReport({ ...toReport(body), seq: 3 } as never);
    expect(out.phases[0]!.seconds).toBe(2.5);
    expect(out.phases[1]!.seconds).toBe(0);
    expect(out.lastError?.code).toBe('TETHER_E_UNAVAILABLE');
  });
  it.each([
    ['seq', { seq: 0 }],
    ['phase', { phase: 'hacking' }],
    ['phases[0].name', { phases: [{ name: 'x', started_at: at, ended_at: '', attempts: 1 }] }],
    [
      'phases[1].name',
      {
        phases: [
          { name: 'ready', started_at: at, ended_at: '', attempts: 1 },
          { name: 'ready', started_at: at, ended_at: '', attempts: 1 },
        ],
      },
    ],
    ['last_error', { last_error: 'x'.repeat(513) }],
    ['updated_at', { updated_at: 'yesterday' }],
  ])('refuses a bad %s', (field, over) => {
    let err: unknown;
    try {
      fromReport({ ...toReport(body), ...over } as never);
    } catch (e) {
      err = e;
    }
    expect(isTetherError(err, 'TETHER_E_INVALID')).toBe(true);
    expect((err as { details: { field: string } }).details.field).toBe(field);
  });
});
