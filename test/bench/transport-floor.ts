// Baseline for the controller's memory per connected node: what one TLS + HTTP/2
// connection with one open stream costs a bare Node.js server, with no gRPC and no Tether
// on top. Whatever the controller spends per node beyond this is ours (grpc-js + session).
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCA, createKeyAndCsr, signCsr } from '../../src/lib/pki.js';
import { REPO } from './support/proc.js';

export async function run(opts: { connections?: number } = {}): Promise<Record<string, number | string>> {
  const n = opts.connections ?? 1000;
  const dir = mkdtempSync(join(tmpdir(), 'tether-floor-'));
  try {
    const ca = await createCA('floor-ca');
    const k = await createKeyAndCsr('floor');
    const c = await signCsr(ca, k.csrPem, {
      identity: { role: 'controller', name: 'floor' },
      validitySeconds: 3600,
      server: true,
    });
    writeFileSync(join(dir, 'key.pem'), k.keyPem);
    writeFileSync(join(dir, 'cert.pem'), c.certPem + ca.certPem);
    const child = fork(
      join(REPO, 'test/bench/support/h2-floor-server.ts'),
      [
        join(dir, 'key.pem'),
        join(dir, 'cert.pem'),
        String(n),
        join(REPO, 'test/bench/support/h2-floor-client.ts'),
      ],
      { execArgv: ['--expose-gc', '--import', 'tsx'] },
    );
    const res = await new Promise<{ before: number; after: number; perConnKiB: number }>(
      (resolve, reject) => {
        child.once('message', (m) => resolve(m as { before: number; after: number; perConnKiB: number }));
        child.once('exit', (code) => reject(new Error(`floor server exited ${code}`)));
      },
    );
    const out = {
      connections: n,
      bare_h2_tls_rss_before_MB: +(res.before / 1024).toFixed(1),
      bare_h2_tls_rss_after_MB: +(res.after / 1024).toFixed(1),
      bare_h2_tls_KB_per_connection: +res.perConnKiB.toFixed(1),
    };
    console.log(out);
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
