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
  /\b(password|passwd|passphrase|secret|psk|authentication-key|auth-key)((?:[ \t]*[:=][ \t]*)|[ \t]+)(?!\[redacted\]|"\[redacted\]"|[:=])("[^"\n]*"|'[^'\n]*'|[^\s;"']+)/gi;
/** `scheme://user:password@host`: the password of a URL's userinfo. */
const URL_USERINFO = /(\b[a-z][a-z0-9+.-]{0,30}:\/\/[^\s/:@]{1,200}:)(?!\[redacted\]@)[^\s@/]{1,500}@/gi;
/** `IDENT=value` / `IDENT: value` anywhere in a line (`export X=`, `Environment=X=`, a log
 *  message's `password=x`); the identifier is checked with secretKey. */
const INLINE = /(?<![A-Za-z0-9_.-])([A-Za-z][A-Za-z0-9_.-]{0,100})([ \t]*[:=][ \t]*)/g;
const INLINE_VALUE = /^(?:"[^"\n]*"|'[^'\n]*'|[^\s;,"'&}\]]+)/;
const JOIN_TOKEN = /T10[0-9a-f]{64}::[a-z0-9]{6}\.[a-z0-9]{32}/g;
const CREDENTIAL = /\b[a-z0-9]{6}\.[a-z0-9]{32}\b/g;
/** A key that names a secret; `keyPem`, `privateKey`, `api_token`, `DB_PASSWORD` all match. */
const SECRET_KEY =
  /(pass(word|wd|phrase)?|secret|token|(^|[_-]|[a-z])key(pem)?|credential|auth|bearer|private|cookie|session[_-]?id)/i;
/** Keys that name a secret-ish word but hold public or harmless values. */
const PUBLIC_KEY =
  /^(public[_-]?key|publickey|key[_-]?type|keytype|tokenid|token[_-]?id|sshpublickey|monkey|keys)$/i;

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
  // Quoted after blanks (BIRD wants a string there); bare after `=`/`:`, which may sit
  // inside a JSON string (a log message) that quotes would break.
  s = sub(SPACED, s, (_m, k: string, sep: string) =>
    /[:=]/.test(sep) ? `${k}${sep}${REDACTED}` : `${k}${sep}"${REDACTED}"`,
  );
  s = sub(JOIN_TOKEN, s, () => REDACTED);
  s = sub(CREDENTIAL, s, () => REDACTED);
  s = sub(URL_USERINFO, s, (_m, head: string) => `${head}${REDACTED}@`);
  const inline = redactInline(s);
  s = inline.text;
  count += inline.count;
  const containers = redactJsonContainers(s);
  s = containers.text;
  count += containers.count;
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
      /("(?:[^"\\]|\\.){0,200}")(\s*:\s*)("(?:[^"\\]|\\.)*"|-?\d[\d.eE+-]*|true|false|null)/g,
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

function redactInline(text: string): Redacted {
  let count = 0;
  let out = '';
  let last = 0;
  INLINE.lastIndex = 0;
  for (let m = INLINE.exec(text); m; m = INLINE.exec(text)) {
    const [whole, ident] = m as unknown as [string, string];
    const valueAt = m.index + whole.length;
    if (!secretKey(ident)) {
      // Not a secret name: go on right after the separator, so `Environment=TOKEN=x`
      // still sees `TOKEN=x`.
      INLINE.lastIndex = valueAt;
      continue;
    }
    const v = INLINE_VALUE.exec(text.slice(valueAt, valueAt + 4096));
    const done = text.startsWith(REDACTED, valueAt) || text.startsWith(`"${REDACTED}"`, valueAt);
    if (!v || done || v[0].startsWith('|') || v[0].startsWith('>')) {
      INLINE.lastIndex = valueAt;
      continue;
    }
    out += `${text.slice(last, valueAt)}${REDACTED}`;
    last = valueAt + v[0].length;
    INLINE.lastIndex = last;
    count++;
  }
  return { text: out + text.slice(last), count };
}

/** `"privateKey": [...]` or `{...}` under a secret-named JSON member: the whole value. */
function redactJsonContainers(text: string): Redacted {
  const re = /"((?:[^"\\\n]|\\.){1,200})"\s*:\s*[[{]/g;
  let count = 0;
  let out = '';
  let last = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const key = m[1] as string;
    const open = m.index + m[0].length - 1;
    if (!secretKey(key)) continue;
    const end = matchingClose(text, open);
    out += `${text.slice(last, open)}"${REDACTED}"`;
    last = end;
    re.lastIndex = end;
    count++;
  }
  return { text: out + text.slice(last), count };
}

/** Index just past the bracket closing the one at `open` (strings respected), or the end. */
function matchingClose(text: string, open: number): number {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
    } else if (c === '[' || c === '{') depth++;
    else if (c === ']' || c === '}') {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return text.length;
}
