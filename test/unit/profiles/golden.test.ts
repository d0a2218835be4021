/**
 * Golden transcripts (Tailscale-style): for every fixture machine × shipped profile, the
 * exact operations a fresh node gets, as the shell lines they stand for, or the validation
 * errors that refuse the pair. Review the snapshot diff when the planner changes.
 */
import { describe, expect, it } from 'vitest';
import { observe } from '../../../src/profiles/apply.js';
import type { PlanOp } from '../../../src/profiles/plan.js';
import { validateProfile } from '../../../src/profiles/validate.js';
import { machine, profile } from '../../fixtures/hw/scenario.js';

const line = (o: PlanOp): string => {
  switch (o.action) {
    case 'write-attr':
      return `${o.phase}: echo ${o.value} > ${o.path}${o.onlyIfBound ? `  # if bound to ${o.onlyIfBound.driver}` : ''}`;
    case 'run':
      return `${o.phase}: ${[o.cmd, ...(o.args ?? [])].join(' ')}`;
    case 'write-file':
      return `${o.phase}: write ${o.path}`;
    case 'remove-file':
      return `${o.phase}: rm ${o.path}`;
  }
};

const MACHINES = ['du-e810', 'cx6dx', 'all-nics'] as const;
const PROFILES = ['base', 'cu', 'du', 'sriov-e810', 'sriov-cx6dx', 'smartnic-cx6dx'] as const;

describe('plans for every fixture machine and shipped profile', () => {
  for (const m of MACHINES)
    for (const name of PROFILES) {
      it(`${m} × ${name}`, async () => {
        const k = machine(m);
        const p = profile(name);
        const obs = await observe(k, k.runner, p);
        const errors = validateProfile(p, obs.inv).filter((i) => i.severity === 'error');
        if (errors.length) {
          expect(
            errors.map((e) => `${e.file?.split('/').pop()}:${e.line}: ${e.field}: ${e.message}`),
          ).toMatchSnapshot();
          return;
        }
        const { planProfile } = await import('../../../src/profiles/plan.js');
        const plan = planProfile(p, obs);
        expect({
          reboots: plan.reboot.count,
          reasons: plan.reboot.reasons.map((r) => r.split(':')[0]),
          ops: plan.ops.map(line),
        }).toMatchSnapshot();
      });
    }
});
