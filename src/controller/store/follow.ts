import { TetherError } from '../../lib/errors.js';
import type { Datastore, WatchBatch } from './datastore.js';
import type { StoredObject } from './store.js';

export interface FollowHandlers {
  /** The full state at `revision`: the first call, and again after every resync. */
  snapshot(items: StoredObject[], revision: number): void | Promise<void>;
  /** One transaction's events, in revision order, after the last snapshot. */
  batch(batch: WatchBatch): void | Promise<void>;
}

/**
 * The consumer side of Datastore.watch: list, then watch from the list's revision, and when
 * the watch says TETHER_E_COMPACTED (this consumer fell behind the kept history) list again
 * and carry on from the new snapshot. Resolves when `signal` aborts or the store closes;
 * any other error rejects.
 */
export async function follow(
  store: Datastore,
  handlers: FollowHandlers,
  opts: { kind?: string; signal?: AbortSignal; onResync?: (compactedRevision: number) => void } = {},
): Promise<void> {
  const { kind, signal } = opts;
  while (!signal?.aborted) {
    const snap = await store.list(kind);
    await handlers.snapshot(snap.items, snap.revision);
    try {
      for await (const b of store.watch(snap.revision, {
        ...(kind ? { kind } : {}),
        ...(signal ? { signal } : {}),
      }))
        await handlers.batch(b);
      return;
    } catch (e) {
      if (!(e instanceof TetherError && e.code === 'TETHER_E_COMPACTED')) throw e;
      opts.onResync?.(Number(e.details.compactedRevision ?? 0));
    }
  }
}
