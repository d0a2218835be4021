import { formatCpuList, MAX_CPU_ID, tryParseCpuList } from '../kernel/hw/cpulist.js';
import { type Inventory, type NicInfo, SWITCHDEV_DRIVERS } from '../kernel/hw/inventory.js';
import { MAX_VFS } from './limits.js';
import { originOf, type ProfileIssue, type ResolvedProfile } from './load.js';
import { HUGEPAGE_KB, type PfSelector, type ProfileSpec, type SriovPolicy } from './schema.js';

/** CPU sets of a profile resolved against a node ("remaining" expanded). */
export interface CpuLayout {
  reserved: number[];
  isolated: number[];
  offlined: number[];
}

/** A CPU list of a profile; an invalid one counts as empty here (checkProfile reports it). */
const cpus = (text: string | undefined): number[] => {
  const r = tryParseCpuList(text ?? '', MAX_CPU_ID);
  return r.ok ? r.ids : [];
};

export function cpuLayout(spec: ProfileSpec, inv: Inventory): CpuLayout | undefined {
  const c = spec.cpu;
  if (!c || (c.reserved === undefined && c.isolated === undefined && c.offlined === undefined))
    return undefined;
  const reserved = cpus(c.reserved);
  const offlined = cpus(c.offlined);
  const present = new Set(inv.present);
  const all = [...new Set([...inv.online, ...offlined.filter((x) => present.has(x))])];
  const taken = new Set([...reserved, ...offlined]);
  const isolated =
    c.isolated === 'remaining' ? all.filter((x) => !taken.has(x)).sort((a, b) => a - b) : cpus(c.isolated);
  return { reserved, isolated, offlined };
}

/** VF indexes of a group (invalid ranges count as empty here; checkProfile reports them). */
export function vfIndexes(range: string): number[] {
  const r = tryParseCpuList(range, MAX_VFS - 1, 'VF');
  return r.ok ? r.ids : [];
}

/** The PF(s) a selector picks on this node, in PCI order. */
export function selectPfs(sel: PfSelector, inv: Inventory): NicInfo[] {
  const nics = [...inv.nics].sort((a, b) => a.pci.localeCompare(b.pci));
  let m = nics.filter(
    (n) =>
      (sel.name === undefined || n.name === sel.name) &&
      (sel.pciAddress === undefined || n.pci === sel.pciAddress) &&
      (sel.vendor === undefined || n.vendor === sel.vendor) &&
      (sel.device === undefined || n.device === sel.device),
  );
  if (sel.port !== undefined) m = m[sel.port] ? [m[sel.port] as NicInfo] : [];
  return m;
}

export function describeSelector(sel: PfSelector): string {
  return Object.entries(sel)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}

/** Resolves every SR-IOV policy to exactly one PF, or undefined when it does not. */
export function resolvePolicies(
  spec: ProfileSpec,
  inv: Inventory,
): Array<{ policy: SriovPolicy; pf: NicInfo }> {
  const out: Array<{ policy: SriovPolicy; pf: NicInfo }> = [];
  for (const policy of spec.sriov ?? []) {
    if (!policy.pf || policy.numVfs === undefined) continue;
    const m = selectPfs(policy.pf, inv);
    if (m.length === 1 && m[0]) out.push({ policy, pf: m[0] });
  }
  return out;
}

const GiB = 1024 * 1024;

type Add = (field: string, message: string, expected?: string) => void;

function collector(p: ResolvedProfile): { issues: ProfileIssue[]; err: Add; warn: Add } {
  const issues: ProfileIssue[] = [];
  const add = (severity: ProfileIssue['severity'], field: string, message: string, expected?: string) => {
    const o = originOf(p, field);
    issues.push({
      severity,
      ...(o ? { file: o.file, line: o.line } : {}),
      field,
      message,
      ...(expected ? { expected } : {}),
    });
  };
  return {
    issues,
    err: (f, m, e) => add('error', f, m, e),
    warn: (f, m, e) => add('warning', f, m, e),
  };
}

/**
 * The checks that need no hardware: CPU and VF lists (syntax, order, bounds, overlaps),
 * VF ranges within numVfs, required fields after composition, references between fields.
 * `tether profile validate` runs these without --hardware; validateProfile includes them.
 * Pure, and bounded: every list is parsed against the largest id a machine can have.
 */
export function checkProfile(p: ResolvedProfile): ProfileIssue[] {
  const { issues, err, warn } = collector(p);
  const spec = p.spec;

  // ---- cpu ----
  const c = spec.cpu;
  if (c) {
    const lists: Partial<Record<'reserved' | 'isolated' | 'offlined', number[]>> = {};
    for (const f of ['reserved', 'isolated', 'offlined'] as const) {
      const text = c[f];
      if (text === undefined || (f === 'isolated' && text === 'remaining')) continue;
      const r = tryParseCpuList(text, MAX_CPU_ID);
      if (r.ok) lists[f] = r.ids;
      else err(`cpu.${f}`, r.message, r.expected);
    }
    const bad = issues.length > 0;
    if (!bad && c.isolated !== undefined && (lists.reserved ?? []).length === 0)
      err(
        'cpu.reserved',
        'no reserved (housekeeping) CPUs: the OS and Tether need at least one',
        'a CPU list like "0-1"',
      );
    if (!bad && lists.isolated !== undefined && lists.isolated.length === 0)
      err('cpu.isolated', 'no CPU is isolated (the list is empty)', 'a CPU list like "2-31", or remaining');
    const pairs: Array<['reserved' | 'isolated', 'isolated' | 'offlined']> = [
      ['reserved', 'isolated'],
      ['reserved', 'offlined'],
      ['isolated', 'offlined'],
    ];
    for (const [a, b] of pairs) {
      const inB = new Set(lists[b] ?? []);
      const both = (lists[a] ?? []).filter((x) => inB.has(x));
      if (both.length) err(`cpu.${b}`, `CPUs ${formatCpuList(both)} are both ${a} and ${b}`, 'disjoint sets');
    }
    if ((lists.offlined ?? []).includes(0))
      err('cpu.offlined', 'CPU 0 cannot be taken offline', 'CPUs other than 0');
  }
  if (spec.kernel?.workloadHints?.realTime && c?.isolated === undefined)
    err('kernel.workloadHints.realTime', 'realTime needs isolated CPUs', 'cpu.reserved and cpu.isolated set');

  // ---- memory ----
  const hp = spec.memory?.hugepages;
  if (hp?.defaultSize && !(hp.pages ?? []).some((pg) => pg.size === hp.defaultSize))
    warn(
      'memory.hugepages.defaultSize',
      `default size ${hp.defaultSize} but no pages of that size are reserved`,
    );

  // ---- time ----
  const ptp = spec.time?.ptp;
  if (ptp && ptp.role !== 'none' && !ptp.interface)
    err('time.ptp.interface', `PTP role ${ptp.role} needs an interface`, 'a NIC name like ens1f0');

  // ---- sriov ----
  for (const policy of spec.sriov ?? []) {
    const f = `sriov[${policy.name}]`;
    if (!policy.pf || policy.numVfs === undefined) {
      err(
        f,
        `SR-IOV policy "${policy.name}" has no ${policy.pf ? 'numVfs' : 'pf'}`,
        'pf and numVfs (here or in a profile it extends)',
      );
    }
    const numVfs = policy.numVfs;
    const seen = new Map<number, number>();
    (policy.vfGroups ?? []).forEach((g, gi) => {
      const gf = `${f}.vfGroups[${gi}]`;
      const r = tryParseCpuList(g.range, MAX_VFS - 1, 'VF');
      let idx: number[] = [];
      if (!r.ok) err(`${gf}.range`, r.message, r.expected);
      else idx = r.ids;
      if (numVfs !== undefined) {
        const out = idx.filter((i) => i >= numVfs);
        if (out.length)
          err(
            `${gf}.range`,
            `VFs ${formatCpuList(out)} are beyond numVfs ${numVfs}`,
            numVfs > 0
              ? `VF indexes within 0-${numVfs - 1}`
              : 'no VF indexes (numVfs is 0: remove the group or raise numVfs)',
          );
      }
      const dup = idx.filter((i) => seen.has(i));
      if (dup.length)
        err(
          `${gf}.range`,
          `VFs ${formatCpuList(dup)} are already in vfGroups[${seen.get(dup[0] as number)}]`,
          'non-overlapping ranges',
        );
      for (const i of idx) if (!seen.has(i)) seen.set(i, gi);
      if (g.qos && !g.vlan) err(`${gf}.qos`, 'qos needs a vlan', 'vlan 1-4094 with qos');
      if (g.maxTxRate && (g.minTxRate ?? 0) > g.maxTxRate)
        err(
          `${gf}.minTxRate`,
          `minTxRate ${g.minTxRate} exceeds maxTxRate ${g.maxTxRate}`,
          'minTxRate <= maxTxRate',
        );
      if (policy.mtu !== undefined && g.mtu !== undefined && g.mtu > policy.mtu)
        err(
          `${gf}.mtu`,
          `VF MTU ${g.mtu} exceeds the PF MTU ${policy.mtu}`,
          `<= ${policy.mtu} (sriov[${policy.name}].mtu)`,
        );
      if (g.deviceType === 'vfio-pci' && g.mtu !== undefined)
        warn(`${gf}.mtu`, 'MTU of a vfio-pci VF is set by the workload (DPDK), not by Tether');
    });
  }

  // ---- smartnic ----
  (spec.smartnic?.sriov ?? []).forEach((name, i) => {
    if (!(spec.sriov ?? []).some((x) => x.name === name))
      err(
        `smartnic.sriov[${i}]`,
        `no SR-IOV policy named "${name}"`,
        `one of ${(spec.sriov ?? []).map((x) => x.name).join(', ') || '(none)'}`,
      );
  });
  return issues;
}

/**
 * Checks a resolved profile against a node's inventory before anything is touched:
 * checkProfile's checks, then those that need the hardware (a field with an error from the
 * first never gets a second one). Returns every issue found (errors block apply; warnings
 * are shown). Pure.
 */
export function validateProfile(p: ResolvedProfile, inv: Inventory): ProfileIssue[] {
  const first = checkProfile(p);
  const blamed = new Set(first.filter((i) => i.severity === 'error').map((i) => i.field));
  const { issues, err: errAny, warn } = collector(p);
  const err: Add = (f, m, e) => {
    if (!blamed.has(f)) errAny(f, m, e);
  };
  const spec = p.spec;
  const present = new Set(inv.present);
  const presentText = formatCpuList(inv.present);

  // ---- cpu ----
  const cpuBad = [...blamed].some((f) => f.startsWith('cpu.'));
  const layout = cpuBad ? undefined : cpuLayout(spec, inv);
  if (layout && spec.cpu) {
    const fields: Array<[keyof CpuLayout, number[]]> = [
      ['reserved', layout.reserved],
      ['isolated', layout.isolated],
      ['offlined', layout.offlined],
    ];
    for (const [f, list] of fields) {
      const missing = list.filter((c) => !present.has(c));
      if (missing.length)
        err(
          `cpu.${f}`,
          `CPUs ${formatCpuList(missing)} do not exist on this node`,
          `CPUs within ${presentText}`,
        );
    }
    if (spec.cpu.isolated === 'remaining' && layout.isolated.length === 0)
      err(
        'cpu.isolated',
        'no CPU is left to isolate',
        `isolated CPUs besides reserved ${formatCpuList(layout.reserved)}`,
      );
    if (spec.cpu.isolated !== undefined) {
      const covered = new Set([...layout.reserved, ...layout.isolated, ...layout.offlined]);
      const uncovered = inv.online.filter((c) => !covered.has(c));
      if (uncovered.length)
        err(
          'cpu.isolated',
          `CPUs ${formatCpuList(uncovered)} are online but neither reserved, isolated nor offlined`,
          `reserved + isolated + offlined = all online CPUs (${formatCpuList(inv.online)})`,
        );
    }
    const isolated = new Set(layout.isolated);
    const byId = new Map(inv.cpus.map((x) => [x.id, x]));
    const split = layout.reserved.filter((c) =>
      byId.get(c)?.siblings.some((s) => s !== c && isolated.has(s)),
    );
    if (split.length)
      warn(
        'cpu.reserved',
        `CPUs ${formatCpuList(split)} share a core with isolated CPUs (hyperthread siblings)`,
        'whole cores',
      );
  }

  // ---- memory ----
  const hp = spec.memory?.hugepages;
  const perNode = new Map<number, number>();
  const overflowed = new Set<number>();
  (hp?.pages ?? []).forEach((pg, i) => {
    const f = `memory.hugepages.pages[${i}]`;
    const kb = HUGEPAGE_KB[pg.size];
    if (!inv.hugepageSizesKb.includes(kb))
      err(
        `${f}.size`,
        `this node does not support ${pg.size} hugepages`,
        `one of ${inv.hugepageSizesKb.map((k) => (k >= GiB ? `${k / GiB}G` : `${k / 1024}M`)).join(', ') || '(none)'}`,
      );
    if (pg.node !== undefined && !inv.nodes.some((n) => n.id === pg.node)) {
      err(
        `${f}.node`,
        `NUMA node ${pg.node} does not exist`,
        `one of ${inv.nodes.map((n) => n.id).join(', ')}`,
      );
      return;
    }
    // The entry whose pages push a node over its limit is the one to blame.
    const targets = pg.node !== undefined ? [pg.node] : inv.nodes.map((n) => n.id);
    for (const t of targets) {
      const total = (perNode.get(t) ?? 0) + (kb * pg.count) / targets.length;
      perNode.set(t, total);
      const n = inv.nodes.find((x) => x.id === t);
      if (!n || overflowed.has(t)) continue;
      const limit = Math.floor(n.memTotalKb * 0.9);
      if (total > limit) {
        overflowed.add(t);
        err(
          `${f}.count`,
          `hugepages on NUMA node ${t} need ${(total / GiB).toFixed(1)} GiB but the node has ${(n.memTotalKb / GiB).toFixed(1)} GiB`,
          `at most ${(limit / GiB).toFixed(1)} GiB (90% of the node's memory) in all entries for node ${t}`,
        );
      }
    }
  });

  // ---- kernel ----
  if (spec.kernel?.realtime && !inv.realtime)
    warn(
      'kernel.realtime',
      `the running kernel ${inv.kernelRelease || '(unknown)'} is not PREEMPT_RT`,
      'the RT kernel shipped in the node image',
    );
  if (spec.kernel?.workloadHints?.realTime && layout && !layout.isolated.length)
    err('kernel.workloadHints.realTime', 'realTime needs isolated CPUs', 'cpu.reserved and cpu.isolated set');

  // ---- time ----
  const ptp = spec.time?.ptp;
  if (ptp && ptp.role !== 'none' && ptp.interface && !inv.nics.some((n) => n.name === ptp.interface))
    err(
      'time.ptp.interface',
      `interface ${ptp.interface} does not exist on this node`,
      inv.nics.length
        ? `one of ${inv.nics.map((n) => n.name).join(', ')}`
        : 'a PCI NIC with a PTP clock (this node has none)',
    );

  // ---- sriov ----
  const usedPf = new Map<string, string>();
  const iommu = spec.kernel?.iommu === true || /\b(intel|amd)_iommu=on\b/.test(inv.cmdline);
  for (const policy of spec.sriov ?? []) {
    const f = `sriov[${policy.name}]`;
    if (!policy.pf || policy.numVfs === undefined) continue;
    const m = selectPfs(policy.pf, inv);
    if (m.length === 0) {
      err(
        `${f}.pf`,
        `no NIC matches ${describeSelector(policy.pf)}`,
        inv.nics.length
          ? `one of ${inv.nics.map((n) => `${n.name} (${n.pci}, ${n.vendor}:${n.device})`).join(', ')}`
          : 'a PCI NIC (this node has none)',
      );
      continue;
    }
    if (m.length > 1) {
      err(
        `${f}.pf`,
        `${describeSelector(policy.pf)} matches ${m.length} PFs (${m.map((n) => n.name).join(', ')})`,
        'one PF: add name, pciAddress or port',
      );
      continue;
    }
    const pf = m[0] as NicInfo;
    const prev = usedPf.get(pf.pci);
    if (prev) err(`${f}.pf`, `PF ${pf.name} is already configured by policy "${prev}"`, 'one policy per PF');
    usedPf.set(pf.pci, policy.name);
    if (!pf.sriov) {
      err(
        `${f}.pf`,
        `${pf.name} (${pf.pci}) has no SR-IOV capability (no sriov_totalvfs)`,
        'an SR-IOV capable PF',
      );
      continue;
    }
    if (policy.numVfs > pf.sriov.totalVfs)
      err(
        `${f}.numVfs`,
        `${policy.numVfs} VFs requested but ${pf.name} (${pf.pci}) supports at most ${pf.sriov.totalVfs}`,
        `<= ${pf.sriov.totalVfs} (sriov_totalvfs)`,
      );
    const pfMtu = policy.mtu ?? pf.mtu;
    (policy.vfGroups ?? []).forEach((g, gi) => {
      const gf = `${f}.vfGroups[${gi}]`;
      if (policy.mtu === undefined && g.mtu && g.mtu > pfMtu)
        err(
          `${gf}.mtu`,
          `VF MTU ${g.mtu} exceeds the PF MTU ${pfMtu}`,
          `<= ${pfMtu} (set sriov[${policy.name}].mtu)`,
        );
      if (g.deviceType === 'vfio-pci' && !iommu)
        err(`${gf}.deviceType`, 'vfio-pci needs the IOMMU, which is off', 'kernel.iommu: true');
    });
  }

  // ---- smartnic ----
  const sn = spec.smartnic;
  if (sn && sn.eswitchMode === 'switchdev') {
    for (const name of sn.sriov) {
      const policy = (spec.sriov ?? []).find((x) => x.name === name);
      if (!policy?.pf) continue;
      const m = selectPfs(policy.pf, inv);
      const pf = m.length === 1 ? m[0] : undefined;
      if (pf && !(pf.driver && SWITCHDEV_DRIVERS.has(pf.driver)))
        err(
          'smartnic.eswitchMode',
          `${pf.name} (${pf.driver ?? 'no driver'}) does not support switchdev`,
          `a switchdev-capable NIC (${[...SWITCHDEV_DRIVERS].join(', ')})`,
        );
    }
  }
  return [...first, ...issues];
}
