import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CaMaterial, createCA, createKeyAndCsr, signCsr } from '../../../src/lib/pki.js';
import type { Notifier } from '../../../src/node/agent/daemon.js';
import type { LoadedIdentity } from '../../../src/node/identity.js';

let ca: Promise<CaMaterial> | undefined;

/** One CA per test process. */
export function testCa(): Promise<CaMaterial> {
  ca ??= createCA('tether test CA');
  return ca;
}

/** A node identity with a real key and a certificate our test CA issued (as enrollment does). */
export async function testIdentity(name: string, site: string): Promise<LoadedIdentity> {
  const c = await testCa();
  const { keyPem, csrPem } = await createKeyAndCsr(name);
  const cert = await signCsr(c, csrPem, {
    identity: { role: 'node', name, site },
    validitySeconds: 86_400,
    server: true,
  });
  return {
    name,
    site,
    controllers: ['memory:1'],
    caFingerprint: 'test',
    caPem: c.certPem,
    credentials: { keyPem, certPem: cert.certPem },
  };
}

/** A temporary directory removed by the returned cleanup. */
export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Records what the daemon tells systemd; `healthy()` is the watchdog's check. */
export class FakeNotifier implements Notifier {
  readies = 0;
  statuses: string[] = [];
  watchdog: (() => boolean) | undefined;
  ready(): void {
    this.readies++;
  }
  status(text: string): void {
    this.statuses.push(text);
  }
  stopping(): void {}
  startWatchdog(healthy: () => boolean): void {
    this.watchdog = healthy;
  }
  stop(): void {}
  /** What a watchdog ping now would do: true = WATCHDOG=1 sent. */
  wouldPing(): boolean {
    return this.watchdog?.() === true;
  }
}
