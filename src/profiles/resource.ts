import { registerKind } from '../api/kinds.js';
import { PROFILE_RESOURCE_SPEC_SCHEMA } from './schema.js';

/**
 * Makes `kind: Profile` a controller resource whose spec is a profile file's body (the same
 * schema editors use). Called by each composition root that validates resources; repeated
 * calls are harmless.
 */
export function registerProfileKind(): void {
  registerKind('Profile', PROFILE_RESOURCE_SPEC_SCHEMA as unknown as Parameters<typeof registerKind>[1]);
}
