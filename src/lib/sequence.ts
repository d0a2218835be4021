import { readFileSync } from 'node:fs';
import { writeFileAtomic } from './atomic.js';

export interface DurableSequenceOptions {
  /** Numbers reserved per disk write (default 1000): a restart skips the rest of the block. */
  block?: number;
  /** Wall clock (unix ms); a floor for the first number after a start, never a ceiling. */
  now?: () => number;
  /** Called when the file exists but cannot be read as a sequence (it is then rewritten). */
  onDamaged?: (path: string, why: string) => void;
}

/**
 * A counter that only ever grows, across restarts, kill -9 and reboots, whatever the clock
 * does. It is not written once per number: the file holds an upper bound (`reserved`) written
 * atomically and fsync'ed before any number below it is handed out, a block at a time. After
 * a restart the counter starts at that bound, so the numbers of the block a crash cut short
 * are skipped, never repeated.
 *
 * Each start also begins no lower than the wall clock in ms: a state directory restored from
 * a backup, or a damaged file, then still continues above what the node said before (unless
 * the clock, too, is behind). A clock that steps back never moves the counter back.
 */
export class DurableSequence {
  private nextValue: number;
  private reservedUpTo: number;
  private readonly block: number;

  constructor(
    readonly path: string,
    opts: DurableSequenceOptions = {},
  ) {
    this.block = Math.max(1, Math.floor(opts.block ?? 1000));
    const wall = Math.max(0, Math.floor((opts.now ?? Date.now)()));
    let stored = 0;
    try {
      stored = parseReserved(readFileSync(path, 'utf8'));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') opts.onDamaged?.(path, (e as Error).message);
    }
    this.nextValue = Math.max(stored, wall);
    this.reservedUpTo = this.nextValue;
    this.reserve();
  }

  /** The next number: greater than every number this file has handed out before. */
  next(): number {
    if (this.nextValue >= this.reservedUpTo) this.reserve();
    return this.nextValue++;
  }

  /** The bound on disk: no number at or above it has been handed out. */
  get reserved(): number {
    return this.reservedUpTo;
  }

  private reserve(): void {
    const upTo = this.reservedUpTo + this.block;
    if (!Number.isSafeInteger(upTo)) throw new RangeError(`sequence ${this.path} is exhausted`);
    // On disk before any number below it is used: a crash right after still starts above.
    writeFileAtomic(this.path, `${JSON.stringify({ version: 1, reserved: upTo })}\n`);
    this.reservedUpTo = upTo;
  }
}

function parseReserved(text: string): number {
  const v = JSON.parse(text) as { version?: unknown; reserved?: unknown };
  if (v?.version !== 1 || !Number.isSafeInteger(v.reserved) || (v.reserved as number) < 0)
    throw new Error('expected {"version":1,"reserved":<non-negative integer>}');
  return v.reserved as number;
}
