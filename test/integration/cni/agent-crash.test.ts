/**
 * Every answer the agent's CNI endpoint gave survives kill -9 of the agent: a real agent
 * process (fixtures/agent.ts) is killed right after answering, and a new one on the same
 * state file hands out the same addresses and never a second copy of one. No root needed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpAgentClient } from '../../../src/cni/agent.js';

const repo = resolve(import.meta.dirname, '../../..');
const children: ChildProcess[] = [];

function startAgent(sock: string, file: string): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      join(repo, 'node_modules/tsx/dist/esm/index.mjs'),
      join(import.meta.dirname, 'fixtures/agent.ts'),
      sock,
      file,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.push(child);
  return new Promise((res, rej) => {
    child.once('exit', (code) => rej(new Error(`agent exited ${code}`)));
    child.stdout?.once('data', () => res(child));
  });
}

async function kill9(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

describe('CNI endpoint durability', () => {
  it('acknowledged allocations survive kill -9 of the agent', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-cni-crash-'));
    try {
      const sock = join(dir, 'cni.sock');
      const file = join(dir, 'endpoints.json');
      let agent = await startAgent(sock, file);
      const client = new HttpAgentClient(sock);
      const req = (id: string) => ({
        network: 'blue',
        containerId: id,
        ifname: 'eth0',
        netns: '/x',
        hostIfname: `tc${id}`,
      });
      const a = await client.add(req('a'));
      const b = await client.add(req('b'));
      await client.attached({ containerId: 'a', ifname: 'eth0' });
      await kill9(agent);

      // The socket file is left behind; the new agent replaces it.
      agent = await startAgent(sock, file);
      expect((await client.add(req('a'))).address).toBe(a.address);
      expect((await client.check({ containerId: 'a', ifname: 'eth0', network: 'blue' }))?.state).toBe(
        'attached',
      );
      const c = await client.add(req('c'));
      expect([a.ip, b.ip]).not.toContain(c.ip);
      await client.del({ containerId: 'b', ifname: 'eth0' });
      await kill9(agent);

      agent = await startAgent(sock, file);
      expect(await client.check({ containerId: 'b', ifname: 'eth0', network: 'blue' })).toBeUndefined();
      expect((await client.add(req('c'))).ip).toBe(c.ip);
      await kill9(agent);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
