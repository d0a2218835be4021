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

  // The replay check of the controller and the proxy (class: any two reports of one node).
  describe('report order (isNewerReport)', () => {
    const mark = { serial: '0a1b', bootId: 'boot-1', seq: 500, at: 10_000 };
    it('takes any first report', () => {
      expect(isNewerReport(undefined, { serial: '0a1b', seq: 0 })).toBe(true);
    });
    it('under the same certificate: only a higher seq is newer, whatever boot id or time say', () => {
      // Same boot: older and equal seq are replays.
      expect(isNewerReport(mark, { ...mark, seq: 499 })).toBe(false);
      expect(isNewerReport(mark, { ...mark, seq: 500 })).toBe(false);
      expect(isNewerReport(mark, { ...mark, seq: 501 })).toBe(true);
      // Another boot with a lower seq is a replay even with a later time (a made-up boot id
      // does not reset the order); another boot with a higher seq is newer even when the
      // node's clock stepped back.
      expect(isNewerReport(mark, { ...mark, bootId: 'boot-0', seq: 499, at: 99_999 })).toBe(false);
      expect(isNewerReport(mark, { ...mark, bootId: 'boot-2', seq: 500, at: 99_999 })).toBe(false);
      expect(isNewerReport(mark, { ...mark, bootId: 'boot-2', seq: 1500, at: 1 })).toBe(true);
      fc.assert(
        fc.property(
          fc.string({ minLength: 1, maxLength: 64 }),
          fc.nat(),
          fc.nat(),
          fc.nat(),
          fc.nat(),
          (boot, seqA, seqB, atA, atB) => {
            const a = { serial: '0a1b', bootId: 'x', seq: seqA, at: atA };
            const b = { serial: '0A1B', bootId: boot, seq: seqB, at: atB };
            expect(isNewerReport(a, b)).toBe(seqB > seqA);
            // Never both ways: one of two reports is the replay.
            expect(isNewerReport(a, b) && isNewerReport(b, a)).toBe(false);
          },
        ),
        { numRuns: 300 },
      );
    });
    it("under another certificate (renewed, or enrolled again): newer, so a fresh disk's seq counts", () => {
      expect(isNewerReport(mark, { serial: '0c', seq: 0 })).toBe(true);
      // Serials compare normalised (case, leading zeros).
      expect(isNewerReport(mark, { serial: '000A1B', seq: 500 })).toBe(false);
    });
  });
});
