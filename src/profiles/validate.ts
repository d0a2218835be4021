import { formatCpuList, parseCpuList } from '../kernel/hw/cpulist.js';
import { type Inventory, type NicInfo, SWITCHDEV_DRIVERS } from '../kernel/hw/inventory.js';
import { originOf, type ProfileIssue, type ResolvedProfile } from './load.js';
import { HUGEPAGE_KB, type PfSelector, type ProfileSpec, type SriovPolicy } from './schema.js';

/** CPU sets of a profile resolved against a node ("remaining" expanded). */
export interface CpuLayout {
  reserved: number[];
  isolated: number[];
  offlined: number[];
}

export function cpuLayout(spec: ProfileSpec, inv: Inventory): CpuLayout | undefined {
  const c = spec.cpu;
  if (!c || (c.reserved === undefined && c.isolated === undefined && c.offlined === undefined))
    return undefined;
  const reserved = parseCpuList(c.reserved ?? '');
  const offlined = parseCpuList(c.offlined ?? '');
  const all = [...new Set([...inv.online, ...offlined.filter((x) => inv.present.includes(x))])];
  const isolated =
    c.isolated === 'remaining'
      ? all.filter((x) => !reserved.includes(x) && !offlined.includes(x)).sort((a, b) => a - b)
      : parseCpuList(c.isolated ?? '');
  return { reserved, isolated, offlined };
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

/**
 * Checks a resolved profile against a node's inventory before anything is touched.
 * Returns every issue found (errors block apply; warnings are shown). Pure.
 */
export function validateProfile(p: ResolvedProfile, inv: Inventory): ProfileIssue[] {
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
  const err = (field: string, message: string, expected?: string) => add('error', field, message, expected);
  const warn = (field: string, message: string, expected?: string) =>
    add('warning', field, message, expected);
  const spec = p.spec;
  const presentText = formatCpuList(inv.present);

  // ---- cpu ----
  const layout = cpuLayout(spec, inv);
  if (layout && spec.cpu) {
    const fields: Array<[keyof CpuLayout, number[]]> = [
      ['reserved', layout.reserved],
      ['isolated', layout.isolated],
      ['offlined', layout.offlined],
    ];
    for (const [f, cpus] of fields) {
      const missing = cpus.filter((c) => !inv.present.includes(c));
      if (missing.length)
        err(
          `cpu.${f}`,
          `CPUs ${formatCpuList(missing)} do not exist on this node`,
          `CPUs within ${presentText}`,
        );
    }
    if (layout.reserved.length === 0 && spec.cpu.isolated !== undefined)
      err(
        'cpu.reserved',
        'no reserved (housekeeping) CPUs: the OS and Tether need at least one',
        'a CPU list like "0-1"',
      );
    if (spec.cpu.isolated !== undefined && layout.isolated.length === 0)
      err(
        'cpu.isolated',
        'no CPU is left to isolate',
        `isolated CPUs besides reserved ${formatCpuList(layout.reserved)}`,
      );
    const pairs: Array<[keyof CpuLayout, keyof CpuLayout]> = [
      ['reserved', 'isolated'],
      ['reserved', 'offlined'],
      ['isolated', 'offlined'],
    ];
    for (const [a, b] of pairs) {
      const both = layout[a].filter((c) => layout[b].includes(c));
      if (both.length) err(`cpu.${b}`, `CPUs ${formatCpuList(both)} are both ${a} and ${b}`, 'disjoint sets');
    }
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
    if (layout.offlined.includes(0))
      err('cpu.offlined', 'CPU 0 cannot be taken offline', 'CPUs other than 0');
    const split = layout.reserved.filter((c) =>
      inv.cpus.find((x) => x.id === c)?.siblings.some((s) => s !== c && layout.isolated.includes(s)),
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
    const targets = pg.node !== undefined ? [pg.node] : inv.nodes.map((n) => n.id);
    for (const t of targets) perNode.set(t, (perNode.get(t) ?? 0) + (kb * pg.count) / targets.length);
  });
  for (const [node, kb] of perNode) {
    const n = inv.nodes.find((x) => x.id === node);
    if (!n) continue;
    const limit = Math.floor(n.memTotalKb * 0.9);
    if (kb > limit) {
      const idx = (hp?.pages ?? []).findIndex((pg) => pg.node === node || pg.node === undefined);
      err(
        `memory.hugepages.pages[${Math.max(0, idx)}].count`,
        `hugepages on NUMA node ${node} need ${(kb / GiB).toFixed(1)} GiB but the node has ${(n.memTotalKb / GiB).toFixed(1)} GiB`,
        `at most ${(limit / GiB).toFixed(1)} GiB (90% of the node's memory)`,
      );
    }
  }
  if (hp?.defaultSize && !(hp.pages ?? []).some((pg) => pg.size === hp.defaultSize))
    warn(
      'memory.hugepages.defaultSize',
      `default size ${hp.defaultSize} but no pages of that size are reserved`,
    );

  // ---- kernel ----
  if (spec.kernel?.realtime && !inv.realtime)
    warn(
      'kernel.realtime',
      `the running kernel ${inv.kernelRelease || '(unknown)'} is not PREEMPT_RT`,
      'the RT kernel shipped in the node image',
    );
  if (spec.kernel?.workloadHints?.realTime && !layout?.isolated.length)
    err('kernel.workloadHints.realTime', 'realTime needs isolated CPUs', 'cpu.reserved and cpu.isolated set');

  // ---- time ----
  const ptp = spec.time?.ptp;
  if (ptp && ptp.role !== 'none') {
    if (!ptp.interface)
      err('time.ptp.interface', `PTP role ${ptp.role} needs an interface`, 'a NIC name like ens1f0');
    else if (!inv.nics.some((n) => n.name === ptp.interface))
      err(
        'time.ptp.interface',
        `interface ${ptp.interface} does not exist on this node`,
        inv.nics.length
          ? `one of ${inv.nics.map((n) => n.name).join(', ')}`
          : 'a PCI NIC with a PTP clock (this node has none)',
      );
  }

  // ---- sriov ----
  const usedPf = new Map<string, string>();
  const iommu = spec.kernel?.iommu === true || /\b(intel|amd)_iommu=on\b/.test(inv.cmdline);
  for (const policy of spec.sriov ?? []) {
    const f = `sriov[${policy.name}]`;
    if (!policy.pf || policy.numVfs === undefined) {
      err(
        f,
        `SR-IOV policy "${policy.name}" has no ${policy.pf ? 'numVfs' : 'pf'}`,
        'pf and numVfs (here or in a profile it extends)',
      );
      continue;
    }
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
    const seen = new Map<number, number>();
    (policy.vfGroups ?? []).forEach((g, gi) => {
      const gf = `${f}.vfGroups[${gi}]`;
      let idx: number[] = [];
      try {
        idx = parseCpuList(g.range);
      } catch (e) {
        err(`${gf}.range`, (e as Error).message, 'VF indexes like "0-3"');
      }
      const out = idx.filter((i) => i >= policy.numVfs);
      if (out.length)
        err(
          `${gf}.range`,
          `VFs ${formatCpuList(out)} are beyond numVfs ${policy.numVfs}`,
          `indexes within 0-${policy.numVfs - 1}`,
        );
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
      if (g.mtu && g.mtu > pfMtu)
        err(
          `${gf}.mtu`,
          `VF MTU ${g.mtu} exceeds the PF MTU ${pfMtu}`,
          `<= ${pfMtu} (set sriov[${policy.name}].mtu)`,
        );
      if (g.deviceType === 'vfio-pci' && !iommu)
        err(`${gf}.deviceType`, 'vfio-pci needs the IOMMU, which is off', 'kernel.iommu: true');
      if (g.deviceType === 'vfio-pci' && g.mtu !== undefined)
        warn(`${gf}.mtu`, 'MTU of a vfio-pci VF is set by the workload (DPDK), not by Tether');
    });
  }

  // ---- smartnic ----
  const sn = spec.smartnic;
  if (sn) {
    sn.sriov.forEach((name, i) => {
      const policy = (spec.sriov ?? []).find((x) => x.name === name);
      if (!policy) {
        err(
          `smartnic.sriov[${i}]`,
          `no SR-IOV policy named "${name}"`,
          `one of ${(spec.sriov ?? []).map((x) => x.name).join(', ') || '(none)'}`,
        );
        return;
      }
      const m = selectPfs(policy.pf, inv);
      const pf = m.length === 1 ? m[0] : undefined;
      if (pf && sn.eswitchMode === 'switchdev' && !(pf.driver && SWITCHDEV_DRIVERS.has(pf.driver)))
        err(
          'smartnic.eswitchMode',
          `${pf.name} (${pf.driver ?? 'no driver'}) does not support switchdev`,
          `a switchdev-capable NIC (${[...SWITCHDEV_DRIVERS].join(', ')})`,
        );
    });
  }
  return issues;
}
