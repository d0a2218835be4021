import { readFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import { TetherError } from '../lib/errors.js';

export interface ControllerConfig {
  /** host:port the gRPC server binds. */
  listen: string;
  /** host:port nodes and the CLI should dial (written into admin.yaml and join instructions). */
  advertise: string;
  /** Node certificate lifetime; nodes renew at 75% of it. */
  nodeCertSeconds: number;
  /** Seconds between controller→node heartbeats; a node gives up after 3 missed. */
  heartbeatSeconds: number;
  /** How many revisions of history to keep for resuming nodes without a snapshot. */
  historyRevisions: number;
  /** Largest accepted gRPC message. */
  maxMessageBytes: number;
}

export const DEFAULT_CONFIG: ControllerConfig = {
  listen: '0.0.0.0:7443',
  advertise: '127.0.0.1:7443',
  nodeCertSeconds: 30 * 86_400,
  heartbeatSeconds: 5,
  historyRevisions: 100_000,
  maxMessageBytes: 4 * 1024 * 1024,
};

export function loadControllerConfig(path: string): ControllerConfig {
  let raw: unknown;
  try {
    raw = parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new TetherError('TETHER_E_STATE', `cannot read controller config: ${(e as Error).message}`, {
      file: path,
    });
  }
  const cfg = { ...DEFAULT_CONFIG, ...(raw as Partial<ControllerConfig>) };
  for (const [k, v] of Object.entries(DEFAULT_CONFIG)) {
    if (typeof (cfg as Record<string, unknown>)[k] !== typeof v) {
      throw new TetherError('TETHER_E_INVALID', `wrong type for ${k}`, {
        file: path,
        field: k,
        expected: typeof v,
      });
    }
  }
  return cfg;
}

export function renderControllerConfig(cfg: ControllerConfig): string {
  return stringify(cfg);
}
