import { existsSync, readFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { writeFileAtomic } from '../lib/atomic.js';
import { TetherError } from '../lib/errors.js';
import { parseJson, parseYaml, readInputFile } from '../lib/input.js';
import { assertEnrolled, nodePaths } from './paths.js';

// nodePaths lives in paths.ts, which loads neither yaml nor the PKI (`tether status`).
export { nodePaths } from './paths.js';

export interface NodeIdentity {
  name: string;
  site: string;
  controller: string;
  caFingerprint: string;
}

export interface NodeCredentials {
  keyPem: string;
  certPem: string;
}

export interface LoadedIdentity extends NodeIdentity {
  caPem: string;
  credentials: NodeCredentials;
}

export function saveIdentity(
  stateDir: string,
  id: NodeIdentity,
  caPem: string,
  creds: NodeCredentials,
): void {
  const p = nodePaths(stateDir);
  writeFileAtomic(p.ca, caPem, 0o644);
  writeFileAtomic(p.credentials, JSON.stringify(creds), 0o600);
  writeFileAtomic(p.identity, stringify(id), 0o644);
}

export function saveCredentials(stateDir: string, creds: NodeCredentials): void {
  writeFileAtomic(nodePaths(stateDir).credentials, JSON.stringify(creds), 0o600);
}

export function isEnrolled(stateDir: string): boolean {
  return existsSync(nodePaths(stateDir).identity);
}

export function loadIdentity(stateDir: string): LoadedIdentity {
  const p = nodePaths(stateDir);
  assertEnrolled(stateDir);
  const id = parseYaml(readInputFile(p.identity), { source: p.identity }) as NodeIdentity;
  for (const f of ['name', 'site', 'controller', 'caFingerprint'] as const) {
    if (typeof id?.[f] !== 'string')
      throw new TetherError('TETHER_E_STATE', 'identity file is incomplete', {
        file: p.identity,
        field: f,
        expected: 'a string',
      });
  }
  let credentials: NodeCredentials;
  try {
    credentials = parseJson(readInputFile(p.credentials), { source: p.credentials }) as NodeCredentials;
  } catch (e) {
    throw new TetherError('TETHER_E_STATE', `cannot read node credentials: ${(e as Error).message}`, {
      file: p.credentials,
    });
  }
  return { ...id, caPem: readFileSync(p.ca, 'utf8'), credentials };
}
