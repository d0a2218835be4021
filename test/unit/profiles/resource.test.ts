import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { validateObject } from '../../../src/api/validate.js';
import { registerProfileKind } from '../../../src/profiles/resource.js';

describe('Profile as a controller resource', () => {
  registerProfileKind();
  registerProfileKind(); // idempotent: every composition root calls it

  it('accepts a shipped profile body as spec, and a Site naming it', () => {
    const body = parse(readFileSync(new URL('../../../profiles/du.yaml', import.meta.url), 'utf8')) as Record<
      string,
      unknown
    >;
    const obj = validateObject({
      apiVersion: 'tether.dev/v1',
      kind: 'Profile',
      metadata: { name: 'du' },
      spec: body,
    });
    expect(obj.kind).toBe('Profile');
    const site = validateObject({
      apiVersion: 'tether.dev/v1',
      kind: 'Site',
      metadata: { name: 'cell-1' },
      spec: { profile: 'du' },
    });
    expect(site.spec).toMatchObject({ profile: 'du' });
  });

  it('rejects a profile with a typo, naming the field', () => {
    expect(() =>
      validateObject({
        apiVersion: 'tether.dev/v1',
        kind: 'Profile',
        metadata: { name: 'bad' },
        spec: { cpu: { reservd: '0-1' } },
      }),
    ).toThrow(
      expect.objectContaining({
        code: 'TETHER_E_INVALID',
        details: expect.objectContaining({ field: expect.stringContaining('spec.cpu') }),
      }),
    );
  });
});
