import { existsSync, readFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { writeFileAtomic } from '../lib/atomic.js';
import { parseControllerList } from '../lib/controller-addresses.js';
import { TetherError } from '../lib/errors.js';
import { parseJson, parseYaml, readInputFile } from '../lib/input.js';
import { assertEnrolled, nodePaths } from './paths.js';

// nodePaths lives in paths.ts, which loads neither yaml nor the PKI (`tether status`).
export { nodePaths } from './paths.js';

export interface NodeIdentity {
  name: string;
  site: string;
  /** Every controller replica this node may sync from, in failover order (1–8, HOST:PORT). */
  controllers: string[];
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
  writeFileAtomic(p.identity, renderIdentity(id), 0o644);
}

/**
 * identity.yaml keeps `controller:` (the first address) beside `controllers:` so that an
 * older build, which reads only the single address, still starts after a downgrade.
 */
function renderIdentity(id: NodeIdentity): string {
  const { controllers, ...rest } = id;
  return stringify({ ...rest, controller: controllers[0], controllers });
}

/** Rewrites identity.yaml with a new controller list (one a controller advertised). */
export function saveControllers(stateDir: string, controllers: readonly string[]): void {
  const p = nodePaths(stateDir);
  const id = readIdentityFile(p.identity);
  writeFileAtomic(p.identity, renderIdentity({ ...id, controllers: [...controllers] }), 0o644);
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
  const id = readIdentityFile(p.identity);
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

/**
 * Reads identity.yaml. Files written before controller lists (issue 12) hold one
 * `controller: HOST:PORT`; they are read as a list of that one address, unchanged on disk
 * until the node learns more.
 */
function readIdentityFile(file: string): NodeIdentity {
  const raw = parseYaml(readInputFile(file), { source: file }) as Record<string, unknown> | null;
  for (const f of ['name', 'site', 'caFingerprint'] as const) {
    if (typeof raw?.[f] !== 'string')
      throw new TetherError('TETHER_E_STATE', 'identity file is incomplete', {
        file,
        field: f,
        expected: 'a string',
      });
  }
  const r = raw as Record<string, unknown>;
  const list = r.controllers ?? (typeof r.controller === 'string' ? [r.controller] : undefined);
  if (list === undefined)
    throw new TetherError('TETHER_E_STATE', 'identity file is incomplete', {
      file,
      field: 'controllers',
      expected: 'a list of controller addresses HOST:PORT',
    });
  let controllers: string[];
  try {
    controllers = parseControllerList(list, 'controllers');
  } catch (e) {
    const t = e as TetherError;
    throw new TetherError('TETHER_E_STATE', `identity file: ${t.message}`, {
      file,
      field: String(t.details?.field ?? 'controllers'),
      expected: 'a list of 1 to 8 controller addresses HOST:PORT',
    });
  }
  return {
    name: r.name as string,
    site: r.site as string,
    controllers,
    caFingerprint: r.caFingerprint as string,
  };
}
