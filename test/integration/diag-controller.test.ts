// The `controller` check of `tether diag` against a real TLS 1.3 HTTP/2 server on loopback that
// demands client certificates from one CA, as the controller does: with TLS 1.3 the client's
// handshake completes before the server judges the client certificate, so the check must see
// the server's HTTP/2 SETTINGS before it passes.

import { mkdtempSync, rmSync } from 'node:fs';
import { createSecureServer, type Http2SecureServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessRunner } from '../../src/lib/exec.js';
import { type CaMaterial, certFingerprint, createCA, createKeyAndCsr, signCsr } from '../../src/lib/pki.js';
import { saveIdentity } from '../../src/node/identity.js';
import { runDiag } from '../../src/node/support/diag.js';
import { waitFor } from './support/proc.js';

let ca: CaMaterial;
let server: Http2SecureServer;
let port = 0;
const dirs: string[] = [];

beforeAll(async () => {
  ca = await createCA('diag-ca');
  const { keyPem, csrPem } = await createKeyAndCsr('controller');
  const cert = await signCsr(ca, csrPem, {
    identity: { role: 'controller', name: 'c1' },
    validitySeconds: 3600,
    server: true,
    ipAddresses: ['127.0.0.1'],
  });
  server = createSecureServer({
    key: keyPem,
    cert: cert.certPem,
    ca: ca.certPem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
  });
  server.on('stream', (s) => s.respond({ ':status': 404 }, { endStream: true }));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function nodeDir(validitySeconds: number): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'tether-diagc-'));
  dirs.push(dir);
  const { keyPem, csrPem } = await createKeyAndCsr('n1');
  const cert = await signCsr(ca, csrPem, {
    identity: { role: 'node', site: 's1', name: 'n1' },
    validitySeconds,
    client: true,
  });
  if (validitySeconds < 60)
    await waitFor(
      'the certificate to expire',
      () => Date.now() > cert.notAfter.getTime() + 1000,
      30_000,
      200,
    );
  saveIdentity(
    dir,
    {
      name: 'n1',
      site: 's1',
      controllers: [`127.0.0.1:${port}`],
      caFingerprint: certFingerprint(ca.certPem),
    },
    ca.certPem,
    { keyPem, certPem: cert.certPem },
  );
  return dir;
}

const controllerCheck = async (dir: string) =>
  (await runDiag({ stateDir: dir, runner: new ProcessRunner(), timeoutMs: 5000 })).checks.find(
    (c) => c.name === 'controller',
  );

describe('tether diag: controller check', () => {
  it('passes once the server answers HTTP/2 with a certificate it accepts', { timeout: 30_000 }, async () => {
    expect(await controllerCheck(await nodeDir(3600))).toMatchObject({
      verdict: 'pass',
      detail: expect.stringMatching(/HTTP\/2 answered/),
    });
  });

  it('fails when the server refuses an expired client certificate after the handshake', {
    timeout: 60_000,
  }, async () => {
    const c = await controllerCheck(await nodeDir(1));
    expect(c?.verdict).toBe('fail');
    expect(c?.remedy).toMatch(/certificate/);
  });
});
