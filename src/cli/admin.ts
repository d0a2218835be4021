import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { AdminClient } from '../api/gen/tether/v1/Admin.js';
import type { ApplyRequest } from '../api/gen/tether/v1/ApplyRequest.js';
import type { ApplyResponse__Output } from '../api/gen/tether/v1/ApplyResponse.js';
import type { CreateTokenRequest } from '../api/gen/tether/v1/CreateTokenRequest.js';
import type { CreateTokenResponse__Output } from '../api/gen/tether/v1/CreateTokenResponse.js';
import type { DeleteResponse__Output } from '../api/gen/tether/v1/DeleteResponse.js';
import type { ListResponse__Output } from '../api/gen/tether/v1/ListResponse.js';
import type { Resource__Output } from '../api/gen/tether/v1/Resource.js';
import type { WatchEvent__Output } from '../api/gen/tether/v1/WatchEvent.js';
import { tetherProto } from '../api/grpc.js';
import type { TetherObject } from '../api/resource.js';
import { fromGrpcError } from '../api/status.js';
import type { ClientConfig } from '../controller/init.js';
import { TetherError } from '../lib/errors.js';
import { parseJson, parseYaml, readInputFile } from '../lib/input.js';
import { CHANNEL_OPTIONS, controllerCredentials } from '../node/connect.js';

import { DEFAULT_CONTROLLER_DIR } from './defaults.js';

export { DEFAULT_CONTROLLER_DIR, DEFAULT_NODE_DIR } from './defaults.js';

/** --config > $TETHER_CONFIG > ~/.config/tether/admin.yaml > the local controller's. */
export function resolveClientConfigPath(flag?: string): string {
  const candidates = [
    flag,
    process.env.TETHER_CONFIG,
    join(homedir(), '.config/tether/admin.yaml'),
    join(DEFAULT_CONTROLLER_DIR, 'admin.yaml'),
  ];
  for (const c of candidates) if (c && existsSync(c)) return c;
  throw new TetherError('TETHER_E_STATE', 'no admin client config found', {
    expected:
      '--config FILE, $TETHER_CONFIG, ~/.config/tether/admin.yaml or /var/lib/tether/controller/admin.yaml (written by `tether controller init`)',
  });
}

export function loadClientConfig(path: string): ClientConfig {
  const c = parseYaml(readInputFile(path), { source: path }) as ClientConfig;
  for (const f of ['server', 'ca', 'cert', 'key'] as const) {
    if (typeof c?.[f] !== 'string')
      throw new TetherError('TETHER_E_INVALID', 'incomplete client config', {
        file: path,
        field: f,
        expected: 'a string',
      });
  }
  return c;
}

export function decodeResource(r: Resource__Output): TetherObject {
  return parseJson(r.json, { source: `controller answer (${r.kind}/${r.name})` }) as TetherObject;
}

type Callback<Res> = (err: grpc.ServiceError | null, res?: Res) => void;

/** Promise wrapper around the Admin client with a deadline on every call. */
export class Admin {
  readonly client: AdminClient;
  constructor(
    readonly config: ClientConfig,
    private readonly timeoutMs = 15_000,
  ) {
    const proto = tetherProto();
    this.client = new proto.tether.v1.Admin(
      config.server,
      controllerCredentials(config.ca, { keyPem: config.key, certPem: config.cert }),
      CHANNEL_OPTIONS,
    );
  }

  static fromFlag(path?: string): Admin {
    return new Admin(loadClientConfig(resolveClientConfigPath(path)));
  }

  private unary<Res>(invoke: (opts: grpc.CallOptions, cb: Callback<Res>) => void): Promise<Res> {
    return new Promise((resolve, reject) => {
      invoke({ deadline: Date.now() + this.timeoutMs }, (err, res) =>
        err || res === undefined
          ? reject(fromGrpcError(err, `controller ${this.config.server}`))
          : resolve(res),
      );
    });
  }

  apply(req: ApplyRequest): Promise<ApplyResponse__Output> {
    return this.unary((o, cb) => this.client.Apply(req, o, cb));
  }
  get(kind: string, name: string): Promise<TetherObject> {
    return this.unary<Resource__Output>((o, cb) => this.client.Get({ kind, name }, o, cb)).then(
      decodeResource,
    );
  }
  list(kind: string): Promise<{ revision: number; items: TetherObject[] }> {
    return this.unary<ListResponse__Output>((o, cb) => this.client.List({ kind }, o, cb)).then((r) => ({
      revision: r.revision,
      items: r.items.map(decodeResource),
    }));
  }
  delete(kind: string, name: string, expectRevision = 0): Promise<DeleteResponse__Output> {
    return this.unary((o, cb) => this.client.Delete({ kind, name, expect_revision: expectRevision }, o, cb));
  }
  createToken(req: CreateTokenRequest): Promise<CreateTokenResponse__Output> {
    return this.unary((o, cb) => this.client.CreateToken(req, o, cb));
  }
  approve(name: string): Promise<TetherObject> {
    return this.unary<Resource__Output>((o, cb) => this.client.ApproveNode({ name }, o, cb)).then(
      decodeResource,
    );
  }
  reset(name: string): Promise<TetherObject> {
    return this.unary<Resource__Output>((o, cb) => this.client.ResetNode({ name }, o, cb)).then(
      decodeResource,
    );
  }
  revoke(name: string): Promise<TetherObject> {
    return this.unary<Resource__Output>((o, cb) => this.client.RevokeNode({ name }, o, cb)).then(
      decodeResource,
    );
  }

  /** Streams changes of a kind (all kinds when empty) after `fromRevision` (0 = only new
   *  ones) until `signal` aborts or the controller ends the stream. */
  async watch(
    kind: string,
    fromRevision: number,
    onEvent: (e: { type: string; revision: number; object: TetherObject }) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    const call = this.client.Watch({ kind, from_revision: fromRevision });
    signal?.addEventListener('abort', () => call.cancel());
    await new Promise<void>((resolve, reject) => {
      call.on('data', (e: WatchEvent__Output) => {
        if (e.resource) onEvent({ type: e.type, revision: e.revision, object: decodeResource(e.resource) });
      });
      call.on('end', () => resolve());
      call.on('error', (err: grpc.ServiceError) =>
        err.code === grpc.status.CANCELLED && signal?.aborted
          ? resolve()
          : reject(fromGrpcError(err, `controller ${this.config.server}`)),
      );
    });
  }

  close(): void {
    this.client.close();
  }
}
