import { writeSync } from 'node:fs';
import pino, { type Logger } from 'pino';

export type { Logger };

/** pino level number → syslog priority, which journald reads from a `<N>` line prefix. */
function syslogPriority(level: number): number {
  if (level >= 60) return 2; // fatal → crit
  if (level >= 50) return 3; // error → err
  if (level >= 40) return 4; // warn → warning
  if (level >= 30) return 6; // info → info
  return 7; // debug, trace
}

/**
 * JSON lines straight to fd 1, synchronously: no worker-thread transport, so the last
 * lines before a crash are never lost (pino#1183). Under systemd ($JOURNAL_STREAM set)
 * each line gets a `<N>` prefix so journald files it at the right priority instead of
 * treating everything as info.
 */
export function createLogger(opts: {
  name: string;
  level?: string;
  fd?: number;
  journald?: boolean;
  /** Also hands every line (JSON, newline-terminated) to this: the node's event ring. */
  tee?: (line: string) => void;
}): Logger {
  const fd = opts.fd ?? 1;
  const journald = opts.journald ?? Boolean(process.env.JOURNAL_STREAM);
  const destination = {
    write(line: string): void {
      if (journald) {
        const m = /"level":(\d+)/.exec(line);
        line = `<${syslogPriority(Number(m?.[1] ?? 30))}>${line}`;
      }
      writeSync(fd, line);
      opts.tee?.(line);
    },
  };
  return pino(
    {
      name: opts.name,
      level: opts.level ?? process.env.TETHER_LOG_LEVEL ?? 'info',
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Secrets never reach a log line, whatever a caller passes.
      redact: {
        paths: ['*.key', '*.privateKey', '*.token', '*.secret', 'key', 'token', 'secret'],
        censor: '[redacted]',
      },
    },
    destination,
  );
}

/** A logger that drops everything: for unit tests and CLI one-shots that print for humans. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
