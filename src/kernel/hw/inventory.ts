import { TetherError } from '../../lib/errors.js';
import type { CommandRunner } from '../../lib/exec.js';
import { tryParseCpuList } from './cpulist.js';
import { attr, type HostFs } from './hostfs.js';

/**
 * What a node has, read through a HostFs (real / or a fixture tree) and, for the little
 * that sysfs does not expose (eswitch mode, VF admin settings, ethtool features), through
 * the CommandRunner (devlink, ip, ethtool). Plain data: the planner and validator are pure
 * functions of it.
 */
export interface CpuInfo {
  id: number;
  online: boolean;
  socket: number;
  core: number;
  node: number;
  siblings: number[];
}

export interface HugepagePool {
  sizeKb: number;
  nr: number;
  free: number;
}

export interface NumaNode {
  id: number;
  cpus: number[];
  memTotalKb: number;
  hugepages: HugepagePool[];
}

export interface VfAdmin {
  vf: number;
  vlan: number;
  qos: number;
  spoofchk: boolean;
  trust: boolean;
  linkState: 'auto' | 'enable' | 'disable';
  minTxRate: number;
  maxTxRate: number;
}

export interface VfInfo {
  index: number;
  pci: string;
  driver?: string;
  driverOverride?: string;
  netdevs: string[];
  /** MTU of the VF's first netdev, when bound to a netdev driver. */
  mtu?: number;
}

export interface SriovCaps {
  totalVfs: number;
  numVfs: number;
  autoprobe: boolean;
  offset: number;
  stride: number;
  vfDevice: string;
}

export interface NicInfo {
  name: string;
  pci: string;
  vendor: string;
  device: string;
  driver?: string;
  numaNode: number;
  mtu: number;
  switchId?: string;
  portName?: string;
  sriov?: SriovCaps;
  vfs: VfInfo[];
  /** From devlink; undefined when devlink is missing or the device has no eswitch. */
  eswitchMode?: 'legacy' | 'switchdev';
  /** From ethtool -k; undefined when unknown. */
  hwTcOffload?: boolean;
  /** From ip -j -d link show; [] when unknown. */
  vfAdmin: VfAdmin[];
  /** Representor netdevs (phys_port_name like pf0vf3) that belong to this PF. */
  representors: { name: string; portName: string }[];
}

export interface Inventory {
  kernelRelease: string;
  cmdline: string;
  bootId: string;
  realtime: boolean;
  cpus: CpuInfo[];
  online: number[];
  present: number[];
  nodes: NumaNode[];
  /** Hugepage sizes the kernel supports, in kB (2048, 1048576). */
  hugepageSizesKb: number[];
  memTotalKb: number;
  cpuFlags: string[];
  nics: NicInfo[];
  iommuGroups: number;
}

/** Drivers whose devlink eswitch supports switchdev (sysfs has no attribute for it). */
export const SWITCHDEV_DRIVERS: ReadonlySet<string> = new Set(['ice', 'mlx5_core', 'rvu_nicpf', 'nfp']);

/** The driver VFs of a PF bind to by default. */
export const VF_DRIVER: Readonly<Record<string, string>> = {
  ice: 'iavf',
  i40e: 'iavf',
  ixgbe: 'ixgbevf',
  mlx5_core: 'mlx5_core',
};

const num = (v: string | undefined, dflt = 0): number => {
  const n = Number.parseInt(attr(v) ?? '', 10);
  return Number.isFinite(n) ? n : dflt;
};

const base = (p: string | undefined): string | undefined => (p ? p.split('/').pop() : undefined);

/** A CPU list read from sysfs; a corrupt one names the file instead of a stack trace. */
function sysCpuList(path: string, text: string | undefined): number[] {
  const r = tryParseCpuList(text ?? '');
  if (r.ok) return r.ids;
  throw new TetherError('TETHER_E_STATE', `${path}: ${r.message}`, { file: path, expected: r.expected });
}

export async function readCpus(
  fs: HostFs,
): Promise<{ cpus: CpuInfo[]; online: number[]; present: number[] }> {
  const online = sysCpuList(
    '/sys/devices/system/cpu/online',
    attr(await fs.read('/sys/devices/system/cpu/online')),
  );
  const presentText = attr(await fs.read('/sys/devices/system/cpu/present'));
  const present = presentText ? sysCpuList('/sys/devices/system/cpu/present', presentText) : online;
  const nodeOf = new Map<number, number>();
  for (const n of await fs.list('/sys/devices/system/node')) {
    const m = /^node(\d+)$/.exec(n);
    if (!m) continue;
    const f = `/sys/devices/system/node/${n}/cpulist`;
    for (const c of sysCpuList(f, attr(await fs.read(f)))) nodeOf.set(c, Number(m[1]));
  }
  const onlineSet = new Set(online);
  const cpus: CpuInfo[] = [];
  for (const id of present) {
    const t = `/sys/devices/system/cpu/cpu${id}/topology`;
    const sib = attr(await fs.read(`${t}/thread_siblings_list`));
    cpus.push({
      id,
      online: onlineSet.has(id),
      socket: num(await fs.read(`${t}/physical_package_id`)),
      core: num(await fs.read(`${t}/core_id`), id),
      node: nodeOf.get(id) ?? 0,
      siblings: sib ? sysCpuList(`${t}/thread_siblings_list`, sib) : [id],
    });
  }
  return { cpus, online, present };
}

export async function readNodes(fs: HostFs, cpus: CpuInfo[]): Promise<NumaNode[]> {
  const nodes: NumaNode[] = [];
  for (const n of await fs.list('/sys/devices/system/node')) {
    const m = /^node(\d+)$/.exec(n);
    if (!m) continue;
    const id = Number(m[1]);
    const dir = `/sys/devices/system/node/${n}`;
    const meminfo = (await fs.read(`${dir}/meminfo`)) ?? '';
    const mt = /MemTotal:\s+(\d+)\s*kB/.exec(meminfo);
    const hugepages: HugepagePool[] = [];
    for (const h of await fs.list(`${dir}/hugepages`)) {
      const hm = /^hugepages-(\d+)kB$/.exec(h);
      if (!hm) continue;
      hugepages.push({
        sizeKb: Number(hm[1]),
        nr: num(await fs.read(`${dir}/hugepages/${h}/nr_hugepages`)),
        free: num(await fs.read(`${dir}/hugepages/${h}/free_hugepages`)),
      });
    }
    hugepages.sort((a, b) => a.sizeKb - b.sizeKb);
    const cpulist = attr(await fs.read(`${dir}/cpulist`));
    nodes.push({
      id,
      cpus: cpulist
        ? sysCpuList(`${dir}/cpulist`, cpulist)
        : cpus.filter((c) => c.node === id).map((c) => c.id),
      memTotalKb: mt ? Number(mt[1]) : 0,
      hugepages,
    });
  }
  return nodes.sort((a, b) => a.id - b.id);
}

/** PCI function directory of a netdev/PCI address, host-absolute. */
export const pciDir = (bdf: string): string => `/sys/bus/pci/devices/${bdf}`;

export async function readVfs(fs: HostFs, pfPci: string): Promise<VfInfo[]> {
  const dir = pciDir(pfPci);
  const vfs: VfInfo[] = [];
  for (const e of await fs.list(dir)) {
    const m = /^virtfn(\d+)$/.exec(e);
    if (!m) continue;
    const target = await fs.readlink(`${dir}/${e}`);
    const pci = base(target) ?? '';
    const vdir = pciDir(pci);
    const drv = base(await fs.readlink(`${vdir}/driver`));
    const override = attr(await fs.read(`${vdir}/driver_override`));
    vfs.push({
      index: Number(m[1]),
      pci,
      ...(drv ? { driver: drv } : {}),
      ...(override && override !== '(null)' ? { driverOverride: override } : {}),
      netdevs: await fs.list(`${vdir}/net`),
    });
    const last = vfs[vfs.length - 1];
    const nd = last?.netdevs[0];
    if (last && nd) last.mtu = num(await fs.read(`${vdir}/net/${nd}/mtu`), 1500);
  }
  return vfs.sort((a, b) => a.index - b.index);
}

async function readNic(fs: HostFs, name: string): Promise<NicInfo | undefined> {
  const link = `/sys/class/net/${name}/device`;
  const devPath = await fs.resolve(link);
  if (!devPath) return undefined; // virtual device
  const pci = base(devPath) ?? '';
  if (!/^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(pci)) return undefined;
  const d = pciDir(pci);
  if (await fs.exists(`${d}/physfn`)) return undefined; // a VF, reported under its PF
  const portName = attr(await fs.read(`/sys/class/net/${name}/phys_port_name`));
  if (portName && /^(c\d+)?pf\d+vf\d+$/.test(portName)) return undefined; // a representor
  const total = attr(await fs.read(`${d}/sriov_totalvfs`));
  const sriov: SriovCaps | undefined =
    total === undefined
      ? undefined
      : {
          totalVfs: num(total),
          numVfs: num(await fs.read(`${d}/sriov_numvfs`)),
          autoprobe: num(await fs.read(`${d}/sriov_drivers_autoprobe`), 1) === 1,
          offset: num(await fs.read(`${d}/sriov_offset`), 1),
          stride: num(await fs.read(`${d}/sriov_stride`), 1),
          vfDevice: (attr(await fs.read(`${d}/sriov_vf_device`)) ?? '').replace(/^0x/, ''),
        };
  const switchId = attr(await fs.read(`/sys/class/net/${name}/phys_switch_id`));
  const drv = base(await fs.readlink(`${d}/driver`));
  return {
    name,
    pci,
    vendor: (attr(await fs.read(`${d}/vendor`)) ?? '').replace(/^0x/, ''),
    device: (attr(await fs.read(`${d}/device`)) ?? '').replace(/^0x/, ''),
    ...(drv ? { driver: drv } : {}),
    numaNode: Math.max(0, num(await fs.read(`${d}/numa_node`), 0)),
    mtu: num(await fs.read(`/sys/class/net/${name}/mtu`), 1500),
    ...(switchId ? { switchId } : {}),
    ...(portName ? { portName } : {}),
    ...(sriov ? { sriov } : {}),
    vfs: sriov ? await readVfs(fs, pci) : [],
    vfAdmin: [],
    representors: [],
  };
}

/** Finds representors: netdevs sharing the PF's phys_switch_id with a pfNvfM port name. */
async function attachRepresentors(fs: HostFs, nics: NicInfo[], names: string[]): Promise<void> {
  for (const name of names) {
    const pn = attr(await fs.read(`/sys/class/net/${name}/phys_port_name`));
    const m = pn ? /^(?:c\d+)?pf(\d+)vf(\d+)$/.exec(pn) : null;
    if (!m || !pn) continue;
    const sw = attr(await fs.read(`/sys/class/net/${name}/phys_switch_id`));
    const owner = nics.find(
      (n) => n.switchId !== undefined && n.switchId === sw && n.pci.endsWith(`.${m[1]}`),
    );
    owner?.representors.push({ name, portName: pn });
  }
}

/** Parses `ip -j -d link show dev PF` into VF admin settings. */
export function parseVfInfo(json: string): VfAdmin[] {
  const arr = JSON.parse(json) as Array<{ vfinfo_list?: Array<Record<string, unknown>> }>;
  const list = arr[0]?.vfinfo_list ?? [];
  return list.map((v) => {
    const vl = (v.vlan_list as Array<{ vlan?: number; qos?: number }> | undefined)?.[0];
    const rate = (v.rate as { max_tx?: number; min_tx?: number } | undefined) ?? {};
    return {
      vf: Number(v.vf),
      vlan: vl?.vlan ?? 0,
      qos: vl?.qos ?? 0,
      spoofchk: v.spoofchk !== false,
      trust: v.trust === true,
      linkState: (v.link_state as VfAdmin['linkState'] | undefined) ?? 'auto',
      minTxRate: rate.min_tx ?? 0,
      maxTxRate: rate.max_tx ?? 0,
    };
  });
}

/** Reads what sysfs cannot tell through devlink/ip/ethtool; tolerates missing tools. */
async function attachRuntime(runner: CommandRunner, nic: NicInfo): Promise<void> {
  const tryRun = async (cmd: string, args: string[]): Promise<string | undefined> => {
    try {
      const r = await runner.run(cmd, args, { allowFailure: true });
      return r.code === 0 ? r.stdout : undefined;
    } catch {
      return undefined;
    }
  };
  if (nic.driver && SWITCHDEV_DRIVERS.has(nic.driver)) {
    const out = await tryRun('devlink', ['-j', 'dev', 'eswitch', 'show', `pci/${nic.pci}`]);
    if (out) {
      try {
        const j = JSON.parse(out) as { dev?: Record<string, { mode?: string }> };
        const mode = j.dev?.[`pci/${nic.pci}`]?.mode;
        if (mode === 'legacy' || mode === 'switchdev') nic.eswitchMode = mode;
      } catch {
        /* unknown format: leave undefined */
      }
    }
    const k = await tryRun('ethtool', ['-k', nic.name]);
    const m = k ? /^hw-tc-offload:\s+(on|off)/m.exec(k) : null;
    if (m) nic.hwTcOffload = m[1] === 'on';
  }
  if (nic.sriov && nic.sriov.numVfs > 0) {
    const out = await tryRun('ip', ['-j', '-d', 'link', 'show', 'dev', nic.name]);
    if (out) {
      try {
        nic.vfAdmin = parseVfInfo(out);
      } catch {
        nic.vfAdmin = [];
      }
    }
  }
}

export interface ReadOptions {
  /** When given, also reads eswitch modes, VF admin settings and offload features. */
  runner?: CommandRunner;
}

export async function readInventory(fs: HostFs, opts: ReadOptions = {}): Promise<Inventory> {
  const { cpus, online, present } = await readCpus(fs);
  const nodes = await readNodes(fs, cpus);
  const meminfo = (await fs.read('/proc/meminfo')) ?? '';
  const mt = /MemTotal:\s+(\d+)\s*kB/.exec(meminfo);
  const sizes = (await fs.list('/sys/kernel/mm/hugepages'))
    .map((h) => /^hugepages-(\d+)kB$/.exec(h)?.[1])
    .filter((x): x is string => x !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
  const cpuinfo = (await fs.read('/proc/cpuinfo')) ?? '';
  const flags = /^flags\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.split(/\s+/) ?? [];
  const names = await fs.list('/sys/class/net');
  const nics: NicInfo[] = [];
  for (const n of names) {
    const nic = await readNic(fs, n);
    if (nic) nics.push(nic);
  }
  await attachRepresentors(fs, nics, names);
  if (opts.runner) for (const nic of nics) await attachRuntime(opts.runner, nic);
  const version = attr(await fs.read('/proc/sys/kernel/version')) ?? '';
  return {
    kernelRelease: attr(await fs.read('/proc/sys/kernel/osrelease')) ?? '',
    cmdline: attr(await fs.read('/proc/cmdline')) ?? '',
    bootId: attr(await fs.read('/proc/sys/kernel/random/boot_id')) ?? '',
    realtime: attr(await fs.read('/sys/kernel/realtime')) === '1' || /PREEMPT_RT/.test(version),
    cpus,
    online,
    present,
    nodes,
    hugepageSizesKb: sizes,
    memTotalKb: mt ? Number(mt[1]) : 0,
    cpuFlags: flags,
    nics,
    iommuGroups: (await fs.list('/sys/kernel/iommu_groups')).length,
  };
}

/** BDF of VF `index` of a PF, from the PF's sriov_offset and sriov_stride (PCIe SR-IOV). */
export function vfBdf(pfBdf: string, offset: number, stride: number, index: number): string {
  const m = /^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/.exec(pfBdf);
  if (!m) throw new TetherError('TETHER_E_INTERNAL', `bad PCI address ${pfBdf}`);
  const rid =
    (Number.parseInt(m[2] ?? '0', 16) << 8) | (Number.parseInt(m[3] ?? '0', 16) << 3) | Number(m[4]);
  const v = rid + offset + stride * index;
  const bus = (v >> 8) & 0xff;
  const dev = (v >> 3) & 0x1f;
  const fn = v & 7;
  return `${m[1]}:${hex2(bus)}:${hex2(dev)}.${fn}`;
}

const hex2 = (n: number): string => n.toString(16).padStart(2, '0');
