import { Counter, Gauge, type Registry } from 'prom-client';

/**
 * Metric families whose values are read at scrape time (prom-client's `collect()`), so a
 * daemon pays for kernel counters and status walks only when someone scrapes, and nothing
 * has to be kept in step by the code that owns the value.
 */

export type Labels<L extends string> = Partial<Record<L, string>>;
export type Sample<L extends string> = readonly [Labels<L>, number];
export type Reader<L extends string> = () => readonly Sample<L>[] | Promise<readonly Sample<L>[]>;

/** At most this many label sets per family: labels come from intent (network names), not
 *  from peers, but a slice is large and a scrape must stay small whatever it holds. */
export const MAX_SERIES_PER_FAMILY = 4096;

/** A gauge whose samples `read` returns at every scrape (previous samples are dropped). */
export function lazyGauge<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  read: Reader<L>,
): Gauge<L> {
  return new Gauge<L>({
    name,
    help,
    labelNames: [...labelNames],
    registers: [registry],
    async collect() {
      const samples = await read();
      this.reset();
      for (const [labels, v] of samples.slice(0, MAX_SERIES_PER_FAMILY)) this.set(labels, v);
    },
  });
}

/**
 * A counter mirrored from a monotonic source at every scrape (kernel byte counters, the
 * session's reconnect count). A source that went backwards (a link made again, a restart)
 * shows as a counter reset, which `rate()` handles.
 */
export function lazyCounter<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  read: Reader<L>,
): Counter<L> {
  return new Counter<L>({
    name,
    help,
    labelNames: [...labelNames],
    registers: [registry],
    async collect() {
      const samples = await read();
      this.reset();
      for (const [labels, v] of samples.slice(0, MAX_SERIES_PER_FAMILY))
        if (Number.isFinite(v) && v > 0) this.inc(labels, v);
        else this.inc(labels, 0);
    },
  });
}

/** 1 for the state the thing is in and 0 for every other of a fixed list (a state set). */
export function stateSet<S extends string, L extends string = 'state'>(
  states: readonly S[],
  current: string | undefined,
  label: L = 'state' as L,
): Sample<L>[] {
  return states.map((s) => {
    const labels: Labels<L> = {};
    labels[label] = s;
    return [labels, s === current ? 1 : 0] as const;
  });
}
