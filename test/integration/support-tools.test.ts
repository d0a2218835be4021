import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certFingerprint, createCA, createKeyAndCsr, signCsr } from '../../src/lib/pki.js';
import { saveIdentity } from '../../src/node/identity.js';
import { runTether } from './support/proc.js';

// `tether bundle` and `tether diag` against a real node state directory with real keys; the
// tarball is extracted with tar and searched for every secret the test planted.

let dir: string;
const planted: string[] = [];
const token = `T10${'cd'.repeat(32)}::k3j2h1.${'r'.repeat(16)}${'s'.repeat(16)}`;

function walk(d: string): string[] {
  return readdirSync(d).flatMap((n) => {
    const p = join(d, n);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tether-s11-'));
  const ca = await createCA('test-ca');
  // An expired node certificate: issued with one second of life, then waited out.
  const { keyPem, csrPem } = await createKeyAndCsr('n1');
  const cert = await signCsr(ca, csrPem, {
    identity: { role: 'node', site: 's1', name: 'n1' },
    validitySeconds: 1,
    client: true,
  });
  saveIdentity(
    dir,
    { name: 'n1', site: 's1', controllers: ['127.0.0.1:1'], caFingerprint: certFingerprint(ca.certPem) },
    ca.certPem,
    {
      keyPem,
      certPem: cert.certPem,
    },
  );
  // Every base64 line of both private keys, except lines that also occur in a certificate: a
  // PKCS#8 EC key ends with its public point, which the certificate carries too (public).
  const pub = `${ca.certPem}${cert.certPem}`;
  const keyLines = (pem: string) =>
    pem.split('\n').filter((l) => l && !l.startsWith('-----') && !pub.includes(l));
  planted.push(...keyLines(keyPem), ...keyLines(ca.keyPem));
  mkdirSync(join(dir, 'gateway'));
  writeFileSync(
    join(dir, 'gateway', 'bird.conf'),
    'protocol bgp up1 {\n  neighbor 192.0.2.1 as 65000;\n  password "bgp-md5-secret";\n}\n',
  );
  planted.push('bgp-md5-secret');
  writeFileSync(
    join(dir, 'bootstrap.yaml'),
    `controller: 10.0.0.1:7443\ntoken: ${token}\nwifi:\n  passphrase: wifi-pass-99\n`,
  );
  planted.push(token, 'wifi-pass-99', 'rrrrrrrrrrrrrrrrssssssssssssssss');
  writeFileSync(join(dir, 'ca.key'), ca.keyPem); // a CA key where none belongs: still caught
  mkdirSync(join(dir, 'logs'));
  writeFileSync(
    join(dir, 'logs', 'node.log'),
    `${JSON.stringify({ level: 30, time: new Date().toISOString(), name: 'tether-node', msg: 'enrolled', secret: 'log-secret-5' })}\n`,
  );
  planted.push('log-secret-5');
  await new Promise((r) => setTimeout(r, 1500));
}, 30_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('tether diag', () => {
  it('names a cut WAN and an expired certificate, each with a remedy, and exits 7', async () => {
    // 127.0.0.1:1 refuses: the WAN as the node sees it when the controller is unreachable.
    const r = await runTether(['diag', '--state-dir', dir, '-o', 'json', '--timeout', '1000']);
    expect(r.code).toBe(7);
    const res = JSON.parse(r.stdout) as {
      checks: Array<{ name: string; verdict: string; detail: string; remedy?: string }>;
    };
    const by = new Map(res.checks.map((c) => [c.name, c]));
    expect(by.get('controller')).toMatchObject({
      verdict: 'fail',
      detail: expect.stringMatching(/cannot reach 127\.0\.0\.1:1/),
    });
    expect(by.get('controller')?.remedy).toMatch(/WAN/);
    expect(by.get('certificate')).toMatchObject({
      verdict: 'fail',
      detail: expect.stringMatching(/expired/),
    });
    expect(by.get('certificate')?.remedy).toMatch(/tether node enroll/);
    expect(by.get('session')).toMatchObject({ verdict: 'fail' });
    expect(by.get('ca-pin')?.verdict).toBe('pass');
    expect(by.get('disk')?.verdict).not.toBe(undefined);
    const human = await runTether(['diag', '--state-dir', dir, '--timeout', '1000']);
    expect(human.stdout).toMatch(/^FAIL {2}certificate: node certificate expired/m);
    expect(human.stdout).not.toContain('\u001b['); // NO_COLOR (set by runProcess)
  }, 30_000);

  it('reports a silent controller (filtered WAN) as a timeout', async () => {
    const srv: Server = createServer(() => undefined); // accepts, never speaks TLS
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const port = (srv.address() as { port: number }).port;
    const id = readFileSync(join(dir, 'identity.yaml'), 'utf8');
    writeFileSync(join(dir, 'identity.yaml'), id.replaceAll('127.0.0.1:1', `127.0.0.1:${port}`));
    try {
      const r = await runTether(['diag', '--state-dir', dir, '-o', 'json', '--timeout', '500']);
      const c = (JSON.parse(r.stdout) as { checks: Array<{ name: string; detail: string }> }).checks.find(
        (x) => x.name === 'controller',
      );
      expect(c?.detail).toMatch(/no answer .* within 500 ms/);
    } finally {
      writeFileSync(join(dir, 'identity.yaml'), id);
      srv.close();
    }
  }, 30_000);
});

describe('tether bundle', () => {
  it('writes a tarball with a manifest whose hashes match and no planted secret anywhere', async () => {
    const out = join(dir, '..', `${dir.split('/').pop()}-bundle.tar.gz`);
    try {
      const r = await runTether(['bundle', '--state-dir', dir, '-o', out]);
      expect(r.stderr).toMatch(/wrote .*secret\(s\) redacted/);
      expect(r.code).toBe(0);
      const x = mkdtempSync(join(tmpdir(), 'tether-s11-x-'));
      try {
        execFileSync('tar', ['-xzf', out, '-C', x]);
        const files = walk(x);
        const manifestFile = files.find((f) => f.endsWith('manifest.json')) as string;
        const m = JSON.parse(readFileSync(manifestFile, 'utf8')) as {
          files: Array<{ path: string; sha256: string; bytes: number }>;
        };
        const root = manifestFile.slice(0, -'manifest.json'.length);
        const { createHash } = await import('node:crypto');
        for (const f of m.files) {
          const b = readFileSync(join(root, f.path));
          expect(createHash('sha256').update(b).digest('hex'), f.path).toBe(f.sha256);
        }
        const paths = m.files.map((f) => f.path);
        for (const p of [
          'status.json',
          'diag.json',
          'versions.json',
          'logs.jsonl',
          'kernel/nft.txt',
          'state/identity.yaml',
          'state/gateway/bird.conf',
        ])
          expect(paths).toContain(p);
        const all = files.map((f) => readFileSync(f, 'utf8')).join('\n');
        for (const s of planted) {
          const where = files
            .filter((f) => readFileSync(f, 'utf8').includes(s))
            .map((f) => f.slice(x.length));
          expect(where, `planted secret ${s.slice(0, 12)}…`).toEqual([]);
        }
        expect(all).not.toMatch(/PRIVATE KEY-----\s*[A-Za-z0-9+/]{20}/);
        expect(all).toContain('BEGIN CERTIFICATE'); // the public part stays
      } finally {
        rmSync(x, { recursive: true, force: true });
      }
    } finally {
      rmSync(out, { force: true });
    }
  }, 60_000);

  it('keeps within the size cap and names what it left out', async () => {
    const out = join(dir, '..', `${dir.split('/').pop()}-small.tar.gz`);
    writeFileSync(join(dir, 'big.txt'), 'x'.repeat(1_500_000));
    try {
      const r = await runTether(['bundle', '--state-dir', dir, '-o', out, '--max-size', '200000']);
      expect(r.code).toBe(0);
      const m = JSON.parse(
        execFileSync('tar', ['-xzOf', out, '--wildcards', '*/manifest.json'], { encoding: 'utf8' }),
      ) as {
        files: Array<{ bytes: number }>;
        omitted: Array<{ path: string; reason: string }>;
      };
      expect(m.files.reduce((n, f) => n + f.bytes, 0)).toBeLessThanOrEqual(200_000);
      expect(m.omitted).toContainEqual({
        path: 'state/big.txt',
        reason: 'bundle size cap 200000 bytes reached',
      });
    } finally {
      rmSync(out, { force: true });
      rmSync(join(dir, 'big.txt'), { force: true });
    }
  }, 60_000);
});
