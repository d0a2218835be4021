/**
 * Redaction for the support bundle (docs/field.md): a bundle leaves the site, so nothing that
 * authenticates anyone may be in it. Redaction is by shape, not by file name, so a secret
 * pasted into an unexpected file is still caught:
 *
 *  - PEM blocks whose label says PRIVATE KEY (RSA, EC, ENCRYPTED, OPENSSH…), terminated or not;
 *  - join tokens `T10<hex>::<id>.<secret>` and bare credentials `<id>.<32 chars>`;
 *  - the value of any key that names a secret (password, secret, token, key, credential,
 *    auth, bearer, private), in YAML (`key: value`), JSON (`"key": "value"`) or env
 *    (`KEY=value`) shape, including YAML block scalars (`key: |` and its indented lines).
 *
 * Certificates (public) are kept: their expiry is what a technician needs to see.
 */

export const REDACTED = '[redacted]';

/** Largest text redacted in one call; a bigger file is left out of the bundle, not cut. */
export const MAX_REDACT_BYTES = 8 * 1024 * 1024;

const PEM_PRIVATE =
  /-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/g;
/** `password "x";` (BIRD), `neighbor A password x` (FRR), `psk x`: a secret word, blanks, a value. */
const SPACED =
  /\b(password|passwd|passphrase|secret|psk|authentication-key|auth-key)([ \t]+)(?!\[redacted\]|"\[redacted\]")("[^"\n]*"|'[^'\n]*'|[^\s;"']+)/gi;
const JOIN_TOKEN = /T10[0-9a-f]{64}::[a-z0-9]{6}\.[a-z0-9]{32}/g;
const CREDENTIAL = /\b[a-z0-9]{6}\.[a-z0-9]{32}\b/g;
/** A key that names a secret; `keyPem`, `privateKey`, `api_token`, `DB_PASSWORD` all match. */
const SECRET_KEY =
  /(pass(word|wd|phrase)?|secret|token|(^|[_-]|[a-z])key(pem)?|credential|auth|bearer|private|cookie|session[_-]?id)/i;
/** Keys that name a secret-ish word but hold public or harmless values. */
const PUBLIC_KEY =
  /^(public[_-]?key|publickey|key[_-]?type|keytype|tokenid|token[_-]?id|sshpublickey|monkey|keys?)$/i;

function secretKey(k: string): boolean {
  const bare = k.replace(/^["']|["']$/g, '');
  return SECRET_KEY.test(bare) && !PUBLIC_KEY.test(bare);
}

export interface Redacted {
  text: string;
  /** How many values were replaced. */
  count: number;
}

/** `text` with every secret replaced by `[redacted]`. Pure; total on any string. */
export function redactText(text: string): Redacted {
  let count = 0;
  const sub = (re: RegExp, s: string, make: (m: string, ...g: string[]) => string): string =>
    s.replace(re, (m: string, ...g: string[]) => {
      count++;
      return make(m, ...g);
    });
  let s = sub(
    PEM_PRIVATE,
    text,
    (_m, label) => `-----BEGIN ${label}-----\n${REDACTED}\n-----END ${label}-----`,
  );
  s = sub(SPACED, s, (_m, k: string, sep: string) => `${k}${sep}"${REDACTED}"`);
  s = sub(JOIN_TOKEN, s, () => REDACTED);
  s = sub(CREDENTIAL, s, () => REDACTED);
  const lines = s.split('\n');
  const outLines: string[] = [];
  let blockIndent = -1; // inside a YAML block scalar of a secret key: drop lines indented deeper
  for (const line of lines) {
    const indent = line.length - line.trimStart().length;
    if (blockIndent >= 0) {
      if (line.trim() === '' || indent > blockIndent) continue;
      blockIndent = -1;
    }
    // JSON members, possibly several on one line: "key": "value" | number | true
    let l = line.replace(
      /("(?:[^"\\]|\\.){0,200}")(\s*:\s*)("(?:[^"\\]|\\.)*"|-?\d[\d.eE+-]*|true|false)/g,
      (m, k: string, sep: string, v: string) => {
        if (!secretKey(k.slice(1, -1)) || v === `"${REDACTED}"`) return m;
        count++;
        return `${k}${sep}"${REDACTED}"`;
      },
    );
    // YAML `key: value` (optionally a list item) and env `KEY=value`
    const y = /^(\s*(?:-\s+)?)([A-Za-z0-9_.'"-]{1,200})(\s*[:=]\s*)(.*)$/.exec(l);
    if (y && !l.trimStart().startsWith('"')) {
      const [, pre, k, sep, v] = y as unknown as [string, string, string, string, string];
      if (secretKey(k) && v.trim() !== '' && v.trim() !== REDACTED && v.trim() !== `"${REDACTED}"`) {
        count++;
        if (/^[|>][-+0-9]*\s*$/.test(v.trim())) blockIndent = indent;
        l = `${pre}${k}${sep}${REDACTED}`;
      } else if (secretKey(k) && v.trim() === '' && sep.includes(':')) {
        // `key:` followed by an indented value on the next lines (YAML mapping or scalar)
        blockIndent = indent;
        count++;
        l = `${pre}${k}${sep}${REDACTED}`;
      }
    }
    outLines.push(l);
  }
  return { text: outLines.join('\n'), count };
}
