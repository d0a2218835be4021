import { X509Certificate } from 'node:crypto';
import { existsSync, lstatSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { type HostFs, RootedHostFs } from '../../kernel/hw/hostfs.js';
import { TetherError } from '../../lib/errors.js';
import type { CommandRunner } from '../../lib/exec.js';
import { certFingerprint } from '../../lib/pki.js';
import { splitHostPort } from '../connect.js';
import { controlSocketPath, type NodeLiveStatus, readLiveStatus } from '../control-api.js';
import { type LoadedIdentity, loadIdentity } from '../identity.js';
import { check, type DiagCheck, type Verdict } from './diag-check.js';
import { clockCheck, profileCheck, vtepChecks } from './diag-net.js';

/**
 * `tether diag` (docs/field.md): live checks, each with a verdict and, unless it passed, one
 * line a technician can act on. Checks never throw: a check that cannot run is itself a
 * `warn` naming why. Exit code: 0 all pass, 1 a warning, 7 (CHECK_FAILED) a failure.
 */

export type { DiagCheck, Verdict } from './diag-check.js';

export interface DiagResult {
  node?: string;
  checks: DiagCheck[];
  worst: Verdict;
}

export interface DiagOptions {
  stateDir: string;
  runner: CommandRunner;
  now?: () => Date;
  /** Certificate life left under which the check warns. */
  certWarnDays?: number;
  timeoutMs?: number;
  /** The host the profile is checked on (default the real `/`). */
  host?: HostFs;
  /** Where profiles are looked for before the shipped ones. */
  profilesDirs?: readonly string[];
}

const DAY = 86_400_000;
/** HTTP/2 client connection preface and an empty SETTINGS frame (RFC 9113 §3.4, §6.5). */
const H2_PREFACE = Buffer.concat([
  Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'),
  Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]),
]);

export function certificateCheck(certPem: string, now: Date, warnDays = 14): DiagCheck {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (e) {
    return check(
      'certificate',
      'fail',
      `node certificate unreadable: ${(e as Error).message}`,
      'the credentials file is damaged: re-enroll with `tether node enroll --controller HOST:PORT --token TOKEN`',
    );
  }
  const notAfter = new Date(cert.validTo);
  const notBefore = new Date(cert.validFrom);
  if (now < notBefore)
    return check(
      'certificate',
      'fail',
      `node certificate not valid before ${notBefore.toISOString()}`,
      'the clock is behind: set the time (chronyc makestep, or timedatectl set-time) and restart tether-node',
    );
  if (now > notAfter)
    return check(
      'certificate',
      'fail',
      `node certificate expired ${notAfter.toISOString()}`,
      'the node missed its renewal: get a new join token from the NOC and run `tether node enroll` again (or fix the clock if it is wrong)',
    );
  const left = (notAfter.getTime() - now.getTime()) / DAY;
  if (left < warnDays)
    return check(
      'certificate',
      'warn',
      `node certificate expires in ${left.toFixed(1)} days (${notAfter.toISOString()})`,
      'renewal should happen on its own while the session is up: check the session check below and `tether logs --since 1d`',
    );
  return check('certificate', 'pass', `valid until ${notAfter.toISOString()} (${Math.floor(left)} days)`);
}

export function caPinCheck(id: LoadedIdentity): DiagCheck {
  try {
    const fp = certFingerprint(id.caPem);
    if (fp.toLowerCase() === id.caFingerprint.toLowerCase())
      return check('ca-pin', 'pass', `CA sha256 ${fp.slice(0, 16)}… matches the enrolment pin`);
    return check(
      'ca-pin',
      'fail',
      `ca.crt (sha256 ${fp.slice(0, 16)}…) is not the CA pinned at enrolment (${id.caFingerprint.slice(0, 16)}…)`,
      'ca.crt was replaced: restore it from the controller (`tether controller ca`) or re-enroll; do not connect to a controller you cannot verify',
    );
  } catch (e) {
    return check(
      'ca-pin',
      'fail',
      `ca.crt unreadable: ${(e as Error).message}`,
      're-enroll the node to restore ca.crt',
    );
  }
}

export function diskCheck(stateDir: string): DiagCheck {
  try {
    const s = statfsSync(stateDir);
    const free = s.bavail * s.bsize;
    const pct = s.blocks > 0 ? (100 * s.bavail) / s.blocks : 0;
    const detail = `${(free / 2 ** 20).toFixed(0)} MiB free (${pct.toFixed(1)}%) on the state directory's filesystem`;
    if (free < 64 * 2 ** 20 || pct < 2)
      return check(
        'disk',
        'fail',
        detail,
        `free space on ${stateDir}'s filesystem: acknowledged writes need room (journalctl --vacuum-size=100M, remove old images)`,
      );
    if (pct < 10)
      return check('disk', 'warn', detail, `free space on ${stateDir}'s filesystem before it fills`);
    return check('disk', 'pass', detail);
  } catch (e) {
    return check(
      'disk',
      'fail',
      `cannot stat ${stateDir}: ${(e as Error).message}`,
      'check that the state directory exists and is mounted',
    );
  }
}

/** TLS handshake to the controller with the node's own certificate, pinned to ca.crt; the server's clock from the certificate is not used. */
function controllerCheck(id: LoadedIdentity, target: string, timeoutMs: number): Promise<DiagCheck> {
  let addr: { host: string; port: number } | undefined;
  try {
    addr = splitHostPort(target);
  } catch {
    addr = undefined;
  }
  if (!addr || addr.port > 65535)
    return Promise.resolve(
      check(
        'controller',
        'fail',
        `controller address "${target}" is not HOST:PORT`,
        're-enroll with a correct --controller',
      ),
    );
  const { host, port } = addr;
  const started = Date.now();
  return new Promise((resolve) => {
    let s: ReturnType<typeof tlsConnect>;
    try {
      s = tlsConnect({
        host,
        port,
        ca: id.caPem,
        key: id.credentials.keyPem,
        cert: id.credentials.certPem,
        ALPNProtocols: ['h2'],
        // The controller's certificate names it by identity URI, not by host name: the pin is the CA.
        checkServerIdentity: () => undefined,
        timeout: timeoutMs,
      });
    } catch (e) {
      // A damaged key or certificate file: the TLS context cannot even be built.
      resolve(
        check(
          'controller',
          'fail',
          `cannot build TLS credentials from credentials.json: ${(e as Error).message}`,
          'the node key or certificate is damaged: re-enroll with `tether node enroll --controller HOST:PORT --token TOKEN`',
        ),
      );
      return;
    }
    const done = (c: DiagCheck) => {
      s.destroy();
      resolve(c);
    };
    // With TLS 1.3 the client's handshake ends before the server has judged the client's
    // certificate: a server that demands one refuses a bad one only after, with an alert. So
    // the check speaks HTTP/2 first (preface and an empty SETTINGS frame) and passes only when
    // the server's own SETTINGS come back. The controller itself serves enrollment on the same
    // port and judges node certificates per call, so an expired one is named by the
    // certificate check, not here.
    let secured = false;
    s.once('secureConnect', () => {
      secured = true;
      s.write(H2_PREFACE);
    });
    s.once('data', () =>
      done(
        check(
          'controller',
          'pass',
          `TLS to ${target} in ${Date.now() - started} ms, certificate issued by the pinned CA, HTTP/2 answered`,
        ),
      ),
    );
    s.once('end', () =>
      done(
        check(
          'controller',
          'fail',
          `${target} closed the connection ${secured ? 'right after the TLS handshake' : 'during the TLS handshake'}`,
          "the controller refuses this node's certificate (expired, revoked, or from another CA): see the certificate check; re-enroll if it is revoked",
        ),
      ),
    );
    s.once('timeout', () =>
      done(
        check(
          'controller',
          'fail',
          `no answer from ${target} within ${timeoutMs} ms (WAN down or filtered)`,
          `check the WAN link and the route to ${host} (ip route get ${host}); a firewall must allow TCP ${port} outbound`,
        ),
      ),
    );
    s.once('error', (e: NodeJS.ErrnoException) => {
      const tlsErr = /certificate|CERT|SSL|TLS|alert/i.test(`${e.code ?? ''} ${e.message}`);
      done(
        tlsErr
          ? check(
              'controller',
              'fail',
              `TLS to ${target} failed: ${e.message}`,
              "the controller is not the one this node was enrolled with, or this node's certificate is refused: compare the CA pin, check the certificate check, re-enroll if revoked",
            )
          : check(
              'controller',
              'fail',
              `cannot reach ${target}: ${e.code ?? e.message}`,
              `check the WAN link and the route to ${host} (ip route get ${host}); is the controller up?`,
            ),
      );
    });
  });
}

function sessionCheck(s: NodeLiveStatus | undefined, why: string): DiagCheck {
  if (!s)
    return check(
      'session',
      'fail',
      `node daemon not answering: ${why}`,
      'start it: systemctl start tether-node (then `tether logs --since 5m`)',
    );
  // The active site proxy's agents stay connected to it when the WAN is down: its own WAN
  // session to the controller is what tells.
  const w = s.proxy.role === 'active' ? s.proxy.wan : undefined;
  if (s.session.phase === 'connected' && w && w.phase !== 'connected')
    return check(
      'session',
      'fail',
      `this node is its site's proxy and its WAN session to the controller is ${w.phase}${w.since ? ` since ${w.since}` : ''}: the site runs headless on its last state`,
      'see the controller check below for why the WAN is down; the site keeps forwarding meanwhile',
    );
  if (s.session.phase === 'connected')
    return check(
      'session',
      'pass',
      `connected${s.session.since ? ` since ${s.session.since}` : ''}${w ? ' (site proxy, WAN session connected)' : ''}`,
    );
  return check(
    'session',
    'fail',
    `session ${s.session.phase}${s.session.lastError ? `: ${s.session.lastError}` : ''}`,
    'see the controller check; `tether logs --since 15m --component node` shows why the session dropped',
  );
}

function gatewayChecks(stateDir: string, timeoutMs: number): Promise<DiagCheck[]> {
  const sock = join(stateDir, 'gateway', 'bird.ctl');
  let isSock = false;
  try {
    isSock = lstatSync(sock).isSocket();
  } catch {
    // no gateway on this node
  }
  if (!isSock) return Promise.resolve([]);
  return (async () => {
    const { BirdClient, parseProtocols } = await import('../../bgp/birdc.js');
    const c = new BirdClient(sock, timeoutMs);
    try {
      await c.open();
      const peers = parseProtocols(await c.command('show protocols all'));
      const out: DiagCheck[] = peers.map((p) =>
        p.bgpState === 'Established'
          ? check(
              `bgp ${p.protocol}`,
              'pass',
              `Established since ${p.since}, ${p.imported} imported, ${p.exported} exported`,
            )
          : check(
              `bgp ${p.protocol}`,
              'fail',
              `BGP ${p.bgpState}${p.neighborAddress ? ` to ${p.neighborAddress}` : ''}${p.lastError ? `: ${p.lastError}` : ''}`,
              `check the link and address to the router${p.neighborAddress ? ` (ping ${p.neighborAddress})` : ''}, and that its ASN and password match the Gateway object`,
            ),
      );
      const bfd = await c.command('show bfd sessions');
      for (const l of bfd.lines) {
        const m = /^(\S+)\s+\S+\s+(Up|Down|Init|AdminDown)\b/.exec(l.text.trim());
        if (!m) continue;
        out.push(
          m[2] === 'Up'
            ? check(`bfd ${m[1]}`, 'pass', 'Up')
            : check(
                `bfd ${m[1]}`,
                'fail',
                `BFD ${m[2]}`,
                `the path to ${m[1]} drops packets or the router has no BFD for this peer`,
              ),
        );
      }
      return out;
    } catch (e) {
      return [
        check(
          'bgp',
          'fail',
          `BIRD not answering on ${sock}: ${(e as Error).message}`,
          'the gateway routing daemon is down: `tether logs --component gateway`, restart tether-node',
        ),
      ];
    } finally {
      c.close();
    }
  })();
}

export async function runDiag(o: DiagOptions): Promise<DiagResult> {
  const now = (o.now ?? (() => new Date()))();
  const timeoutMs = o.timeoutMs ?? 3000;
  const checks: DiagCheck[] = [];
  let id: LoadedIdentity;
  try {
    id = loadIdentity(o.stateDir);
  } catch (e) {
    const msg = e instanceof TetherError ? e.message : String(e);
    return {
      checks: [
        check(
          'identity',
          'fail',
          msg,
          'enroll the node: tether node enroll --controller HOST:PORT --token TOKEN',
        ),
      ],
      worst: 'fail',
    };
  }
  let live: NodeLiveStatus | undefined;
  let why = '';
  const sock = controlSocketPath(o.stateDir);
  if (existsSync(sock)) {
    live = await readLiveStatus(sock, timeoutMs).catch((e: unknown) => {
      why = (e as Error).message;
      return undefined;
    });
  } else why = `no control socket ${sock}`;
  checks.push(sessionCheck(live, why));
  // Each controller replica in failover order until one answers (issue 12): the node needs one.
  for (const [i, target] of id.controllers.entries()) {
    const c = await controllerCheck(id, target, timeoutMs);
    if (c.verdict === 'pass' || i === id.controllers.length - 1) {
      checks.push(c);
      break;
    }
  }
  checks.push(clockCheck(live));
  checks.push(caPinCheck(id));
  checks.push(certificateCheck(id.credentials.certPem, now, o.certWarnDays));
  checks.push(diskCheck(o.stateDir));
  checks.push(...(await vtepChecks(live, o.runner, timeoutMs)));
  checks.push(...(await gatewayChecks(o.stateDir, timeoutMs)));
  checks.push(await profileCheck(o.host ?? new RootedHostFs('/'), o.runner, o.profilesDirs));
  const order: Verdict[] = ['pass', 'warn', 'fail'];
  const worst = checks.reduce<Verdict>(
    (w, c) => (order.indexOf(c.verdict) > order.indexOf(w) ? c.verdict : w),
    'pass',
  );
  return { node: id.name, checks, worst };
}
