import { MAX_CONTROLLERS, parseControllerList } from '../lib/controller-addresses.js';
import { asTetherError } from '../lib/errors.js';

/**
 * The controller replicas a node (and the site proxy it may host) can sync from, and which
 * one it uses now (issue 12, docs/node.md "Controller addresses"). Sticky: the address
 * that works is kept until a session to it fails; then the next attempt goes to the next
 * address in list order, wrapping around. The reconnect delay itself is the session's
 * exponential backoff with full jitter (src/lib/backoff.ts), so a thousand sites losing a
 * replica spread over the others and over time.
 *
 * Shared by the agent's session, certificate renewal and the site proxy's WAN session of
 * the same daemon: a failure one of them sees moves all of them.
 */
export class ControllerSet {
  private list: string[];
  private index = 0;

  constructor(
    addresses: readonly string[],
    private readonly onLearned?: (addresses: readonly string[]) => void,
  ) {
    this.list = parseControllerList([...addresses], 'controllers');
  }

  /** Where the next connection goes. */
  get current(): string {
    return this.list[this.index]!;
  }

  get addresses(): readonly string[] {
    return this.list;
  }

  /** Every address once, the current one first (for one-shot calls such as renewal). */
  inOrder(): string[] {
    return [...this.list.slice(this.index), ...this.list.slice(0, this.index)];
  }

  /** A session to (or a call on) `address` failed: move on unless another caller already did. */
  failed(address: string): void {
    if (this.list[this.index] === address) this.index = (this.index + 1) % this.list.length;
  }

  /** `address` answered: stay there (a one-shot call that found another replica). */
  worked(address: string): void {
    const i = this.list.indexOf(address);
    if (i >= 0) this.index = i;
  }

  /**
   * The controller at `from` advertised its replicas. Peer-supplied: the list is checked
   * (1–8 entries, HOST:PORT); a bad one is refused whole and changes nothing. The address
   * the node is connected to stays in the list (first, when the controller did not name
   * it): a replica that advertises nonsense cannot cut the node off from itself. Returns
   * whether the list changed, or the problem.
   */
  learn(advertised: readonly unknown[], from: string): { changed: boolean; error?: string } {
    let next: string[];
    try {
      next = parseControllerList([...advertised], 'controllers');
    } catch (e) {
      return { changed: false, error: asTetherError(e).message };
    }
    if (!next.includes(from)) next = [from, ...next].slice(0, MAX_CONTROLLERS);
    if (next.length === this.list.length && next.every((a, i) => a === this.list[i]))
      return { changed: false };
    const current = this.current;
    this.list = next;
    const i = next.indexOf(current);
    this.index = i >= 0 ? i : Math.max(0, next.indexOf(from));
    this.onLearned?.(next);
    return { changed: true };
  }
}
