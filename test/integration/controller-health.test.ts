// The standard grpc.health.v1 service of a real controller process: every service we serve
// is in its map, all go NOT_SERVING on shutdown, and open Watch streams (health and admin)
// cannot hold a stopping controller.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Admin, loadClientConfig } from '../../src/cli/admin.js';
import { CHANNEL_OPTIONS, controllerCredentials } from '../../src/node/connect.js';
import { initTestController, startTestController, type TestController } from './support/controller.js';
import { waitFor } from './support/proc.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-health-'));
let running: TestController | undefined;
afterEach(async () => {
  await running?.daemon.stop();
  running = undefined;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SERVICES = ['', 'tether.v1.Enrollment', 'tether.v1.NodeSession', 'tether.v1.Admin'];

type Status = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';
interface HealthClient extends grpc.Client {
  Check(
    req: { service: string },
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: { status: Status }) => void,
  ): void;
  Watch(req: { service: string }): grpc.ClientReadableStream<{ status: Status }>;
}

function healthClient(c: TestController, withCert: boolean): HealthClient {
  const def = protoLoader.loadSync(healthProtoPath, { enums: String });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    grpc: {
      health: { v1: { Health: new (a: string, c: grpc.ChannelCredentials, o: object) => HealthClient } };
    };
  };
  const cfg = loadClientConfig(c.cfg);
  const creds = controllerCredentials(cfg.ca, withCert ? { keyPem: cfg.key, certPem: cfg.cert } : undefined);
  return new pkg.grpc.health.v1.Health(c.addr, creds, CHANNEL_OPTIONS);
}

function check(client: HealthClient, service: string): Promise<Status> {
  return new Promise((resolve, reject) =>
    client.Check({ service }, { deadline: Date.now() + 15_000 }, (err, res) =>
      err ? reject(err) : resolve(res!.status),
    ),
  );
}

describe('controller health', () => {
  it('lists every service as SERVING, also to a client without a certificate', async () => {
    const dataDir = join(dir, 'serving');
    running = await startTestController(dataDir, await initTestController(dataDir));
    for (const withCert of [true, false]) {
      const client = healthClient(running, withCert);
      try {
        for (const s of SERVICES) expect(await check(client, s), `service "${s}"`).toBe('SERVING');
        await expect(check(client, 'tether.v1.Nope')).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
      } finally {
        client.close();
      }
    }
  });

  it('turns every service NOT_SERVING on shutdown and stops although Watch streams stay open', {
    timeout: 60_000,
  }, async () => {
    const dataDir = join(dir, 'stopping');
    const c = await startTestController(
      dataDir,
      await initTestController(dataDir, { shutdownGraceMs: 1000 }),
    );
    running = c;
    const client = healthClient(c, false);
    const seen = new Map<string, Status[]>();
    const streams = SERVICES.map((s) => {
      const w = client.Watch({ service: s });
      seen.set(s, []);
      w.on('data', (m: { status: Status }) => seen.get(s)!.push(m.status));
      w.on('error', () => {});
      return w;
    });
    // An admin watch too: a stream of our own that never ends by itself.
    const admin = new Admin(loadClientConfig(c.cfg), 60_000);
    const adminWatch = admin
      .watch('', 0, () => {})
      .then(
        () => 'ended',
        (e: unknown) => String(e),
      );
    await waitFor('every watch to report SERVING', () =>
      SERVICES.every((s) => seen.get(s)!.includes('SERVING')),
    );
    c.daemon.child.kill('SIGTERM');
    // Bounded: the grace period plus process exit, never the keepalive timeout of ~30 s
    // that an open stream used to hold it for.
    const code = await Promise.race([
      c.exited,
      new Promise<string>((r) => setTimeout(() => r('still running'), 20_000).unref()),
    ]);
    expect(code).toBe(0);
    for (const s of SERVICES) expect(seen.get(s), `service "${s}"`).toContain('NOT_SERVING');
    expect(await adminWatch).toBe('ended');
    for (const w of streams) w.cancel();
    client.close();
    admin.close();
  });
});
