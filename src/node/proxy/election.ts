import type { ProbeResponse__Output } from '../../api/gen/tether/v1/ProbeResponse.js';
import type { SiteProxyClient } from '../../api/gen/tether/v1/SiteProxy.js';
import { tetherProto } from '../../api/grpc.js';
import type { Logger } from '../../lib/log.js';
import { siteNodeCredentials } from '../connect.js';
import { candidates, type RosterEntry } from './roster.js';
import { SITE_CHANNEL_OPTIONS } from './tls.js';

export interface ElectionOptions {
  node: string;
  site: string;
  caPem: string;
  credentials: { keyPem: string; certPem: string };
  port: number;
  roster: () => ReadonlyMap<string, RosterEntry>;
  log: Logger;
  /** `--proxy-probe`: interval between rounds (default 1 s). */
  probeMs?: number;
  /** Deadline of one probe (default 500 ms). */
  probeTimeoutMs?: number;
  /** Called when this node becomes active (true) or steps down (false). */
  onActive: (active: boolean) => void;
  /** Called when the site's active proxy (as this node sees it) changes. */
  onLeader?: (leader: Leader | undefined) => void;
  /** The address of a candidate's proxy port (tests put several on 127.0.0.x). */
  addressOf?: (c: RosterEntry) => string;
}

export interface Leader {
  node: string;
  address: string;
}

/**
 * The site decides among its nodes which one runs the proxy, with no central lease
 * (docs/proxy.md "Election"): every node probes the roster's candidates; an active reachable
 * candidate is followed (the best-ranked one if several; an active node that sees a
 * better-ranked active one steps down); otherwise the best-ranked reachable candidate becomes
 * active. Works without the WAN, so a takeover works during a cut.
 */
export class Election {
  private timer: NodeJS.Timeout | undefined;
  private readonly clients = new Map<string, SiteProxyClient>();
  private activeFlag = false;
  private leaderNow: Leader | undefined;
  private stopped = false;
  private running = false;
  private lastLeader: Leader | undefined;
  private bestStreak = 0;
  /** Failed activations in a row, and the round before which no new attempt is made. */
  private failures = 0;
  private retryAtRound = 0;
  rounds = 0;

  constructor(private readonly opts: ElectionOptions) {}

  get active(): boolean {
    return this.activeFlag;
  }

  /** The site's active proxy as last seen (this node when active). */
  get leader(): Leader | undefined {
    return this.leaderNow;
  }

  start(): void {
    this.stopped = false;
    void this.round();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
    this.setActive(false);
    this.leaderNow = undefined;
  }

  /** One election round now (also run every probe interval). */
  async round(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    try {
      await this.decide();
    } catch (e) {
      this.opts.log.warn({ err: (e as Error).message }, 'election round failed');
    } finally {
      this.running = false;
      this.rounds++;
      const l = this.leaderNow;
      if (l?.node !== this.lastLeader?.node || l?.address !== this.lastLeader?.address) {
        this.lastLeader = l ? { ...l } : undefined;
        this.opts.onLeader?.(l);
      }
      if (!this.stopped) {
        this.timer = setTimeout(() => void this.round(), this.opts.probeMs ?? 1000);
        this.timer.unref();
      }
    }
  }

  private addressOf(c: RosterEntry): string {
    return this.opts.addressOf?.(c) ?? `${c.vtep}:${this.opts.port}`;
  }

  private async decide(): Promise<void> {
    const cands = candidates(this.opts.roster());
    const me = this.opts.node;
    const others = cands.filter((c) => c.name !== me);
    const answers = await Promise.all(
      others.map(async (c) => ({ c, r: await this.probe(c).catch(() => undefined) })),
    );
    if (this.stopped) return;
    const reachable = answers.filter((a) => a.r !== undefined);
    const activeOthers = reachable.filter((a) => a.r!.active && a.r!.node === a.c.name);
    const iAmCandidate = cands.some((c) => c.name === me);
    const rank = (name: string) => cands.findIndex((c) => c.name === name);
    const bestActive = activeOthers[0];
    if (bestActive) this.bestStreak = 0;
    if (bestActive && (!this.activeFlag || rank(bestActive.c.name) < rank(me))) {
      // Follow the best-ranked active proxy; step down if it outranks us.
      if (this.activeFlag)
        this.opts.log.info(
          { leader: bestActive.c.name },
          'a better-ranked site proxy is active; stepping down',
        );
      this.setActive(false);
      this.leaderNow = { node: bestActive.c.name, address: this.addressOf(bestActive.c) };
      return;
    }
    if (this.activeFlag) return;
    const bestReachable = [...(iAmCandidate ? [me] : []), ...reachable.map((a) => a.c.name)].sort(
      (a, b) => rank(a) - rank(b),
    )[0];
    if (iAmCandidate && bestReachable === me) {
      // Two rounds in a row unless alone: one failed probe (a fresh channel's handshake
      // outlasting the probe deadline) must not make two actives at start or in a blip.
      if ((++this.bestStreak >= 2 || others.length === 0) && this.rounds >= this.retryAtRound)
        this.setActive(true);
      return;
    }
    this.bestStreak = 0;
    // Wait one interval: the better-ranked one becomes active.
    this.leaderNow = undefined;
  }

  private setActive(active: boolean): void {
    if (this.activeFlag === active) {
      if (active) this.leaderNow = this.selfLeader();
      return;
    }
    if (!active) {
      this.activeFlag = false;
      this.opts.log.info({ node: this.opts.node, active }, 'site proxy: standby');
      this.opts.onActive(false);
      return;
    }
    try {
      this.opts.onActive(true);
    } catch (e) {
      // Not active without a core (a damaged journal, a full disk): probes must keep saying
      // standby so that another node can take over, and this one tries again later.
      this.failures++;
      const backoff = Math.min(2 ** this.failures, 64);
      this.retryAtRound = this.rounds + backoff;
      this.bestStreak = 0;
      this.leaderNow = undefined;
      this.opts.log.error(
        { node: this.opts.node, err: (e as Error).message, retryInRounds: backoff },
        'could not become the site proxy; staying standby',
      );
      try {
        this.opts.onActive(false);
      } catch {
        /* what was half set up is gone with it */
      }
      return;
    }
    this.failures = 0;
    this.retryAtRound = 0;
    this.activeFlag = true;
    this.leaderNow = this.selfLeader();
    this.opts.log.info({ node: this.opts.node, active }, 'this node is the site proxy');
  }

  private selfLeader(): Leader {
    const self = this.opts.roster().get(this.opts.node);
    return { node: this.opts.node, address: self ? this.addressOf(self) : '' };
  }

  private probe(c: RosterEntry): Promise<ProbeResponse__Output> {
    const address = this.addressOf(c);
    let client = this.clients.get(address);
    if (!client) {
      const proto = tetherProto();
      client = new proto.tether.v1.SiteProxy(
        address,
        siteNodeCredentials(this.opts.caPem, this.opts.credentials, this.opts.site),
        SITE_CHANNEL_OPTIONS,
      );
      this.clients.set(address, client);
    }
    const cl = client;
    return new Promise((resolve, reject) =>
      cl.Probe(
        { node: this.opts.node },
        { deadline: Date.now() + (this.opts.probeTimeoutMs ?? 500) },
        (err, r) => (err || !r ? reject(err ?? new Error('empty probe answer')) : resolve(r)),
      ),
    );
  }
}
