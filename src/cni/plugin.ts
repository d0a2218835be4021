/**
 * One invocation of tether-cni: input (stdin + environment) → output (stdout + exit status).
 * Every side effect goes through the ports in PluginDeps, so unit tests drive it with fakes
 * and main.ts wires the real ones.
 */

import { isTetherError } from '../lib/errors.js';
import type { CommandRunner } from '../lib/exec.js';
import type { AddRequest, AgentClient, AgentEndpoint } from './agent.js';
import { createVeth, deleteHostVeth, inspectContainerIf, inspectHostEnd } from './netops.js';
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
  const addReq: AddRequest = { network: req.config.network, ...key, netns, hostIfname, args: req.args };
  if (req.config.mtu) addReq.mtu = req.config.mtu;
  if (req.portMappings) addReq.portMappings = req.portMappings;
  if (req.staticIp) {
    addReq.ip = req.staticIp.ip;
    if (req.staticIp.prefixLength !== undefined) addReq.prefixLength = req.staticIp.prefixLength;
  }
  const ep = await agent.add(addReq);
  const result = (e: AgentEndpoint) =>
    buildResult({
      cniVersion: req.config.cniVersion,
      containerId: req.containerId,
      ifname: req.ifname,
      netns,
      endpoint: e,
      ...(req.config.prevResult ? { prevResult: req.config.prevResult } : {}),
    });
  if (ep.state === 'attached') {
    // A runtime retrying ADD: when the attachment works, answer the same result and touch
    // nothing (the workload may be running on it).
    // The MAC is not compared: a chained plugin may have changed it, and it is the kernel's.
    const problem = await attachmentProblem(deps, ep, req.ifname, netns, {
      addresses: [ep.address],
      gateway: ep.gateway,
    });
    if (!problem) return result(ep);
    // Broken anyway: rebuild it from scratch below.
    await deleteHostVeth(deps.runner, ep.hostIfname, ep.hostNetns).catch(() => false);
  }
  const rollback = async (): Promise<void> => {
    // Leave nothing half-done: the interface goes, the address goes back (best effort; DEL retries).
    await deleteHostVeth(deps.runner, ep.hostIfname).catch(() => false);
    await agent.del({ ...key, network: req.config.network }).catch(() => undefined);
  };
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
    await rollback();
    throw e;
  }
  let attached: AgentEndpoint;
  try {
    // The agent answers once the vRouter has wired the interface and a packet flows.
    attached = await agent.attached(key);
  } catch (e) {
    await rollback();
    throw e;
  }
  return result(attached);
}

/**
 * DEL: the host veth in the node's namespace goes first when it is still there (never wired),
 * then the agent deletes it wherever the vRouter put it, releases the address and answers
 * once the interface no longer exists. Missing interface or unknown attachment are success.
 * An unreachable agent is code 11: the runtime retries DEL, and the address is not leaked
 * silently (and the node's endpoint sweep releases it once the namespace is gone).
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

/**
 * What is wrong with an attachment in the kernel, or `undefined` when it matches: the
 * container interface (up, MAC, addresses, MTU, default route) and the host end, looked up
 * in the namespace the agent says it lives in.
 */
async function attachmentProblem(
  deps: PluginDeps,
  ep: AgentEndpoint,
  ifname: string,
  netns: string,
  exp: CheckExpectation,
): Promise<string | undefined> {
  if (!exp.addresses.includes(ep.address))
    return `result lists ${exp.addresses.join(', ') || 'no address'}, node agent holds ${ep.address}`;
  const st = await inspectContainerIf(deps.runner, netns, ifname);
  if (!st) return `interface ${ifname} does not exist in ${netns}`;
  if (!st.up) return `interface ${ifname} in ${netns} is down`;
  if (exp.mac && st.mac !== exp.mac) return `interface ${ifname} has MAC ${st.mac}, expected ${exp.mac}`;
  for (const a of exp.addresses)
    if (!st.addresses.includes(a)) return `interface ${ifname} lacks address ${a}`;
  if (st.mtu !== ep.mtu) return `interface ${ifname} has MTU ${st.mtu}, expected ${ep.mtu}`;
  if (exp.gateway && st.defaultGateway !== exp.gateway)
    return `default route via ${st.defaultGateway ?? '(none)'}, expected via ${exp.gateway}`;
  const where = ep.hostNetns ?? 'the node namespace';
  const host = await inspectHostEnd(deps.runner, ep.hostIfname, ep.hostNetns);
  if (!host) return `host end ${ep.hostIfname} of the veth pair does not exist in ${where}`;
  if (!host.up) return `host end ${ep.hostIfname} in ${where} is down`;
  if (ep.hostNetns && !host.master) return `host end ${ep.hostIfname} in ${where} is not a bridge port`;
  return undefined;
}

async function check(req: AttachmentRequest, deps: PluginDeps): Promise<void> {
  const netns = requireNetns(req, deps);
  // The agent re-reads the kernel first: a MAC a chained plugin set is learned here.
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
  const problem = await attachmentProblem(deps, ep, req.ifname, netns, exp);
  if (problem) throw checkFailed(problem);
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
  // The agent removed what the vRouter wired; an end never wired is still in this namespace.
  for (const ep of released) await deleteHostVeth(deps.runner, ep.hostIfname).catch(() => false);
}
