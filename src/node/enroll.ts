import { readFileSync } from 'node:fs';
import { arch, cpus, hostname, networkInterfaces, release, totalmem } from 'node:os';
import type { EnrollResponse__Output } from '../api/gen/tether/v1/EnrollResponse.js';
import type { HardwareFacts } from '../api/gen/tether/v1/HardwareFacts.js';
import { tetherProto } from '../api/grpc.js';
import { fromGrpcError } from '../api/status.js';
import { credentialOf, parseToken } from '../api/token.js';
import { type BackoffPolicy, fullJitterDelay } from '../lib/backoff.js';
import { parseControllerList } from '../lib/controller-addresses.js';
import { isTetherError, TetherError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { createKeyAndCsr } from '../lib/pki.js';
import { CHANNEL_OPTIONS, controllerCredentials, fetchPinnedCa } from './connect.js';
import { type NodeIdentity, saveIdentity } from './identity.js';

export interface EnrollOptions {
  /** Controller replicas, in failover order (1–8): enrollment goes to the first that answers
   *  with the pinned CA; the identity stores them all. */
  controllers: readonly string[];
  token: string;
  stateDir: string;
  nodeName?: string;
  expectedSite?: string;
  /** Give up waiting for approval after this long; 0 = wait forever. */
  waitSeconds?: number;
  backoff?: BackoffPolicy;
  log: Logger;
  /** Progress for humans (the CLI prints it). */
  progress?: (msg: string) => void;
  signal?: AbortSignal;
  /** A key and CSR made (and persisted) beforehand, so a retry after a crash sends the same
   *  request and the controller answers it as a retry (one identity, one token use). */
  keyAndCsr?: { keyPem: string; csrPem: string };
  /** Stop after this many requests the controller could not answer (0 = never). */
  maxAttempts?: number;
  /** Called once a request has been sent and answered, before the identity is stored. */
  onAnswered?: () => Promise<void> | void;
}

export function hardwareFacts(): HardwareFacts {
  let machineId = '';
  try {
    machineId = readFileSync('/etc/machine-id', 'utf8').trim();
  } catch {
    /* containers and fresh images may lack it */
  }
  const macs = Object.values(networkInterfaces())
    .flat()
    .map((i) => i?.mac)
    .filter((m): m is string => !!m && m !== '00:00:00:00:00:00');
  return {
    hostname: hostname(),
    machine_id: machineId,
    kernel: release(),
    arch: arch(),
    cpus: cpus().length,
    memory_bytes: totalmem(),
    macs: [...new Set(macs)],
    product: '',
  };
}

export function defaultNodeName(): string {
  return (
    hostname()
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 63) || 'node'
  );
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(new TetherError('TETHER_E_TIMEOUT', 'enrollment aborted'));
    });
  });

/**
 * Enrolls this node: pins the controller's CA by the token's fingerprint, generates the key
 * here (it never leaves), sends a CSR with hardware facts, and stores the certificate.
 * A node waiting for manual approval backs off (full jitter) and says so; it never fails fast
 * in a loop.
 */
export async function enrollNode(opts: EnrollOptions): Promise<NodeIdentity> {
  const say = opts.progress ?? (() => {});
  const tok = parseToken(opts.token);
  const controllers = parseControllerList([...opts.controllers], 'controllers');
  let caPem: string | undefined;
  let controller = controllers[0]!;
  for (const [i, addr] of controllers.entries()) {
    say(`checking controller ${addr} against the CA pinned in the token…`);
    try {
      caPem = await fetchPinnedCa(addr, tok.caFingerprint);
      controller = addr;
      break;
    } catch (e) {
      // A wrong CA is never retried elsewhere: it means the token or the list is wrong.
      if (!isTetherError(e, 'TETHER_E_UNAVAILABLE') || i === controllers.length - 1) throw e;
      say(`${(e as Error).message}; trying the next controller`);
    }
  }
  if (caPem === undefined) throw new TetherError('TETHER_E_UNAVAILABLE', 'no controller answered');
  say('controller CA verified');
  const nodeName = opts.nodeName ?? defaultNodeName();
  const { keyPem, csrPem } = opts.keyAndCsr ?? (await createKeyAndCsr(nodeName));
  const proto = tetherProto();
  const client = new proto.tether.v1.Enrollment(controller, controllerCredentials(caPem), CHANNEL_OPTIONS);
  const started = Date.now();
  const policy = opts.backoff ?? { baseMs: 2000, capMs: 60_000 };
  try {
    for (let attempt = 0; ; attempt++) {
      const res = await new Promise<EnrollResponse__Output>((resolve, reject) =>
        client.Enroll(
          {
            token: credentialOf(tok),
            node_name: nodeName,
            csr_pem: csrPem,
            facts: hardwareFacts(),
            expected_site: opts.expectedSite ?? '',
          },
          { deadline: Date.now() + 30_000 },
          (err, r) => (err || !r ? reject(fromGrpcError(err)) : resolve(r)),
        ),
      ).catch((e: unknown) => {
        if (e instanceof TetherError && e.retryable) return e;
        throw e;
      });
      if (!(res instanceof TetherError)) await opts.onAnswered?.();
      if (res instanceof TetherError) {
        if (opts.maxAttempts && attempt + 1 >= opts.maxAttempts) throw res;
        say(`controller unavailable (${res.message}); retrying`);
      } else if (res.status === 'STATUS_APPROVED') {
        const id: NodeIdentity = {
          name: res.node_name,
          site: res.site,
          controllers,
          caFingerprint: tok.caFingerprint,
        };
        saveIdentity(opts.stateDir, id, caPem, { keyPem, certPem: res.certificate_pem });
        opts.log.info({ node: id.name, site: id.site }, 'enrolled');
        return id;
      } else {
        say(res.message || 'waiting for approval');
      }
      const waited = (Date.now() - started) / 1000;
      if (opts.waitSeconds && waited >= opts.waitSeconds) {
        throw new TetherError(
          'TETHER_E_PENDING_APPROVAL',
          `still waiting for approval after ${Math.round(waited)} s`,
          {
            expected: `an administrator to run \`tether node approve ${nodeName}\``,
          },
        );
      }
      const advised = res instanceof TetherError ? 0 : res.retry_after_seconds * 1000;
      const delay = Math.max(advised / 2, fullJitterDelay(attempt, policy)) + advised / 2;
      say(`next attempt in ${(delay / 1000).toFixed(1)} s`);
      await sleep(delay, opts.signal);
    }
  } finally {
    client.close();
  }
}
