// The agent's session contract (session-contract.ts) against the site proxy's core: the
// same hello/snapshot/delta/ack/heartbeat/resume semantics as the controller's hub. The
// source of truth is the proxy's upstream side (applyDelta as the WAN session would call
// it); the agent's certificate, which TLS hands the real server (covered over real TLS in
// test/integration/proxy/), is taken from the test identities here.
import { X509Certificate } from 'node:crypto';
import { rmSync } from 'node:fs';
import type { Hello__Output } from '../../../src/api/gen/tether/v1/Hello.js';
import type { NodeMessage__Output } from '../../../src/api/gen/tether/v1/NodeMessage.js';
import type { TetherObject } from '../../../src/api/resource.js';
import { toGrpcError } from '../../../src/api/status.js';
import { asTetherError, TetherError } from '../../../src/lib/errors.js';
import { silentLogger } from '../../../src/lib/log.js';
import { serialOf } from '../../../src/lib/pki.js';
import { type MemoryServerCall, MemoryUpstream } from '../../../src/node/agent/upstream.js';
import { type AgentSession, ProxyCore } from '../../../src/node/proxy/core.js';
import { type ContractUpstream, sessionContract } from './session-contract.js';
import { tempDir } from './support.js';

sessionContract('the site proxy', async (env) => {
  const t = tempDir('tether-contract-proxy-');
  const core = new ProxyCore({
    dir: t.dir,
    node: env.nodes[0]!,
    site: env.site,
    log: silentLogger(),
    now: () => env.clock.now(),
  });
  let rev = 0;
  const roster: TetherObject[] = env.nodes.map((n) => ({
    apiVersion: 'tether.dev/v1',
    kind: 'Node',
    metadata: { name: n },
    spec: { site: env.site },
    status: {
      phase: 'Approved',
      vtep: '192.0.2.1',
      certSerials: [serialOf(new X509Certificate(env.identity(n).credentials.certPem))],
    },
  }));
  core.applySnapshot(++rev, [
    { apiVersion: 'tether.dev/v1', kind: 'Site', metadata: { name: env.site }, spec: {} },
    ...roster,
  ]);
  const hellos: Hello__Output[] = [];
  const acked = new Map<string, number>();
  const handler = (call: MemoryServerCall) => {
    let session: AgentSession | undefined;
    call.on('data', (msg: NodeMessage__Output) => {
      try {
        if (!session) {
          if (!msg.hello) throw new TetherError('TETHER_E_INVALID', 'first message must be hello');
          hellos.push(msg.hello);
          const id = env.identity(msg.hello.node_name);
          const certPem = id.credentials.certPem;
          session = core.open(
            { write: (m) => call.write(m), end: () => call.end() },
            { node: id.name, site: id.site, serial: serialOf(new X509Certificate(certPem)), certPem },
            msg.hello,
          );
          return;
        }
        core.message(session, msg);
        const a = core.agentInfo(session.peer.node)?.acked;
        if (a !== undefined) acked.set(session.peer.node, Math.max(acked.get(session.peer.node) ?? 0, a));
      } catch (e) {
        call.emit('error', toGrpcError(asTetherError(e)));
      }
    });
    const end = () => {
      if (session) core.detach(session);
      session = undefined;
    };
    call.on('cancelled', end);
    call.on('close', end);
  };
  const c: ContractUpstream = {
    upstream: new MemoryUpstream(handler, 'proxy'),
    applyResources: (objs) => core.applyDelta(++rev, objs, []),
    deleteResource: (kind, name) => core.applyDelta(++rev, [], [{ kind, name }]),
    revision: () => core.revision,
    ackedBy: (node) => acked.get(node) ?? 0,
    hellos: () => hellos,
    held: (kind, name) => core.cache.get(kind, name),
    close: () => {
      core.stop();
      rmSync(t.dir, { recursive: true, force: true });
    },
  };
  return c;
});
