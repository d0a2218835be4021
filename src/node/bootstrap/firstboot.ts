import { existsSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import {
  FIRST_BOOT_PHASES,
  type FirstBootPhaseName,
  type FirstBootPhaseRecord,
  type FirstBootSummaryBody,
  toReport,
} from '../../api/firstboot.js';
import type { FirstBootAck__Output } from '../../api/gen/tether/v1/FirstBootAck.js';
import { tetherProto } from '../../api/grpc.js';
import { fromGrpcError } from '../../api/status.js';
import type { HostFs } from '../../kernel/hw/hostfs.js';
import { writeFileAtomic } from '../../lib/atomic.js';
import { type BackoffPolicy, fullJitterDelay } from '../../lib/backoff.js';
import { asTetherError, describeError, type ErrorCode, TetherError } from '../../lib/errors.js';
import type { CommandRunner } from '../../lib/exec.js';
import { parseJson, readInputFile } from '../../lib/input.js';
import type { Logger } from '../../lib/log.js';
import { createKeyAndCsr } from '../../lib/pki.js';
import { applyProfile } from '../../profiles/apply.js';
import { loadProfile, shippedProfilesDir, throwIssues } from '../../profiles/load.js';
import { checkProfile } from '../../profiles/validate.js';
import { CHANNEL_OPTIONS, controllerCredentials, fetchPinnedCa } from '../connect.js';
import { defaultNodeName, enrollNode } from '../enroll.js';
import { isEnrolled, loadIdentity } from '../identity.js';
import { type BootstrapConfig, parseBootstrap } from './config.js';
import { type DiscoveryOptions, discover, maintenanceMessage } from './discover.js';
import { applyWan, planWan, resolveWanInterface } from './wan.js';

/**
 * First boot as a resumable state machine (docs/node.md "First boot"): discover → preflight
 * → profile → enroll → configure → ready, or `failed` with the phase and the reason. The
 * state is one file written atomically at every transition (`<state-dir>/firstboot.json`),
 * so `kill -9` or power loss at any instant resumes at the phase it interrupted; every phase
 * is safe to run again.
 */
export function firstBootPaths(stateDir: string) {
  return {
    state: join(stateDir, 'firstboot.json'),
    /** The configuration discovery found (it is the `state` source on the next run). */
    bootstrap: join(stateDir, 'bootstrap.yaml'),
    /** Key and CSR of an enrollment in flight: the same request is sent again after a crash. */
    pendingEnroll: join(stateDir, 'enroll-pending.json'),
    /** What the node daemon's unit reads (EnvironmentFile=). */
    env: join(stateDir, 'node.env'),
  };
}

export interface FirstBootState {
  version: 1;
  seq: number;
  phase: FirstBootPhaseName | 'failed';
  failedPhase?: FirstBootPhaseName;
  phases: FirstBootPhaseRecord[];
  lastError?: { phase: string; code: string; message: string; at: string };
  source?: string;
  controller?: string;
  reboots: { planned?: number; done: number; pending?: { fromBootId: string; at: string } };
  /** Highest `seq` the controller acknowledged. */
  reportedSeq: number;
}

export type FirstBootOutcome = 'ready' | 'reboot' | 'failed' | 'maintenance';

export interface FirstBootOptions {
  stateDir: string;
  discovery: Omit<DiscoveryOptions, 'statePath' | 'runner' | 'progress' | 'skip'>;
  /** Runs blkid, mount, udhcpc, ip and the reboot command. */
  runner: CommandRunner;
  /** The host the profile is applied to (RootedHostFs at /, or a fixture). */
  host: { fs: HostFs; runner: CommandRunner };
  profilesDirs?: string[];
  /** The command that reboots the machine (default `systemctl reboot`). */
  rebootCommand?: readonly string[];
  /** Attempts of a phase that failed in a way retrying can fix (0 = keep trying). */
  maxAttempts?: number;
  backoff?: BackoffPolicy;
  /** Maintenance mode looks again this often. */
  maintenanceRetrySeconds?: number;
  /** Console lines (a field technician reads them). */
  console: (line: string) => void;
  log: Logger;
  /** Test hook: stop (wait forever) right after this point is persisted, so a test can kill
   *  the process there: a phase name (its start), `enroll-answered`, or `reboot`. */
  pauseAt?: string;
  now?: () => Date;
  sleep?: (ms: number) => Promise<void>;
}

class Reboot {}
class Maintenance {}

const RETRYABLE: ReadonlySet<ErrorCode> = new Set(['TETHER_E_UNAVAILABLE', 'TETHER_E_TIMEOUT']);

function loadState(path: string): FirstBootState | undefined {
  if (!existsSync(path)) return undefined;
  const s = parseJson(readInputFile(path, { maxBytes: 1024 * 1024 }), { source: path }) as FirstBootState;
  if (s?.version !== 1 || !Array.isArray(s.phases))
    throw new TetherError('TETHER_E_STATE', 'first-boot state is not version 1', { file: path });
  return s;
}

/** Console words for the errors a field technician can act on. */
function advice(e: TetherError): string {
  switch (e.code) {
    case 'TETHER_E_CA_MISMATCH':
      return 'The controller answered with another certificate authority than bootstrap.yaml names: the file is for another controller, or something between this box and the controller intercepts the connection. Ask the central site for a new bootstrap.yaml.';
    case 'TETHER_E_TOKEN':
      return 'The controller refused the join token (expired, used up, or for another site). Ask the central site for a new token (`tether token create`) in a new bootstrap.yaml.';
    case 'TETHER_E_UNAVAILABLE':
    case 'TETHER_E_TIMEOUT':
      return 'The controller cannot be reached. Check that the WAN cable is plugged in and the link light is on; this node keeps trying.';
    case 'TETHER_E_NODE_EXISTS':
      return 'The controller already has a node of this name. Ask the central site to run `tether node reset NAME` or to give this node another name.';
    case 'TETHER_E_REVOKED':
      return 'The controller has revoked this node. Ask the central site to reset it.';
    default:
      return '';
  }
}

export async function runFirstBoot(opts: FirstBootOptions): Promise<FirstBootOutcome> {
  const paths = firstBootPaths(opts.stateDir);
  const now = () => (opts.now?.() ?? new Date()).toISOString();
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const say = opts.console;
  const policy = opts.backoff ?? { baseMs: 1000, capMs: 60_000 };
  const st: FirstBootState = loadState(paths.state) ?? {
    version: 1,
    seq: 0,
    phase: 'discover',
    phases: [],
    reboots: { done: 0 },
    reportedSeq: 0,
  };
  const save = () => {
    st.seq++;
    writeFileAtomic(paths.state, `${JSON.stringify(st, null, 1)}\n`, 0o600);
  };
  const pause = async (point: string) => {
    if (opts.pauseAt !== point) return;
    say(`first boot paused at ${point} (test hook)`);
    await new Promise<never>(() => setInterval(() => {}, 1 << 30));
  };
  const record = (name: FirstBootPhaseName): FirstBootPhaseRecord => {
    let r = st.phases.find((p) => p.name === name);
    if (!r) {
      r = { name, startedAt: now(), attempts: 0 };
      st.phases.push(r);
    }
    return r;
  };
  const config = (): BootstrapConfig => parseBootstrap(readInputFile(paths.bootstrap), paths.bootstrap);

  // ── reporting ──────────────────────────────────────────────────────────────────────────
  // Only an enrolled node can be heard (mTLS); before that the transitions are queued in
  // the state file (the report is the whole picture, so the queue is "seq > reportedSeq").
  const summary = (): FirstBootSummaryBody => ({
    seq: st.seq,
    phase: st.phase,
    phases: st.phases.map((p) => ({ ...p })),
    ...(st.lastError ? { lastError: st.lastError } : {}),
    ...(st.source ? { source: st.source } : {}),
    reboots: st.reboots.done,
    updatedAt: now(),
  });
  // Never throws: a report that cannot be made stays queued (it runs beside the phases).
  const report = (): Promise<boolean> =>
    tryReport().catch((e: unknown) => {
      opts.log.warn({ err: asTetherError(e).message }, 'first-boot report not made; queued');
      return false;
    });
  const tryReport = async (): Promise<boolean> => {
    if (st.reportedSeq >= st.seq || !isEnrolled(opts.stateDir)) return st.reportedSeq >= st.seq;
    const id = loadIdentity(opts.stateDir);
    const proto = tetherProto();
    const seq = st.seq;
    // Every controller replica in turn: the report reaches whichever of them answers.
    for (const [i, addr] of id.controllers.entries()) {
      const client = new proto.tether.v1.NodeSession(
        addr,
        controllerCredentials(id.caPem, id.credentials),
        CHANNEL_OPTIONS,
      );
      try {
        await new Promise<FirstBootAck__Output>((resolve, reject) =>
          client.ReportFirstBoot(toReport(summary()), { deadline: Date.now() + 10_000 }, (err, r) =>
            err || !r ? reject(fromGrpcError(err)) : resolve(r),
          ),
        );
        st.reportedSeq = seq;
        // Not a transition: written without a new seq, so the report stays current.
        writeFileAtomic(paths.state, `${JSON.stringify(st, null, 1)}\n`, 0o600);
        return true;
      } catch (e) {
        const err = asTetherError(e);
        if (err.retryable && i < id.controllers.length - 1) continue;
        opts.log.warn({ err: err.message }, 'first-boot report not delivered; queued');
        return false;
      } finally {
        client.close();
      }
    }
    return false;
  };

  // ── phases ─────────────────────────────────────────────────────────────────────────────
  let resumedFromFailure = false;
  const phases: Record<FirstBootPhaseName, () => Promise<void>> = {
    discover: async () => {
      const d = await discover({
        ...opts.discovery,
        statePath: paths.bootstrap,
        runner: opts.runner,
        progress: (l) => opts.log.info(l),
        // After a failure the configuration on disk may be what failed: look for a new one
        // first, and fall back to it (it is never deleted).
        ...(resumedFromFailure ? { skip: ['state'] as const } : {}),
      });
      let found = d.found;
      if (!found && resumedFromFailure && existsSync(paths.bootstrap))
        found = (
          await discover({
            ...opts.discovery,
            statePath: paths.bootstrap,
            runner: opts.runner,
            skip: ['image', 'cmdline', 'config-drive', 'dhcp', 'local-file'],
          })
        ).found;
      if (!found) {
        say(
          maintenanceMessage(d.misses, {
            ...(opts.discovery.localFile ? { localFile: opts.discovery.localFile } : {}),
            retrySeconds: opts.maintenanceRetrySeconds ?? 30,
          }),
        );
        throw new Maintenance();
      }
      if (found.source !== 'state') writeFileAtomic(paths.bootstrap, found.text, 0o600);
      st.source = `${found.source}: ${found.origin}`;
      say(`bootstrap configuration from ${st.source} (site ${found.config.site})`);
    },
    preflight: async () => {
      const c = config();
      if (c.wan) {
        const ifname = await resolveWanInterface(c.wan, opts.host.runner);
        const plan = planWan(c.wan, ifname);
        say(
          `static WAN address ${c.wan.address} on ${ifname}${c.wan.gateway ? ` via ${c.wan.gateway}` : ''}${
            c.wan.dns?.length ? `, DNS ${c.wan.dns.join(' ')}` : ''
          }`,
        );
        await applyWan(plan, opts.host, opts.host.runner);
      }
      let last: TetherError | undefined;
      for (const addr of c.controllers) {
        try {
          await fetchPinnedCa(addr, c.caFingerprint, 5000);
          st.controller = addr;
          say(`controller ${addr} reachable; its CA matches bootstrap.yaml`);
          return;
        } catch (e) {
          last = asTetherError(e);
          // A wrong CA is not fixed by trying the next address of the same file.
          if (last.code === 'TETHER_E_CA_MISMATCH') throw last;
        }
      }
      throw last ?? new TetherError('TETHER_E_INTERNAL', 'no controllers');
    },
    profile: async () => {
      const c = config();
      if (!c.profile) {
        say('no profile in bootstrap.yaml: nothing to apply');
        return;
      }
      const bootId = ((await opts.host.fs.read('/proc/sys/kernel/random/boot_id')) ?? '').trim();
      const pending = st.reboots.pending;
      if (pending && bootId !== pending.fromBootId) {
        st.reboots.done++;
        delete st.reboots.pending;
        save();
        say(
          `rebooted (${st.reboots.done} of ${st.reboots.planned ?? st.reboots.done}); continuing with profile ${c.profile}`,
        );
      }
      const p = loadProfile(c.profile, { searchPath: [...(opts.profilesDirs ?? []), shippedProfilesDir()] });
      const issues = checkProfile(p);
      if (issues.some((i) => i.severity === 'error')) throwIssues(issues, `invalid profile ${p.name}`);
      const res = await applyProfile(p, { ...opts.host, progress: (l) => say(`profile ${p.name}: ${l}`) });
      if (!res.rebootRequired) {
        say(`profile ${p.name} applied`);
        return;
      }
      st.reboots.planned ??= st.reboots.done + res.plan.reboot.count;
      if (st.reboots.done >= st.reboots.planned)
        throw new TetherError(
          'TETHER_E_PRECONDITION',
          `profile ${p.name} still needs a reboot after the ${st.reboots.planned} its plan said: ${res.plan.reboot.reasons.join('; ')}`,
          { expected: 'the boot configuration to take effect (check the boot loader)' },
        );
      st.reboots.pending = { fromBootId: bootId, at: now() };
      save();
      await pause('reboot');
      say(`profile ${p.name} needs a reboot (${res.plan.reboot.reasons.join('; ')}): rebooting now`);
      const [cmd, ...args] = opts.rebootCommand ?? ['systemctl', 'reboot'];
      await opts.runner.run(cmd!, args);
      throw new Reboot();
    },
    enroll: async () => {
      const c = config();
      if (isEnrolled(opts.stateDir)) {
        const id = loadIdentity(opts.stateDir);
        say(`already enrolled as node ${id.name} in site ${id.site}`);
        if (existsSync(paths.pendingEnroll)) unlinkSync(paths.pendingEnroll);
        return;
      }
      let pending: { nodeName: string; keyPem: string; csrPem: string };
      if (existsSync(paths.pendingEnroll)) {
        pending = parseJson(readInputFile(paths.pendingEnroll), {
          source: paths.pendingEnroll,
        }) as typeof pending;
        say(`resuming the enrollment of ${pending.nodeName} with the same key`);
      } else {
        const nodeName = c.nodeName ?? defaultNodeName();
        pending = { nodeName, ...(await createKeyAndCsr(nodeName)) };
        // Before anything is sent: a crash after the controller answered sends this request
        // again, which the controller recognises (same token, same key) as a retry.
        writeFileAtomic(paths.pendingEnroll, JSON.stringify(pending), 0o600);
      }
      const id = await enrollNode({
        // The whole list is stored (issue 12); the one preflight reached is tried first.
        controllers: st.controller
          ? [st.controller, ...c.controllers.filter((a) => a !== st.controller)]
          : c.controllers,
        token: c.token,
        stateDir: opts.stateDir,
        nodeName: pending.nodeName,
        expectedSite: c.site,
        keyAndCsr: { keyPem: pending.keyPem, csrPem: pending.csrPem },
        maxAttempts: 1,
        backoff: policy,
        log: opts.log,
        progress: say,
        onAnswered: () => pause('enroll-answered'),
      });
      unlinkSync(paths.pendingEnroll);
      say(`enrolled as node ${id.name} in site ${id.site}`);
    },
    configure: async () => {
      const c = config();
      const id = loadIdentity(opts.stateDir);
      const env = [
        `TETHER_NODE=${id.name}`,
        `TETHER_SITE=${id.site}`,
        `TETHER_CONTROLLER=${id.controllers.join(',')}`,
        `TETHER_PROFILE=${c.profile ?? ''}`,
      ];
      writeFileAtomic(paths.env, `${env.join('\n')}\n`, 0o644);
    },
    ready: async () => {
      say('READY: this node is enrolled and configured');
    },
  };

  // ── the machine ────────────────────────────────────────────────────────────────────────
  if (st.phase === 'ready') {
    if (!(await report())) say('ready; the last report waits for the controller');
    return 'ready';
  }
  let start: FirstBootPhaseName = st.phase === 'failed' ? (st.failedPhase ?? 'discover') : st.phase;
  if (st.phase === 'failed') {
    say(
      `first boot failed before in ${start}${st.lastError ? `: ${st.lastError.message}` : ''}; trying again`,
    );
    // Not enrolled yet: the failure may be the configuration's (a wrong CA, an expired
    // token), so look for a new one from the start; the one on disk stays as the fallback.
    if (!isEnrolled(opts.stateDir)) {
      resumedFromFailure = true;
      start = 'discover';
    }
  }
  for (let i = FIRST_BOOT_PHASES.indexOf(start); i < FIRST_BOOT_PHASES.length; i++) {
    const name = FIRST_BOOT_PHASES[i]!;
    start = name;
    for (let attempt = 0; ; attempt++) {
      const rec = record(name);
      rec.attempts++;
      st.phase = name;
      delete st.failedPhase;
      save();
      await pause(name);
      say(`phase ${name}${rec.attempts > 1 ? ` (attempt ${rec.attempts})` : ''}`);
      void report();
      try {
        await phases[name]();
        rec.endedAt = now();
        break;
      } catch (e) {
        if (e instanceof Reboot) return 'reboot';
        const maintenance = e instanceof Maintenance;
        const err = maintenance
          ? new TetherError('TETHER_E_PRECONDITION', 'no bootstrap configuration found')
          : asTetherError(e);
        st.lastError = { phase: name, code: err.code, message: err.message, at: now() };
        const retry = maintenance || RETRYABLE.has(err.code);
        const exhausted = !!opts.maxAttempts && attempt + 1 >= opts.maxAttempts;
        if (!maintenance) {
          say(`phase ${name} FAILED: ${describeError(err)}`);
          const a = advice(err);
          if (a) say(a);
        }
        if (!retry || exhausted) {
          st.phase = 'failed';
          st.failedPhase = name;
          save();
          await report();
          return maintenance ? 'maintenance' : 'failed';
        }
        save();
        const delay = maintenance
          ? (opts.maintenanceRetrySeconds ?? 30) * 1000
          : fullJitterDelay(attempt, policy);
        say(`trying again in ${(delay / 1000).toFixed(1)} s`);
        await sleep(delay);
      }
    }
  }
  save();
  for (let attempt = 0; !(await report()); attempt++) {
    if (opts.maxAttempts && attempt + 1 >= opts.maxAttempts) break;
    await sleep(fullJitterDelay(attempt, policy));
  }
  return 'ready';
}
