/**
 * One full garbage collection, when the process runs with `--expose-gc` (the node unit sets
 * it, installer/systemd/tether-node.service); otherwise nothing. Returns whether it ran.
 *
 * For the end of a burst only: V8 grows its old generation while a burst's short-lived
 * buffers are promoted (1 MB semi-spaces) and, on an idle daemon, may not collect it for
 * minutes; the memory stays resident meanwhile (BENCHMARKS.md, proxy-rss).
 */
export function collectGarbage(): boolean {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (typeof gc !== 'function') return false;
  gc();
  return true;
}
