import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HttpAgentClient } from '../../../src/cni/agent.js';
import { CNI_CODES, CniError } from '../../../src/cni/spec.js';
import { isTetherError } from '../../../src/lib/errors.js';
import { FileIpam } from '../../../src/node/cni/file-ipam.js';
import type { LocalEndpoint } from '../../../src/node/cni/registry.js';
import { CniServer } from '../../../src/node/cni/server.js';

let dir: string;
let sock: string;
let server: CniServer;
let changes: LocalEndpoint[][];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tether-cnisrv-'));
  sock = join(dir, 'run', 'cni.sock');
  changes = [];
  const registry = new FileIpam({
    file: join(dir, 'endpoints.json'),
    blockFor: (n) =>
      n === 'blue' ? { cidr: '10.1.0.0/30', gateway: '10.1.0.1', prefixLength: 24, mtu: 1450 } : undefined,
    onChange: (e) => changes.push(e),
  });
  server = new CniServer({ socketPath: sock, registry });
  await server.start();
});
afterEach(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const add = {
  network: 'blue',
  containerId: 'c1',
  ifname: 'eth0',
  netns: '/var/run/netns/x',
  hostIfname: 'tc0123456789',
};

async function codeOf(p: Promise<unknown>): Promise<number> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!(e instanceof CniError)) throw new Error(`expected CniError, got ${String(e)}`);
  return e.code;
}

describe('CniServer + HttpAgentClient', () => {
  it('socket is 0600', () => {
    expect(statSync(sock).mode & 0o777).toBe(0o600);
  });

  it('add / attached / check / del round trip, idempotent', async () => {
    const c = new HttpAgentClient(sock);
    const ep = await c.add(add);
    expect(ep).toMatchObject({
      address: '10.1.0.2/24',
      gateway: '10.1.0.1',
      mtu: 1450,
      hostIfname: 'tc0123456789',
    });
    expect((await c.add(add)).address).toBe(ep.address);
    expect((await c.attached({ containerId: 'c1', ifname: 'eth0' })).state).toBe('attached');
    expect(await c.check({ containerId: 'c1', ifname: 'eth0', network: 'blue' })).toMatchObject({
      ip: '10.1.0.2',
    });
    expect(await c.check({ containerId: 'c1', ifname: 'eth0', network: 'green' })).toBeUndefined();
    expect((await c.del({ containerId: 'c1', ifname: 'eth0', network: 'blue' }))?.ip).toBe('10.1.0.2');
    expect(await c.del({ containerId: 'c1', ifname: 'eth0', network: 'blue' })).toBeUndefined();
    expect(changes.map((e) => e.length)).toEqual([1, 1, 0]);
    await c.status();
  });

  it('maps agent errors to CNI codes', async () => {
    const c = new HttpAgentClient(sock);
    await c.add(add);
    expect((await c.add({ ...add, containerId: 'c2' })).ip).toBe('10.1.0.3');
    expect(await codeOf(c.add({ ...add, containerId: 'c4' }))).toBe(CNI_CODES.POOL_EXHAUSTED);
    expect(await codeOf(c.add({ ...add, network: 'green' }))).toBe(CNI_CODES.AGENT_ERROR); // conflict
    expect(await codeOf(c.add({ ...add, containerId: 'c3', network: 'green' }))).toBe(
      CNI_CODES.TRY_AGAIN_LATER,
    );
    expect(await codeOf(c.add({ ...add, hostIfname: 'much-too-long-name' }))).toBe(CNI_CODES.INVALID_CONFIG);
    expect(await codeOf(c.attached({ containerId: 'zz', ifname: 'eth0' }))).toBe(CNI_CODES.INVALID_CONFIG);
  });

  it('an unreachable agent is code 11', async () => {
    const c = new HttpAgentClient(join(dir, 'nothing.sock'));
    expect(await codeOf(c.add(add))).toBe(CNI_CODES.TRY_AGAIN_LATER);
  });

  it('replaces a stale socket file but refuses to steal a live one', async () => {
    const other = new CniServer({
      socketPath: sock,
      registry: new FileIpam({ file: join(dir, 'b.json'), blockFor: () => undefined }),
    });
    await expect(other.start()).rejects.toSatisfy((e) => isTetherError(e, 'TETHER_E_PRECONDITION'));
    await server.close();
    // a socket file left behind by a listener killed with SIGKILL
    const child = spawn(process.execPath, [
      '-e',
      `require('node:net').createServer().listen(${JSON.stringify(sock)}, () => console.log('up'))`,
    ]);
    await new Promise<void>((r) => child.stdout.once('data', () => r()));
    child.kill('SIGKILL');
    await new Promise<void>((r) => child.once('exit', () => r()));
    expect(existsSync(sock)).toBe(true);
    await other.start();
    expect(existsSync(sock)).toBe(true);
    await other.close();
    writeFileSync(sock, 'not a socket');
    await expect(other.start()).rejects.toSatisfy((e) => isTetherError(e, 'TETHER_E_PRECONDITION'));
  });
});
