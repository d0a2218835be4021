import type { HostFs } from '../../kernel/hw/hostfs.js';
import { TetherError } from '../../lib/errors.js';
import type { CommandRunner } from '../../lib/exec.js';
import type { BootstrapWan } from './config.js';

/**
 * The static WAN of bootstrap.yaml (`wan:`), as a plan of plain values: the commands that
 * give the port its address now, and the systemd-networkd file that gives it the same
 * address on every later boot (first boot runs once; without the file the next boot would
 * fall back to the image's DHCP on every port). The image's catch-all DHCP file is
 * 80-wan.network; ours sorts first, and networkd uses the first file that matches a link.
 */
export const WAN_NETWORK_FILE = '/etc/systemd/network/10-tether-wan.network';
export const RESOLV_CONF = '/etc/resolv.conf';

export interface WanPlan {
  ifname: string;
  /** `ip` argument lists, in order; each is idempotent (`replace`), so a resumed first
   *  boot runs them again without duplicating anything. */
  commands: string[][];
  networkFile: string;
  /** nameserver lines for /etc/resolv.conf, when the host has no resolver service. */
  resolvConf?: string;
}

export function planWan(wan: BootstrapWan, ifname: string): WanPlan {
  const commands = [
    ['link', 'set', ifname, 'up'],
    ['addr', 'replace', wan.address, 'dev', ifname],
  ];
  if (wan.gateway) commands.push(['route', 'replace', 'default', 'via', wan.gateway, 'dev', ifname]);
  const net = [
    '# Written by `tether node firstboot` from bootstrap.yaml (wan:): the static WAN address.',
    '[Match]',
    wan.mac ? `MACAddress=${wan.mac.toLowerCase()}` : `Name=${ifname}`,
    '',
    '[Network]',
    'DHCP=no',
    `Address=${wan.address}`,
    ...(wan.gateway ? [`Gateway=${wan.gateway}`] : []),
    ...(wan.dns ?? []).map((d) => `DNS=${d}`),
    '',
  ].join('\n');
  return {
    ifname,
    commands,
    networkFile: net,
    ...(wan.dns?.length
      ? {
          resolvConf: `# Written by \`tether node firstboot\` from bootstrap.yaml (wan.dns).\n${wan.dns
            .map((d) => `nameserver ${d}`)
            .join('\n')}\n`,
        }
      : {}),
  };
}

interface IpLink {
  ifname: string;
  address?: string;
  link_type?: string;
}

/** The interface the configuration names: by name as given, or the one with that MAC. */
export async function resolveWanInterface(wan: BootstrapWan, runner: CommandRunner): Promise<string> {
  if (wan.interface) return wan.interface;
  const mac = (wan.mac ?? '').toLowerCase();
  const r = await runner.run('ip', ['-j', 'link', 'show'], { timeoutMs: 10_000 });
  let links: IpLink[];
  try {
    links = JSON.parse(r.stdout) as IpLink[];
  } catch {
    throw new TetherError('TETHER_E_COMMAND', '`ip -j link show` printed no JSON');
  }
  const hit = links.find((l) => l.link_type === 'ether' && l.address?.toLowerCase() === mac);
  if (!hit)
    throw new TetherError('TETHER_E_PRECONDITION', `no Ethernet port has the MAC address ${mac}`, {
      field: 'wan.mac',
      expected: `one of ${
        links
          .filter((l) => l.link_type === 'ether')
          .map((l) => `${l.ifname} ${l.address}`)
          .join(', ') || '(no Ethernet ports)'
      }`,
    });
  return hit.ifname;
}

/**
 * Applies a WAN plan: the networkd file (persisted first: a power cut after it still boots
 * into the static address), the resolver when /etc/resolv.conf is the host's own file (a
 * symlink means systemd-resolved owns it and takes DNS= from the networkd file), then the
 * addresses and route. On a host root of `/` with networkd running, `networkctl reload`
 * hands the port to networkd with the new file, so networkd does not put DHCP back.
 */
export async function applyWan(
  plan: WanPlan,
  host: { fs: HostFs; runner: CommandRunner },
  ipRunner: CommandRunner,
): Promise<void> {
  if ((await host.fs.read(WAN_NETWORK_FILE)) !== plan.networkFile)
    await host.fs.writeConfig(WAN_NETWORK_FILE, plan.networkFile);
  if (plan.resolvConf && (await host.fs.readlink(RESOLV_CONF)) === undefined) {
    if ((await host.fs.read(RESOLV_CONF)) !== plan.resolvConf)
      await host.fs.writeConfig(RESOLV_CONF, plan.resolvConf);
  }
  for (const args of plan.commands) await ipRunner.run('ip', args, { timeoutMs: 10_000 });
  if (host.fs.root === '/' && (await host.fs.exists('/run/systemd/netif')))
    await host.runner.run('networkctl', ['reload'], { allowFailure: true, timeoutMs: 30_000 });
}
