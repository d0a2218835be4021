import { createHash } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, posix, relative } from 'node:path';
import { TetherError } from '../../lib/errors.js';
import type { CommandRunner, RunOptions, RunResult } from '../../lib/exec.js';
import { formatCpuList, parseCpuList } from './cpulist.js';
import { attr, type HostFs, RootedHostFs } from './hostfs.js';
import { VF_DRIVER, type VfAdmin, vfBdf } from './inventory.js';

/**
 * A fake kernel over a fixture tree: the files are the fixture's sysfs/procfs, and writes to
 * the attributes that matter behave the way the real kernel does, so a planner that orders
 * operations wrongly fails in tests exactly where it would fail on hardware:
 *
 * - `sriov_numvfs`: writing a value above `sriov_totalvfs` fails with ERANGE; writing a
 *   non-zero value while another non-zero value is set fails with EBUSY; 0 destroys the VFs;
 *   creating VFs makes `virtfnN`/`physfn` links and, when `sriov_drivers_autoprobe` is 1,
 *   binds the vendor's VF driver (iavf, mlx5_core) with a netdev.
 * - devlink eswitch mode: ice refuses a change while VFs exist (EOPNOTSUPP, "Changing eswitch
 *   mode is allowed only if there is no VFs created"); mlx5 refuses it while any VF is bound
 *   to a driver (EBUSY); drivers without an eswitch refuse switchdev (EOPNOTSUPP). In
 *   switchdev mode each VF has a representor netdev (phys_port_name pf<N>vf<M>).
 * - driver bind/unbind/drivers_probe, `driver_override`; vfio-pci refuses a VF without an
 *   IOMMU group (IOMMU off).
 * - per-node `nr_hugepages` allocates only what fits in the node's memory (reads back lower);
 *   1 GiB pages cannot be allocated at runtime (fragmentation), only at boot.
 * - `cpuN/online` updates the online mask.
 *
 * State that sysfs does not hold (eswitch mode, VF admin settings, ethtool features) lives
 * in `<root>/run/fake/…` so it survives process restarts like kernel state does and shows up
 * in tree snapshots. `reboot()` emulates a reboot: the kernel command line becomes what
 * Tether's boot config asks for, runtime state (VFs, modes, 2 MiB pages) resets.
 */
export class FakeKernel implements HostFs {
  readonly fs: RootedHostFs;
  /** Every attribute write and command, in order, for golden transcripts. */
  readonly log: string[] = [];
  private faults: Array<(what: string) => Error | undefined> = [];

  constructor(readonly root: string) {
    this.fs = new RootedHostFs(root);
  }

  /** Makes the next operation matching `pred` fail once with `err` (Felix-style injection). */
  failOnce(pred: (what: string) => boolean, err: Error = errno('EIO', 'injected fault')): void {
    let fired = false;
    this.faults.push((w) => {
      if (fired || !pred(w)) return undefined;
      fired = true;
      return err;
    });
  }

  /** Makes the n-th (0-based) state-changing operation from now fail once: a simulated crash point. */
  failAtMutation(n: number, err: Error = errno('EIO', 'injected crash')): void {
    let seen = 0;
    this.failOnce(() => seen++ === n, err);
  }

  private checkFault(what: string): void {
    for (const f of this.faults) {
      const e = f(what);
      if (e) throw e;
    }
  }

  // ---- HostFs reads delegate to the tree ----
  read(p: string) {
    return this.fs.read(p);
  }
  exists(p: string) {
    return this.fs.exists(p);
  }
  isDir(p: string) {
    return this.fs.isDir(p);
  }
  list(p: string) {
    return this.fs.list(p);
  }
  readlink(p: string) {
    return this.fs.readlink(p);
  }
  resolve(p: string) {
    return this.fs.resolve(p);
  }
  async writeConfig(p: string, content: string): Promise<void> {
    this.checkFault(`write ${p}`);
    this.log.push(`write ${p}`);
    await this.fs.writeConfig(p, content);
  }
  async remove(p: string): Promise<void> {
    this.checkFault(`remove ${p}`);
    this.log.push(`remove ${p}`);
    await this.fs.remove(p);
  }

  // ---- attribute writes with kernel semantics ----
  async writeAttr(path: string, value: string): Promise<void> {
    const v = value.trim();
    this.checkFault(`echo ${v} > ${path}`);
    this.log.push(`echo ${v} > ${path}`);
    const real = this.real(path);
    const numvfs = /^\/sys\/bus\/pci\/devices\/([^/]+)\/sriov_numvfs$/.exec(path);
    if (numvfs) return this.setNumVfs(numvfs[1] ?? '', v);
    const bind = /^\/sys\/bus\/pci\/drivers\/([^/]+)\/(bind|unbind)$/.exec(path);
    if (bind) return this.bindOp(bind[1] ?? '', bind[2] as 'bind' | 'unbind', v);
    if (path === '/sys/bus/pci/drivers_probe') return this.probe(v);
    const hp = /^\/sys\/devices\/system\/node\/node(\d+)\/hugepages\/hugepages-(\d+)kB\/nr_hugepages$/.exec(
      path,
    );
    if (hp) return this.setHugepages(Number(hp[1]), Number(hp[2]), Number(v));
    const cpu = /^\/sys\/devices\/system\/cpu\/cpu(\d+)\/online$/.exec(path);
    if (cpu) return this.setCpuOnline(Number(cpu[1]), v);
    if (!existsSync(real)) throw errno('ENOENT', `${path}: No such file or directory`);
    writeFileSync(real, `${v}\n`);
  }

  real(p: string): string {
    return this.fs.real(p);
  }

  private readAttr(p: string): string | undefined {
    try {
      return readFileSync(this.real(p), 'utf8').trim();
    } catch {
      return undefined;
    }
  }

  private pfDriver(bdf: string): string {
    return linkBase(this.real(`/sys/bus/pci/devices/${bdf}/driver`)) ?? '';
  }

  private vfsOf(bdf: string): { index: number; pci: string }[] {
    const dir = this.real(`/sys/bus/pci/devices/${bdf}`);
    return readdirSync(dir)
      .map((e) => /^virtfn(\d+)$/.exec(e))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => ({ index: Number(m[1]), pci: linkBase(join(dir, m[0])) ?? '' }))
      .sort((a, b) => a.index - b.index);
  }

  private pfNetdev(bdf: string): string | undefined {
    const names = readdirSafe(this.real(`/sys/bus/pci/devices/${bdf}/net`));
    return names.find((n) => !/pf\d+vf\d+$/.test(this.readAttr(`/sys/class/net/${n}/phys_port_name`) ?? ''));
  }

  eswitchMode(bdf: string): 'legacy' | 'switchdev' {
    return this.readAttr(`/run/fake/devlink/${bdf}`) === 'switchdev' ? 'switchdev' : 'legacy';
  }

  private setNumVfs(bdf: string, v: string): void {
    const dir = `/sys/bus/pci/devices/${bdf}`;
    const total = Number(this.readAttr(`${dir}/sriov_totalvfs`));
    if (!Number.isFinite(total)) throw errno('ENOENT', `${dir}/sriov_numvfs: No such file or directory`);
    const want = Number(v);
    if (!Number.isInteger(want) || want < 0) throw errno('EINVAL', 'write error: Invalid argument');
    const cur = Number(this.readAttr(`${dir}/sriov_numvfs`) ?? '0');
    if (want === cur) return;
    if (want > total) throw errno('ERANGE', 'write error: Numerical result out of range');
    if (want !== 0 && cur !== 0) throw errno('EBUSY', 'write error: Device or resource busy');
    if (want === 0) this.destroyVfs(bdf);
    else this.createVfs(bdf, want);
    writeFileSync(this.real(`${dir}/sriov_numvfs`), `${want}\n`);
  }

  /** VF routing IDs follow the PCI SR-IOV rule: RID(PF) + offset + stride × index. */
  vfAddress(pfBdf: string, index: number): string {
    const dir = `/sys/bus/pci/devices/${pfBdf}`;
    return vfBdf(
      pfBdf,
      Number(this.readAttr(`${dir}/sriov_offset`) ?? 1),
      Number(this.readAttr(`${dir}/sriov_stride`) ?? 1),
      index,
    );
  }

  private createVfs(pf: string, n: number): void {
    const pfReal = realPath(this.real(`/sys/bus/pci/devices/${pf}`));
    const parent = dirname(pfReal);
    const vfDevice = this.readAttr(`/sys/bus/pci/devices/${pf}/sriov_vf_device`) ?? '0000';
    const vendor = this.readAttr(`/sys/bus/pci/devices/${pf}/vendor`) ?? '0x0000';
    const numa = this.readAttr(`/sys/bus/pci/devices/${pf}/numa_node`) ?? '-1';
    const autoprobe = this.readAttr(`/sys/bus/pci/devices/${pf}/sriov_drivers_autoprobe`) !== '0';
    const iommu = readdirSafe(this.real('/sys/kernel/iommu_groups')).length > 0;
    const admin: VfAdmin[] = [];
    for (let i = 0; i < n; i++) {
      const vf = this.vfAddress(pf, i);
      const vdir = join(parent, vf);
      mkdirSync(vdir, { recursive: true });
      writeFileSync(join(vdir, 'vendor'), `${vendor}\n`);
      writeFileSync(join(vdir, 'device'), `0x${vfDevice.replace(/^0x/, '')}\n`);
      writeFileSync(join(vdir, 'numa_node'), `${numa}\n`);
      writeFileSync(join(vdir, 'driver_override'), '(null)\n');
      symlinkSync(`../${pf}`, join(vdir, 'physfn'));
      symlinkSync(`../${vf}`, join(pfReal, `virtfn${i}`));
      symlinkSync(relative(this.real('/sys/bus/pci/devices'), vdir), this.real(`/sys/bus/pci/devices/${vf}`));
      if (iommu) {
        const groups = readdirSafe(this.real('/sys/kernel/iommu_groups')).map(Number);
        const g = Math.max(...groups) + 1;
        mkdirSync(this.real(`/sys/kernel/iommu_groups/${g}/devices`), { recursive: true });
        symlinkSync(
          relative(this.real(`/sys/kernel/iommu_groups/${g}/devices`), vdir),
          this.real(`/sys/kernel/iommu_groups/${g}/devices/${vf}`),
        );
        symlinkSync(relative(vdir, this.real(`/sys/kernel/iommu_groups/${g}`)), join(vdir, 'iommu_group'));
      }
      admin.push(defaultAdmin(i));
      if (autoprobe) this.bind(vf, VF_DRIVER[this.pfDriver(pf)] ?? 'iavf');
    }
    this.writeAdmin(pf, admin);
    if (this.eswitchMode(pf) === 'switchdev') this.createRepresentors(pf);
  }

  private destroyVfs(pf: string): void {
    this.removeRepresentors(pf);
    const pfReal = realPath(this.real(`/sys/bus/pci/devices/${pf}`));
    for (const { index, pci } of this.vfsOf(pf)) {
      const drv = linkBase(this.real(`/sys/bus/pci/devices/${pci}/driver`));
      if (drv) this.unbind(pci, drv);
      const vdir = join(dirname(pfReal), pci);
      const g = linkBase(join(vdir, 'iommu_group'));
      if (g) rmSync(this.real(`/sys/kernel/iommu_groups/${g}`), { recursive: true, force: true });
      rmSync(vdir, { recursive: true, force: true });
      rmSync(join(pfReal, `virtfn${index}`), { force: true });
      rmSync(this.real(`/sys/bus/pci/devices/${pci}`), { force: true });
    }
    this.writeAdmin(pf, []);
  }

  private bind(vf: string, drv: string): void {
    const vdirLink = this.real(`/sys/bus/pci/devices/${vf}`);
    if (!existsSync(vdirLink)) throw errno('ENODEV', 'write error: No such device');
    if (existsSync(join(vdirLink, 'driver'))) throw errno('EBUSY', 'write error: Device or resource busy');
    const drvDir = this.real(`/sys/bus/pci/drivers/${drv}`);
    if (!existsSync(drvDir)) throw errno('ENODEV', `driver ${drv} not loaded`);
    if (drv === 'vfio-pci' && !existsSync(join(vdirLink, 'iommu_group')))
      throw errno('EINVAL', 'write error: Invalid argument (vfio-pci: no iommu_group, IOMMU is off)');
    const vdir = realPath(vdirLink);
    symlinkSync(relative(vdir, drvDir), join(vdir, 'driver'));
    symlinkSync(relative(drvDir, vdir), join(drvDir, vf));
    if (drv !== 'vfio-pci') {
      const pf = linkBase(join(vdir, 'physfn')) ?? '';
      const pfName = this.pfNetdev(pf) ?? 'eth';
      const idx = this.vfsOf(pf).find((x) => x.pci === vf)?.index ?? 0;
      const name = `${pfName.replace(/np\d+$/, '')}v${idx}`;
      const ndir = join(vdir, 'net', name);
      mkdirSync(ndir, { recursive: true });
      writeFileSync(join(ndir, 'mtu'), '1500\n');
      writeFileSync(join(ndir, 'ifindex'), `${1000 + idx}\n`);
      symlinkSync(relative(this.real('/sys/class/net'), ndir), this.real(`/sys/class/net/${name}`));
    }
  }

  private unbind(vf: string, drv: string): void {
    const vdirLink = this.real(`/sys/bus/pci/devices/${vf}`);
    const cur = linkBase(join(vdirLink, 'driver'));
    if (cur !== drv) throw errno('ENODEV', 'write error: No such device');
    const vdir = realPath(vdirLink);
    for (const n of readdirSafe(join(vdir, 'net'))) rmSync(this.real(`/sys/class/net/${n}`), { force: true });
    rmSync(join(vdir, 'net'), { recursive: true, force: true });
    rmSync(join(vdir, 'driver'), { force: true });
    rmSync(this.real(`/sys/bus/pci/drivers/${drv}/${vf}`), { force: true });
  }

  private bindOp(drv: string, op: 'bind' | 'unbind', bdf: string): void {
    if (op === 'unbind') this.unbind(bdf, drv);
    else this.bind(bdf, drv);
  }

  private probe(bdf: string): void {
    const dir = `/sys/bus/pci/devices/${bdf}`;
    if (!existsSync(this.real(dir))) throw errno('ENODEV', 'write error: No such device');
    if (existsSync(this.real(`${dir}/driver`))) return; // already bound: probe is a no-op
    const override = this.readAttr(`${dir}/driver_override`);
    const pf = linkBase(this.real(`${dir}/physfn`)) ?? '';
    const drv = override && override !== '(null)' ? override : (VF_DRIVER[this.pfDriver(pf)] ?? 'iavf');
    this.bind(bdf, drv);
  }

  private createRepresentors(pf: string): void {
    const pfName = this.pfNetdev(pf) ?? 'eth';
    const pfReal = realPath(this.real(`/sys/bus/pci/devices/${pf}`));
    const sw = this.readAttr(`/sys/class/net/${pfName}/phys_switch_id`) ?? '';
    const pfNum = Number(pf.split('.').pop() ?? 0);
    for (const { index } of this.vfsOf(pf)) {
      const port = `pf${pfNum}vf${index}`;
      const name = `${pfName.replace(/np\d+$/, '')}n${port}`;
      const ndir = join(pfReal, 'net', name);
      mkdirSync(ndir, { recursive: true });
      writeFileSync(join(ndir, 'phys_port_name'), `${port}\n`);
      writeFileSync(join(ndir, 'phys_switch_id'), `${sw}\n`);
      writeFileSync(join(ndir, 'mtu'), '1500\n');
      symlinkSync(relative(this.real('/sys/class/net'), ndir), this.real(`/sys/class/net/${name}`));
    }
  }

  private removeRepresentors(pf: string): void {
    const pfReal = realPath(this.real(`/sys/bus/pci/devices/${pf}`));
    for (const n of readdirSafe(join(pfReal, 'net'))) {
      const pn = this.readAttr(`/sys/class/net/${n}/phys_port_name`) ?? '';
      if (!/pf\d+vf\d+$/.test(pn)) continue;
      rmSync(join(pfReal, 'net', n), { recursive: true, force: true });
      rmSync(this.real(`/sys/class/net/${n}`), { force: true });
    }
  }

  private setHugepages(node: number, sizeKb: number, count: number): void {
    const dir = `/sys/devices/system/node/node${node}/hugepages/hugepages-${sizeKb}kB`;
    if (!existsSync(this.real(dir))) throw errno('ENOENT', `${dir}: No such file or directory`);
    if (!Number.isInteger(count) || count < 0) throw errno('EINVAL', 'write error: Invalid argument');
    const cur = Number(this.readAttr(`${dir}/nr_hugepages`) ?? 0);
    let granted = count;
    if (count > cur) {
      if (sizeKb >= 1048576)
        granted = cur; // no contiguous 1 GiB blocks after boot
      else {
        const meminfo = this.readAttr(`/sys/devices/system/node/node${node}/meminfo`) ?? '';
        const total = Number(/MemTotal:\s+(\d+)/.exec(meminfo)?.[1] ?? 0);
        let used = 0;
        for (const h of readdirSafe(this.real(`/sys/devices/system/node/node${node}/hugepages`))) {
          const kb = Number(/hugepages-(\d+)kB/.exec(h)?.[1] ?? 0);
          if (kb === sizeKb) continue;
          used +=
            kb *
            Number(this.readAttr(`/sys/devices/system/node/node${node}/hugepages/${h}/nr_hugepages`) ?? 0);
        }
        const avail = Math.floor(total * 0.9) - used; // the kernel keeps memory for itself
        granted = Math.max(cur, Math.min(count, Math.floor(avail / sizeKb)));
      }
    }
    writeFileSync(this.real(`${dir}/nr_hugepages`), `${granted}\n`);
    writeFileSync(this.real(`${dir}/free_hugepages`), `${granted}\n`);
    this.syncGlobalHugepages(sizeKb);
  }

  private syncGlobalHugepages(sizeKb: number): void {
    let sum = 0;
    for (const n of readdirSafe(this.real('/sys/devices/system/node'))) {
      if (!/^node\d+$/.test(n)) continue;
      sum += Number(
        this.readAttr(`/sys/devices/system/node/${n}/hugepages/hugepages-${sizeKb}kB/nr_hugepages`) ?? 0,
      );
    }
    const g = this.real(`/sys/kernel/mm/hugepages/hugepages-${sizeKb}kB`);
    if (existsSync(g)) {
      writeFileSync(join(g, 'nr_hugepages'), `${sum}\n`);
      writeFileSync(join(g, 'free_hugepages'), `${sum}\n`);
    }
  }

  private setCpuOnline(cpu: number, v: string): void {
    const p = this.real(`/sys/devices/system/cpu/cpu${cpu}/online`);
    if (!existsSync(p)) throw errno(cpu === 0 ? 'EACCES' : 'ENOENT', `cpu${cpu}/online: cannot be changed`);
    writeFileSync(p, `${v}\n`);
    const online = new Set(parseCpuList(this.readAttr('/sys/devices/system/cpu/online') ?? ''));
    if (v === '0') online.delete(cpu);
    else online.add(cpu);
    writeFileSync(this.real('/sys/devices/system/cpu/online'), `${formatCpuList(online)}\n`);
    const offline = parseCpuList(this.readAttr('/sys/devices/system/cpu/present') ?? '').filter(
      (c) => !online.has(c),
    );
    writeFileSync(this.real('/sys/devices/system/cpu/offline'), `${formatCpuList(offline)}\n`);
  }

  readAdmin(pf: string): VfAdmin[] {
    try {
      return JSON.parse(readFileSync(this.real(`/run/fake/vf/${pf}.json`), 'utf8')) as VfAdmin[];
    } catch {
      return [];
    }
  }

  private writeAdmin(pf: string, admin: VfAdmin[]): void {
    mkdirSync(this.real('/run/fake/vf'), { recursive: true });
    writeFileSync(this.real(`/run/fake/vf/${pf}.json`), `${JSON.stringify(admin, null, 1)}\n`);
  }

  // ---- commands (devlink, ip, ethtool, update-grub) ----
  readonly runner: CommandRunner = {
    run: async (cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> => {
      const line = [cmd, ...args].join(' ');
      const readOnly = args.includes('show') || (cmd === 'ethtool' && args[0] === '-k');
      try {
        if (!readOnly) {
          this.checkFault(line);
          this.log.push(line);
        }
        const stdout = this.command(cmd, args);
        return { code: 0, stdout, stderr: '' };
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        if (opts.allowFailure) return { code: 1, stdout: '', stderr: msg };
        throw new TetherError('TETHER_E_COMMAND', `${line} exited 1: ${msg}`, {
          cmd,
          errno: (e as { code?: string }).code,
        });
      }
    },
  };

  private pfByName(name: string): string {
    const dev = this.real(`/sys/class/net/${name}/device`);
    const bdf = linkBase(dev);
    if (!bdf) throw errno('ENODEV', `Cannot find device "${name}"`);
    return bdf;
  }

  private command(cmd: string, args: readonly string[]): string {
    const a = [...args];
    if (cmd === 'devlink') {
      const json = a[0] === '-j';
      if (json) a.shift();
      if (a[0] === 'dev' && a[1] === 'eswitch' && a[2] === 'show') {
        const bdf = (a[3] ?? '').replace(/^pci\//, '');
        const drv = this.pfDriver(bdf);
        if (drv !== 'ice' && drv !== 'mlx5_core')
          throw errno('EOPNOTSUPP', 'Error: Operation not supported.');
        const mode = this.eswitchMode(bdf);
        return json ? JSON.stringify({ dev: { [`pci/${bdf}`]: { mode } } }) : `pci/${bdf}: mode ${mode}\n`;
      }
      if (a[0] === 'dev' && a[1] === 'eswitch' && a[2] === 'set' && a[4] === 'mode') {
        const bdf = (a[3] ?? '').replace(/^pci\//, '');
        const mode = a[5];
        if (mode !== 'legacy' && mode !== 'switchdev') throw errno('EINVAL', 'Error: invalid mode');
        return this.setEswitch(bdf, mode);
      }
    }
    if (cmd === 'ip') {
      if (a[0] === '-j' && a.includes('show')) {
        const name = a[a.length - 1] ?? '';
        const pf = this.pfByName(name);
        const vfinfo_list = this.readAdmin(pf).map((v) => ({
          vf: v.vf,
          link_type: 'ether',
          vlan_list: v.vlan || v.qos ? [{ vlan: v.vlan, qos: v.qos }] : undefined,
          rate: { max_tx: v.maxTxRate, min_tx: v.minTxRate },
          spoofchk: v.spoofchk,
          link_state: v.linkState,
          trust: v.trust,
        }));
        return JSON.stringify([{ ifname: name, vfinfo_list }]);
      }
      if (a[0] === 'link' && a[1] === 'set' && a[3] === 'vf') return this.setVf(a[2] ?? '', a.slice(4));
    }
    if (cmd === 'ethtool') {
      if (a[0] === '-k') {
        const on = this.readAttr(`/run/fake/ethtool/${a[1]}/hw-tc-offload`) === 'on';
        this.pfByName(a[1] ?? '');
        return `Features for ${a[1]}:\nhw-tc-offload: ${on ? 'on' : 'off'}\n`;
      }
      if (a[0] === '-K' && a[2] === 'hw-tc-offload') {
        const bdf = this.pfByName(a[1] ?? '');
        const drv = this.pfDriver(bdf);
        if (drv !== 'ice' && drv !== 'mlx5_core' && drv !== 'i40e')
          throw errno('EOPNOTSUPP', 'Cannot change hw-tc-offload');
        mkdirSync(this.real(`/run/fake/ethtool/${a[1]}`), { recursive: true });
        writeFileSync(this.real(`/run/fake/ethtool/${a[1]}/hw-tc-offload`), `${a[3]}\n`);
        return '';
      }
    }
    if (cmd === 'update-grub' || cmd === 'udevadm') return '';
    throw errno('ENOENT', `fake kernel: unsupported command: ${cmd} ${args.join(' ')}`);
  }

  private setEswitch(bdf: string, mode: 'legacy' | 'switchdev'): string {
    const drv = this.pfDriver(bdf);
    const cur = this.eswitchMode(bdf);
    if (drv !== 'ice' && drv !== 'mlx5_core')
      throw errno('EOPNOTSUPP', 'Error: devlink: Operation not supported.');
    if (cur === mode) return '';
    const vfs = this.vfsOf(bdf);
    if (drv === 'ice' && vfs.length > 0)
      throw errno(
        'EOPNOTSUPP',
        'Error: ice: Changing eswitch mode is allowed only if there is no VFs created.',
      );
    if (drv === 'mlx5_core') {
      const bound = vfs.filter((v) => existsSync(this.real(`/sys/bus/pci/devices/${v.pci}/driver`)));
      if (bound.length > 0)
        throw errno(
          'EBUSY',
          `Error: mlx5_core: VFs ${bound.map((v) => v.index).join(',')} are bound; unbind them first.`,
        );
    }
    mkdirSync(this.real('/run/fake/devlink'), { recursive: true });
    writeFileSync(this.real(`/run/fake/devlink/${bdf}`), `${mode}\n`);
    if (mode === 'switchdev') this.createRepresentors(bdf);
    else this.removeRepresentors(bdf);
    return '';
  }

  private setVf(pfName: string, rest: string[]): string {
    const pf = this.pfByName(pfName);
    const n = Number(rest[0]);
    const admin = this.readAdmin(pf);
    const cur = admin.find((x) => x.vf === n);
    if (!cur) throw errno('EINVAL', 'RTNETLINK answers: Invalid argument');
    for (let i = 1; i < rest.length; i += 2) {
      const k = rest[i];
      const v = rest[i + 1] ?? '';
      if (k === 'vlan') cur.vlan = Number(v);
      else if (k === 'qos') cur.qos = Number(v);
      else if (k === 'spoofchk') cur.spoofchk = v === 'on';
      else if (k === 'trust') cur.trust = v === 'on';
      else if (k === 'state') cur.linkState = v as VfAdmin['linkState'];
      else if (k === 'min_tx_rate') cur.minTxRate = Number(v);
      else if (k === 'max_tx_rate') cur.maxTxRate = Number(v);
      else throw errno('EINVAL', `Error: argument "${k}" is wrong`);
    }
    if (cur.qos && !cur.vlan) throw errno('EINVAL', 'RTNETLINK answers: Invalid argument (qos without vlan)');
    if (cur.maxTxRate && cur.minTxRate > cur.maxTxRate)
      throw errno('EINVAL', 'RTNETLINK answers: Invalid argument');
    this.writeAdmin(pf, admin);
    return '';
  }

  // ---- reboot ----
  /**
   * Emulates a reboot: /proc/cmdline becomes the fixture's base command line plus what the
   * Tether boot config (`/etc/default/grub.d/60-tether.cfg`) asks for; VFs, eswitch modes,
   * offload flags and runtime hugepages reset; 1 GiB pages come from `hugepages=` arguments;
   * IOMMU groups exist when `intel_iommu=on` / `amd_iommu=on` is set.
   */
  reboot(): void {
    this.log.push('reboot');
    const baseLine = this.readAttr('/run/fake/base-cmdline') ?? '';
    const cfg = this.readAttr('/etc/default/grub.d/60-tether.cfg') ?? '';
    const tether = /^TETHER_CMDLINE="([^"]*)"/m.exec(cfg)?.[1] ?? '';
    const cmdline = [baseLine, tether].filter(Boolean).join(' ');
    writeFileSync(this.real('/proc/cmdline'), `${cmdline}\n`);
    writeFileSync(
      this.real('/proc/sys/kernel/random/boot_id'),
      `${nextBootId(this.readAttr('/proc/sys/kernel/random/boot_id') ?? '')}\n`,
    );
    for (const bdf of readdirSafe(this.real('/sys/bus/pci/devices'))) {
      if (existsSync(this.real(`/sys/bus/pci/devices/${bdf}/sriov_numvfs`))) {
        this.destroyVfs(bdf);
        writeFileSync(this.real(`/sys/bus/pci/devices/${bdf}/sriov_numvfs`), '0\n');
        writeFileSync(this.real(`/sys/bus/pci/devices/${bdf}/sriov_drivers_autoprobe`), '1\n');
      }
    }
    rmSync(this.real('/run/fake/devlink'), { recursive: true, force: true });
    rmSync(this.real('/run/fake/ethtool'), { recursive: true, force: true });
    rmSync(this.real('/run/fake/vf'), { recursive: true, force: true });
    const tokens = cmdline.split(/\s+/);
    const iommu = tokens.includes('intel_iommu=on') || tokens.includes('amd_iommu=on');
    const groups = this.real('/sys/kernel/iommu_groups');
    rmSync(groups, { recursive: true, force: true });
    mkdirSync(groups, { recursive: true });
    if (iommu) {
      let g = 0;
      for (const bdf of readdirSafe(this.real('/sys/bus/pci/devices'))) {
        const dev = realPath(this.real(`/sys/bus/pci/devices/${bdf}`));
        mkdirSync(join(groups, `${g}`, 'devices'), { recursive: true });
        symlinkSync(relative(join(groups, `${g}`, 'devices'), dev), join(groups, `${g}`, 'devices', bdf));
        rmSync(join(dev, 'iommu_group'), { force: true });
        symlinkSync(relative(dev, join(groups, `${g}`)), join(dev, 'iommu_group'));
        g++;
      }
    }
    // Hugepages: 2 MiB pools reset; 1 GiB pools from hugepagesz=1G hugepages=N or N0:c0,N1:c1.
    const nodes = readdirSafe(this.real('/sys/devices/system/node')).filter((n) => /^node\d+$/.test(n));
    const boot1g = new Map<number, number>();
    let size = '';
    for (const t of tokens) {
      if (t.startsWith('hugepagesz=')) size = t.slice(11);
      else if (t.startsWith('hugepages=') && (size === '1G' || size === '1048576K')) {
        const val = t.slice(10);
        if (val.includes(':'))
          for (const part of val.split(',')) {
            const [nn, c] = part.split(':');
            boot1g.set(Number(nn), Number(c));
          }
        else for (let i = 0; i < nodes.length; i++) boot1g.set(i, Math.floor(Number(val) / nodes.length));
      }
    }
    for (const n of nodes) {
      const id = Number(n.slice(4));
      for (const h of readdirSafe(this.real(`/sys/devices/system/node/${n}/hugepages`))) {
        const v = h === 'hugepages-1048576kB' ? (boot1g.get(id) ?? 0) : 0;
        writeFileSync(this.real(`/sys/devices/system/node/${n}/hugepages/${h}/nr_hugepages`), `${v}\n`);
        writeFileSync(this.real(`/sys/devices/system/node/${n}/hugepages/${h}/free_hugepages`), `${v}\n`);
      }
    }
    this.syncGlobalHugepages(2048);
    this.syncGlobalHugepages(1048576);
    // All CPUs come back online.
    const present = this.readAttr('/sys/devices/system/cpu/present') ?? '';
    writeFileSync(this.real('/sys/devices/system/cpu/online'), `${present}\n`);
    writeFileSync(this.real('/sys/devices/system/cpu/offline'), '\n');
    for (const c of parseCpuList(present)) {
      const p = this.real(`/sys/devices/system/cpu/cpu${c}/online`);
      if (existsSync(p)) writeFileSync(p, '1\n');
    }
  }
}

export function defaultAdmin(vf: number): VfAdmin {
  return { vf, vlan: 0, qos: 0, spoofchk: true, trust: false, linkState: 'auto', minTxRate: 0, maxTxRate: 0 };
}

export { vfBdf };

export function errno(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

function readdirSafe(p: string): string[] {
  try {
    return readdirSync(p).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  } catch {
    return [];
  }
}

function linkBase(p: string): string | undefined {
  try {
    if (!lstatSync(p).isSymbolicLink()) return undefined;
    return basename(realPath(p));
  } catch {
    return undefined;
  }
}

function realPath(p: string): string {
  return posix.normalize(realpathSync(p));
}

/** Deterministic next boot id (tests compare trees across runs). */
function nextBootId(prev: string): string {
  const h = createHash('sha256').update(prev).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** Used by tests to read a fake attribute without going through the port. */
export function readFixtureAttr(root: string, p: string): string | undefined {
  return attr(existsSync(join(root, p)) ? readFileSync(join(root, p), 'utf8') : undefined);
}
