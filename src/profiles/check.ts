import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { l3BridgeUplinkAdvice } from '../kernel/detect.js';
import type { HostFs } from '../kernel/hw/hostfs.js';
import { type Inventory, readInventory } from '../kernel/hw/inventory.js';
import { formatIssue, type ResolvedProfile } from './load.js';
import { kernelArgs } from './plan.js';
import { cpuLayout, resolvePolicies, validateProfile } from './validate.js';

export type CheckStatus = 'pass' | 'warn' | 'fail';

export interface CheckResult {
  id: string;
  title: string;
  status: CheckStatus;
  detail: string;
  /** What to do about a warn/fail. */
  hint?: string;
}

export interface CheckReport {
  profile: string;
  root: string;
  node: { kernel: string; cpus: number; numaNodes: number; memoryGiB: number; sriovPfs: string[] };
  results: CheckResult[];
  summary: { pass: number; warn: number; fail: number };
  ok: boolean;
}

/** Reads the running kernel's config: /boot/config-R, /proc/config.gz or the module build tree. */
export async function readKernelConfig(
  fs: HostFs,
  release: string,
): Promise<{ source: string; options: Map<string, string> } | undefined> {
  const parse = (text: string) => {
    const m = new Map<string, string>();
    for (const line of text.split('\n')) {
      const x = /^(CONFIG_[A-Z0-9_]+)=(.*)$/.exec(line);
      if (x?.[1]) m.set(x[1], x[2] ?? '');
    }
    return m;
  };
  for (const p of [
    `/boot/config-${release}`,
    `/lib/modules/${release}/build/.config`,
    `/lib/modules/${release}/config`,
  ]) {
    const t = await fs.read(p);
    if (t) return { source: p, options: parse(t) };
  }
  // /proc/config.gz is binary: read it through the root-mapped path.
  if (await fs.exists('/proc/config.gz')) {
    try {
      const real = fs.root === '/' ? '/proc/config.gz' : `${fs.root}/proc/config.gz`;
      return { source: '/proc/config.gz', options: parse(gunzipSync(readFileSync(real)).toString('utf8')) };
    } catch {
      /* unreadable: fall through */
    }
  }
  return undefined;
}

/** Whether a kernel module can be used: loaded, built in, or installed for the running kernel. */
export async function moduleAvailable(
  fs: HostFs,
  release: string,
  mod: string,
): Promise<'loaded' | 'builtin' | 'installed' | 'missing'> {
  const m = mod.replaceAll('-', '_');
  if (await fs.exists(`/sys/module/${m}`)) return 'loaded';
  const norm = (t: string | undefined) => (t ?? '').replaceAll('-', '_');
  if (new RegExp(`/${m}\\.ko`).test(norm(await fs.read(`/lib/modules/${release}/modules.builtin`))))
    return 'builtin';
  if (new RegExp(`/${m}\\.ko(\\.[a-z]+)?:`).test(norm(await fs.read(`/lib/modules/${release}/modules.dep`))))
    return 'installed';
  return 'missing';
}

/**
 * Preflight: what this node lacks for a profile, offline and before enrollment. Reads the
 * host through the HostFs only (real / or a fixture tree); changes nothing.
 */
/** One /proc/net/route line: interface, destination, gateway, mask (host order hex as the kernel prints). */
function parseRoutes(
  text: string,
): Array<{ iface: string; dst: string; gw: string; mask: string; metric: number }> {
  return text
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 8)
    .map((f) => ({ iface: f[0]!, dst: f[1]!, gw: f[2]!, mask: f[7]!, metric: Number(f[6]) }));
}

/** `0102A8C0` (little-endian, as /proc/net/route prints it) → `192.168.2.1`. */
function hexIp(h: string): string {
  const n = Number.parseInt(h, 16);
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24].join('.');
}

/**
 * The VXLAN underlay's uplink (the interface named, else the default route's), read from the
 * host's procfs and sysfs: a Linux bridge there, routed into because it holds the node's
 * address, makes the kernel segment every encapsulated GSO packet in software. Undefined when
 * there is nothing to judge (no uplink named and no default route, e.g. a fixture tree).
 */
export async function checkUplink(fs: HostFs, underlayIf?: string): Promise<CheckResult | undefined> {
  const routes = parseRoutes((await fs.read('/proc/net/route')) ?? '');
  const dflt = routes
    .filter((r) => r.dst === '00000000' && r.mask === '00000000')
    .sort((a, b) => a.metric - b.metric)[0];
  const dev = underlayIf ?? dflt?.iface;
  if (!dev) return undefined;
  const base = { id: 'network.uplink', title: 'underlay uplink' };
  if (!(await fs.exists(`/sys/class/net/${dev}`)))
    return {
      ...base,
      status: 'fail',
      detail: `interface ${dev} not found`,
      hint: 'name the interface that carries the VXLAN underlay (--underlay-if)',
    };
  const how = underlayIf ? 'named uplink' : 'default route';
  if (!(await fs.isDir(`/sys/class/net/${dev}/bridge`)))
    return { ...base, status: 'pass', detail: `${dev} (${how}) is not a Linux bridge` };
  const ports = await fs.list(`/sys/class/net/${dev}/brif`);
  const connected = routes
    .filter((r) => r.iface === dev && r.gw === '00000000' && r.mask !== '00000000')
    .map((r) => `${hexIp(r.dst)}/${Number.parseInt(r.mask, 16).toString(2).replace(/0/g, '').length}`);
  return {
    ...base,
    status: 'warn',
    detail:
      `${dev} (${how}) is a Linux bridge that holds the node's address${connected.length ? ` (on ${connected.join(', ')})` : ''}` +
      `${ports.length ? `, ports ${ports.sort().join(', ')}` : ''}: VXLAN packets routed into it are segmented in software, the overlay runs at a fraction of the underlay`,
    hint: l3BridgeUplinkAdvice(dev),
  };
}

export async function checkNode(
  fs: HostFs,
  p: ResolvedProfile,
  invIn?: Inventory,
  opts: { underlayIf?: string } = {},
): Promise<CheckReport> {
  const inv = invIn ?? (await readInventory(fs));
  const spec = p.spec;
  const results: CheckResult[] = [];
  const add = (r: CheckResult) => results.push(r);
  const needsIsolation = spec.cpu?.isolated !== undefined;
  const policies = spec.sriov ?? [];
  const needsSriov = policies.some((x) => (x.numVfs ?? 0) > 0);
  const needsVfio = policies.some((x) => (x.vfGroups ?? []).some((g) => g.deviceType === 'vfio-pci'));
  const needsIommu = spec.kernel?.iommu === true || needsVfio;
  const switchdev = spec.smartnic?.eswitchMode === 'switchdev';
  const pages = spec.memory?.hugepages?.pages ?? [];
  const ptp = spec.time?.ptp && spec.time.ptp.role !== 'none' ? spec.time.ptp : undefined;

  // ---- kernel config ----
  const kc = await readKernelConfig(fs, inv.kernelRelease);
  const wanted: Array<[string, string, boolean]> = [
    ['CONFIG_PCI_IOV', 'SR-IOV', needsSriov],
    ['CONFIG_VFIO_PCI', 'vfio-pci VFs', needsVfio],
    ['CONFIG_INTEL_IOMMU', 'IOMMU', needsIommu],
    ['CONFIG_HUGETLBFS', 'hugepages', pages.length > 0],
    [
      'CONFIG_NO_HZ_FULL',
      'nohz_full on isolated CPUs',
      needsIsolation && spec.kernel?.workloadHints?.realTime === true,
    ],
    ['CONFIG_RCU_NOCB_CPU', 'rcu_nocbs on isolated CPUs', needsIsolation],
    ['CONFIG_CPU_ISOLATION', 'isolcpus', needsIsolation],
    ['CONFIG_PREEMPT_RT', 'real-time kernel', spec.kernel?.realtime === true],
    ['CONFIG_PTP_1588_CLOCK', 'PTP hardware clocks', ptp !== undefined],
    ['CONFIG_NET_SWITCHDEV', 'switchdev eswitch', switchdev],
    ['CONFIG_NET_CLS_FLOWER', 'tc flower offload', switchdev],
    ['CONFIG_HOTPLUG_CPU', 'offlining CPUs', (spec.cpu?.offlined ?? '') !== ''],
  ];
  const need = wanted.filter((w) => w[2]);
  if (!kc) {
    add({
      id: 'kernel.config',
      title: 'kernel configuration',
      status: need.length ? 'warn' : 'pass',
      detail: `no config for ${inv.kernelRelease || 'the running kernel'} (/boot/config-*, /proc/config.gz): cannot verify ${need.map((w) => w[0]).join(', ') || 'options'}`,
      hint: 'install the kernel package that ships /boot/config-$(uname -r), or enable CONFIG_IKCONFIG_PROC',
    });
  } else {
    const missing = need.filter(([o]) => {
      const v = kc.options.get(o);
      return v !== 'y' && v !== 'm';
    });
    add({
      id: 'kernel.config',
      title: 'kernel configuration',
      status: missing.length ? 'fail' : 'pass',
      detail: missing.length
        ? `${kc.source} lacks ${missing.map(([o, why]) => `${o} (${why})`).join(', ')}`
        : `${kc.source} has ${need.map((w) => w[0]).join(', ') || 'everything the profile needs'}`,
      ...(missing.length
        ? { hint: 'boot a kernel built with these options (the Tether node image ships one)' }
        : {}),
    });
  }

  // ---- real-time kernel ----
  if (spec.kernel?.realtime) {
    const rtInstalled = (await fs.list('/boot')).filter((f) => /^vmlinuz-.*-rt-/.test(f));
    add({
      id: 'kernel.realtime',
      title: 'PREEMPT_RT kernel',
      status: inv.realtime ? 'pass' : 'fail',
      detail: inv.realtime
        ? `running ${inv.kernelRelease} (PREEMPT_RT)`
        : `running ${inv.kernelRelease || 'unknown'}, not PREEMPT_RT${rtInstalled.length ? `; installed: ${rtInstalled.join(', ')}` : ''}`,
      ...(inv.realtime
        ? {}
        : {
            hint: rtInstalled.length
              ? 'make the RT kernel the default boot entry and reboot'
              : 'install linux-image-rt-amd64 (shipped in the DU node image) and boot it',
          }),
    });
  }

  // ---- modules ----
  const mods: Array<[string, string]> = [];
  if (needsVfio) mods.push(['vfio_pci', 'vfio-pci VFs']);
  for (const { pf } of resolvePolicies(spec, inv)) if (pf.driver) mods.push([pf.driver, `PF ${pf.name}`]);
  if (needsSriov && policies.some((x) => (x.vfGroups ?? []).some((g) => g.deviceType !== 'vfio-pci')))
    for (const { pf } of resolvePolicies(spec, inv))
      if (pf.driver === 'ice' || pf.driver === 'i40e') mods.push(['iavf', `netdevice VFs of ${pf.name}`]);
  const uniq = [...new Map(mods.map((m) => [m[0], m])).values()];
  if (uniq.length) {
    const state = await Promise.all(
      uniq.map(async ([m]) => [m, await moduleAvailable(fs, inv.kernelRelease, m)] as const),
    );
    const miss = state.filter(([, s]) => s === 'missing');
    const noModules = / nomodule( |$)/.test(` ${inv.cmdline} `);
    add({
      id: 'kernel.modules',
      title: 'kernel modules',
      status: miss.length ? 'fail' : 'pass',
      detail:
        state.map(([m, s]) => `${m}: ${s}`).join(', ') +
        (noModules ? ' (kernel booted with "nomodule")' : ''),
      ...(miss.length
        ? {
            hint: `install the modules for ${inv.kernelRelease} (${miss.map(([m]) => m).join(', ')})${(await fs.isDir(`/lib/modules/${inv.kernelRelease}`)) ? '' : `: /lib/modules/${inv.kernelRelease} does not exist`}`,
          }
        : {}),
    });
  }

  // ---- IOMMU ----
  if (needsIommu) {
    const args = kernelArgs(spec, inv);
    const on = inv.iommuGroups > 0;
    const willEnable = args.includes('intel_iommu=on');
    const kcIommu = kc?.options.get('CONFIG_INTEL_IOMMU');
    const supported =
      kcIommu === 'y' || (await fs.exists('/sys/firmware/acpi/tables/DMAR')) || inv.cpuFlags.includes('vmx');
    add({
      id: 'iommu',
      title: 'IOMMU',
      status: on ? 'pass' : willEnable && supported ? 'warn' : 'fail',
      detail: on
        ? `${inv.iommuGroups} IOMMU groups`
        : willEnable && supported
          ? 'IOMMU is off now; the profile enables it with intel_iommu=on iommu=pt (one reboot)'
          : `no IOMMU groups and no IOMMU support found (no ACPI DMAR table; kernel ${kcIommu === undefined ? (kc ? 'built without' : 'config unknown for') : 'has'} CONFIG_INTEL_IOMMU)`,
      ...(on
        ? {}
        : {
            hint:
              willEnable && supported
                ? 'run tether profile apply, then reboot'
                : 'enable VT-d in the BIOS and boot with intel_iommu=on',
          }),
    });
  }

  // ---- CPUs ----
  if (needsIsolation) {
    const layout = cpuLayout(spec, inv);
    const cpuIssues = validateProfile(p, inv).filter(
      (i) => i.field.startsWith('cpu.') && i.severity === 'error',
    );
    add({
      id: 'cpu',
      title: 'CPU count and partitioning',
      status: cpuIssues.length ? 'fail' : 'pass',
      detail: cpuIssues.length
        ? `${inv.online.length} online CPUs; ${cpuIssues.map(formatIssue).join('; ')}`
        : `${inv.online.length} CPUs: ${layout?.reserved.length} reserved, ${layout?.isolated.length} isolated, ${layout?.offlined.length} offlined`,
      ...(cpuIssues.length
        ? { hint: 'use hardware with enough CPUs, or override cpu.reserved/cpu.isolated in the site profile' }
        : {}),
    });
  }

  // ---- hugepages ----
  if (pages.length) {
    const hpIssues = validateProfile(p, inv).filter(
      (i) => i.field.startsWith('memory.') && i.severity === 'error',
    );
    const needs1g = pages.some((x) => x.size === '1G' && x.count > 0);
    const no1g = needs1g && !inv.cpuFlags.includes('pdpe1gb');
    add({
      id: 'hugepages',
      title: 'hugepages',
      status: hpIssues.length || no1g ? 'fail' : 'pass',
      detail:
        [...hpIssues.map(formatIssue), ...(no1g ? ['the CPU lacks pdpe1gb (1 GiB pages)'] : [])].join('; ') ||
        `supported sizes ${inv.hugepageSizesKb.map((k) => `${k}kB`).join(', ')}; ${inv.nodes.length} NUMA nodes, ${inv.nodes.map((n) => `node${n.id} ${(n.memTotalKb / 1048576).toFixed(0)} GiB`).join(', ')}`,
      ...(hpIssues.length || no1g
        ? { hint: 'reduce memory.hugepages.pages or use a node with more memory' }
        : {}),
    });
  }

  // ---- NICs and VF capacity ----
  if (policies.length) {
    const all = validateProfile(p, inv).filter((i) => i.field.startsWith('sriov') && i.severity === 'error');
    const found = resolvePolicies(spec, inv);
    add({
      id: 'sriov',
      title: 'SR-IOV NICs and VF capacity',
      status: all.length ? 'fail' : 'pass',
      detail: all.length
        ? all.map(formatIssue).join('; ')
        : found
            .map(
              ({ policy, pf }) =>
                `${policy.name}: ${pf.name} ${pf.pci} ${pf.driver} ${policy.numVfs}/${pf.sriov?.totalVfs} VFs`,
            )
            .join('; '),
      ...(all.length
        ? {
            hint: inv.nics.some((n) => n.sriov)
              ? 'check the NIC model/slot against the profile, or override sriov[].pf in the site profile'
              : 'this node has no SR-IOV capable PCI NIC: install the NIC the profile names (or enable SR-IOV in the BIOS)',
          }
        : {}),
    });
  }
  if (spec.smartnic) {
    const sn = validateProfile(p, inv).filter(
      (i) => i.field.startsWith('smartnic') && i.severity === 'error',
    );
    add({
      id: 'smartnic',
      title: 'SmartNIC eswitch',
      status: sn.length ? 'fail' : 'pass',
      detail: sn.length
        ? sn.map(formatIssue).join('; ')
        : `eswitch ${spec.smartnic.eswitchMode} supported on ${spec.smartnic.sriov.join(', ')}`,
      ...(sn.length ? { hint: 'use a switchdev-capable NIC (ConnectX-5/6, E810)' } : {}),
    });
  }

  // ---- PTP ----
  if (ptp) {
    const nic = inv.nics.find((n) => n.name === ptp.interface);
    const phc = nic
      ? (await fs.list('/sys/class/ptp')).length > 0 ||
        (await fs.exists(`/sys/class/net/${nic.name}/device/ptp`))
      : false;
    add({
      id: 'ptp',
      title: 'PTP interface',
      status: nic && phc ? 'pass' : nic ? 'warn' : 'fail',
      detail: nic
        ? `${ptp.interface} (${nic.driver}) ${phc ? 'has a PTP hardware clock' : 'has no PTP hardware clock visible'}`
        : `interface ${ptp.interface} not found`,
      ...(nic && phc
        ? {}
        : { hint: 'time.ptp.interface must name a NIC with a hardware clock (E810 ports have one)' }),
    });
  }

  // ---- the overlay's uplink ----
  const uplink = await checkUplink(fs, opts.underlayIf);
  if (uplink) add(uplink);

  // ---- anything else the validator finds ----
  const other = validateProfile(p, inv).filter(
    (i) => i.severity === 'error' && !/^(cpu\.|memory\.|sriov|smartnic|time\.ptp)/.test(i.field),
  );
  for (const i of other)
    add({
      id: `profile.${i.field}`,
      title: i.field,
      status: 'fail',
      detail: formatIssue(i),
      hint: i.expected ? `expected ${i.expected}` : 'fix the profile',
    });

  const summary = {
    pass: results.filter((r) => r.status === 'pass').length,
    warn: results.filter((r) => r.status === 'warn').length,
    fail: results.filter((r) => r.status === 'fail').length,
  };
  return {
    profile: p.name,
    root: fs.root,
    node: {
      kernel: inv.kernelRelease,
      cpus: inv.online.length,
      numaNodes: inv.nodes.length,
      memoryGiB: Math.round(inv.memTotalKb / 1048576),
      sriovPfs: inv.nics
        .filter((n) => n.sriov)
        .map((n) => `${n.name} (${n.pci}, ${n.driver}, ${n.sriov?.totalVfs} VFs)`),
    },
    results,
    summary,
    ok: summary.fail === 0,
  };
}
