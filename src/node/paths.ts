import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { TetherError } from '../lib/errors.js';

/** Layout of a node's state directory (default /var/lib/tether/node). */
export function nodePaths(stateDir: string) {
  return {
    stateDir,
    identity: join(stateDir, 'identity.yaml'),
    /** Key and certificate in one file so a rotation can never leave a mismatched pair. */
    credentials: join(stateDir, 'credentials.json'),
    ca: join(stateDir, 'ca.crt'),
    cache: join(stateDir, 'cache.json'),
    status: join(stateDir, 'status.json'),
    /** Endpoints the site proxy sent that the controller has not confirmed (docs/proxy.md). */
    siteLocal: join(stateDir, 'site-local.json'),
    /** The upper bound of the endpoint reports' sequence numbers (src/lib/sequence.ts). */
    reportSeq: join(stateDir, 'report-seq.json'),
  };
}

/** Throws the "not enrolled" error unless the state directory holds an identity. */
export function assertEnrolled(stateDir: string): void {
  const p = nodePaths(stateDir).identity;
  if (!existsSync(p)) {
    throw new TetherError('TETHER_E_STATE', `node is not enrolled (no ${p})`, {
      file: p,
      expected: 'run `tether node enroll --controller HOST:PORT --token TOKEN` first',
    });
  }
}
