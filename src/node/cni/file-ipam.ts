/**
 * FileIpam: the node's local IPAM and endpoint store. Addresses come from the site's own block
 * of each network's subnet, so a site keeps attaching workloads while the WAN is down.
 *
 * State is one JSON file written with writeFileAtomic before any method resolves, so every
 * answer the CNI endpoint gave survives `kill -9`. Allocation is round-robin inside the block
 * (a cursor per network), so a just-released address is not handed out again at once while
 * other sites may still hold routes for it.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { GATEWAY_MAC_PREFIX } from '../../api/kinds.js';
import { writeFileAtomic } from '../../lib/atomic.js';
import { TetherError } from '../../lib/errors.js';
import {
  type Cidr,
  cidrContains as contains,
  formatIp,
  lastOf,
  maskOf,
  parseCidr,
  parseIp,
} from '../../lib/ipv4.js';
import type {
  AllocateRequest,
  AttachmentKey,
  BlockFor,
  EndpointPatch,
  EndpointRegistry,
  LocalEndpoint,
  SiteBlock,
} from './registry.js';

export interface FileIpamOptions {
  /** The JSON state file, e.g. /var/lib/tether/cni/endpoints.json. */
  file: string;
  blockFor: BlockFor;
  /** Called after every persisted change with the full list of local endpoints. */
  onChange?: (endpoints: LocalEndpoint[]) => void;
  /** Clock, for tests. */
  now?: () => Date;
}

interface StateFile {
  version: 1;
  endpoints: LocalEndpoint[];
  /** Next address to try, per network (dotted quad). */
  cursors: Record<string, string>;
}

const keyOf = (k: AttachmentKey): string => `${k.containerId}/${k.ifname}`;

/** Locally administered unicast MAC for an endpoint, stable across restarts. */
export function endpointMac(network: string, containerId: string, ifname: string): string {
  const h = createHash('sha256').update(`${network}/${containerId}/${ifname}`).digest();
  const mac = [0x02, h[0] ?? 0, h[1] ?? 0, h[2] ?? 0, h[3] ?? 0, h[4] ?? 0].map((b) =>
    b.toString(16).padStart(2, '0'),
  );
  // The gateway range belongs to the anycast gateways (the controller refuses endpoints there).
  if (mac.slice(0, 3).join(':') === GATEWAY_MAC_PREFIX) mac[2] = (((h[1] ?? 0) ^ 0x80) & 0xff).toString(16);
  return mac.join(':');
}

interface ResolvedBlock {
  block: Cidr;
  reserved: Set<number>;
  gateway: string;
  prefixLength: number;
  mtu: number;
}

function resolveBlock(network: string, b: SiteBlock): ResolvedBlock {
  const bad = (field: string, expected: string): TetherError =>
    new TetherError('TETHER_E_STATE', `site block of network ${network} is invalid: ${field}`, {
      field,
      expected,
    });
  const block = parseCidr(b.cidr, true);
  if (!block) throw bad('cidr', 'an IPv4 CIDR with zero host bits');
  const gw = parseIp(b.gateway);
  if (gw === undefined) throw bad('gateway', 'an IPv4 address');
  if (!Number.isInteger(b.prefixLength) || b.prefixLength < 1 || b.prefixLength > 30)
    throw bad('prefixLength', 'an integer 1-30');
  const subnet: Cidr = { base: (gw & maskOf(b.prefixLength)) >>> 0, prefix: b.prefixLength };
  if (block.prefix < subnet.prefix || !contains(subnet, block.base))
    throw bad('cidr', `a block inside the subnet ${formatIp(subnet.base)}/${subnet.prefix}`);
  if (!Number.isInteger(b.mtu) || b.mtu < 576 || b.mtu > 9216) throw bad('mtu', 'an integer 576-9216');
  return {
    block,
    reserved: new Set([subnet.base, lastOf(subnet), gw]),
    gateway: b.gateway,
    prefixLength: b.prefixLength,
    mtu: b.mtu,
  };
}

export class FileIpam implements EndpointRegistry {
  private readonly file: string;
  private readonly blockFor: BlockFor;
  private readonly onChange: ((endpoints: LocalEndpoint[]) => void) | undefined;
  private readonly now: () => Date;
  private endpoints = new Map<string, LocalEndpoint>();
  private cursors: Record<string, string> = {};

  constructor(opts: FileIpamOptions) {
    this.file = opts.file;
    this.blockFor = opts.blockFor;
    this.onChange = opts.onChange;
    this.now = opts.now ?? (() => new Date());
    this.load();
  }

  private load(): void {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new TetherError('TETHER_E_STATE', `cannot read ${this.file}`, { file: this.file }, { cause: e });
    }
    let state: StateFile;
    try {
      state = JSON.parse(text) as StateFile;
    } catch (e) {
      throw new TetherError(
        'TETHER_E_STATE',
        `${this.file} is not valid JSON`,
        { file: this.file },
        { cause: e },
      );
    }
    if (state.version !== 1 || !Array.isArray(state.endpoints))
      throw new TetherError('TETHER_E_STATE', `${this.file} has an unknown format`, {
        file: this.file,
        expected: '{"version":1,"endpoints":[…]}',
      });
    for (const ep of state.endpoints) this.endpoints.set(keyOf(ep), ep);
    this.cursors = state.cursors ?? {};
  }

  /** Writes the new state, then swaps it in; on a write failure nothing changes. */
  private commit(endpoints: Map<string, LocalEndpoint>, cursors: Record<string, string>): void {
    const state: StateFile = { version: 1, endpoints: [...endpoints.values()], cursors };
    writeFileAtomic(this.file, `${JSON.stringify(state, null, 1)}\n`);
    this.endpoints = endpoints;
    this.cursors = cursors;
    this.onChange?.(this.list());
  }

  get(key: AttachmentKey): LocalEndpoint | undefined {
    const ep = this.endpoints.get(keyOf(key));
    return ep ? { ...ep } : undefined;
  }

  async check(key: AttachmentKey): Promise<LocalEndpoint | undefined> {
    return this.get(key);
  }

  list(): LocalEndpoint[] {
    return [...this.endpoints.values()].map((e) => ({ ...e }));
  }

  async allocate(req: AllocateRequest): Promise<LocalEndpoint> {
    const existing = this.endpoints.get(keyOf(req));
    if (existing) {
      if (existing.network !== req.network)
        throw new TetherError(
          'TETHER_E_CONFLICT',
          `attachment ${keyOf(req)} already has an address on network ${existing.network}`,
          { network: existing.network },
        );
      if (req.ip !== undefined && req.ip !== existing.ip)
        throw new TetherError(
          'TETHER_E_INVALID',
          `attachment ${keyOf(req)} already holds ${existing.ip}; static address ${req.ip} refused`,
          { field: 'ip', expected: `${existing.ip} (the address it holds), or DEL first` },
        );
      return { ...existing };
    }
    const b = this.blockFor(req.network);
    if (!b)
      throw new TetherError(
        'TETHER_E_UNAVAILABLE',
        `network ${req.network} has no address block for this site (yet)`,
        { network: req.network },
      );
    const r = resolveBlock(req.network, b);
    const used = new Set<number>();
    for (const ep of this.endpoints.values()) {
      if (ep.network !== req.network) continue;
      const n = parseIp(ep.ip);
      if (n !== undefined) used.add(n);
    }
    const first = r.block.base;
    const last = lastOf(r.block);
    const size = last - first + 1;
    const cursor = parseIp(this.cursors[req.network] ?? '');
    const start = cursor !== undefined && cursor >= first && cursor <= last ? cursor : first;
    let picked: number | undefined;
    if (req.ip !== undefined) picked = this.staticAddress(req, b, r, used);
    else
      for (let i = 0; i < size; i++) {
        const cand = first + ((start - first + i) % size);
        if (!r.reserved.has(cand) && !used.has(cand)) {
          picked = cand;
          break;
        }
      }
    if (picked === undefined)
      throw new TetherError(
        'TETHER_E_EXHAUSTED',
        `address block ${b.cidr} of network ${req.network} is exhausted (${used.size} in use)`,
        { network: req.network, block: b.cidr },
      );
    const ip = formatIp(picked);
    const ep: LocalEndpoint = {
      network: req.network,
      containerId: req.containerId,
      ifname: req.ifname,
      hostIfname: req.hostIfname,
      ip,
      prefixLength: r.prefixLength,
      address: `${ip}/${r.prefixLength}`,
      gateway: r.gateway,
      mac: endpointMac(req.network, req.containerId, req.ifname),
      mtu: req.mtu ?? r.mtu,
      block: b.cidr,
      state: 'allocated',
      createdAt: this.now().toISOString(),
    };
    if (req.netns) ep.netns = req.netns;
    if (req.netnsId) ep.netnsId = req.netnsId;
    if (req.args && Object.keys(req.args).length > 0) ep.args = { ...req.args };
    if (req.portMappings?.length) ep.portMappings = req.portMappings.map((m) => ({ ...m }));
    const next = new Map(this.endpoints);
    next.set(keyOf(ep), ep);
    // A static address does not move the round-robin cursor of dynamic ones.
    const cursors =
      req.ip !== undefined
        ? this.cursors
        : { ...this.cursors, [req.network]: formatIp(picked === last ? first : picked + 1) };
    this.commit(next, cursors);
    return { ...ep };
  }

  /**
   * The address a runtime asked for (`ips` capability, `IP=`): inside this node's block, not
   * the subnet's network, broadcast or gateway address, not held by another attachment.
   */
  private staticAddress(req: AllocateRequest, b: SiteBlock, r: ResolvedBlock, used: Set<number>): number {
    const n = parseIp(req.ip ?? '');
    const expected = `an address inside this node's block ${b.cidr} of network ${req.network}, other than the subnet's network, broadcast and gateway (${r.gateway}) addresses`;
    if (n === undefined)
      throw new TetherError('TETHER_E_INVALID', `static address ${req.ip} is not an IPv4 address`, {
        field: 'ip',
        expected,
      });
    if (req.prefixLength !== undefined && req.prefixLength !== r.prefixLength)
      throw new TetherError(
        'TETHER_E_INVALID',
        `static address ${req.ip}/${req.prefixLength}: the subnet of network ${req.network} is /${r.prefixLength}`,
        { field: 'ip', expected: `${req.ip}/${r.prefixLength}` },
      );
    if (!contains(r.block, n) || r.reserved.has(n))
      throw new TetherError(
        'TETHER_E_INVALID',
        `static address ${req.ip} cannot be given on this node: it is not a free host address of block ${b.cidr}`,
        { field: 'ip', expected },
      );
    if (used.has(n)) {
      const holder = [...this.endpoints.values()].find((e) => e.network === req.network && e.ip === req.ip);
      throw new TetherError(
        'TETHER_E_UNAVAILABLE',
        `static address ${req.ip} of network ${req.network} is held by ${holder ? keyOf(holder) : 'another attachment'}`,
        {
          field: 'ip',
          expected: 'an address no other attachment holds (a DEL or the endpoint sweep frees it)',
        },
      );
    }
    return n;
  }

  async update(key: AttachmentKey, patch: EndpointPatch): Promise<LocalEndpoint> {
    const ep = this.endpoints.get(keyOf(key));
    if (!ep) throw new TetherError('TETHER_E_NOT_FOUND', `no address allocated for ${keyOf(key)}`);
    const updated: LocalEndpoint = { ...ep, ...patch };
    if (JSON.stringify(updated) === JSON.stringify(ep)) return { ...ep };
    const next = new Map(this.endpoints);
    next.set(keyOf(key), updated);
    this.commit(next, this.cursors);
    return { ...updated };
  }

  async markAttached(key: AttachmentKey): Promise<LocalEndpoint> {
    const ep = this.endpoints.get(keyOf(key));
    if (!ep) throw new TetherError('TETHER_E_NOT_FOUND', `no address allocated for ${keyOf(key)}`);
    if (ep.state === 'attached') return { ...ep };
    const updated: LocalEndpoint = { ...ep, state: 'attached', attachedAt: this.now().toISOString() };
    const next = new Map(this.endpoints);
    next.set(keyOf(key), updated);
    this.commit(next, this.cursors);
    return { ...updated };
  }

  async release(key: AttachmentKey & { network?: string }): Promise<LocalEndpoint | undefined> {
    const ep = this.endpoints.get(keyOf(key));
    if (!ep) return undefined;
    if (key.network !== undefined && key.network !== ep.network) return undefined;
    const next = new Map(this.endpoints);
    next.delete(keyOf(key));
    this.commit(next, this.cursors);
    return { ...ep };
  }

  async gc(network: string, valid: readonly AttachmentKey[]): Promise<LocalEndpoint[]> {
    const keep = new Set(valid.map(keyOf));
    const released: LocalEndpoint[] = [];
    const next = new Map(this.endpoints);
    for (const [k, ep] of this.endpoints) {
      if (ep.network === network && !keep.has(k)) {
        next.delete(k);
        released.push({ ...ep });
      }
    }
    if (released.length > 0) this.commit(next, this.cursors);
    return released;
  }
}
