// A reader that goes away (`tether logs | head`, `tether --help | head -1`) ends the command
// quietly with 0: no "Unhandled 'error' event" stack trace for a closed pipe.
import { describe, expect, it } from 'vitest';
import { runProcess, TETHER } from '../../integration/support/proc.js';

describe('stdout closed by the reader', () => {
  it('ends --help quietly with 0', async () => {
    const r = await runProcess('bash', ['-c', `set -o pipefail; ${TETHER} --help | head -c 10`], {
      timeoutMs: 60_000,
    });
    expect(r.stderr).not.toContain('EPIPE');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('Usage: tet');
  }, 90_000);
});
