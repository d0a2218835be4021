import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { stringify } from 'yaml';
import { writeFileAtomic } from '../lib/atomic.js';
import { TetherError } from '../lib/errors.js';
import { type CaMaterial, certFingerprint, createCA, createKeyAndCsr, signCsr } from '../lib/pki.js';
import { type ControllerConfig, DEFAULT_CONFIG, renderControllerConfig } from './config.js';
import { controllerPaths } from './paths.js';

export interface InitOptions {
  dataDir: string;
  listen?: string;
  advertise?: string;
  /** Extra DNS names / IPs for the server certificate (nodes check identity, not names, but
   *  grpcurl and browsers check names). */
  dnsNames?: string[];
  ipAddresses?: string[];
  config?: Partial<ControllerConfig>;
}

export interface InitResult {
  caFingerprint: string;
  adminConfig: string;
  config: ControllerConfig;
}

/** Admin client config, read by the `tether` CLI. Contains a private key: mode 0600. */
export interface ClientConfig {
  apiVersion: 'tether.dev/v1';
  kind: 'ClientConfig';
  server: string;
  caFingerprint: string;
  ca: string;
  cert: string;
  key: string;
}

/** Creates the CA, the server and admin certificates and the config. Refuses to overwrite an
 *  existing CA: a new CA would orphan every enrolled node. */
export async function initController(opts: InitOptions): Promise<InitResult> {
  const p = controllerPaths(opts.dataDir);
  if (existsSync(p.caKey)) {
    throw new TetherError('TETHER_E_PRECONDITION', `controller already initialised in ${opts.dataDir}`, {
      file: p.caKey,
      expected: 'an empty data directory (a new CA would orphan every enrolled node)',
    });
  }
  mkdirSync(p.pki, { recursive: true, mode: 0o700 });
  const config: ControllerConfig = {
    ...DEFAULT_CONFIG,
    ...opts.config,
    ...(opts.listen ? { listen: opts.listen } : {}),
    ...(opts.advertise ? { advertise: opts.advertise } : {}),
  };
  const ca = await createCA('tether-ca');
  writeFileAtomic(p.caKey, ca.keyPem, 0o600);
  writeFileAtomic(p.caCert, ca.certPem, 0o644);

  const server = await createKeyAndCsr('tether-controller');
  const serverCert = await signCsr(ca, server.csrPem, {
    identity: { role: 'controller', name: 'controller' },
    validitySeconds: 5 * 365 * 86_400,
    dnsNames: ['localhost', hostname(), ...(opts.dnsNames ?? [])],
    ipAddresses: ['127.0.0.1', '::1', ...(opts.ipAddresses ?? [])],
    server: true,
    client: false,
  });
  writeFileAtomic(p.serverKey, server.keyPem, 0o600);
  // The chain includes the CA so a joining node can pin it from the handshake alone.
  writeFileAtomic(p.serverCert, serverCert.certPem + ca.certPem, 0o644);

  const adminConfig = await issueAdminConfig(ca, config.advertise, 'admin');
  writeFileAtomic(p.adminConfig, stringify(adminConfig), 0o600);
  writeFileAtomic(p.config, renderControllerConfig(config), 0o644);
  return { caFingerprint: adminConfig.caFingerprint, adminConfig: p.adminConfig, config };
}

export async function issueAdminConfig(ca: CaMaterial, server: string, name: string): Promise<ClientConfig> {
  return issueClientConfig(ca, server, { role: 'admin', name });
}

/**
 * A client config for a person: an admin (everything of the Admin API) or an operator (remote
 * shells and their audit only, docs/shell.md). Operators get a shorter lifetime by default:
 * a NOC identity that leaks should not outlive a rota.
 */
export async function issueClientConfig(
  ca: CaMaterial,
  server: string,
  identity: { role: 'admin' | 'operator'; name: string },
  validitySeconds = identity.role === 'admin' ? 365 * 86_400 : 90 * 86_400,
): Promise<ClientConfig> {
  if (!/^[a-z0-9.-]{1,253}$/.test(identity.name))
    throw new TetherError(
      'TETHER_E_INVALID',
      `"${identity.name.slice(0, 80)}" is not a valid identity name`,
      {
        field: 'NAME',
        expected: 'lower-case letters, digits, "." and "-"',
      },
    );
  const admin = await createKeyAndCsr(identity.name);
  const cert = await signCsr(ca, admin.csrPem, { identity, validitySeconds });
  return {
    apiVersion: 'tether.dev/v1',
    kind: 'ClientConfig',
    server,
    caFingerprint: certFingerprint(ca.certPem),
    ca: ca.certPem,
    cert: cert.certPem,
    key: admin.keyPem,
  };
}

export function loadCa(dataDir: string): CaMaterial {
  const p = controllerPaths(dataDir);
  if (!existsSync(p.caKey)) {
    throw new TetherError('TETHER_E_STATE', `controller not initialised in ${dataDir}`, {
      file: p.caKey,
      expected: 'run `tether controller init` first',
    });
  }
  return { certPem: readFileSync(p.caCert, 'utf8'), keyPem: readFileSync(p.caKey, 'utf8') };
}
