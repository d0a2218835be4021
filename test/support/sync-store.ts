import type { ControllerStore } from '../../src/controller/mirror.js';
import type { Store } from '../../src/controller/store/store.js';

/**
 * A ControllerStore straight over a synchronous in-memory Store, for fast unit tests of the
 * modules above it (hub, registry, claims): subscribers run inside the commit, so a test can
 * write with `store.txn` and look at the effect on the next line. The controller itself
 * always runs on StoreMirror (test/unit/controller/mirror.test.ts covers that path).
 */
export function syncControllerStore(store: Store, backend = 'memory'): ControllerStore {
  return {
    backend,
    revision: () => store.revision(),
    compactedRevision: () => store.compactedRevision(),
    get: (k, n) => store.get(k, n),
    list: (k) => store.list(k),
    history: (f, k) => store.history(f, k),
    subscribe: (fn) => store.subscribe(fn),
    txn: async (ops, extras) => store.txn(ops, extras),
    reportMark: async (n) => store.reportMark(n),
    probe: () => store.probe(),
    compact: async (k) => store.compact(k),
    close: async () => store.close(),
  };
}
