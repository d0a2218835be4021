import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { grpcTarget, parseObjectKey, prefixEnd, stampValue } from '../../../src/controller/store/etcd.js';
import { isTetherError, TetherError } from '../../../src/lib/errors.js';

/** Runs f; a TetherError of `code` is fine, anything else thrown fails the property. */
function tetherOrValue<T>(f: () => T, code: string): T | TetherError {
  try {
    return f();
  } catch (e) {
    if (isTetherError(e) && e.code === code) return e;
    throw e;
  }
}

describe('etcd codec', () => {
  it('stampValue stamps store-owned revisions and refuses what is not the named object', () => {
    const v = Buffer.from(
      JSON.stringify({
        apiVersion: 'tether.dev/v1',
        kind: 'Site',
        metadata: { name: 'a', revision: 1 },
        spec: {},
      }),
    );
    expect(JSON.parse(stampValue(v, 'Site', 'a', 7, 3)).metadata).toEqual({
      name: 'a',
      revision: 7,
      createRevision: 3,
    });
    for (const bad of [
      '',
      'null',
      '[]',
      '"x"',
      '{"kind":"Site"}',
      '{"kind":"Node","metadata":{"name":"a"}}',
      '{"kind":"Site","metadata":"a"}',
      '{',
    ])
      expect(
        tetherOrValue(() => stampValue(Buffer.from(bad), 'Site', 'a', 1, 1), 'TETHER_E_STATE'),
      ).toBeInstanceOf(TetherError);
  });

  it('stampValue refuses a value over the size limit before parsing it', () => {
    const big = Buffer.alloc(16 * 1024 * 1024 + 1, 0x20);
    const e = tetherOrValue(() => stampValue(big, 'Site', 'a', 1, 1), 'TETHER_E_STATE');
    expect(e).toBeInstanceOf(TetherError);
    expect((e as TetherError).message).toMatch(/bytes/);
  });

  it('fuzz stampValue: any bytes give the stamped object or TETHER_E_STATE', () => {
    const arb = fc.oneof(
      fc.uint8Array({ maxLength: 256 }).map((a) => Buffer.from(a)),
      fc.jsonValue().map((j) => Buffer.from(JSON.stringify(j))),
      fc
        .record({
          kind: fc.constantFrom('Site', 'Node', 1),
          metadata: fc.oneof(fc.jsonValue(), fc.record({ name: fc.constantFrom('a', 'b') })),
        })
        .map((o) => Buffer.from(JSON.stringify(o))),
    );
    fc.assert(
      fc.property(arb, fc.nat(), fc.nat(), (buf, rev, crev) => {
        const r = tetherOrValue(() => stampValue(buf, 'Site', 'a', rev, crev), 'TETHER_E_STATE');
        if (typeof r === 'string') {
          const o = JSON.parse(r);
          expect(o.kind).toBe('Site');
          expect(o.metadata).toMatchObject({ name: 'a', revision: rev, createRevision: crev });
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('fuzz parseObjectKey: o/<kind>/<name> round-trips; anything else is TETHER_E_STATE', () => {
    const kind = fc.string({ minLength: 1 }).filter((k) => !k.includes('/'));
    fc.assert(
      fc.property(kind, fc.string({ minLength: 1 }), (k, n) => {
        expect(parseObjectKey(`o/${k}/${n}`)).toEqual({ kind: k, name: n });
      }),
    );
    fc.assert(
      fc.property(fc.string(), (s) => {
        const r = tetherOrValue(() => parseObjectKey(s), 'TETHER_E_STATE');
        if (!(r instanceof TetherError)) expect(`o/${r.kind}/${r.name}`).toBe(s);
      }),
      { numRuns: 2000 },
    );
  });

  it('fuzz grpcTarget: a target string or TETHER_E_INVALID, never a throw of anything else', () => {
    const ep = fc.oneof(
      fc.string(),
      fc.tuple(fc.ipV4(), fc.integer({ min: 1, max: 65535 })).map(([h, p]) => `${h}:${p}`),
      fc.tuple(fc.ipV6(), fc.integer({ min: 1, max: 65535 })).map(([h, p]) => `[${h}]:${p}`),
      fc.domain().map((d) => `${d}:2379`),
    );
    fc.assert(
      fc.property(fc.array(ep, { maxLength: 5 }), (eps) => {
        const r = tetherOrValue(() => grpcTarget(eps), 'TETHER_E_INVALID');
        if (typeof r === 'string') expect(r).toMatch(/^(ipv4|ipv6|dns):/);
      }),
      { numRuns: 2000 },
    );
    expect(grpcTarget(['127.0.0.1:1', '127.0.0.2:2'])).toBe('ipv4:127.0.0.1:1,127.0.0.2:2');
  });

  it('prefixEnd is the smallest key greater than every key with the prefix', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 16 }),
        fc.uint8Array({ maxLength: 8 }),
        (p, tail) => {
          const pre = Buffer.from(p);
          const end = prefixEnd(pre);
          const key = Buffer.concat([pre, Buffer.from(tail)]);
          if (!pre.every((b) => b === 0xff)) expect(Buffer.compare(key, end)).toBe(-1);
        },
      ),
    );
  });
});
