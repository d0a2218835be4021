// Its own module so that readers of the apply state (`tether status`) need not load the planner.
/** Files Tether owns on the node; nothing else is written outside sysfs/procfs. */
export const OWNED = {
  /** Kernel arguments: a grub.d drop-in read by update-grub (Debian). */
  grub: '/etc/default/grub.d/60-tether.cfg',
  blacklist: '/etc/modprobe.d/60-tether-blacklist.conf',
  sysctl: '/etc/sysctl.d/60-tether.conf',
  udev: '/etc/udev/rules.d/70-tether-representors.rules',
  ptpConf: '/etc/tether/ptp/ptp4l.conf',
  ptpEnv: '/etc/tether/ptp/ptp.env',
  applied: '/var/lib/tether/profile/applied.json',
  journal: '/var/lib/tether/profile/journal.json',
} as const;
