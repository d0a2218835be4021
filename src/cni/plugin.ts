/**
 * One invocation of tether-cni: input (stdin + environment) → output (stdout + exit status).
 * Every side effect goes through the ports in PluginDeps, so unit tests drive it with fakes
 * and main.ts wires the real ones.
 */

import { isTetherError } from '../lib/errors.js';
import type { CommandRunner } from '../lib/exec.js';
import type { AgentClient, AgentEndpoint } from './agent.js';
import { createVeth, deleteHostVeth, hostLinkExists, inspectContainerIf } from './netops.js';
import {
  type AttachmentRequest,
  type CniEnv,
  type NetworkRequest,
  parseRequest,
  sniffVersion,
} from './request.js';
import {
  buildResult,
  type CheckExpectation,
  expectationFromResult,
  hostIfnameFor,
  hostMacFor,
} from './result.js';
import { CNI_CODES, CniError, LATEST_VERSION, SUPPORTED_VERSIONS } from './spec.js';

export interface PluginDeps {
  runner: CommandRunner;
  agentFor(socketPath: string): AgentClient;
  pathExists(path: string): boolean;
}

export interface PluginOutput {
  exitCode: number;
  stdout: string;
}

/** Maps anything thrown to a CniError (TetherError codes → the spec's codes). */
export function toCniError(e: unknown): CniError {
  if (e instanceof CniError) return e;
  if (isTetherError(e)) {
    switch (e.code) {
      case 'TETHER_E_UNAVAILABLE':
      case 'TETHER_E_TIMEOUT':
        return new CniError(CNI_CODES.TRY_AGAIN_LATER, e.message, e.code);
      case 'TETHER_E_COMMAND':
      case 'TETHER_E_KERNEL':
        return new CniError(CNI_CODES.KERNEL_FAILED, e.message, e.code);
      case 'TETHER_E_INVALID':
        return new CniError(CNI_CODES.INVALID_CONFIG, e.message, e.code);
      case 'TETHER_E_PARSE':
        return new CniError(CNI_CODES.DECODE_FAILED, e.message, e.code);
      default:
        return new CniError(CNI_CODES.INTERNAL, e.message, e.code);
    }
  }
  return new CniError(CNI_CODES.INTERNAL, e instanceof Error ? e.message : String(e));
}

export async function runPlugin(stdin: string, env: CniEnv, deps: PluginDeps): Promise<PluginOutput> {
  try {
    const req = parseRequest(stdin, env);
    switch (req.command) {
      case 'VERSION':
        return ok({
          cniVersion: req.cniVersion ?? LATEST_VERSION,
          supportedVersions: [...SUPPORTED_VERSIONS],
        });
      case 'ADD':
        return ok(await add(req, deps));
      case 'DEL':
        await del(req, deps);
        return { exitCode: 0, stdout: '' };
      case 'CHECK':
        await check(req, deps);
        return { exitCode: 0, stdout: '' };
      case 'STATUS':
        await status(req, deps);
        return { exitCode: 0, stdout: '' };
      case 'GC':
        await gc(req, deps);
        return { exitCode: 0, stdout: '' };
    }
  } catch (e) {
    const err = toCniError(e);
    return {
      exitCode: 1,
      stdout: `${JSON.stringify(err.toObject(sniffVersion(stdin) ?? LATEST_VERSION))}\n`,
    };
  }
}

function ok(v: unknown): PluginOutput {
  return { exitCode: 0, stdout: `${JSON.stringify(v)}\n` };
}

function requireNetns(req: AttachmentRequest, deps: PluginDeps): string {
  const netns = req.netns;
  if (!netns || !deps.pathExists(netns))
    throw new CniError(
      CNI_CODES.CONTAINER_UNKNOWN,
      `container network namespace ${netns ?? '(none)'} does not exist`,
    );
  return netns;
}

async function add(req: AttachmentRequest, deps: PluginDeps): Promise<unknown> {
  const netns = requireNetns(req, deps);
  const agent = deps.agentFor(req.config.agentSocket);
  const key = { containerId: req.containerId, ifname: req.ifname };
  const hostIfname = hostIfnameFor(req.containerId, req.ifname);
  const addReq = { network: req.config.network, ...key, netns, hostIfname, args: req.args };
  const ep = await agent.add(req.config.mtu ? { ...addReq, mtu: req.config.mtu } : addReq);
  try {
    await createVeth(deps.runner, {
      hostIfname: ep.hostIfname,
      hostMac: hostMacFor(req.containerId, req.ifname),
      ifname: req.ifname,
      mac: ep.mac,
      mtu: ep.mtu,
      netns,
      address: ep.address,
      gateway: ep.gateway,
    });
  } catch (e) {
    // Leave nothing half-done: the address goes back to the pool (best effort; DEL retries).
    await agent.del({ ...key, network: req.config.network }).catch(() => undefined);
    throw e;
  }
  const attached = await agent.attached(key);
  return buildResult({
    cniVersion: req.config.cniVersion,
    containerId: req.containerId,
    ifname: req.ifname,
    netns,
    endpoint: attached,
    ...(req.config.prevResult ? { prevResult: req.config.prevResult } : {}),
  });
}

/**
 * DEL: the host veth goes first (so the address is never reused while the old interface is
 * alive), then the agent releases the address. Missing interface or unknown attachment are
 * success. An unreachable agent is code 11: the runtime retries DEL, and the address is not
 * leaked silently.
 */
async function del(req: AttachmentRequest, deps: PluginDeps): Promise<void> {
  await deleteHostVeth(deps.runner, hostIfnameFor(req.containerId, req.ifname));
  await deps
    .agentFor(req.config.agentSocket)
    .del({ containerId: req.containerId, ifname: req.ifname, network: req.config.network });
}

function checkFailed(msg: string): CniError {
  return new CniError(CNI_CODES.CHECK_FAILED, msg);
}

async function check(req: AttachmentRequest, deps: PluginDeps): Promise<void> {
  const netns = requireNetns(req, deps);
  const ep: AgentEndpoint | undefined = await deps
    .agentFor(req.config.agentSocket)
    .check({ containerId: req.containerId, ifname: req.ifname, network: req.config.network });
  if (!ep)
    throw checkFailed(
      `node agent has no attachment ${req.containerId}/${req.ifname} on ${req.config.network}`,
    );
  const exp: CheckExpectation = req.config.prevResult
    ? expectationFromResult(req.config.prevResult, req.ifname, netns)
    : { mac: ep.mac, addresses: [ep.address], gateway: ep.gateway };
  if (!exp.addresses.includes(ep.address))
    throw checkFailed(
      `result lists ${exp.addresses.join(', ') || 'no address'}, node agent holds ${ep.address}`,
    );
  const st = await inspectContainerIf(deps.runner, netns, req.ifname);
  if (!st) throw checkFailed(`interface ${req.ifname} does not exist in ${netns}`);
  if (!st.up) throw checkFailed(`interface ${req.ifname} in ${netns} is down`);
  if (exp.mac && st.mac !== exp.mac)
    throw checkFailed(`interface ${req.ifname} has MAC ${st.mac}, expected ${exp.mac}`);
  for (const a of exp.addresses)
    if (!st.addresses.includes(a)) throw checkFailed(`interface ${req.ifname} lacks address ${a}`);
  if (st.mtu !== ep.mtu) throw checkFailed(`interface ${req.ifname} has MTU ${st.mtu}, expected ${ep.mtu}`);
  if (exp.gateway && st.defaultGateway !== exp.gateway)
    throw checkFailed(`default route via ${st.defaultGateway ?? '(none)'}, expected via ${exp.gateway}`);
  if (!(await hostLinkExists(deps.runner, ep.hostIfname)))
    throw checkFailed(`host end ${ep.hostIfname} of the veth pair does not exist`);
}

async function status(req: NetworkRequest, deps: PluginDeps): Promise<void> {
  try {
    await deps.agentFor(req.config.agentSocket).status();
  } catch (e) {
    const err = toCniError(e);
    throw new CniError(CNI_CODES.PLUGIN_NOT_AVAILABLE, err.message, err.details);
  }
}

async function gc(req: NetworkRequest, deps: PluginDeps): Promise<void> {
  const valid = (req.config.validAttachments ?? []).map((a) => ({
    containerId: a.containerID,
    ifname: a.ifname,
  }));
  const released = await deps.agentFor(req.config.agentSocket).gc(req.config.network, valid);
  for (const ep of released) await deleteHostVeth(deps.runner, ep.hostIfname).catch(() => false);
}
