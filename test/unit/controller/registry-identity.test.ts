// Identity rules of the registry: tokens die with their site, no takeover of an enrolled
// name without an audited reset, only the current certificate renews, a node's endpoints go
// with it, concurrent enrollments race fairly, and only P-256 keys are signed.
import { syncControllerStore } from '../../support/sync-store.js';
import 'reflect-metadata';
import { webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseToken } from '../../../src/api/token.js';
import { EndpointIndex } from '../../../src/controller/endpoints.js';
import { Registry } from '../../../src/controller/registry.js';
import { MemoryStore } from '../../../src/controller/store/memory.js';
import { type CaMaterial, createCA, createKeyAndCsr, normalizeSerial } from '../../../src/lib/pki.js';

let ca: CaMaterial;
beforeAll(async () => {
  ca = await createCA('test-ca');
});

function setup() {
  const store = new MemoryStore();
  const index = new EndpointIndex(syncControllerStore(store));
  const reg = new Registry(syncControllerStore(store), ca, {
    nodeCertSeconds: 3600,
    endpointsOf: (n) => index.ofNode(n),
  });
  return { store, reg };
}

const cred = (t: string) => {
  const p = parseToken(t);
  return `${p.id}.${p.secret}`;
};

async function enroll(reg: Registry, token: string, nodeName: string, csrPem?: string) {
  return reg.enroll({
    credential: cred(token),
    nodeName,
    csrPem: csrPem ?? (await createKeyAndCsr(nodeName)).csrPem,
    facts: {},
    expectedSite: '',
  });
}

const serialOf = (pem: string) => normalizeSerial(new X509Certificate(pem).serialNumber);

function endpointOf(node: string, id: string, ip: string) {
  return {
    op: 'put' as const,
    object: {
      apiVersion: 'tether.dev/v1',
      kind: 'Endpoint',
      metadata: { name: `${node}.${id}` },
      spec: { network: 'red', node, site: 'site-a', mac: '02:00:00:00:00:01', ip, vtep: '192.0.2.1' },
    },
  };
}

describe('tokens die with their site', () => {
  it('deleting a site kills its tokens in the same revision; enrolling is refused, also into a new site of that name', async () => {
    const { store, reg } = setup();
    const t = await reg.createToken('site-a', 3600, 5);
    const other = await reg.createToken('site-b', 3600, 1);
    const res = store.txn(reg.deleteOps('Site', 'site-a'));
    expect(res.results.map((r) => r.revision)).toEqual([res.revision, res.revision]);
    expect(store.get('EnrollmentToken', `token-${other.id}`)!.object.status).not.toHaveProperty(
      'siteDeletedAt',
    );
    await expect(enroll(reg, t.token, 'n1')).rejects.toMatchObject({
      code: 'TETHER_E_SITE_GONE',
      message: expect.stringContaining('was deleted'),
    });
    store.txn([
      {
        op: 'put',
        object: { apiVersion: 'tether.dev/v1', kind: 'Site', metadata: { name: 'site-a' }, spec: {} },
      },
    ]);
    await expect(enroll(reg, t.token, 'n1')).rejects.toMatchObject({ code: 'TETHER_E_SITE_GONE' });
    expect(store.get('Node', 'n1')).toBeUndefined();
  });

  it('a token that outlived its site is refused with TETHER_E_SITE_GONE, and skips nothing', async () => {
    const { store, reg } = setup();
    const t = await reg.createToken('site-a', 3600, 5);
    store.txn([{ op: 'delete', kind: 'Site', name: 'site-a' }]);
    const rev = store.revision();
    await expect(enroll(reg, t.token, 'n1')).rejects.toMatchObject({ code: 'TETHER_E_SITE_GONE' });
    expect(store.revision()).toBe(rev);
  });
});

describe('no takeover of an enrolled name', () => {
  it('refuses another key under an approved name until an admin resets it, and audits the reset', async () => {
    const { store, reg } = setup();
    const t = await reg.createToken('site-a', 3600, 3);
    const first = await enroll(reg, t.token, 'n1');
    expect(first.status).toBe('approved');
    const before = store.get('Node', 'n1')!;
    await expect(enroll(reg, t.token, 'n1')).rejects.toMatchObject({
      code: 'TETHER_E_NODE_EXISTS',
      message: expect.stringContaining('already enrolled'),
    });
    expect(store.get('Node', 'n1')!.revision).toBe(before.revision);
    store.txn([endpointOf('n1', 'a', '10.1.0.5')]);
    await reg.recordVtep('n1', '192.0.2.1');
    const reset = await reg.reset('n1', 'alice');
    expect(reset.status).toMatchObject({ phase: 'Reset', certSerials: [], lastReset: { by: 'alice' } });
    expect(reset.status).not.toHaveProperty('vtep');
    expect(reset.metadata.annotations).toMatchObject({ 'tether.dev/reset-by': 'alice' });
    expect(store.get('Endpoint', 'n1.a')).toBeUndefined();
    expect(store.get('Node', 'n1')!.revision).toBe(store.revision());
    const again = await enroll(reg, t.token, 'n1');
    expect(again.status).toBe('approved');
    const node = store.get('Node', 'n1')!.object;
    expect(node.status).toMatchObject({ phase: 'Approved', lastReset: { by: 'alice' } });
    expect(node.metadata.annotations).toMatchObject({ 'tether.dev/reset-by': 'alice' });
  });

  it('refuses another key under a name that waits for manual approval', async () => {
    const { store, reg } = setup();
    store.txn([
      {
        op: 'put',
        object: {
          apiVersion: 'tether.dev/v1',
          kind: 'Site',
          metadata: { name: 'm' },
          spec: { approval: 'manual' },
        },
      },
    ]);
    const t = await reg.createToken('m', 3600, 2);
    expect((await enroll(reg, t.token, 'p1')).status).toBe('pending');
    const csr = (store.get('Node', 'p1')!.object.status as { csrPem: string }).csrPem;
    await expect(enroll(reg, t.token, 'p1')).rejects.toMatchObject({ code: 'TETHER_E_NODE_EXISTS' });
    expect((store.get('Node', 'p1')!.object.status as { csrPem: string }).csrPem).toBe(csr);
  });

  it('hands a retry of the same auto-approved request (answer lost) the same certificate', async () => {
    const { reg } = setup();
    const t = await reg.createToken('site-a', 3600, 1);
    const k = await createKeyAndCsr('n1');
    const a = await enroll(reg, t.token, 'n1', k.csrPem);
    const b = await enroll(reg, t.token, 'n1', k.csrPem);
    expect(a.status === 'approved' && b.status === 'approved' && a.certPem === b.certPem).toBe(true);
  });
});

describe('renewal', () => {
  it('only the current certificate renews; the previous one cannot push it out', async () => {
    const { store, reg } = setup();
    const t = await reg.createToken('site-a', 3600, 1);
    const out = await enroll(reg, t.token, 'n1');
    if (out.status !== 'approved') throw new Error('expected approval');
    const s0 = serialOf(out.certPem);
    const r1 = await reg.renew('n1', s0, (await createKeyAndCsr('n1')).csrPem);
    const s1 = serialOf(r1.certPem);
    expect((store.get('Node', 'n1')!.object.status as { certSerials: string[] }).certSerials).toEqual([
      s1,
      s0,
    ]);
    const rev = store.revision();
    await expect(reg.renew('n1', s0, (await createKeyAndCsr('n1')).csrPem)).rejects.toMatchObject({
      code: 'TETHER_E_PERMISSION',
      message: expect.stringContaining('only the current one renews'),
    });
    await expect(reg.renew('n1', 'abcdef', (await createKeyAndCsr('n1')).csrPem)).rejects.toMatchObject({
      code: 'TETHER_E_PERMISSION',
    });
    expect(store.revision()).toBe(rev);
    const r2 = await reg.renew('n1', s1, (await createKeyAndCsr('n1')).csrPem);
    expect((store.get('Node', 'n1')!.object.status as { certSerials: string[] }).certSerials).toEqual([
      serialOf(r2.certPem),
      s1,
    ]);
  });

  it('a renewal whose answer was lost gets the same certificate when retried with the same key', async () => {
    const { store, reg } = setup();
    const t = await reg.createToken('site-a', 3600, 1);
    const out = await enroll(reg, t.token, 'n1');
    if (out.status !== 'approved') throw new Error('expected approval');
    const k = await createKeyAndCsr('n1');
    const r1 = await reg.renew('n1', serialOf(out.certPem), k.csrPem);
    const rev = store.revision();
    const again = await reg.renew('n1', serialOf(out.certPem), k.csrPem);
    expect(again.certPem).toBe(r1.certPem);
    expect(store.revision()).toBe(rev);
  });
});

describe("a node's endpoints go with it", () => {
  it.each([
    ['revoke', async (reg: Registry, store: MemoryStore) => (await reg.revoke('n1')) && store],
    ['delete', async (reg: Registry, store: MemoryStore) => store.txn(reg.deleteOps('Node', 'n1')) && store],
    ['reset', async (reg: Registry, store: MemoryStore) => (await reg.reset('n1', 'admin')) && store],
  ])('%s removes them in the same revision', async (_what, act) => {
    const { store, reg } = setup();
    const t = await reg.createToken('site-a', 3600, 2);
    await enroll(reg, t.token, 'n1');
    await enroll(reg, t.token, 'n2');
    store.txn([
      endpointOf('n1', 'a', '10.1.0.5'),
      endpointOf('n1', 'b', '10.1.0.6'),
      endpointOf('n2', 'a', '10.1.0.20'),
    ]);
    const events: Array<{ kind: string; name: string; revision: number }> = [];
    store.subscribe((evs) => events.push(...evs));
    await act(reg, store);
    expect(new Set(events.map((e) => e.revision)).size).toBe(1);
    expect(events.map((e) => `${e.kind}/${e.name}`).sort()).toEqual([
      'Endpoint/n1.a',
      'Endpoint/n1.b',
      'Node/n1',
    ]);
    expect(store.get('Endpoint', 'n2.a')).toBeDefined();
  });
});

describe('concurrent enrollments', () => {
  it.each([
    [1, 4],
    [3, 8],
    [5, 5],
  ])('a token with uses %i: exactly that many of %i racing enrollments win', async (uses, n) => {
    const { store, reg } = setup();
    const t = await reg.createToken('site-a', 3600, uses);
    const csrs = await Promise.all(Array.from({ length: n }, (_, i) => createKeyAndCsr(`c${i}`)));
    const results = await Promise.allSettled(csrs.map((k, i) => enroll(reg, t.token, `c${i}`, k.csrPem)));
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(uses);
    for (const r of results) {
      if (r.status === 'rejected')
        expect(r.reason).toMatchObject({
          code: 'TETHER_E_TOKEN',
          message: expect.stringContaining('already used'),
        });
    }
    expect(store.list('Node').items).toHaveLength(uses);
    expect(store.get('EnrollmentToken', `token-${t.id}`)!.object.status).toMatchObject({ used: uses });
  });
});

async function csrWith(
  alg: webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams,
  sign: webcrypto.Algorithm | webcrypto.EcdsaParams,
): Promise<string> {
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=evil',
    keys: keys as unknown as Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[0]['keys'],
    signingAlgorithm: sign,
  });
  return csr.toString('pem');
}

describe('key types', () => {
  const rsa = (bits: number) =>
    [
      {
        name: 'RSASSA-PKCS1-v1_5',
        modulusLength: bits,
        publicExponent: new Uint8Array([1, 0, 1]),
        hash: 'SHA-256',
      },
      { name: 'RSASSA-PKCS1-v1_5' },
    ] as const;
  const ec = (curve: string, hash: string) =>
    [
      { name: 'ECDSA', namedCurve: curve },
      { name: 'ECDSA', hash },
    ] as const;
  it.each([
    ['RSA-1024', rsa(1024), /rsa key of 1024 bits/],
    ['RSA-2048', rsa(2048), /rsa key of 2048 bits/],
    ['P-384', ec('P-384', 'SHA-384'), /EC key on secp384r1/],
    ['P-521', ec('P-521', 'SHA-512'), /EC key on secp521r1/],
  ])(
    'refuses a %s CSR at enrollment and renewal, writing nothing',
    async (_name, [alg, sign], msg) => {
      const { store, reg } = setup();
      const csrPem = await csrWith(alg as webcrypto.RsaHashedKeyGenParams, sign as webcrypto.Algorithm);
      const t = await reg.createToken('site-a', 3600, 2);
      const rev = store.revision();
      await expect(enroll(reg, t.token, 'n1', csrPem)).rejects.toMatchObject({
        code: 'TETHER_E_KEY_TYPE',
        message: expect.stringMatching(msg),
        details: { field: 'csr_pem' },
      });
      expect(store.revision()).toBe(rev);
      const ok = await enroll(reg, t.token, 'n2');
      if (ok.status !== 'approved') throw new Error('expected approval');
      await expect(reg.renew('n2', serialOf(ok.certPem), csrPem)).rejects.toMatchObject({
        code: 'TETHER_E_KEY_TYPE',
      });
    },
    30_000,
  );
});

describe('underlay address (VTEP)', () => {
  it('records the first one a node declares, holds it to it, and refuses another node’s', async () => {
    const { store, reg } = setup();
    const t = await reg.createToken('site-a', 3600, 2);
    await enroll(reg, t.token, 'n1');
    await enroll(reg, t.token, 'n2');
    await reg.recordVtep('n1', '192.0.2.1');
    const rev = store.revision();
    await reg.recordVtep('n1', '192.0.2.1');
    expect(store.revision()).toBe(rev);
    await expect(reg.recordVtep('n1', '192.0.2.9')).rejects.toThrow(
      expect.objectContaining({ code: 'TETHER_E_CLAIM' }),
    );
    await expect(reg.recordVtep('n2', '192.0.2.1')).rejects.toThrow(
      expect.objectContaining({ code: 'TETHER_E_CLAIM', message: expect.stringContaining('"n1"') }),
    );
    for (const bad of [
      'not-an-ip',
      '192.0.2.01',
      '0.0.0.0',
      '224.0.0.1',
      '239.1.2.3',
      '255.255.255.255',
      '240.0.0.1',
      ' 192.0.2.2',
    ])
      await expect(reg.recordVtep('n2', bad), bad).rejects.toThrow(
        expect.objectContaining({ code: 'TETHER_E_INVALID' }),
      );
    expect(store.revision()).toBe(rev);
    expect(store.get('Node', 'n1')!.object.status).toMatchObject({ vtep: '192.0.2.1' });
  });
});
