import { generateKeyPairSync, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { REDACTED, redactText } from '../../../src/node/support/redact.js';

const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({
  type: 'pkcs1',
  format: 'pem',
}) as string;
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
  type: 'pkcs8',
  format: 'pem',
}) as string;
// An unterminated OpenSSH-style block with a body made now: no key text lives in the repo.
const opensshBody = randomBytes(24).toString('base64');
const keyBody = (pem: string) => pem.split('\n').filter((l) => l && !l.startsWith('-----'));
const token = `T10${'ab'.repeat(32)}::abc123.${'q'.repeat(8)}w${'z'.repeat(23)}`;
const cred = `x9y8z7.${'m'.repeat(31)}p`;

describe('redactText', () => {
  it('removes PEM private keys (PKCS#1, PKCS#8, unterminated), tokens, credentials and secret-named values', () => {
    const text = [
      rsa,
      `credentials: {"keyPem":${JSON.stringify(ec)},"certPem":"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----"}`,
      `token: ${token}`,
      `joined with ${cred} yesterday`,
      'db:',
      '  password: hunter2-yaml',
      '  user: admin',
      'API_SECRET=envsecret42',
      '{"name":"n1","clientSecret":"jsonsecret7","level":30}',
      'tls:',
      '  privateKey: |',
      '    blockscalarsecret',
      '    morescalar',
      '  keep: visible',
      `-----BEGIN OPENSSH ${'PRIVATE'} KEY-----\n${opensshBody}\n`,
    ].join('\n');
    const r = redactText(text);
    for (const secret of [
      ...keyBody(rsa),
      ...keyBody(ec),
      token,
      cred,
      'hunter2-yaml',
      'envsecret42',
      'jsonsecret7',
      'blockscalarsecret',
      'morescalar',
      opensshBody,
    ]) {
      expect(r.text, secret).not.toContain(secret);
    }
    // What a technician needs stays.
    expect(r.text).toContain('user: admin');
    expect(r.text).toContain('keep: visible');
    expect(r.text).toContain('BEGIN CERTIFICATE');
    expect(r.text).toContain('"name":"n1"');
    expect(r.count).toBeGreaterThanOrEqual(9);
  });

  it('is total and idempotent on any text, and never lets a planted secret through', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 400 }), fc.string({ maxLength: 400 }), (a, b) => {
        const once = redactText(`${a}\npassword: ${'s3cr3tV4lue'}\n${b}`);
        expect(once.text).not.toContain('s3cr3tV4lue');
        expect(redactText(once.text).text).toBe(once.text);
        const t = redactText(`${a}${token}${b}`);
        expect(t.text).not.toContain(token);
      }),
      { numRuns: 500 },
    );
  });

  it('catches secrets inline, after export/Environment=, in URL userinfo and in JSON containers', () => {
    const cases: Array<[string, string]> = [
      ['password = ini-secret1', 'ini-secret1'],
      ['export DB_PASSWORD=env-secret2', 'env-secret2'],
      ['Environment=TETHER_TOKEN=unit-secret3', 'unit-secret3'],
      ['dial etcds://root:url-secret4@10.0.0.1:2379', 'url-secret4'],
      ['{"msg":"login with password=msg-secret5","level":30}', 'msg-secret5'],
      ['{"privateKey": ["arr-secret6", {"d": "arr-secret7"}], "n": 1}', 'arr-secret6'],
      ['{"privateKey": {"d": "obj-secret8"}}', 'obj-secret8'],
      ['key = "bare-key-secret9"', 'bare-key-secret9'],
    ];
    for (const [text, secret] of cases) {
      const r = redactText(text);
      expect(r.text, text).not.toContain(secret);
      expect(redactText(r.text).text, text).toBe(r.text);
    }
    // JSON stays JSON when a secret sat inside one of its strings or under a container.
    expect(() => JSON.parse(redactText(cases[4]?.[0] ?? '').text)).not.toThrow();
    expect(JSON.parse(redactText(cases[5]?.[0] ?? '').text)).toEqual({ privateKey: REDACTED, n: 1 });
    expect(redactText('tokenId: abc user: admin').text).toBe('tokenId: abc user: admin');
  });

  it('catches blank-separated secrets in BIRD and FRR configuration', () => {
    const r = redactText(
      'protocol bgp up1 {\n  password "bird-md5";\n}\n neighbor 192.0.2.1 password frr-md5\n',
    );
    expect(r.text).not.toMatch(/bird-md5|frr-md5/);
    expect(r.text).toContain('neighbor 192.0.2.1 password');
    expect(redactText(r.text).text).toBe(r.text);
  });

  it("removes the node's private key (it signs HA heartbeats), keeps the roster's public keys", () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const spki = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
    const creds = JSON.stringify({ keyPem, certPem: '' });
    const r = redactText(creds);
    expect(r.text).not.toContain(keyPem.split('\n')[1]!);
    expect(r.count).toBeGreaterThan(0);
    // The slice on disk (cache.json) holds only public keys now: nothing to redact there.
    const node = JSON.stringify({ kind: 'Node', metadata: { name: 'gw-a' }, status: { publicKey: spki } });
    expect(redactText(node)).toEqual({ text: node, count: 0 });
  });
  it('leaves text without secrets unchanged', () => {
    const plain = 'node: n1\nsite: s1\nnetworks:\n  - name: blue\n    vni: 100\n';
    expect(redactText(plain)).toEqual({ text: plain, count: 0 });
    expect(REDACTED).toBe('[redacted]');
  });
});
