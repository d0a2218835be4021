import { TetherError } from '../lib/errors.js';

/**
 * Join token: `T10<sha256 of controller CA DER, hex>::<id>.<secret>`, the k3s `K10` idea:
 * the node checks the controller's CA against the pinned hash before it sends the secret.
 * The format is a contract between controller (which mints tokens) and node (which reads
 * them), so it lives here, once.
 */
export interface ParsedToken {
  caFingerprint: string;
  id: string;
  secret: string;
}

const TOKEN_RE = /^T10([0-9a-f]{64})::([a-z0-9]{6})\.([a-z0-9]{32})$/;
const CREDENTIAL_RE = /^([a-z0-9]{6})\.([a-z0-9]{32})$/;

export function formatToken(t: ParsedToken): string {
  return `T10${t.caFingerprint}::${credentialOf(t)}`;
}

export function parseToken(text: string): ParsedToken {
  const m = TOKEN_RE.exec(text.trim());
  if (!m) {
    throw new TetherError('TETHER_E_INVALID', 'malformed join token', {
      field: 'token',
      expected: 'T10<64 hex>::<6 char id>.<32 char secret>',
    });
  }
  return { caFingerprint: m[1]!, id: m[2]!, secret: m[3]! };
}

/** The part a node sends over the wire once the CA is pinned: `<id>.<secret>`. */
export function credentialOf(t: Pick<ParsedToken, 'id' | 'secret'>): string {
  return `${t.id}.${t.secret}`;
}

export function splitCredential(cred: string): { id: string; secret: string } {
  const m = CREDENTIAL_RE.exec(cred);
  if (!m) throw new TetherError('TETHER_E_TOKEN', 'malformed token credential', { field: 'token' });
  return { id: m[1]!, secret: m[2]! };
}
