import 'reflect-metadata';
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  randomBytes,
  webcrypto,
  X509Certificate,
} from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { TetherError } from './errors.js';

// @peculiar/x509 needs a WebCrypto provider; Node's is native and fast.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const subtle = webcrypto.subtle;

export interface KeyPairPem {
  keyPem: string;
  publicKeyPem: string;
}

export interface IssuedCert {
  certPem: string;
  serial: string;
  notAfter: Date;
}

export interface CaMaterial {
  certPem: string;
  keyPem: string;
}

/** Identity carried in a certificate's URI SAN, SPIFFE-style. */
export type Identity =
  | { role: 'node'; name: string; site: string }
  | { role: 'admin'; name: string }
  /** May open remote shells (docs/shell.md) and read their audit; nothing else. */
  | { role: 'operator'; name: string }
  | { role: 'controller'; name: string };

const URI_PREFIX = 'spiffe://tether';

export function identityUri(id: Identity): string {
  switch (id.role) {
    case 'node':
      return `${URI_PREFIX}/site/${id.site}/node/${id.name}`;
    case 'admin':
      return `${URI_PREFIX}/admin/${id.name}`;
    case 'operator':
      return `${URI_PREFIX}/operator/${id.name}`;
    case 'controller':
      return `${URI_PREFIX}/controller/${id.name}`;
  }
}

export function parseIdentityUri(uri: string): Identity | undefined {
  const m =
    /^spiffe:\/\/tether\/(?:site\/([a-z0-9-]+)\/node\/([a-z0-9.-]+)|admin\/([a-z0-9.-]+)|controller\/([a-z0-9.-]+)|operator\/([a-z0-9.-]+))$/.exec(
      uri,
    );
  if (!m) return undefined;
  if (m[1] && m[2]) return { role: 'node', site: m[1], name: m[2] };
  if (m[3]) return { role: 'admin', name: m[3] };
  if (m[4]) return { role: 'controller', name: m[4] };
  if (m[5]) return { role: 'operator', name: m[5] };
  return undefined;
}

/** Reads the Tether identity from a certificate's subjectAltName (DER or PEM). */
export function identityOf(cert: X509Certificate): Identity | undefined {
  const san = cert.subjectAltName ?? '';
  for (const part of san.split(/,\s*/)) {
    if (part.startsWith('URI:')) {
      const id = parseIdentityUri(part.slice(4));
      if (id) return id;
    }
  }
  return undefined;
}

/** PEM blocks end with a newline, so concatenated chains stay parseable. */
function pemLine(pem: string): string {
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}

function toPem(der: ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der).toString('base64');
  return `-----BEGIN ${label}-----\n${b64.replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END ${label}-----\n`;
}

async function exportKeys(keys: CryptoKeyPair): Promise<KeyPairPem> {
  return {
    keyPem: toPem(await subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY'),
    publicKeyPem: toPem(await subtle.exportKey('spki', keys.publicKey), 'PUBLIC KEY'),
  };
}

async function importPrivateKey(keyPem: string): Promise<CryptoKey> {
  const der = createPrivateKey(keyPem).export({ format: 'der', type: 'pkcs8' });
  return subtle.importKey('pkcs8', der, ALG, false, ['sign']);
}

function newSerial(): string {
  // Positive 128-bit serial (high bit cleared) as RFC 5280 asks for unpredictable serials.
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f;
  return b.toString('hex');
}

export async function createCA(commonName: string, validityDays = 3650): Promise<CaMaterial> {
  const keys = (await subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const notBefore = new Date(Date.now() - 60_000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: newSerial(),
    name: `CN=${commonName}, O=tether`,
    notBefore,
    notAfter: new Date(notBefore.getTime() + validityDays * 86_400_000),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: pemLine(cert.toString('pem')), keyPem: (await exportKeys(keys)).keyPem };
}

/** Generates a key pair and a CSR for it; the private key stays with the caller. */
export async function createKeyAndCsr(commonName: string): Promise<{ keyPem: string; csrPem: string }> {
  const keys = (await subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${commonName}`,
    keys,
    signingAlgorithm: ALG,
  });
  return { keyPem: (await exportKeys(keys)).keyPem, csrPem: pemLine(csr.toString('pem')) };
}

/** Makes a CSR for an existing private key (certificate renewal keeps the node's key). */
export async function createCsrForKey(commonName: string, keyPem: string): Promise<string> {
  const priv = createPrivateKey(keyPem);
  const pubDer = createPublicKey(priv).export({ format: 'der', type: 'spki' });
  const keys = {
    privateKey: await importPrivateKey(keyPem),
    publicKey: await subtle.importKey('spki', pubDer, ALG, true, ['verify']),
  } as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${commonName}`,
    keys,
    signingAlgorithm: ALG,
  });
  return pemLine(csr.toString('pem'));
}

export interface SignOptions {
  identity: Identity;
  validitySeconds: number;
  dnsNames?: string[];
  ipAddresses?: string[];
  server?: boolean;
  client?: boolean;
}

/** Cached imported CA key: importing costs more than signing. */
const caKeyCache = new WeakMap<CaMaterial, { key: Promise<CryptoKey>; cert: x509.X509Certificate }>();

function caParts(ca: CaMaterial): { key: Promise<CryptoKey>; cert: x509.X509Certificate } {
  let parts = caKeyCache.get(ca);
  if (!parts) {
    parts = { key: importPrivateKey(ca.keyPem), cert: new x509.X509Certificate(ca.certPem) };
    caKeyCache.set(ca, parts);
  }
  return parts;
}

function parseCsr(csrPem: string): x509.Pkcs10CertificateRequest {
  try {
    return new x509.Pkcs10CertificateRequest(csrPem);
  } catch (e) {
    throw new TetherError(
      'TETHER_E_INVALID',
      'certificate request is not a PEM PKCS#10 CSR',
      { field: 'csr_pem' },
      { cause: e },
    );
  }
}

/**
 * Refuses any CSR whose key is not ECDSA P-256, the only kind `createKeyAndCsr` makes: a
 * weak key (RSA-1024) or an exotic curve in a node certificate would be signed otherwise.
 */
export function assertNodeKeyType(csrPem: string): void {
  const csr = parseCsr(csrPem);
  let type: string | undefined;
  let curve: string | undefined;
  let bits: number | undefined;
  try {
    const key = createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: 'der', type: 'spki' });
    type = key.asymmetricKeyType;
    curve = key.asymmetricKeyDetails?.namedCurve;
    bits = key.asymmetricKeyDetails?.modulusLength;
  } catch (e) {
    throw new TetherError(
      'TETHER_E_KEY_TYPE',
      'certificate request carries a public key that cannot be read',
      { field: 'csr_pem', expected: 'an ECDSA P-256 key' },
      { cause: e },
    );
  }
  if (type !== 'ec' || curve !== 'prime256v1') {
    const what = type === 'ec' ? `an EC key on ${curve ?? 'an unknown curve'}` : `a ${type ?? 'unknown'} key`;
    throw new TetherError(
      'TETHER_E_KEY_TYPE',
      `certificate request carries ${what}${bits ? ` of ${bits} bits` : ''}`,
      { field: 'csr_pem', expected: 'an ECDSA P-256 key (what `tether node enroll` generates)' },
    );
  }
}

/** SHA-256 of a CSR's public key: recognises a retried request from the same key. */
export function csrKeyFingerprint(csrPem: string): string {
  return createHash('sha256')
    .update(Buffer.from(parseCsr(csrPem).publicKey.rawData))
    .digest('hex');
}

/** Signs a CSR after checking its self-signature. Subject and SANs come from `opts`, never
 *  from the CSR, so a node cannot ask for someone else's identity. */
export async function signCsr(ca: CaMaterial, csrPem: string, opts: SignOptions): Promise<IssuedCert> {
  assertNodeKeyType(csrPem);
  const csr = parseCsr(csrPem);
  if (!(await csr.verify())) {
    throw new TetherError('TETHER_E_INVALID', 'certificate request signature does not verify', {
      field: 'csr_pem',
    });
  }
  const parts = caParts(ca);
  const serial = newSerial();
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(notBefore.getTime() + 60_000 + opts.validitySeconds * 1000);
  const sans: x509.JsonGeneralName[] = [{ type: 'url', value: identityUri(opts.identity) }];
  for (const d of opts.dnsNames ?? []) sans.push({ type: 'dns', value: d });
  for (const ip of opts.ipAddresses ?? []) sans.push({ type: 'ip', value: ip });
  const ekus: string[] = [];
  if (opts.server) ekus.push(x509.ExtendedKeyUsage.serverAuth);
  if (opts.client ?? true) ekus.push(x509.ExtendedKeyUsage.clientAuth);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: `CN=${opts.identity.name}, O=tether`,
    issuer: parts.cert.subject,
    notBefore,
    notAfter,
    signingAlgorithm: ALG,
    publicKey: csr.publicKey,
    signingKey: await parts.key,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(ekus),
      new x509.SubjectAlternativeNameExtension(sans),
      await x509.AuthorityKeyIdentifierExtension.create(parts.cert),
    ],
  });
  return { certPem: pemLine(cert.toString('pem')), serial, notAfter };
}

/** SHA-256 over the certificate's DER, lower-case hex: what a join token pins. */
export function certFingerprint(certPemOrDer: string | Buffer): string {
  const der = typeof certPemOrDer === 'string' ? new X509Certificate(certPemOrDer).raw : certPemOrDer;
  return createHash('sha256').update(der).digest('hex');
}

/** True if `cert` was issued by `ca` (signature checks out) and is within its validity. */
export function verifyIssuedBy(cert: X509Certificate, ca: X509Certificate, now = new Date()): boolean {
  if (!cert.checkIssued(ca)) return false;
  if (!cert.verify(ca.publicKey)) return false;
  return new Date(cert.validFrom) <= now && now <= new Date(cert.validTo);
}

export function serialOf(cert: X509Certificate): string {
  return cert.serialNumber.toLowerCase().replace(/^0+(?=.)/, '');
}

export function normalizeSerial(hex: string): string {
  return hex.toLowerCase().replace(/^0+(?=.)/, '');
}
