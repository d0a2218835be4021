import type * as grpc from '@grpc/grpc-js';
import type { ControllerMessage } from '../../api/gen/tether/v1/ControllerMessage.js';
import { tetherProto } from '../../api/grpc.js';

/**
 * A ControllerMessage serialized once: a snapshot goes to every agent that needs it as the
 * same bytes, instead of each agent's stream encoding ~2 MB of protobuf again (for a site of
 * 20, 40 MB of short-lived buffers per burst that the allocator keeps resident afterwards;
 * BENCHMARKS.md, proxy-rss). Like the controller's (src/controller/server.ts), and like what
 * the in-memory transport passes through (`bytes`, src/node/agent/upstream.ts).
 */
export class PreEncoded {
  constructor(readonly bytes: Buffer) {}
}

/** The bytes of a pre-encoded message, or undefined for a plain one. */
export function encodedBytes(m: ControllerMessage): Buffer | undefined {
  const v: unknown = m;
  return v instanceof PreEncoded ? v.bytes : undefined;
}

/** NodeSession with a Sync response serializer that passes PreEncoded through, and the encoder. */
export function encodedSessionService(): {
  service: grpc.ServiceDefinition;
  encode: (m: ControllerMessage) => ControllerMessage;
} {
  const base = tetherProto().tether.v1.NodeSession.service;
  const serialize = base.Sync.responseSerialize as (v: ControllerMessage) => Buffer;
  return {
    service: {
      ...base,
      Sync: {
        ...base.Sync,
        responseSerialize: (v: unknown) =>
          v instanceof PreEncoded ? v.bytes : serialize(v as ControllerMessage),
      },
    },
    // Written where a ControllerMessage goes; only ever read by the serializer above (or the
    // in-memory transport, which takes `bytes` as they are).
    encode: (m) => new PreEncoded(serialize(m)) as unknown as ControllerMessage,
  };
}
