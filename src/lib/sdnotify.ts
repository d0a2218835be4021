import { createRequire } from 'node:module';
import { TetherError } from './errors.js';

/**
 * systemd readiness and watchdog notifications (sd_notify(3)) for `Type=notify` units.
 *
 * Backed by the `sd-notify` npm package, a native binding to libsystemd's sd_notify: the
 * datagram leaves from *this* process, so systemd attributes READY=1 and WATCHDOG=1 to the
 * main PID (NotifyAccess=main works). The `systemd-notify` npm package only spawns the
 * systemd-notify binary, whose messages come from a short-lived child PID: systemd drops
 * them under NotifyAccess=main, and a watchdog ping per fork is wasteful.
 *
 * Everything is a no-op when NOTIFY_SOCKET is unset (not under systemd), and the native
 * module is loaded only when it is set.
 */

/** The calls we make; the real one is the sd-notify binding, tests may pass a fake. */
export interface NotifyBackend {
  /** Sends one sd_notify state string (`KEY=VALUE` lines) from this process. */
  notify(state: string): void;
}

export interface SystemdNotifierOptions {
  /** Environment to read NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Our PID, compared with WATCHDOG_PID (default process.pid). */
  pid?: number;
  /** Default: the sd-notify native binding, loaded on first use. */
  backend?: NotifyBackend;
  /** Called once each time the watchdog skips a ping because healthy() said no (or threw). */
  onUnhealthy?: (reason: unknown) => void;
}

interface SdNotifyModule {
  ready(): void;
  stopping(pid: number): void;
  watchdog(): void;
  sendState(state: string): void;
}

let nativeBackend: NotifyBackend | undefined;

/** The sd-notify binding (native, CommonJS), loaded lazily. */
export function sdNotifyBackend(): NotifyBackend {
  if (!nativeBackend) {
    let mod: SdNotifyModule;
    try {
      mod = createRequire(import.meta.url)('sd-notify') as SdNotifyModule;
    } catch (e) {
      throw new TetherError(
        'TETHER_E_STATE',
        'NOTIFY_SOCKET is set but the sd-notify native module cannot be loaded; systemd will not see readiness',
        { expected: 'the sd-notify package built against libsystemd (npm rebuild sd-notify)' },
        { cause: e },
      );
    }
    // sendState is sd_notify(0, state): the package's own helpers add nothing we need
    // (its stopping() even needs a PID argument its JS wrapper does not pass).
    nativeBackend = { notify: (state) => mod.sendState(state) };
  }
  return nativeBackend;
}

export class SystemdNotifier {
  /** True when NOTIFY_SOCKET is set, i.e. we run under systemd with Type=notify. */
  readonly enabled: boolean;
  /** Ping interval (half of WATCHDOG_USEC) when the watchdog is on for this process. */
  readonly watchdogIntervalMs: number | undefined;
  private readonly opts: SystemdNotifierOptions;
  private backend: NotifyBackend | undefined;
  private timer: NodeJS.Timeout | undefined;
  private wasHealthy = true;

  constructor(opts: SystemdNotifierOptions = {}) {
    this.opts = opts;
    const env = opts.env ?? process.env;
    this.enabled = Boolean(env.NOTIFY_SOCKET);
    this.watchdogIntervalMs = this.enabled ? watchdogInterval(env, opts.pid ?? process.pid) : undefined;
  }

  /** READY=1: startup finished. */
  ready(): void {
    this.send('READY=1');
  }

  /** STATUS=…: one line shown by `systemctl status`. */
  status(text: string): void {
    this.send(`STATUS=${text.replace(/[\r\n]+/g, ' ')}`);
  }

  /** STOPPING=1: shutdown began. Also stops the watchdog. */
  stopping(): void {
    this.stopWatchdog();
    this.send('STOPPING=1');
  }

  /**
   * Pings WATCHDOG=1 every WATCHDOG_USEC/2 while `healthy()` returns true; when it returns
   * false (or throws) the ping is skipped, so a wedged daemon is restarted by systemd.
   * Returns whether the watchdog runs (WATCHDOG_USEC set, WATCHDOG_PID unset or ours).
   * The timer is unref()ed: it never keeps the process alive.
   */
  startWatchdog(healthy: () => boolean): boolean {
    this.stopWatchdog();
    const every = this.watchdogIntervalMs;
    if (every === undefined) return false;
    const tick = () => {
      let ok = false;
      let reason: unknown = 'healthy() returned false';
      try {
        ok = healthy() === true;
      } catch (e) {
        reason = e;
      }
      if (ok) {
        this.wasHealthy = true;
        this.send('WATCHDOG=1');
      } else if (this.wasHealthy) {
        this.wasHealthy = false;
        this.opts.onUnhealthy?.(reason);
      }
    };
    this.timer = setInterval(tick, every);
    this.timer.unref();
    tick();
    return true;
  }

  /** Stops the watchdog timer (no further pings). */
  stopWatchdog(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Stops all timers; sends nothing. */
  stop(): void {
    this.stopWatchdog();
  }

  private send(state: string): void {
    if (!this.enabled) return;
    this.backend ??= this.opts.backend ?? sdNotifyBackend();
    this.backend.notify(state);
  }
}

/** Half of WATCHDOG_USEC in ms, when the watchdog is meant for `pid`; per sd_watchdog_enabled(3). */
export function watchdogInterval(env: NodeJS.ProcessEnv, pid: number): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (!env.WATCHDOG_USEC || !Number.isSafeInteger(usec) || usec <= 0) return undefined;
  if (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== pid) return undefined;
  return Math.max(1, Math.floor(usec / 2000));
}
