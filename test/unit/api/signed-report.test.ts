import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { isNewerReport, signReport, verifyReport } from '../../../src/api/signed-report.js';
import { createCA, createKeyAndCsr, signCsr } from '../../../src/lib/pki.js';

async function nodeCert(ca: Awaited<ReturnType<typeof createCA>>, name: string) {
  const k = await createKeyAndCsr(name);
  const c = await signCsr(ca, k.csrPem, {
    identity: { role: 'node', name, site: 's1' },
    validitySeconds: 3600,
  });
  return { keyPem: k.keyPem, certPem: c.certPem };
}

describe('signed endpoint reports', () => {
  let a: { keyPem: string; certPem: string };
  let b: { keyPem: string; certPem: string };
  beforeAll(async () => {
    const ca = await createCA('test');
    a = await nodeCert(ca, 'n1');
    b = await nodeCert(ca, 'n2');
  });
  const body = (node = 'n1') => ({ node, site: 's1', bootId: 'boot', seq: 1, at: 5, endpoints: [] });

  it('verifies a report signed by the node it names', () => {
    const w = signReport(body(), a.keyPem, a.certPem);
    expect(verifyReport(w, a.certPem, { node: 'n1', site: 's1' }).seq).toBe(1);
  });

  it("refuses a report signed by another node's key, and one that names another node", () => {
    const forged = signReport(body(), b.keyPem, b.certPem);
    expect(() => verifyReport(forged, a.certPem, { node: 'n1', site: 's1' })).toThrow(
      /not signed by node "n1"/,
    );
    const other = signReport(body('n2'), a.keyPem, a.certPem);
    expect(() => verifyReport(other, a.certPem, { node: 'n1', site: 's1' })).toThrow(/names node "n2"/);
  });

  it('refuses any altered payload byte (class: tampering by the relaying proxy)', () => {
    const w = signReport(body(), a.keyPem, a.certPem);
    fc.assert(
      fc.property(fc.nat(w.payload.length - 1), fc.integer({ min: 1, max: 255 }), (i, x) => {
        const p = Buffer.from(w.payload);
        p[i] = (p[i]! ^ x) & 0xff;
        expect(() =>
          verifyReport({ payload: p, signature: w.signature }, a.certPem, { node: 'n1', site: 's1' }),
        ).toThrow();
      }),
      { numRuns: 50 },
    );
  });

  it('orders reports: same boot by seq, another boot by time', () => {
    expect(isNewerReport(undefined, { bootId: 'x', seq: 0, at: 0 })).toBe(true);
    expect(isNewerReport({ bootId: 'x', seq: 2, at: 9 }, { bootId: 'x', seq: 2, at: 10 })).toBe(false);
    expect(isNewerReport({ bootId: 'x', seq: 2, at: 9 }, { bootId: 'x', seq: 3, at: 1 })).toBe(true);
    expect(isNewerReport({ bootId: 'x', seq: 2, at: 9 }, { bootId: 'y', seq: 0, at: 10 })).toBe(true);
  });
});
