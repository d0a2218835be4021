import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../integration/support/proc.js';

/**
 * A real etcd (Debian etcd-server) on loopback for tests: its own temp data dir and free
 * ports, started as a child process, stopped by its PID, its directory removed by stop().
 * Optionally TLS with a client certificate (a CA, server and client certificates made with
 * openssl at test time, never committed) and a small --max-txn-ops.
 */
export interface EtcdTlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export interface TestEtcd {
  /** "127.0.0.1:PORT" */
  endpoint: string;
  /** etcd://… or etcds://… with a unique key prefix per call of url(). */
  url(prefix?: string): string;
  dataDir: string;
  pid(): number | undefined;
  /** Client TLS material (when started with tls). */
  tls?: EtcdTlsFiles;
  /** kill -9 the member (no clean shutdown). */
  kill9(): Promise<void>;
  /** Starts the member again on the same data dir and ports. */
  restart(): Promise<void>;
  /** Stops the member (SIGKILL, by PID) and removes its directory. */
  stop(): Promise<void>;
  log(): string;
}

export interface TestEtcdOptions {
  tls?: boolean;
  maxTxnOps?: number;
}

export function etcdAvailable(): boolean {
  try {
    execFileSync('etcd', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection({ host: '127.0.0.1', port });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

/** CA, server certificate for 127.0.0.1 and a client certificate, all ECDSA P-256. */
function makeCerts(dir: string): { server: { cert: string; key: string }; client: EtcdTlsFiles } {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(
    [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
      '-days',
      '1',
      '-subj',
      '/CN=tether-test-etcd-ca',
    ],
    dir,
  );
  for (const [name, ext] of [
    ['server', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n'],
    ['client', 'extendedKeyUsage=clientAuth\n'],
  ] as const) {
    writeFileSync(join(dir, `${name}.ext`), ext);
    openssl(['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir);
    openssl(
      [
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.pem',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-days',
        '1',
        '-out',
        `${name}.pem`,
        '-extfile',
        `${name}.ext`,
      ],
      dir,
    );
  }
  const f = (n: string) => join(dir, n);
  return {
    server: { cert: f('server.pem'), key: f('server.key') },
    client: {
      caFile: f('ca.pem'),
      certFile: f('client.pem'),
      keyFile: f('client.key'),
      ca: readFileSync(f('ca.pem')),
      cert: readFileSync(f('client.pem')),
      key: readFileSync(f('client.key')),
    },
  };
}

let prefixes = 0;

export async function startEtcd(opts: TestEtcdOptions = {}): Promise<TestEtcd> {
  const root = mkdtempSync(join(tmpdir(), 'tether-etcd-'));
  const dataDir = join(root, 'data');
  const clientPort = await freePort();
  const peerPort = await freePort();
  const certs = opts.tls ? makeCerts(root) : undefined;
  const scheme = opts.tls ? 'https' : 'http';
  const name = `t${process.pid}-${clientPort}`;
  const args = [
    '--name',
    name,
    '--data-dir',
    dataDir,
    '--listen-client-urls',
    `${scheme}://127.0.0.1:${clientPort}`,
    '--advertise-client-urls',
    `${scheme}://127.0.0.1:${clientPort}`,
    '--listen-peer-urls',
    `http://127.0.0.1:${peerPort}`,
    '--initial-advertise-peer-urls',
    `http://127.0.0.1:${peerPort}`,
    '--initial-cluster',
    `${name}=http://127.0.0.1:${peerPort}`,
    '--initial-cluster-state',
    'new',
    '--logger',
    'zap',
    '--log-level',
    'warn',
    ...(opts.maxTxnOps ? ['--max-txn-ops', String(opts.maxTxnOps)] : []),
    ...(certs
      ? [
          '--cert-file',
          certs.server.cert,
          '--key-file',
          certs.server.key,
          '--trusted-ca-file',
          certs.client.caFile,
          '--client-cert-auth',
        ]
      : []),
  ];
  let child: ChildProcess | undefined;
  let out = '';
  const launch = async (): Promise<void> => {
    const c = spawn('etcd', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    const take = (b: Buffer) => {
      out = (out + b.toString('utf8')).slice(-64 * 1024);
    };
    c.stdout?.on('data', take);
    c.stderr?.on('data', take);
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (c.exitCode !== null) throw new Error(`etcd exited ${c.exitCode}: ${out.slice(-2000)}`);
      if (await canConnect(clientPort)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`etcd did not listen on ${clientPort} within 20 s: ${out.slice(-2000)}`);
  };
  const kill9 = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.pid === undefined) return;
    const gone = new Promise((r) => c.once('exit', r));
    process.kill(c.pid, 'SIGKILL');
    await gone;
  };
  await launch();
  const endpoint = `127.0.0.1:${clientPort}`;
  return {
    endpoint,
    dataDir,
    ...(certs ? { tls: certs.client } : {}),
    url: (prefix) =>
      `${opts.tls ? 'etcds' : 'etcd'}://${endpoint}${prefix ?? `/t${process.pid}-${++prefixes}/`}`,
    pid: () => child?.pid,
    kill9,
    restart: async () => {
      await kill9();
      await launch();
    },
    stop: async () => {
      await kill9();
      rmSync(root, { recursive: true, force: true });
    },
    log: () => out,
  };
}
