// The session contract against the real controller SessionHub over the in-memory store,
// with a Sync handler shaped like src/controller/server.ts's (hello first, then the hub).

import { X509Certificate } from 'node:crypto';
import type { Hello__Output } from '../../../src/api/gen/tether/v1/Hello.js';
import type { NodeMessage__Output } from '../../../src/api/gen/tether/v1/NodeMessage.js';
import type { TetherObject } from '../../../src/api/resource.js';
import { toGrpcError } from '../../../src/api/status.js';
import { type Session, type SessionCall, SessionHub } from '../../../src/controller/hub.js';
import { MemoryStore } from '../../../src/controller/store/memory.js';
import { TetherError } from '../../../src/lib/errors.js';
import { silentLogger } from '../../../src/lib/log.js';
import { identityOf } from '../../../src/lib/pki.js';
import { type MemoryServerCall, MemoryUpstream } from '../../../src/node/agent/upstream.js';
import { syncControllerStore } from '../../support/sync-store.js';
import { type ContractUpstream, sessionContract } from './session-contract.js';

sessionContract('the controller SessionHub', async (env) => {
  const store = new MemoryStore();
  store.txn([
    {
      op: 'put',
      object: { apiVersion: 'tether.dev/v1', kind: 'Site', metadata: { name: env.site }, spec: {} },
    },
  ]);
  // The hub's own heartbeat timer is not started: it echoes every heartbeat it gets, which is
  // what an agent's liveness check runs on.
  const hub = new SessionHub(syncControllerStore(store), silentLogger(), { heartbeatMs: 1000 });
  const hellos: Hello__Output[] = [];
  const acked = new Map<string, number>();
  const handler = (call: MemoryServerCall) => {
    let session: Session | undefined;
    // Node and site come from the peer certificate, as in server.ts.
    const raw = call.getAuthContext().sslPeerCertificate?.raw;
    const who = raw ? identityOf(new X509Certificate(raw)) : undefined;
    if (who?.role !== 'node') {
      call.emit('error', toGrpcError(new TetherError('TETHER_E_UNAUTHENTICATED', 'no node certificate')));
      return;
    }
    call.on('data', (msg: NodeMessage__Output) => {
      if (!session) {
        if (!msg.hello || msg.hello.node_name !== who.name) {
          call.emit(
            'error',
            toGrpcError(new TetherError('TETHER_E_PERMISSION', 'first message must be hello')),
          );
          return;
        }
        hellos.push(msg.hello);
        session = hub.open(
          call as unknown as SessionCall,
          who.name,
          who.site,
          msg.hello.held_revision,
          msg.hello.boot_id,
        );
        return;
      }
      hub.onMessage(session, msg);
      const a = hub.info(session.node)?.acked;
      if (a !== undefined) acked.set(session.node, Math.max(acked.get(session.node) ?? 0, a));
    });
    const end = () => {
      if (session) hub.detach(session);
      session = undefined;
    };
    call.on('cancelled', end);
    call.on('close', end);
  };
  const upstream = new MemoryUpstream(handler, 'hub', env.clientCertDer(env.nodes[0]!));
  const c: ContractUpstream = {
    upstream,
    applyResources: (objs: TetherObject[]) => {
      store.txn(objs.map((object) => ({ op: 'put' as const, object })));
    },
    deleteResource: (kind, name) => {
      store.txn([{ op: 'delete', kind, name }]);
    },
    revision: () => store.revision(),
    ackedBy: (node) => acked.get(node) ?? 0,
    hellos: () => hellos,
    close: () => hub.stop(),
  };
  return c;
});
