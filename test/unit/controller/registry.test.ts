import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseToken } from '../../../src/api/token.js';
import { Registry } from '../../../src/controller/registry.js';
import { MemoryStore } from '../../../src/controller/store/memory.js';
import {
  type CaMaterial,
  certFingerprint,
  createCA,
  createKeyAndCsr,
  identityOf,
  verifyIssuedBy,
} from '../../../src/lib/pki.js';
import { syncControllerStore } from '../../support/sync-store.js';

let ca: CaMaterial;
let csr: { keyPem: string; csrPem: string };

beforeAll(async () => {
  ca = await createCA('test-ca');
  csr = await createKeyAndCsr('n1');
});

function setup(now = () => new Date()) {
  const store = new MemoryStore();
  return { store, reg: new Registry(syncControllerStore(store), ca, { nodeCertSeconds: 3600, now }) };
}

const cred = (t: string) => {
  const p = parseToken(t);
  return `${p.id}.${p.secret}`;
};

describe('Registry', () => {
  it("deletes a network's endpoints with it, in one transaction, and nothing of other networks", async () => {
    const { store, reg } = setup();
    const obj = (kind: string, name: string, spec: Record<string, unknown>) => ({
      op: 'put' as const,
      object: { apiVersion: 'tether.dev/v1', kind, metadata: { name }, spec },
    });
    store.txn([
      obj('VirtualNetwork', 'red', { subnet: '10.1.0.0/24' }),
      obj('VirtualNetwork', 'blue', { subnet: '10.1.0.0/24' }),
      obj('Endpoint', 'n1.a', { network: 'red' }),
      obj('Endpoint', 'n2.b', { network: 'red' }),
      obj('Endpoint', 'n1.c', { network: 'blue' }),
      obj('NetworkPolicy', 'p', { network: 'red' }),
    ]);
    const before = store.revision();
    const res = store.txn(reg.deleteOps('VirtualNetwork', 'red'));
    expect(res.revision).toBe(before + 1);
    expect(store.list('Endpoint').items.map((i) => i.name)).toEqual(['n1.c']);
    // An admin's policy is intent and stays.
    expect(store.get('NetworkPolicy', 'p')).toBeDefined();
  });

  it('issues a token that pins the CA and is stored hashed; creates the site', async () => {
    const { store, reg } = setup();
    const t = await reg.createToken('site-a', 3600, 1);
    expect(parseToken(t.token).caFingerprint).toBe(certFingerprint(ca.certPem));
    const stored = store.get('EnrollmentToken', `token-${t.id}`)!;
    expect(JSON.stringify(stored.object)).not.toContain(parseToken(t.token).secret);
    expect(t.siteCreated).toBe(true);
    expect(store.get('Site', 'site-a')).toBeDefined();
  });

  it('enrolls with a valid token: certificate bound to node and site, token used once', async () => {
    const { store, reg } = setup();
    const t = await reg.createToken('site-a', 3600, 1);
    const out = await reg.enroll({
      credential: cred(t.token),
      nodeName: 'n1',
      csrPem: csr.csrPem,
      facts: {},
      expectedSite: '',
    });
    expect(out.status).toBe('approved');
    if (out.status !== 'approved') return;
    const cert = new X509Certificate(out.certPem);
    expect(identityOf(cert)).toEqual({ role: 'node', name: 'n1', site: 'site-a' });
    expect(verifyIssuedBy(cert, new X509Certificate(ca.certPem))).toBe(true);
    expect((store.get('EnrollmentToken', `token-${t.id}`)!.object.status as { used: number }).used).toBe(1);
    await expect(
      reg.enroll({
        credential: cred(t.token),
        nodeName: 'n2',
        csrPem: csr.csrPem,
        facts: {},
        expectedSite: '',
      }),
    ).rejects.toMatchObject({
      code: 'TETHER_E_TOKEN',
      message: expect.stringContaining('already used'),
    });
    expect(store.get('Node', 'n2')).toBeUndefined();
  });

  it.each([
    ['a wrong secret', (t: string) => `${cred(t).slice(0, 7)}${'x'.repeat(32)}`, 'unknown'],
    ['an unknown id', () => `zzzzzz.${'a'.repeat(32)}`, 'unknown'],
  ])('refuses %s and writes nothing', async (_what, mangle, msg) => {
    const { store, reg } = setup();
    const t = await reg.createToken('site-a', 3600, 1);
    const rev = store.revision();
    await expect(
      reg.enroll({
        credential: mangle(t.token),
        nodeName: 'n1',
        csrPem: csr.csrPem,
        facts: {},
        expectedSite: '',
      }),
    ).rejects.toMatchObject({
      code: 'TETHER_E_TOKEN',
      message: expect.stringContaining(msg),
    });
    expect(store.revision()).toBe(rev);
  });

  it('refuses an expired token', async () => {
    let now = new Date('2026-01-01T00:00:00Z');
    const { store, reg } = setup(() => now);
    const t = await reg.createToken('site-a', 60, 1);
    now = new Date('2026-01-01T00:01:01Z');
    const rev = store.revision();
    await expect(
      reg.enroll({
        credential: cred(t.token),
        nodeName: 'n1',
        csrPem: csr.csrPem,
        facts: {},
        expectedSite: '',
      }),
    ).rejects.toMatchObject({
      code: 'TETHER_E_TOKEN',
      message: expect.stringContaining('expired'),
    });
    expect(store.revision()).toBe(rev);
  });

  it('refuses a token for another site, both by expectation and for an existing node', async () => {
    const { reg } = setup();
    const a = await reg.createToken('site-a', 3600, 2);
    const b = await reg.createToken('site-b', 3600, 1);
    await expect(
      reg.enroll({
        credential: cred(b.token),
        nodeName: 'n1',
        csrPem: csr.csrPem,
        facts: {},
        expectedSite: 'site-a',
      }),
    ).rejects.toMatchObject({ code: 'TETHER_E_TOKEN' });
    await reg.enroll({
      credential: cred(a.token),
      nodeName: 'n1',
      csrPem: csr.csrPem,
      facts: {},
      expectedSite: '',
    });
    await expect(
      reg.enroll({
        credential: cred(b.token),
        nodeName: 'n1',
        csrPem: csr.csrPem,
        facts: {},
        expectedSite: '',
      }),
    ).rejects.toMatchObject({
      code: 'TETHER_E_TOKEN',
      message: expect.stringContaining('belongs to site "site-a"'),
    });
  });

  it('holds a node for manual approval, recognises its retry, and hands out the certificate after approval', async () => {
    const { store, reg } = setup();
    store.txn([
      {
        op: 'put',
        object: {
          apiVersion: 'tether.dev/v1',
          kind: 'Site',
          metadata: { name: 'site-m' },
          spec: { approval: 'manual' },
        },
      },
    ]);
    const t = await reg.createToken('site-m', 3600, 1);
    const req = {
      credential: cred(t.token),
      nodeName: 'n9',
      csrPem: csr.csrPem,
      facts: {},
      expectedSite: '',
    };
    expect((await reg.enroll(req)).status).toBe('pending');
    // The same request again is a retry, not a second use of the token.
    expect((await reg.enroll(req)).status).toBe('pending');
    await reg.approve('n9');
    const out = await reg.enroll(req);
    expect(out.status).toBe('approved');
    // A different key with the same token is not the same request, and cannot take the name.
    const other = await createKeyAndCsr('n9');
    await expect(reg.enroll({ ...req, csrPem: other.csrPem })).rejects.toMatchObject({
      code: 'TETHER_E_NODE_EXISTS',
    });
  });

  it('refuses a revoked node and renews with both serials accepted', async () => {
    const { store, reg } = setup();
    const t = await reg.createToken('site-a', 3600, 3);
    const out = await reg.enroll({
      credential: cred(t.token),
      nodeName: 'n1',
      csrPem: csr.csrPem,
      facts: {},
      expectedSite: '',
    });
    if (out.status !== 'approved') throw new Error('expected approval');
    const serial = new X509Certificate(out.certPem).serialNumber.toLowerCase().replace(/^0+/, '');
    const renewed = await reg.renew('n1', serial, (await createKeyAndCsr('n1')).csrPem);
    const serials = (store.get('Node', 'n1')!.object.status as { certSerials: string[] }).certSerials;
    expect(serials).toContain(serial);
    expect(serials).toHaveLength(2);
    expect(identityOf(new X509Certificate(renewed.certPem))?.name).toBe('n1');
    await reg.revoke('n1');
    await expect(
      reg.enroll({
        credential: cred(t.token),
        nodeName: 'n1',
        csrPem: csr.csrPem,
        facts: {},
        expectedSite: '',
      }),
    ).rejects.toMatchObject({ code: 'TETHER_E_REVOKED' });
    await expect(reg.renew('n1', serial, csr.csrPem)).rejects.toMatchObject({ code: 'TETHER_E_REVOKED' });
  });
});
