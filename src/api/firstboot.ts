import { TetherError } from '../lib/errors.js';
import type { FirstBootReport, FirstBootReport__Output } from './gen/tether/v1/FirstBootReport.js';

/**
 * First boot's phases, in order (docs/node.md "First boot"). The contract between the node,
 * which runs and reports them, and the controller, which stores and shows them.
 */
export const FIRST_BOOT_PHASES = [
  'discover',
  'preflight',
  'profile',
  'enroll',
  'configure',
  'ready',
] as const;
export type FirstBootPhaseName = (typeof FIRST_BOOT_PHASES)[number];

/** Bounds of one report: a node cannot grow its Node object without limit. */
const MAX_TEXT = 512;

export interface FirstBootPhaseRecord {
  name: FirstBootPhaseName;
  startedAt: string;
  endedAt?: string;
  /** Time spent in the phase (to the end, or to the report while it runs). */
  seconds?: number;
  attempts: number;
}

export interface FirstBootSummaryBody {
  seq: number;
  /** A phase name, or `failed`. */
  phase: FirstBootPhaseName | 'failed';
  phases: FirstBootPhaseRecord[];
  lastError?: { phase: string; code: string; message: string; at: string };
  source?: string;
  reboots: number;
  updatedAt: string;
}

export function toReport(s: FirstBootSummaryBody): FirstBootReport {
  return {
    seq: s.seq,
    phase: s.phase,
    phases: s.phases.map((p) => ({
      name: p.name,
      started_at: p.startedAt,
      ended_at: p.endedAt ?? '',
      attempts: p.attempts,
    })),
    last_error_phase: s.lastError?.phase ?? '',
    last_error_code: s.lastError?.code ?? '',
    last_error: s.lastError?.message ?? '',
    last_error_at: s.lastError?.at ?? '',
    source: s.source ?? '',
    reboots: s.reboots,
    updated_at: s.updatedAt,
  };
}

const isTime = (t: string) => t.length <= 40 && !Number.isNaN(Date.parse(t));

/** Checks a report from a node and turns it into what the controller stores: TETHER_E_INVALID
 *  naming the field on anything out of bounds. */
export function fromReport(r: FirstBootReport__Output): FirstBootSummaryBody {
  const bad = (field: string, expected: string): never => {
    throw new TetherError('TETHER_E_INVALID', `bad first-boot report: ${field}`, { field, expected });
  };
  const seq = Number(r.seq);
  if (!Number.isSafeInteger(seq) || seq < 1) bad('seq', 'a positive integer');
  const phaseNames: readonly string[] = FIRST_BOOT_PHASES;
  if (!phaseNames.includes(r.phase) && r.phase !== 'failed')
    bad('phase', `one of ${FIRST_BOOT_PHASES.join(', ')}, failed`);
  if (r.phases.length > FIRST_BOOT_PHASES.length) bad('phases', `at most ${FIRST_BOOT_PHASES.length}`);
  const seen = new Set<string>();
  const phases = r.phases.map((p, i): FirstBootPhaseRecord => {
    if (!phaseNames.includes(p.name) || seen.has(p.name)) bad(`phases[${i}].name`, 'each phase name once');
    seen.add(p.name);
    if (!isTime(p.started_at)) bad(`phases[${i}].started_at`, 'an RFC 3339 time');
    if (p.ended_at !== '' && !isTime(p.ended_at)) bad(`phases[${i}].ended_at`, 'an RFC 3339 time or empty');
    if (!(p.attempts >= 0 && p.attempts <= 1_000_000)) bad(`phases[${i}].attempts`, '0‥1000000');
    const end = p.ended_at ? Date.parse(p.ended_at) : Date.parse(r.updated_at);
    const seconds = Math.max(0, (end - Date.parse(p.started_at)) / 1000);
    return {
      name: p.name as FirstBootPhaseName,
      startedAt: p.started_at,
      ...(p.ended_at ? { endedAt: p.ended_at } : {}),
      ...(Number.isFinite(seconds) ? { seconds: Math.round(seconds * 1000) / 1000 } : {}),
      attempts: p.attempts,
    };
  });
  for (const [f, v] of [
    ['last_error_phase', r.last_error_phase],
    ['last_error_code', r.last_error_code],
    ['last_error', r.last_error],
    ['source', r.source],
  ] as const) {
    if (v.length > MAX_TEXT) bad(f, `at most ${MAX_TEXT} characters`);
  }
  if (!isTime(r.updated_at)) bad('updated_at', 'an RFC 3339 time');
  if (r.last_error && !isTime(r.last_error_at)) bad('last_error_at', 'an RFC 3339 time');
  if (!(r.reboots >= 0 && r.reboots <= 1000)) bad('reboots', '0‥1000');
  return {
    seq,
    phase: r.phase as FirstBootSummaryBody['phase'],
    phases,
    ...(r.last_error
      ? {
          lastError: {
            phase: r.last_error_phase,
            code: r.last_error_code,
            message: r.last_error,
            at: r.last_error_at,
          },
        }
      : {}),
    ...(r.source ? { source: r.source } : {}),
    reboots: r.reboots,
    updatedAt: r.updated_at,
  };
}
