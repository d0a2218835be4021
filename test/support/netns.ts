// The namespace topology the gateway tests and the HA lab share: namespaces under one random
// prefix (other helpers run tests at the same time), veth pairs between them with addresses,
// and removal of exactly what was made, by name.
import { randomBytes } from 'node:crypto';
import { type CommandRunner, ProcessRunner } from '../../src/lib/exec.js';

export interface VethEnd {
  ns: string;
  ifname: string;
  /** CIDRs put on this end (`10.96.1.2/24`). */
  addrs?: readonly string[];
}

export class NetnsSet {
  /** The prefix of every name made here (`<prefix><4 hex>`). */
  readonly id: string;
  private readonly made: string[] = [];

  constructor(
    prefix: string,
    private readonly runner: CommandRunner = new ProcessRunner(),
  ) {
    this.id = `${prefix}${randomBytes(2).toString('hex')}`;
  }

  /** The namespace name for a role (`<id>-<role>`); nothing is created. */
  name(role: string): string {
    return `${this.id}-${role}`;
  }

  /** Creates a namespace per role with its loopback up; returns their names. */
  async add(...roles: string[]): Promise<string[]> {
    const out: string[] = [];
    for (const r of roles) {
      const ns = this.name(r);
      await this.runner.run('ip', ['netns', 'add', ns]);
      this.made.push(ns);
      await this.runner.run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      out.push(ns);
    }
    return out;
  }

  /** A veth pair from a to b (both ends in namespaces made here), addressed and up. */
  async veth(a: VethEnd, b: VethEnd): Promise<void> {
    await this.runner.run('ip', [
      '-n',
      a.ns,
      'link',
      'add',
      a.ifname,
      'type',
      'veth',
      'peer',
      'name',
      b.ifname,
      'netns',
      b.ns,
    ]);
    for (const end of [a, b]) {
      for (const cidr of end.addrs ?? [])
        await this.runner.run('ip', ['-n', end.ns, 'addr', 'add', cidr, 'dev', end.ifname]);
      await this.runner.run('ip', ['-n', end.ns, 'link', 'set', end.ifname, 'up']);
    }
  }

  /** Deletes the namespaces made here (their links go with them), newest first. */
  async destroy(): Promise<void> {
    for (const ns of this.made.splice(0).reverse())
      await this.runner.run('ip', ['netns', 'del', ns], { allowFailure: true });
  }
}
