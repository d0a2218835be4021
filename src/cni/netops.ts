/**
 * The kernel work of the plugin, through the CommandRunner port, in as few processes as
 * possible: one `ip -batch` in the node's namespace (veth pair created with its container end
 * directly inside the target namespace, so CNI_IFNAME never clashes with a node interface),
 * one `nsenter --net=PATH ip -batch` inside the container namespace. `ip link … netns` takes
 * any namespace path (`/var/run/netns/NAME`, `/proc/PID/ns/net`); `ip -n` only takes names,
 * so configuration inside the namespace goes through nsenter.
 */
import type { CommandRunner } from '../lib/exec.js';
import { CNI_CODES, CniError } from './spec.js';

export interface VethSpec {
  hostIfname: string;
  hostMac: string;
  ifname: string;
  mac: string;
  mtu: number;
  /** Path of the container network namespace. */
  netns: string;
  /** `ip/prefix` for the container interface. */
  address: string;
  gateway: string;
}

function kernelError(what: string, stderr: string): CniError {
  return new CniError(CNI_CODES.KERNEL_FAILED, `${what}: ${stderr.trim() || 'failed'}`);
}

function isMissingDevice(stderr: string): boolean {
  return /Cannot find device|does not exist|No such device/i.test(stderr);
}

/** Creates and configures the veth pair. Replaces a leftover host end from an earlier try. */
export async function createVeth(runner: CommandRunner, s: VethSpec): Promise<void> {
  const hostBatch =
    `link add ${s.hostIfname} mtu ${s.mtu} address ${s.hostMac} type veth ` +
    `peer name ${s.ifname} address ${s.mac} mtu ${s.mtu} netns ${s.netns}\n` +
    `link set ${s.hostIfname} up\n`;
  let res = await runner.run('ip', ['-batch', '-'], { input: hostBatch, allowFailure: true });
  if (res.code !== 0 && /File exists/i.test(res.stderr)) {
    // A previous ADD of this attachment got this far: start over from a clean pair.
    await runner.run('ip', ['link', 'del', s.hostIfname], { allowFailure: true });
    res = await runner.run('ip', ['-batch', '-'], { input: hostBatch, allowFailure: true });
  }
  if (res.code !== 0)
    throw kernelError(`cannot create veth ${s.hostIfname} <-> ${s.netns}:${s.ifname}`, res.stderr);

  const nsBatch =
    `link set ${s.ifname} up\n` +
    `addr replace ${s.address} dev ${s.ifname}\n` +
    `route replace default via ${s.gateway} dev ${s.ifname}\n`;
  const inner = await runner.run('nsenter', [`--net=${s.netns}`, 'ip', '-batch', '-'], {
    input: nsBatch,
    allowFailure: true,
  });
  if (inner.code !== 0) {
    await deleteHostVeth(runner, s.hostIfname).catch(() => undefined);
    throw kernelError(`cannot configure ${s.ifname} in ${s.netns}`, inner.stderr);
  }
}

/**
 * Deletes the host end (which takes the container end with it), in the node's namespace or
 * in `netns` (a path) when the vRouter moved it there. False when it was already gone.
 */
export async function deleteHostVeth(
  runner: CommandRunner,
  hostIfname: string,
  netns?: string,
): Promise<boolean> {
  const res = netns
    ? await runner.run('nsenter', [`--net=${netns}`, 'ip', 'link', 'del', hostIfname], { allowFailure: true })
    : await runner.run('ip', ['link', 'del', hostIfname], { allowFailure: true });
  if (res.code === 0) return true;
  if (isMissingDevice(res.stderr) || (netns && /No such file|cannot open/i.test(res.stderr))) return false;
  throw kernelError(`cannot delete ${hostIfname}`, res.stderr);
}

export interface ContainerIfState {
  mac: string;
  mtu: number;
  up: boolean;
  /** `ip/prefix` of every IPv4 address. */
  addresses: string[];
  /** Gateway of the default route, when one goes out through this interface. */
  defaultGateway?: string;
}

interface AddrJson {
  ifname?: string;
  address?: string;
  mtu?: number;
  flags?: string[];
  addr_info?: { family?: string; local?: string; prefixlen?: number }[];
}
interface RouteJson {
  dst?: string;
  gateway?: string;
  dev?: string;
}

/** Reads the container interface back; `undefined` when it does not exist. */
export async function inspectContainerIf(
  runner: CommandRunner,
  netns: string,
  ifname: string,
): Promise<ContainerIfState | undefined> {
  const res = await runner.run('nsenter', [`--net=${netns}`, 'ip', '-j', '-batch', '-'], {
    input: `addr show dev ${ifname}\nroute show default\n`,
    allowFailure: true,
  });
  if (res.code !== 0) {
    if (isMissingDevice(res.stderr)) return undefined;
    throw kernelError(`cannot read ${ifname} in ${netns}`, res.stderr);
  }
  const lines = res.stdout.split('\n').filter((l) => l.trim());
  const addrs = JSON.parse(lines[0] ?? '[]') as AddrJson[];
  const routes = JSON.parse(lines[1] ?? '[]') as RouteJson[];
  const link = addrs.find((a) => a.ifname === ifname);
  if (!link) return undefined;
  const state: ContainerIfState = {
    mac: (link.address ?? '').toLowerCase(),
    mtu: link.mtu ?? 0,
    up: (link.flags ?? []).includes('UP'),
    addresses: (link.addr_info ?? [])
      .filter((a) => a.family === 'inet' && a.local)
      .map((a) => `${a.local}/${a.prefixlen ?? 32}`),
  };
  const def = routes.find((r) => r.dst === 'default' && r.dev === ifname && r.gateway);
  if (def?.gateway) state.defaultGateway = def.gateway;
  return state;
}

export interface HostEndState {
  up: boolean;
  /** The bridge it is a port of, if any. */
  master?: string;
}

/**
 * Reads the host end of the veth in the namespace it lives in (`netns`, a path; absent: the
 * node's namespace, where the plugin runs). `undefined` when it is not there.
 */
export async function inspectHostEnd(
  runner: CommandRunner,
  name: string,
  netns?: string,
): Promise<HostEndState | undefined> {
  const ipArgs = ['-j', 'link', 'show', 'dev', name];
  const res = netns
    ? await runner.run('nsenter', [`--net=${netns}`, 'ip', ...ipArgs], { allowFailure: true })
    : await runner.run('ip', ipArgs, { allowFailure: true });
  if (res.code !== 0) {
    if (isMissingDevice(res.stderr) || (netns && /No such file|cannot open/i.test(res.stderr)))
      return undefined;
    throw kernelError(`cannot read ${name}`, res.stderr);
  }
  const link = (JSON.parse(res.stdout || '[]') as { flags?: string[]; master?: string }[])[0];
  if (!link) return undefined;
  const st: HostEndState = { up: (link.flags ?? []).includes('UP') };
  if (link.master) st.master = link.master;
  return st;
}
