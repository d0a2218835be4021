import { API_VERSION, type TetherObject } from '../api/resource.js';
import { isTetherError, TetherError } from '../lib/errors.js';
import { certFingerprint } from '../lib/pki.js';
import type { ControllerStore } from './mirror.js';
import type { TxnOp, TxnResult } from './store/store.js';

/**
 * Claim keys: uniqueness that must hold across writers (several replicas on one etcd, or two
 * requests in flight on one) is made a property of the store instead of a check on the local
 * copy. Whoever takes value V writes `Claim/<space>.<V>` in the same transaction as the
 * object that uses V, with expectRevision 0 (must not exist) or, to take over a stale claim
 * (its holder is gone or moved on), the stale claim's revision. Two writers that both
 * passed their check on a copy then race in the store and exactly one commits; the other
 * gets TETHER_E_CONFLICT on the Claim and re-plans against a copy that has seen the winner.
 *
 * `Claim` is not an API kind: Apply refuses it (unknown kind), no node slice carries it.
 */
export const CLAIM_KIND = 'Claim';

export interface ClaimHolder {
  kind: string;
  name: string;
}

export function claimName(space: string, value: string): string {
  return `${space}.${value}`;
}

export function claimObject(name: string, holder: ClaimHolder): TetherObject {
  return {
    apiVersion: API_VERSION,
    kind: CLAIM_KIND,
    metadata: { name },
    spec: { holder: { kind: holder.kind, name: holder.name } },
  };
}

export function holderOf(store: ControllerStore, name: string): ClaimHolder | undefined {
  const h = (store.get(CLAIM_KIND, name)?.object.spec as { holder?: Partial<ClaimHolder> } | undefined)
    ?.holder;
  return typeof h?.kind === 'string' && typeof h.name === 'string'
    ? { kind: h.kind, name: h.name }
    : undefined;
}

/**
 * The op that takes claim `name` for `holder`, or none when it already holds it. `stillHeld`
 * says whether the current holder (another object) still uses the value: if it does, the
 * value is taken (TETHER_E_CLAIM); if not, the claim is stale and is taken over with a CAS
 * on its revision.
 */
export function takeClaim(
  store: ControllerStore,
  name: string,
  holder: ClaimHolder,
  stillHeld: (h: ClaimHolder) => boolean,
): TxnOp | undefined {
  const cur = store.get(CLAIM_KIND, name);
  const object = claimObject(name, holder);
  if (!cur) return { op: 'put', object, expectRevision: 0 };
  const h = holderOf(store, name);
  if (h && h.kind === holder.kind && h.name === holder.name) return undefined;
  if (h && stillHeld(h))
    throw new TetherError('TETHER_E_CLAIM', `${name} is held by ${h.kind} "${h.name}"`, {
      field: 'claim',
      expected: 'a value no other object holds',
      claim: name,
      holder: h,
    });
  return { op: 'put', object, expectRevision: cur.revision };
}

/**
 * A claim on a whole set of objects whose checks span several of them (one Gateway per site,
 * pools apart, a floating IP held once): every write to the set also rewrites this claim
 * with a CAS on the revision the check read, so of two writers that checked the same state
 * one commits and the other re-plans against a copy that has the first one's objects.
 */
export function serializeOn(store: ControllerStore, name: string): TxnOp {
  const cur = store.get(CLAIM_KIND, name);
  const seq = (cur?.object.spec as { seq?: unknown } | undefined)?.seq;
  const next = typeof seq === 'number' && Number.isSafeInteger(seq) ? seq + 1 : 1;
  return {
    op: 'put',
    // The sequence makes every write a change: an unchanged put does not bump the revision,
    // and two of them would both pass the CAS.
    object: {
      ...claimObject(name, { kind: 'Set', name }),
      spec: { holder: { kind: 'Set', name }, seq: next },
    },
    expectRevision: cur?.revision ?? 0,
  };
}

/** True for a CAS failure on a Claim: the caller lost a race and should re-plan. */
export function isClaimConflict(e: unknown): boolean {
  const d = (e as { code?: string; details?: { kind?: unknown } } | undefined) ?? {};
  return d.code === 'TETHER_E_CONFLICT' && d.details?.kind === CLAIM_KIND;
}

/** Claim races are lost only to a writer whose commit this copy has not seen yet. */
const CLAIM_ATTEMPTS = 20;

/**
 * Plans and commits; a lost claim race re-plans after a short wait (the copy then sees the
 * winner, and the plan picks another value or refuses with TETHER_E_CLAIM).
 */
export async function txnWithClaims(
  store: ControllerStore,
  plan: () => TxnOp[],
  /** Other conflicts that mean "re-plan" (a CAS the plan added itself, not the caller's). */
  replan: (e: unknown) => boolean = () => false,
): Promise<TxnResult> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await store.txn(plan());
    } catch (e) {
      if (!(isClaimConflict(e) || replan(e)) || attempt >= CLAIM_ATTEMPTS) throw e;
      await new Promise((r) => setTimeout(r, 20 + attempt * 20));
    }
  }
}

/**
 * Replicas on one datastore must share one CA (docs/controller.md, "Replicas"): the first
 * start records the CA certificate's fingerprint as `Claim/ca`; a replica started with
 * another CA is refused with TETHER_E_CONFIG before it serves (its certificates would not be
 * accepted by the others, nor theirs by it).
 */
export async function checkSharedCa(store: ControllerStore, caCertPem: string): Promise<void> {
  const fp = certFingerprint(caCertPem);
  for (let attempt = 0; ; attempt++) {
    let op: TxnOp | undefined;
    try {
      op = takeClaim(store, 'ca', { kind: 'CA', name: fp }, () => true);
    } catch (e) {
      if (!isTetherError(e, 'TETHER_E_CLAIM')) throw e;
      const other = (e.details.holder as ClaimHolder).name;
      throw new TetherError(
        'TETHER_E_CONFIG',
        `this controller's CA (${fp}) is not the CA of the other replicas on this datastore (${other})`,
        {
          field: 'ca.crt',
          expected: 'the same ca.crt and ca.key on every replica of one datastore (copy them from the first)',
          caFingerprint: fp,
          storeCaFingerprint: other,
        },
      );
    }
    if (!op) return;
    try {
      await store.txn([op]);
      return;
    } catch (e) {
      if (!isClaimConflict(e) || attempt >= CLAIM_ATTEMPTS) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
