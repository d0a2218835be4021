import { createHash } from 'node:crypto';
import { formatCpuList } from '../kernel/hw/cpulist.js';
import {
  type Inventory,
  type NicInfo,
  SWITCHDEV_DRIVERS,
  VF_DRIVER,
  type VfAdmin,
  vfBdf,
} from '../kernel/hw/inventory.js';
import type { ResolvedProfile } from './load.js';
import { OWNED } from './owned.js';
import { HUGEPAGE_KB, type ProfileSpec, type SriovPolicy, type VfGroup } from './schema.js';
import { cpuLayout, resolvePolicies, vfIndexes } from './validate.js';

export { OWNED };

/** What the planner looks at: hardware inventory plus Tether's own files and sysctl values. */
export interface Observed {
  inv: Inventory;
  files: Record<string, string | undefined>;
  sysctls: Record<string, string | undefined>;
}

export interface AppliedRecord {
  profile: string;
  /** PCI addresses of the PFs the applied profile configured (to clean up when dropped). */
  pfs: string[];
}

export interface PlanOp {
  /** Stable id, e.g. `sriov/0000:51:00.0/numvfs=0`. */
  id: string;
  /** boot: persistent boot configuration (needs the reboot); runtime: takes effect at once. */
  phase: 'boot' | 'runtime';
  action: 'write-file' | 'remove-file' | 'write-attr' | 'run';
  path?: string;
  value?: string;
  content?: string;
  cmd?: string;
  args?: string[];
  summary: string;
  why?: string;
  /** Set when the step interrupts traffic or destroys something in use. */
  disruptive?: string;
  /** Only run when the PCI device is currently bound to this driver (idempotent unbind). */
  onlyIfBound?: { pci: string; driver: string };
}

export interface Plan {
  profile: string;
  /** Ops in execution order: every boot op, then (after the reboot, if any) every runtime op. */
  ops: PlanOp[];
  reboot: {
    /** 0 or 1: all boot-time changes are batched into a single reboot. */
    count: 0 | 1;
    reasons: string[];
    /** Boot config already written by an earlier apply; only the reboot is missing. */
    pending: boolean;
  };
  /** Runtime ops wait for the reboot (they are re-planned after it, against the rebooted node). */
  runtimeAfterReboot: boolean;
  notes: string[];
  warnings: string[];
}

export function planId(ops: PlanOp[]): string {
  return createHash('sha256').update(JSON.stringify(ops)).digest('hex').slice(0, 16);
}

// ---------- kernel arguments ----------

/** Kernel arguments a profile needs on this node, in a stable order. */
export function kernelArgs(spec: ProfileSpec, inv: Inventory): string[] {
  const args: string[] = [];
  const k = spec.kernel ?? {};
  const hints = k.workloadHints ?? {};
  const layout = cpuLayout(spec, inv);
  if (layout && layout.isolated.length > 0) {
    const iso = formatCpuList(layout.isolated);
    const res = formatCpuList(layout.reserved);
    args.push(`isolcpus=managed_irq,domain,${iso}`, 'nohz=on', `rcu_nocbs=${iso}`, `irqaffinity=${res}`);
    args.push(`systemd.cpu_affinity=${res}`);
    if (hints.realTime) {
      args.push(
        `nohz_full=${iso}`,
        'tsc=nowatchdog',
        'nosoftlockup',
        'nmi_watchdog=0',
        'mce=off',
        'skew_tick=1',
      );
      args.push('rcutree.kthread_prio=11');
    }
  }
  if (hints.highPowerConsumption) args.push('processor.max_cstate=1', 'intel_idle.max_cstate=0');
  if (hints.highPowerConsumption && hints.realTime) args.push('idle=poll');
  if (hints.perPodPowerManagement) args.push('intel_pstate=passive');
  else if (hints.realTime) args.push('intel_pstate=disable');
  if (k.iommu) args.push('intel_iommu=on', 'iommu=pt');
  const hp = spec.memory?.hugepages;
  if (hp?.defaultSize) args.push(`default_hugepagesz=${hp.defaultSize}`);
  const giant = (hp?.pages ?? []).filter((p) => p.size === '1G' && p.count > 0);
  if (giant.length) {
    const perNode = giant.every((p) => p.node !== undefined);
    const count = perNode
      ? giant.map((p) => `${p.node}:${p.count}`).join(',')
      : `${giant.reduce((s, p) => s + p.count, 0)}`;
    args.push('hugepagesz=1G', `hugepages=${count}`);
  }
  if (k.moduleBlacklist?.length) args.push(`module_blacklist=${k.moduleBlacklist.join(',')}`);
  for (const a of k.additionalArgs ?? []) if (!args.includes(a)) args.push(a);
  return args;
}

function argReason(arg: string): string {
  const key = arg.split('=')[0] ?? arg;
  if (
    [
      'isolcpus',
      'nohz',
      'nohz_full',
      'rcu_nocbs',
      'irqaffinity',
      'systemd.cpu_affinity',
      'skew_tick',
    ].includes(key)
  )
    return 'CPU isolation (isolcpus, nohz_full, rcu_nocbs, irqaffinity) is fixed at boot';
  if (['tsc', 'nosoftlockup', 'nmi_watchdog', 'mce', 'rcutree.kthread_prio'].includes(key))
    return 'real-time tuning (kernel.workloadHints.realTime) is set at boot';
  if (['hugepagesz', 'hugepages', 'default_hugepagesz'].includes(key))
    return '1 GiB hugepages and the default hugepage size are reserved at boot';
  if (['intel_iommu', 'iommu', 'amd_iommu'].includes(key))
    return 'the IOMMU (needed by vfio-pci VFs) is enabled at boot';
  if (key === 'module_blacklist') return 'module blacklist takes effect at boot';
  if (/^(processor|intel_idle|idle|intel_pstate)/.test(key))
    return 'power/C-state settings are boot parameters';
  return 'kernel arguments change';
}

export function grubFile(args: string[]): string {
  return [
    '# Managed by Tether (tether profile apply): kernel arguments of the node profile.',
    '# Edits are overwritten. Takes effect after update-grub and a reboot.',
    `TETHER_CMDLINE="${args.join(' ')}"`,
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax for /etc/default/grub
    'GRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX} ${TETHER_CMDLINE}"',
    '',
  ].join('\n');
}

export function grubArgs(content: string | undefined): string[] {
  const m = content ? /^TETHER_CMDLINE="([^"]*)"/m.exec(content) : null;
  return m?.[1] ? m[1].split(/\s+/).filter(Boolean) : [];
}

// ---------- helpers ----------

const DEFAULT_ADMIN = (vf: number): VfAdmin => ({
  vf,
  vlan: 0,
  qos: 0,
  spoofchk: true,
  trust: false,
  linkState: 'auto',
  minTxRate: 0,
  maxTxRate: 0,
});

function desiredAdmin(vf: number, g: VfGroup | undefined): VfAdmin {
  return {
    vf,
    vlan: g?.vlan ?? 0,
    qos: g?.qos ?? 0,
    spoofchk: g?.spoofchk ?? true,
    trust: g?.trust ?? false,
    linkState: g?.linkState ?? 'auto',
    minTxRate: g?.minTxRate ?? 0,
    maxTxRate: g?.maxTxRate ?? 0,
  };
}

const sameAdmin = (a: VfAdmin, b: VfAdmin): boolean =>
  a.vlan === b.vlan &&
  a.qos === b.qos &&
  a.spoofchk === b.spoofchk &&
  a.trust === b.trust &&
  a.linkState === b.linkState &&
  a.minTxRate === b.minTxRate &&
  a.maxTxRate === b.maxTxRate;

const groupIndex = new WeakMap<SriovPolicy, Map<number, VfGroup>>();

/** The group a VF belongs to; each policy's ranges are expanded once, not once per VF. */
function groupOf(policy: SriovPolicy, vf: number): VfGroup | undefined {
  let m = groupIndex.get(policy);
  if (!m) {
    m = new Map();
    for (const g of policy.vfGroups ?? []) for (const i of vfIndexes(g.range)) if (!m.has(i)) m.set(i, g);
    groupIndex.set(policy, m);
  }
  return m.get(vf);
}

const pfFunction = (pci: string): number => Number(pci.split('.').pop() ?? 0);

export function representorName(template: string, pf: NicInfo, vf: number): string {
  return template.replaceAll('{pf}', pf.name).replaceAll('{vf}', `${vf}`);
}

/** What the node will look like right after a reboot with the given command line. */
export function predictAfterReboot(inv: Inventory, cmdline: string[]): Inventory {
  const iommu = cmdline.includes('intel_iommu=on') || cmdline.includes('amd_iommu=on');
  const giant = new Map<number, number>();
  let size = '';
  for (const t of cmdline) {
    if (t.startsWith('hugepagesz=')) size = t.slice(11);
    else if (t.startsWith('hugepages=') && size === '1G') {
      const v = t.slice(10);
      if (v.includes(':'))
        for (const part of v.split(',')) {
          const [n, c] = part.split(':');
          giant.set(Number(n), Number(c));
        }
      else for (const n of inv.nodes) giant.set(n.id, Math.floor(Number(v) / inv.nodes.length));
    }
  }
  return {
    ...inv,
    cmdline: cmdline.join(' '),
    online: inv.present,
    cpus: inv.cpus.map((c) => ({ ...c, online: true })),
    iommuGroups: iommu ? Math.max(inv.iommuGroups, 1) : 0,
    nodes: inv.nodes.map((n) => ({
      ...n,
      hugepages: n.hugepages.map((h) => ({
        ...h,
        nr: h.sizeKb === 1048576 ? (giant.get(n.id) ?? 0) : 0,
        free: h.sizeKb === 1048576 ? (giant.get(n.id) ?? 0) : 0,
      })),
    })),
    nics: inv.nics.map((n) => ({
      ...n,
      ...(n.sriov ? { sriov: { ...n.sriov, numVfs: 0, autoprobe: true } } : {}),
      vfs: [],
      vfAdmin: [],
      representors: [],
      ...(n.eswitchMode ? { eswitchMode: 'legacy' as const } : {}),
      ...(n.hwTcOffload !== undefined ? { hwTcOffload: false } : {}),
    })),
  };
}

// ---------- the planner ----------

/**
 * Plans how to bring a node from its observed state to the profile: a pure function.
 * Boot-time changes (kernel arguments, module blacklist) come first and cost exactly one
 * reboot together; runtime changes (sysctls, CPU offlining, 2 MiB hugepages, SR-IOV,
 * eswitch mode, VF settings, PTP config) need none and, when a reboot is needed, are
 * planned against the node as it will be after that reboot.
 */
export function planProfile(p: ResolvedProfile, obs: Observed, applied?: AppliedRecord): Plan {
  const spec = p.spec;
  const ops: PlanOp[] = [];
  const notes: string[] = [];
  const warnings: string[] = [];
  const live = obs.inv;

  // ---- boot phase: kernel arguments and module blacklist ----
  const desired = kernelArgs(spec, live);
  const running = live.cmdline.split(/\s+/).filter(Boolean);
  const previous = grubArgs(obs.files[OWNED.grub]);
  const missing = desired.filter((a) => !running.includes(a));
  const stale = previous.filter((a) => !desired.includes(a) && running.includes(a));
  const grubWanted = desired.length ? grubFile(desired) : undefined;
  let bootChanged = false;
  const blacklist = spec.kernel?.moduleBlacklist ?? [];
  const blWanted = blacklist.length
    ? `# Managed by Tether (profile kernel.moduleBlacklist).\n${blacklist.map((m) => `blacklist ${m}\ninstall ${m} /bin/false`).join('\n')}\n`
    : undefined;
  if (blWanted !== obs.files[OWNED.blacklist]) {
    ops.push(
      blWanted
        ? {
            id: 'boot/modprobe-blacklist',
            phase: 'boot',
            action: 'write-file',
            path: OWNED.blacklist,
            content: blWanted,
            summary: `blacklist modules ${blacklist.join(', ')}`,
            why: 'keeps them out of the initramfs and later loads',
          }
        : {
            id: 'boot/modprobe-blacklist',
            phase: 'boot',
            action: 'remove-file',
            path: OWNED.blacklist,
            summary: 'remove the module blacklist (no longer in the profile)',
          },
    );
  }
  if (grubWanted !== obs.files[OWNED.grub]) {
    bootChanged = true;
    ops.push(
      grubWanted
        ? {
            id: 'boot/kernel-args',
            phase: 'boot',
            action: 'write-file',
            path: OWNED.grub,
            content: grubWanted,
            summary: `set kernel arguments: ${desired.join(' ')}`,
          }
        : {
            id: 'boot/kernel-args',
            phase: 'boot',
            action: 'remove-file',
            path: OWNED.grub,
            summary: 'remove Tether kernel arguments',
          },
    );
  }
  if (bootChanged)
    ops.push({
      id: 'boot/update-grub',
      phase: 'boot',
      action: 'run',
      cmd: 'update-grub',
      args: [],
      summary: 'regenerate the boot loader configuration',
    });
  const reasons: string[] = [];
  if (missing.length || stale.length) {
    const why = new Map<string, string[]>();
    for (const a of missing) why.set(argReason(a), [...(why.get(argReason(a)) ?? []), `+${a}`]);
    for (const a of stale) why.set(argReason(a), [...(why.get(argReason(a)) ?? []), `-${a}`]);
    for (const [r, as] of why) reasons.push(`${r}: ${as.join(' ')}`);
  }
  const rebootNeeded = reasons.length > 0;
  const pending = rebootNeeded && !bootChanged;
  if (spec.kernel?.realtime && !live.realtime)
    warnings.push(
      `kernel.realtime: running ${live.kernelRelease || 'an unknown kernel'}, not PREEMPT_RT: boot the RT kernel shipped in the node image (Tether does not install kernels)`,
    );

  // After a reboot the runtime part starts from a fresh kernel.
  const finalCmdline = [...running.filter((a) => !previous.includes(a) || desired.includes(a)), ...missing];
  const inv = rebootNeeded ? predictAfterReboot(live, finalCmdline) : live;
  const rt = (op: Omit<PlanOp, 'phase'>) => ops.push({ ...op, phase: 'runtime' });

  // ---- sysctls ----
  const sysctls = spec.kernel?.sysctls ?? {};
  const keys = Object.keys(sysctls).sort();
  const sysctlWanted = keys.length
    ? `# Managed by Tether (profile kernel.sysctls).\n${keys.map((k) => `${k} = ${sysctls[k]}`).join('\n')}\n`
    : undefined;
  if (sysctlWanted !== obs.files[OWNED.sysctl])
    rt(
      sysctlWanted
        ? {
            id: 'sysctl/persist',
            action: 'write-file',
            path: OWNED.sysctl,
            content: sysctlWanted,
            summary: `persist ${keys.length} sysctls`,
          }
        : {
            id: 'sysctl/persist',
            action: 'remove-file',
            path: OWNED.sysctl,
            summary: 'remove persisted sysctls (no longer in the profile)',
          },
    );
  for (const k of keys) {
    const v = String(sysctls[k]);
    if ((obs.sysctls[k] ?? '').replace(/\s+/g, ' ') !== v)
      rt({
        id: `sysctl/${k}`,
        action: 'write-attr',
        path: `/proc/sys/${k.replaceAll('.', '/')}`,
        value: v,
        summary: `sysctl ${k} = ${v}`,
      });
  }

  // ---- CPUs offline/online ----
  const layout = cpuLayout(spec, inv);
  if (layout) {
    for (const c of inv.cpus) {
      const want = !layout.offlined.includes(c.id);
      if (c.id !== 0 && c.online !== want)
        rt({
          id: `cpu/${c.id}/online=${want ? 1 : 0}`,
          action: 'write-attr',
          path: `/sys/devices/system/cpu/cpu${c.id}/online`,
          value: want ? '1' : '0',
          summary: `${want ? 'online' : 'offline'} CPU ${c.id}`,
        });
    }
  }

  // ---- hugepages (runtime: 2 MiB per NUMA node; 1 GiB via kernel args) ----
  const pages = spec.memory?.hugepages?.pages;
  if (pages) {
    for (const n of inv.nodes) {
      for (const pool of n.hugepages) {
        const size =
          pool.sizeKb === HUGEPAGE_KB['1G'] ? '1G' : pool.sizeKb === HUGEPAGE_KB['2M'] ? '2M' : undefined;
        if (!size) continue;
        const want = pages
          .filter((pg) => pg.size === size)
          .reduce(
            (s, pg) =>
              s +
              (pg.node === undefined
                ? Math.floor(pg.count / inv.nodes.length)
                : pg.node === n.id
                  ? pg.count
                  : 0),
            0,
          );
        if (size === '1G') {
          if (!rebootNeeded && pool.nr !== want && want > 0)
            warnings.push(
              `node${n.id}: ${pool.nr} of ${want} 1 GiB hugepages were reserved at boot (memory too fragmented or too small)`,
            );
          continue;
        }
        if (pool.nr !== want)
          rt({
            id: `hugepages/node${n.id}/2M`,
            action: 'write-attr',
            path: `/sys/devices/system/node/node${n.id}/hugepages/hugepages-2048kB/nr_hugepages`,
            value: `${want}`,
            summary: `reserve ${want} × 2 MiB hugepages on NUMA node ${n.id} (was ${pool.nr})`,
          });
      }
    }
  }

  // ---- SR-IOV and eswitch ----
  const sn = spec.smartnic;
  const policies = resolvePolicies(spec, inv).sort((a, b) => a.pf.pci.localeCompare(b.pf.pci));
  const udevLines: string[] = [];
  for (const { policy, pf } of policies) {
    const wantSwitchdev = sn?.eswitchMode === 'switchdev' && sn.sriov.includes(policy.name);
    if (wantSwitchdev && pf.switchId) {
      const tmpl = sn?.representorNaming ?? '{pf}_{vf}';
      for (let i = 0; i < policy.numVfs; i++)
        udevLines.push(
          `SUBSYSTEM=="net", ACTION=="add", ATTR{phys_switch_id}=="${pf.switchId}", ATTR{phys_port_name}=="pf${pfFunction(pf.pci)}vf${i}", NAME="${representorName(tmpl, pf, i)}"`,
        );
    }
  }
  const udevWanted = udevLines.length
    ? `# Managed by Tether (profile smartnic.representorNaming).\n${udevLines.join('\n')}\n`
    : undefined;
  if (udevWanted !== obs.files[OWNED.udev]) {
    rt(
      udevWanted
        ? {
            id: 'smartnic/representor-names',
            action: 'write-file',
            path: OWNED.udev,
            content: udevWanted,
            summary: `name ${udevLines.length} representors (${sn?.representorNaming ?? '{pf}_{vf}'})`,
            why: 'the rule must exist before switchdev creates the representors',
          }
        : {
            id: 'smartnic/representor-names',
            action: 'remove-file',
            path: OWNED.udev,
            summary: 'remove representor naming rules',
          },
    );
    rt({
      id: 'smartnic/udev-reload',
      action: 'run',
      cmd: 'udevadm',
      args: ['control', '--reload'],
      summary: 'reload udev rules',
    });
  }
  for (const { policy, pf } of policies) {
    const wantSwitchdev = sn?.eswitchMode === 'switchdev' && sn.sriov.includes(policy.name);
    planPf(
      policy,
      pf,
      wantSwitchdev ? 'switchdev' : 'legacy',
      sn?.hwTcOffload !== false && wantSwitchdev,
      rt,
      notes,
      warnings,
    );
  }
  // PFs an earlier apply configured that this profile no longer mentions: remove their VFs.
  for (const pci of applied?.pfs ?? []) {
    if (policies.some((x) => x.pf.pci === pci)) continue;
    const pf = inv.nics.find((n) => n.pci === pci);
    if (pf?.sriov && pf.sriov.numVfs > 0)
      rt({
        id: `sriov/${pci}/numvfs=0`,
        action: 'write-attr',
        path: `/sys/bus/pci/devices/${pci}/sriov_numvfs`,
        value: '0',
        summary: `remove the ${pf.sriov.numVfs} VFs of ${pf.name}: it is no longer in the profile`,
        disruptive: `destroys ${pf.sriov.numVfs} VFs`,
      });
  }

  // ---- PTP ----
  const ptp = spec.time?.ptp;
  let ptpConf: string | undefined;
  let ptpEnv: string | undefined;
  if (ptp && ptp.role !== 'none' && ptp.interface) {
    const telco = ptp.profile !== 'default';
    ptpConf = [
      '# Managed by Tether (profile time.ptp).',
      '[global]',
      `domainNumber ${ptp.domainNumber ?? (ptp.profile === 'G.8275.2' ? 44 : telco ? 24 : 0)}`,
      ...(ptp.role === 'slave' ? ['slaveOnly 1'] : []),
      ...(ptp.role === 'gm' ? ['masterOnly 1'] : []),
      ...(telco
        ? [
            'dataset_comparison G.8275.x',
            'G.8275.defaultDS.localPriority 128',
            'logSyncInterval -4',
            'logAnnounceInterval -3',
            'logMinDelayReqInterval -4',
          ]
        : []),
      ...(ptp.profile === 'G.8275.2' ? ['network_transport UDPv4'] : telco ? ['network_transport L2'] : []),
      'tx_timestamp_timeout 50',
      `[${ptp.interface}]`,
      '',
    ].join('\n');
    ptpEnv = [
      '# Managed by Tether (profile time.ptp); read by tether-ptp4l.service and tether-phc2sys.service.',
      `PTP_ROLE=${ptp.role}`,
      `PTP_INTERFACE=${ptp.interface}`,
      `PTP4L_OPTS="${ptp.ptp4lOpts ?? '-2 -s'} -f ${OWNED.ptpConf} -i ${ptp.interface}"`,
      `PHC2SYS_OPTS="${ptp.phc2sysOpts ?? '-a -r -n 24'}"`,
      `SCHED_POLICY=${ptp.schedPolicy ?? 'SCHED_FIFO'}`,
      `SCHED_PRIORITY=${ptp.schedPriority ?? 10}`,
      '',
    ].join('\n');
  }
  for (const [path, want, what] of [
    [OWNED.ptpConf, ptpConf, 'ptp4l configuration'],
    [OWNED.ptpEnv, ptpEnv, 'ptp4l/phc2sys options'],
  ] as const) {
    if (want !== obs.files[path])
      rt(
        want
          ? {
              id: `ptp/${path.split('/').pop()}`,
              action: 'write-file',
              path,
              content: want,
              summary: `write ${what} (${ptp?.role} on ${ptp?.interface})`,
            }
          : { id: `ptp/${path.split('/').pop()}`, action: 'remove-file', path, summary: `remove ${what}` },
      );
  }

  if (rebootNeeded)
    notes.push(
      'runtime steps run after the reboot (tether profile apply again, or tether-profile.service at boot)',
    );
  return {
    profile: p.name,
    ops,
    reboot: { count: rebootNeeded ? 1 : 0, reasons, pending },
    runtimeAfterReboot: rebootNeeded,
    notes,
    warnings,
  };
}

function planPf(
  policy: SriovPolicy,
  pf: NicInfo,
  wantMode: 'legacy' | 'switchdev',
  hwTc: boolean,
  rt: (op: Omit<PlanOp, 'phase'>) => void,
  notes: string[],
  warnings: string[],
): void {
  if (!pf.sriov) return;
  const drv = pf.driver ?? '';
  const vfDrv = VF_DRIVER[drv] ?? 'iavf';
  const capable = SWITCHDEV_DRIVERS.has(drv);
  const N = policy.numVfs;
  const dir = `/sys/bus/pci/devices/${pf.pci}`;
  let n = pf.sriov.numVfs;
  let mode: 'legacy' | 'switchdev' = pf.eswitchMode ?? 'legacy';
  const bdf = (i: number) =>
    pf.vfs.find((v) => v.index === i)?.pci ?? vfBdf(pf.pci, pf.sriov?.offset ?? 1, pf.sriov?.stride ?? 1, i);
  const drivers = new Map<number, string | undefined>(pf.vfs.map((v) => [v.index, v.driver]));
  const overrides = new Map<number, string | undefined>(pf.vfs.map((v) => [v.index, v.driverOverride]));
  let recreated = false;
  /** VFs whose netdev is recreated by an unbind/bind (its MTU falls back to the default). */
  const rebound = new Set<number>();
  const tag = `${pf.name} (${pf.pci}, ${drv})`;
  const id = (s: string) => `sriov/${pf.pci}/${s}`;

  const setNum = (v: number, why: string, disruptive?: string) => {
    rt({
      id: id(`numvfs=${v}`),
      action: 'write-attr',
      path: `${dir}/sriov_numvfs`,
      value: `${v}`,
      summary: v === 0 ? `remove all VFs of ${pf.name}` : `create ${v} VFs on ${pf.name}`,
      why,
      ...(disruptive ? { disruptive } : {}),
    });
    n = v;
    drivers.clear();
    overrides.clear();
    for (let i = 0; i < v; i++) drivers.set(i, vfDrv); // autoprobe is 1 (ensured below)
    recreated = true;
  };
  const unbindAll = (why: string) => {
    for (let i = 0; i < n; i++) {
      const d = drivers.get(i);
      if (!d) continue;
      rt({
        id: id(`vf${i}/unbind`),
        action: 'write-attr',
        path: `/sys/bus/pci/drivers/${d}/unbind`,
        value: bdf(i),
        summary: `unbind VF ${i} (${bdf(i)}) from ${d}`,
        why,
        onlyIfBound: { pci: bdf(i), driver: d },
        disruptive: 'VF netdev disappears until rebound',
      });
      drivers.set(i, undefined);
      rebound.add(i);
    }
  };
  const setMode = (m: 'legacy' | 'switchdev', why: string) => {
    rt({
      id: id(`eswitch=${m}`),
      action: 'run',
      cmd: 'devlink',
      args: ['dev', 'eswitch', 'set', `pci/${pf.pci}`, 'mode', m],
      summary: `set eswitch mode of ${pf.name} to ${m}`,
      why,
    });
    mode = m;
  };

  if (hwTc && pf.hwTcOffload !== true)
    rt({
      id: id('hw-tc-offload'),
      action: 'run',
      cmd: 'ethtool',
      args: ['-K', pf.name, 'hw-tc-offload', 'on'],
      summary: `enable hardware TC offload on ${pf.name}`,
      why: 'switchdev offload programs tc rules into the NIC',
    });
  if (policy.mtu !== undefined && policy.mtu !== pf.mtu)
    rt({
      id: id(`mtu=${policy.mtu}`),
      action: 'write-attr',
      path: `/sys/class/net/${pf.name}/mtu`,
      value: `${policy.mtu}`,
      summary: `set MTU of ${pf.name} to ${policy.mtu} (was ${pf.mtu})`,
      why: 'VF MTUs cannot exceed the PF MTU',
    });
  if (N > 0 && !pf.sriov.autoprobe)
    rt({
      id: id('autoprobe=1'),
      action: 'write-attr',
      path: `${dir}/sriov_drivers_autoprobe`,
      value: '1',
      summary: `let VFs of ${pf.name} bind their driver when created`,
      why: 'sriov_drivers_autoprobe is read when VFs are enabled',
    });

  const modeChange = capable && mode !== wantMode;
  if (!capable && wantMode === 'switchdev')
    warnings.push(`${tag}: no switchdev support; staying in legacy mode`);
  const busy =
    n > 0
      ? `destroys the ${n} existing VFs of ${pf.name}: workloads using them lose their interfaces`
      : undefined;
  if (n > 0 && N > 0 && n !== N)
    notes.push(
      `${pf.name}: VF count ${n} → ${N} needs no reboot, but the kernel refuses a non-zero → non-zero change (EBUSY), so the VFs are removed first (numvfs=0) and recreated`,
    );
  if (drv === 'mlx5_core') {
    // NVIDIA order (sriov-network-operator): legacy → numvfs → unbind all VFs → switchdev → rebind.
    if (n !== N) {
      if (mode === 'switchdev') {
        unbindAll('mlx5 changes the VF count only in legacy mode');
        setMode('legacy', 'mlx5: VF count changes happen in legacy mode');
      }
      if (n > 0 && N > 0) setNum(0, 'the kernel refuses a non-zero → non-zero VF count change (EBUSY)', busy);
      setNum(N, `profile asks for ${N} VFs`, n > 0 && N === 0 ? busy : undefined);
    }
    if (capable && mode !== wantMode) {
      unbindAll('mlx5 changes the eswitch mode only while no VF is bound to a driver');
      setMode(wantMode, `smartnic.eswitchMode is ${wantMode}`);
      notes.push(
        `${pf.name}: eswitch ${wantMode === 'switchdev' ? 'legacy → switchdev' : 'switchdev → legacy'} without reboot; VFs are unbound and rebound (a short traffic interruption)`,
      );
    }
  } else {
    // Intel ice order: sriov_numvfs=0 → eswitch mode → sriov_numvfs=N (ice refuses a mode change with VFs).
    if (modeChange) {
      if (n > 0) setNum(0, 'ice refuses an eswitch mode change while VFs exist (EOPNOTSUPP)', busy);
      setMode(wantMode, `smartnic.eswitchMode is ${wantMode}`);
      notes.push(`${pf.name}: eswitch mode change without reboot; ice needs its VFs removed first`);
    }
    if (n !== N) {
      if (n > 0 && N > 0) setNum(0, 'the kernel refuses a non-zero → non-zero VF count change (EBUSY)', busy);
      setNum(N, `profile asks for ${N} VFs`, n > 0 && N === 0 ? busy : undefined);
    }
  }

  // Drivers: netdevice VFs on the vendor VF driver, vfio-pci VFs through driver_override.
  for (let i = 0; i < N; i++) {
    const g = groupOf(policy, i);
    const want = g?.deviceType === 'vfio-pci' ? 'vfio-pci' : vfDrv;
    const cur = drivers.get(i);
    if (cur === want) continue;
    const wantOverride = want === 'vfio-pci' ? 'vfio-pci' : undefined;
    if ((overrides.get(i) ?? undefined) !== wantOverride)
      rt({
        id: id(`vf${i}/driver_override`),
        action: 'write-attr',
        path: `/sys/bus/pci/devices/${bdf(i)}/driver_override`,
        value: wantOverride ?? '',
        summary: `VF ${i} (${bdf(i)}) driver_override = ${wantOverride ?? '(none)'}`,
      });
    if (cur)
      rt({
        id: id(`vf${i}/unbind`),
        action: 'write-attr',
        path: `/sys/bus/pci/drivers/${cur}/unbind`,
        value: bdf(i),
        summary: `unbind VF ${i} (${bdf(i)}) from ${cur}`,
        onlyIfBound: { pci: bdf(i), driver: cur },
      });
    rt({
      id: id(`vf${i}/probe`),
      action: 'write-attr',
      path: '/sys/bus/pci/drivers_probe',
      value: bdf(i),
      summary: `bind VF ${i} (${bdf(i)}) to ${want}`,
    });
    drivers.set(i, want);
    rebound.add(i);
  }

  // VF admin settings through the PF (ip link set PF vf N ...); legacy mode only.
  for (let i = 0; i < N; i++) {
    const g = groupOf(policy, i);
    const want = desiredAdmin(i, g);
    const cur = recreated ? DEFAULT_ADMIN(i) : (pf.vfAdmin.find((a) => a.vf === i) ?? DEFAULT_ADMIN(i));
    if (sameAdmin(want, cur)) continue;
    if (mode === 'switchdev') {
      if (want.vlan || want.qos || want.maxTxRate || want.minTxRate)
        warnings.push(
          `${pf.name} VF ${i}: vlan/qos/rates of a switchdev VF are programmed on its representor (tc/OVS), not by ip link; ignored`,
        );
      continue;
    }
    const args = ['link', 'set', pf.name, 'vf', `${i}`, 'vlan', `${want.vlan}`];
    if (want.vlan) args.push('qos', `${want.qos}`);
    args.push(
      'spoofchk',
      want.spoofchk ? 'on' : 'off',
      'trust',
      want.trust ? 'on' : 'off',
      'state',
      want.linkState,
    );
    args.push('max_tx_rate', `${want.maxTxRate}`, 'min_tx_rate', `${want.minTxRate}`);
    rt({
      id: id(`vf${i}/admin`),
      action: 'run',
      cmd: 'ip',
      args,
      summary: `VF ${i} of ${pf.name}: vlan ${want.vlan} qos ${want.qos} spoofchk ${want.spoofchk ? 'on' : 'off'} trust ${want.trust ? 'on' : 'off'} state ${want.linkState} rate ${want.minTxRate}-${want.maxTxRate || '∞'} Mbit/s`,
    });
  }

  // VF MTU for netdevice VFs.
  for (let i = 0; i < N; i++) {
    const g = groupOf(policy, i);
    if (!g?.mtu || g.deviceType === 'vfio-pci') continue;
    const cur = recreated || rebound.has(i) ? 1500 : pf.vfs.find((v) => v.index === i)?.mtu;
    if (cur === g.mtu) continue;
    rt({
      id: id(`vf${i}/mtu=${g.mtu}`),
      action: 'write-attr',
      path: `/sys/bus/pci/devices/${bdf(i)}/net/*/mtu`,
      value: `${g.mtu}`,
      summary: `set MTU of VF ${i} (${bdf(i)}) to ${g.mtu}`,
    });
  }
}
