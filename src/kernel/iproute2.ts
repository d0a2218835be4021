import { TetherError } from '../lib/errors.js';
import type { CommandRunner } from '../lib/exec.js';
import { NFT_FINGERPRINT_PREFIX, renderIpLines, renderNftScript } from './render.js';
import type {
  BatchResult,
  Kernel,
  KernelOp,
  NetnsRef,
  NftFamily,
  NsState,
  ObservedFdb,
  ObservedLink,
  ObservedNeigh,
  ObservedNftTable,
  ObservedRoute,
  ObservedRule,
  ObservedTableRoute,
  OpFailure,
  PolicyKernelFacts,
  ReadOptions,
  Tool,
} from './types.js';
import { BRIDGE_NF_CALL_IPTABLES, TETHER_ROUTE_PROTO } from './types.js';

/** `-n NS` for ip/bridge (cheaper than `ip netns exec`). */
function nsArgs(netns: NetnsRef): string[] {
  return netns ? ['-n', netns] : [];
}

function isMissingNs(stderr: string): boolean {
  return /Cannot open network namespace|No such file or directory/i.test(stderr);
}

/** Splits `ip -batch` stderr into failures: each error's messages precede `Command failed -:N`. */
export function parseBatchErrors(
  stderr: string,
  lineToOp: readonly number[],
  ops: readonly KernelOp[],
): OpFailure[] {
  const failures: OpFailure[] = [];
  let pending: string[] = [];
  for (const raw of stderr.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const m = /^Command failed -:(\d+)$/.exec(line);
    if (m) {
      const opIndex = lineToOp[Number(m[1]) - 1];
      if (opIndex !== undefined) {
        const op = ops[opIndex];
        if (op && !failures.some((f) => f.index === opIndex))
          failures.push({ index: opIndex, op, message: pending.join('; ') || 'failed' });
      }
      pending = [];
    } else pending.push(line);
  }
  return failures;
}

interface IpAddrJson {
  ifname: string;
  flags?: string[];
  mtu?: number;
  address?: string;
  master?: string;
  linkinfo?: {
    info_kind?: string;
    info_data?: Record<string, unknown>;
    info_slave_kind?: string;
    info_slave_data?: Record<string, unknown>;
  };
  addr_info?: { family?: string; local?: string; prefixlen?: number; scope?: string }[];
}

export function parseLinks(json: IpAddrJson[]): ObservedLink[] {
  return json.map((l) => {
    const info = l.linkinfo;
    const link: ObservedLink = {
      name: l.ifname,
      mtu: l.mtu ?? 0,
      up: (l.flags ?? []).includes('UP'),
      addrs: (l.addr_info ?? [])
        .filter((a) => a.family === 'inet' && a.local && a.scope !== 'host')
        .map((a) => `${a.local}/${a.prefixlen}`),
    };
    if (info?.info_kind) link.kind = info.info_kind;
    if (l.address) link.mac = l.address;
    if (l.master) link.master = l.master;
    if (info?.info_slave_kind === 'bridge' && info.info_slave_data)
      link.learning = Boolean(info.info_slave_data.learning);
    if (info?.info_kind === 'vxlan' && info.info_data) {
      const d = info.info_data;
      link.vxlan = {
        vni: Number(d.id),
        learning: Boolean(d.learning),
        proxy: Boolean(d.proxy),
      };
      if (typeof d.local === 'string') link.vxlan.local = d.local;
      if (typeof d.port === 'number') link.vxlan.port = d.port;
    }
    return link;
  });
}

function normDst(dst: string): string {
  if (dst === 'default') return 'default';
  return dst.includes('/') ? dst : `${dst}/32`;
}

export function parseRoutes(json: { dst: string; gateway?: string; dev: string }[]): ObservedRoute[] {
  return json.map((r) => {
    const route: ObservedRoute = { dst: normDst(r.dst), dev: r.dev };
    if (r.gateway) route.via = r.gateway;
    return route;
  });
}

/** `ip -j rule show` → the rules that select by fwmark and name a numbered table. */
export function parseRules(json: { priority?: number; fwmark?: string; table?: string }[]): ObservedRule[] {
  const out: ObservedRule[] = [];
  for (const r of json) {
    if (typeof r.priority !== 'number' || typeof r.fwmark !== 'string') continue;
    if (typeof r.table !== 'string' || !/^\d{1,10}$/.test(r.table)) continue;
    const mark = Number(r.fwmark.split('/')[0]);
    if (!Number.isSafeInteger(mark)) continue;
    out.push({ priority: r.priority, fwmark: mark, table: Number(r.table) });
  }
  return out;
}

/** `ip -j route show table all proto 183` → routes of numbered tables (main/local skipped). */
export function parseTableRoutes(
  json: { dst: string; gateway?: string; dev: string; table?: string; flags?: string[] }[],
): ObservedTableRoute[] {
  const out: ObservedTableRoute[] = [];
  for (const r of json) {
    // What iproute2 prints, checked anyway: a shape we did not expect is skipped, not a crash.
    if (typeof r.table !== 'string' || !/^\d{1,10}$/.test(r.table)) continue;
    if (typeof r.dst !== 'string' || typeof r.dev !== 'string') continue;
    const route: ObservedTableRoute = { dst: normDst(r.dst), dev: r.dev, table: Number(r.table) };
    if (typeof r.gateway === 'string') route.via = r.gateway;
    if (Array.isArray(r.flags) && r.flags.includes('onlink')) route.onlink = true;
    out.push(route);
  }
  return out;
}

export function parseNeighs(json: { dst: string; dev: string; lladdr?: string }[]): ObservedNeigh[] {
  return json.filter((n) => n.lladdr).map((n) => ({ ip: n.dst, dev: n.dev, mac: n.lladdr! }));
}

export function parseFdb(
  json: { mac: string; ifname?: string; dev?: string; dst?: string; master?: string; state?: string }[],
): ObservedFdb[] {
  const out: ObservedFdb[] = [];
  for (const e of json) {
    const dev = e.ifname ?? e.dev ?? '';
    if (e.dst && !e.master) out.push({ dev, mac: e.mac, target: 'self', dst: e.dst });
    else if (e.master && e.state === 'static') out.push({ dev, mac: e.mac, target: 'master' });
  }
  return out;
}

type NftJsonItem = Record<string, Record<string, unknown>>;

export function parseNftRuleset(
  json: { nftables?: NftJsonItem[] },
  wanted: readonly { family: NftFamily; name: string }[],
): ObservedNftTable[] {
  const key = (f: unknown, n: unknown) => `${String(f)} ${String(n)}`;
  const wantedKeys = new Set(wanted.map((w) => key(w.family, w.name)));
  const found = new Map<string, ObservedNftTable>();
  for (const item of json.nftables ?? []) {
    const [kind, v] = Object.entries(item)[0] ?? [];
    if (!kind || !v) continue;
    const k = kind === 'table' ? key(v.family, v.name) : key(v.family, v.table);
    if (!wantedKeys.has(k)) continue;
    if (kind === 'table') {
      found.set(k, { family: v.family as NftFamily, name: String(v.name), sets: {}, counters: {} });
      continue;
    }
    const t = found.get(k);
    if (!t) continue;
    if (kind === 'set') {
      const elems = (v.elem as unknown[] | undefined) ?? [];
      t.sets[String(v.name)] = elems.map((e) => (typeof e === 'object' ? JSON.stringify(e) : String(e)));
    } else if (kind === 'counter') {
      t.counters[String(v.name)] = { packets: Number(v.packets ?? 0), bytes: Number(v.bytes ?? 0) };
    } else if (kind === 'rule' && v.chain === 'fingerprint' && typeof v.comment === 'string') {
      if (v.comment.startsWith(NFT_FINGERPRINT_PREFIX))
        t.fingerprint = v.comment.slice(NFT_FINGERPRINT_PREFIX.length);
    }
  }
  return [...found.values()];
}

/** `sysctl KEY…` output (`key = value` lines) → the values of the keys asked for. */
export function parseSysctl(stdout: string, keys: readonly string[]): Record<string, string> {
  const wanted = new Set(keys);
  const out: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const m = /^(\S+)\s*=\s*(.*)$/.exec(line.trim());
    if (m && wanted.has(m[1]!)) out[m[1]!] = m[2]!.trim();
  }
  return out;
}

/** The real kernel, through iproute2 and nftables, one process per batch. */
export class IprouteKernel implements Kernel {
  constructor(private readonly runner: CommandRunner) {}

  async listNetns(): Promise<string[]> {
    const res = await this.runner.run('ip', ['-j', 'netns', 'list'], { allowFailure: true });
    if (res.code !== 0 || !res.stdout.trim()) return [];
    return (JSON.parse(res.stdout) as { name: string }[]).map((n) => n.name);
  }

  async readNs(netns: NetnsRef, opts: ReadOptions = {}): Promise<NsState | undefined> {
    const lines = ['addr show', `route show proto ${TETHER_ROUTE_PROTO}`];
    if (opts.entries) lines.push('neigh show nud permanent');
    // Appended after the others so their line positions do not depend on this option.
    const rulesAt = lines.length;
    if (opts.rules) lines.push('rule show', `route show table all proto ${TETHER_ROUTE_PROTO}`);
    // The reads are independent: run them concurrently.
    const [ip, br, nft, sys] = await Promise.all([
      this.runner.run('ip', [...nsArgs(netns), '-d', '-j', '-batch', '-'], {
        input: `${lines.join('\n')}\n`,
        allowFailure: true,
      }),
      opts.entries
        ? this.runner.run('bridge', [...nsArgs(netns), '-j', 'fdb', 'show'], { allowFailure: true })
        : undefined,
      opts.nftTables?.length
        ? this.runner.run('nft', ['-j', 'list', 'ruleset'], { netns, allowFailure: true })
        : undefined,
      opts.sysctls?.length
        ? // Without -n, each value comes with its key: a key the kernel lacks (br_netfilter
          // absent) is an error line on stderr and must not shift the others.
          this.runner.run('sysctl', [...opts.sysctls], { netns, allowFailure: true })
        : undefined,
    ]);
    if (ip.code !== 0) {
      if (netns && isMissingNs(ip.stderr)) return undefined;
      throw new TetherError(
        'TETHER_E_KERNEL',
        `cannot read namespace ${netns ?? '(current)'}: ${ip.stderr.trim()}`,
        {
          netns,
        },
      );
    }
    const outs = ip.stdout
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as unknown[]);
    const state: NsState = {
      links: parseLinks((outs[0] ?? []) as IpAddrJson[]),
      routes: parseRoutes((outs[1] ?? []) as { dst: string; gateway?: string; dev: string }[]),
      neighs: opts.entries
        ? parseNeighs((outs[2] ?? []) as { dst: string; dev: string; lladdr?: string }[])
        : [],
      fdb: [],
      nft: [],
      sysctl: {},
    };
    if (opts.rules) {
      state.rules = parseRules(
        (outs[rulesAt] ?? []) as { priority?: number; fwmark?: string; table?: string }[],
      );
      state.tableRoutes = parseTableRoutes(
        (outs[rulesAt + 1] ?? []) as { dst: string; gateway?: string; dev: string; table?: string }[],
      );
    }
    if (br) {
      if (br.code !== 0)
        throw new TetherError(
          'TETHER_E_KERNEL',
          `cannot read forwarding entries of ${netns ?? '(current)'}: ${br.stderr.trim()}`,
          {
            netns,
          },
        );
      state.fdb = parseFdb(br.stdout.trim() ? JSON.parse(br.stdout) : []);
    }
    if (nft && opts.nftTables && nft.code === 0 && nft.stdout.trim())
      state.nft = parseNftRuleset(JSON.parse(nft.stdout) as { nftables?: NftJsonItem[] }, opts.nftTables);
    if (sys && opts.sysctls) state.sysctl = parseSysctl(sys.stdout, opts.sysctls);
    return state;
  }

  async probePolicy(netns: NetnsRef): Promise<PolicyKernelFacts> {
    // `nft -c` runs the transaction in the kernel and aborts it: the kernel's answer to a ct
    // expression in that family, without changing anything.
    const ct = (family: NftFamily) =>
      this.runner
        .run('nft', ['-c', '-f', '-'], {
          input: `table ${family} tether_probe {\n  chain forward {\n    type filter hook forward priority 0; policy accept;\n    ct state established accept\n  }\n}\n`,
          netns,
          allowFailure: true,
        })
        .then((r) => r.code === 0);
    const [sys, inetConntrack, bridgeConntrack] = await Promise.all([
      this.runner.run('sysctl', [BRIDGE_NF_CALL_IPTABLES], { netns, allowFailure: true }),
      ct('inet'),
      ct('bridge'),
    ]);
    const brNetfilter =
      parseSysctl(sys.stdout, [BRIDGE_NF_CALL_IPTABLES])[BRIDGE_NF_CALL_IPTABLES] !== undefined;
    return { brNetfilter, inetConntrack, bridgeConntrack };
  }

  async apply(tool: Tool, netns: NetnsRef, ops: readonly KernelOp[]): Promise<BatchResult> {
    if (ops.length === 0) return { failures: [] };
    if (tool === 'nft') {
      const res = await this.runner.run('nft', ['-f', '-'], {
        input: renderNftScript(ops),
        netns,
        allowFailure: true,
      });
      if (res.code === 0) return { failures: [] };
      const message = res.stderr.trim().split('\n').slice(0, 6).join('; ');
      return { failures: ops.map((op, index) => ({ index, op, message })) };
    }
    if (tool === 'sysctl') {
      const args = ops.map((op) => (op.op === 'sysctl' ? `${op.key}=${op.value}` : ''));
      const res = await this.runner.run('sysctl', ['-q', '-w', ...args], { netns, allowFailure: true });
      if (res.code === 0) return { failures: [] };
      return { failures: ops.map((op, index) => ({ index, op, message: res.stderr.trim() })) };
    }
    const lineToOp: number[] = [];
    const lines: string[] = [];
    ops.forEach((op, i) => {
      for (const l of renderIpLines(op)) {
        lines.push(l);
        lineToOp.push(i);
      }
    });
    const res = await this.runner.run(tool, [...nsArgs(netns), '-force', '-batch', '-'], {
      input: `${lines.join('\n')}\n`,
      allowFailure: true,
    });
    if (res.code === 0) return { failures: [] };
    const failures = parseBatchErrors(res.stderr, lineToOp, ops);
    if (failures.length === 0)
      return {
        failures: ops.map((op, index) => ({ index, op, message: res.stderr.trim() || `exit ${res.code}` })),
      };
    return { failures };
  }
}
