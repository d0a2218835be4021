import { readFileSync } from 'node:fs';
import { TetherError } from '../../lib/errors.js';
import type { Datastore } from './datastore.js';
import { EtcdStore, type EtcdTls } from './etcd.js';
import { LocalDatastore } from './local.js';
import { MemoryStore } from './memory.js';
import { SqliteStore } from './sqlite.js';

/** What `--datastore` names, parsed; `openDatastore` turns it into a store. */
export type DatastoreSpec =
  | { backend: 'memory' }
  | { backend: 'sqlite'; dataDir: string }
  | {
      backend: 'etcd';
      /** host:port of each member, in the order given (grpc-js fails over in that order). */
      endpoints: string[];
      /** etcds:// — TLS to every member. */
      tls: boolean;
      /** Key prefix of this installation, from the URL's path (default "/tether/"). */
      prefix: string;
    };

/** File paths of the TLS material for etcds:// (flags --etcd-ca/--etcd-cert/--etcd-key). */
export interface DatastoreTlsFiles {
  /** CA that signed the members' certificates; without it the system roots are used. */
  caFile?: string;
  /** Client certificate and key, for members started with --client-cert-auth. */
  certFile?: string;
  keyFile?: string;
  /** Name to check the members' certificate against when it differs from the dialled host. */
  serverName?: string;
}

export interface OpenDatastoreOptions {
  tls?: DatastoreTlsFiles;
  /** etcd's --max-txn-ops, when the cluster runs with another limit than 128. */
  maxTxnOps?: number;
  callTimeoutMs?: number;
  now?: () => Date;
  /** Flag name the errors point at (default "--datastore"). */
  field?: string;
}

/** Bounds the parser: a URL longer than this or with more members is not a real config. */
const MAX_URL_CHARS = 4096;
const MAX_ENDPOINTS = 32;
const DEFAULT_PREFIX = '/tether/';
const FORMS = 'sqlite:PATH, memory: or etcd[s]://host:port[,host:port...][/prefix/]';

const HOST_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV4 = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6 = /^\[[0-9A-Fa-f:.]{2,45}\]$/;
const PREFIX = /^\/[A-Za-z0-9._~/-]{0,200}$/;

function configError(field: string, message: string, expected: string, extra: Record<string, unknown> = {}) {
  return new TetherError('TETHER_E_CONFIG', `${field}: ${message}`, { field, expected, ...extra });
}

/**
 * Parses `--datastore`: `memory:`, `sqlite:PATH` (PATH is the data directory holding
 * store.db), `etcd://h:p,h:p[/prefix/]` or `etcds://...` (TLS). Anything else is
 * TETHER_E_CONFIG naming the flag and the accepted forms, never a half-parsed spec.
 */
export function parseDatastoreUrl(url: string, field = '--datastore'): DatastoreSpec {
  if (typeof url !== 'string' || url.length === 0) throw configError(field, 'empty', FORMS);
  if (url.length > MAX_URL_CHARS)
    throw configError(field, `${url.length} characters`, `at most ${MAX_URL_CHARS}`);
  const shown = JSON.stringify(url.length > 120 ? `${url.slice(0, 120)}…` : url);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (/[\0-\x1f\x7f]/.test(url)) throw configError(field, `${shown} contains a control character`, FORMS);
  if (url === 'memory:') return { backend: 'memory' };
  if (url.startsWith('sqlite:')) {
    const dataDir = url.slice('sqlite:'.length);
    if (dataDir.length === 0 || dataDir.startsWith('//'))
      throw configError(
        field,
        `${shown} has no path`,
        'sqlite:PATH (a data directory, e.g. sqlite:/var/lib/tether)',
      );
    return { backend: 'sqlite', dataDir };
  }
  const m = /^(etcds?):\/\/([^/]*)(\/.*)?$/.exec(url);
  if (!m) throw configError(field, `${shown} is not a datastore URL`, FORMS);
  const tls = m[1] === 'etcds';
  const hosts = m[2]!;
  const prefix = m[3] ?? DEFAULT_PREFIX;
  if (!PREFIX.test(prefix) || !prefix.endsWith('/') || prefix.includes('//'))
    throw configError(
      field,
      `key prefix ${JSON.stringify(prefix.slice(0, 120))}`,
      'a path like /tether/ ending in "/"',
    );
  if (hosts.length === 0)
    throw configError(field, `${shown} names no etcd member`, 'host:port[,host:port...]');
  const endpoints = hosts.split(',');
  if (endpoints.length > MAX_ENDPOINTS)
    throw configError(field, `${endpoints.length} etcd members`, `at most ${MAX_ENDPOINTS}`);
  let family: 'v4' | 'v6' | 'name' | undefined;
  for (const [i, ep] of endpoints.entries()) {
    const where = `etcd member ${i + 1} ${JSON.stringify(ep.slice(0, 120))}`;
    const c = ep.lastIndexOf(':');
    if (c <= 0) throw configError(field, `${where} has no port`, 'host:port');
    const host = ep.slice(0, c);
    const port = ep.slice(c + 1);
    if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535)
      throw configError(field, `${where}: port ${JSON.stringify(port)}`, 'a port 1..65535');
    const f = IPV4.test(host)
      ? 'v4'
      : IPV6.test(host)
        ? 'v6'
        : HOST_NAME.test(host) && !/^[\d.]+$/.test(host)
          ? 'name'
          : undefined;
    if (!f)
      throw configError(
        field,
        `${where}: host ${JSON.stringify(host)}`,
        'an IPv4 address, [IPv6] or a host name',
      );
    if (family !== undefined && (f !== family || f === 'name'))
      throw configError(
        field,
        `${where}: members mix address families or name several hosts`,
        'IP addresses of one family, or a single host name (grpc-js resolves one name to many members)',
      );
    family = f;
  }
  return { backend: 'etcd', endpoints, tls, prefix };
}

function readPem(path: string, flag: string): Buffer {
  try {
    const b = readFileSync(path);
    // 1 MiB: a certificate chain is a few KiB; more is the wrong file.
    if (b.length > 1024 * 1024) throw new Error(`${b.length} bytes`);
    if (!b.includes('-----BEGIN ')) throw new Error('no PEM block');
    return b;
  } catch (e) {
    throw new TetherError(
      'TETHER_E_CONFIG',
      `${flag}: cannot use ${path}: ${e instanceof Error ? e.message : String(e)}`,
      { field: flag, file: path, expected: 'a readable PEM file' },
      { cause: e },
    );
  }
}

/** Loads the TLS files of an etcds:// spec; TLS files for another backend are an error. */
export function loadEtcdTls(
  spec: DatastoreSpec,
  files: DatastoreTlsFiles = {},
  field = '--datastore',
): EtcdTls | undefined {
  const given = files.caFile ?? files.certFile ?? files.keyFile ?? files.serverName;
  const usesTls = spec.backend === 'etcd' && spec.tls;
  if (!usesTls) {
    if (given !== undefined)
      throw configError(
        field,
        'TLS options (--etcd-ca/--etcd-cert/--etcd-key) given without etcds://',
        'etcds://host:port with TLS options',
      );
    return undefined;
  }
  if ((files.certFile === undefined) !== (files.keyFile === undefined))
    throw configError(
      '--etcd-cert',
      'a client certificate needs its key and the other way round',
      'both --etcd-cert and --etcd-key, or neither',
    );
  return {
    ...(files.caFile !== undefined ? { ca: readPem(files.caFile, '--etcd-ca') } : {}),
    ...(files.certFile !== undefined ? { cert: readPem(files.certFile, '--etcd-cert') } : {}),
    ...(files.keyFile !== undefined ? { key: readPem(files.keyFile, '--etcd-key') } : {}),
    ...(files.serverName !== undefined ? { serverName: files.serverName } : {}),
  };
}

/** Opens the store a spec names. An etcd store connects lazily: the first call waits for
 *  (or fails on) the connection, so a controller started before etcd comes up keeps trying. */
export async function openDatastore(
  spec: DatastoreSpec,
  opts: OpenDatastoreOptions = {},
): Promise<Datastore> {
  const field = opts.field ?? '--datastore';
  const tls = loadEtcdTls(spec, opts.tls, field);
  switch (spec.backend) {
    case 'memory':
      return new LocalDatastore(new MemoryStore(opts.now ? { now: opts.now } : {}), 'memory');
    case 'sqlite':
      return new LocalDatastore(new SqliteStore(spec.dataDir, opts.now ? { now: opts.now } : {}), 'sqlite');
    case 'etcd':
      return new EtcdStore({
        endpoints: spec.endpoints,
        prefix: spec.prefix,
        ...(tls ? { tls } : {}),
        ...(opts.maxTxnOps !== undefined ? { maxTxnOps: opts.maxTxnOps } : {}),
        ...(opts.callTimeoutMs !== undefined ? { callTimeoutMs: opts.callTimeoutMs } : {}),
        ...(opts.now ? { now: opts.now } : {}),
      });
  }
}
