import { createConnection, createServer, type Socket } from 'node:net';

/**
 * A TCP relay on loopback that a test can cut like a network partition: `blackhole()` keeps
 * every connection open but drops every byte both ways (what a partition looks like to TCP:
 * no reset, no FIN, just silence), `heal()` destroys the silenced connections (their streams
 * lost bytes mid-frame) and relays again. Only ever connects to `target` on loopback.
 */
export interface TcpProxy {
  /** "127.0.0.1:PORT" to dial instead of the target. */
  endpoint: string;
  blackhole(): void;
  heal(): void;
  /** Bytes relayed (both ways) since start; unchanged while blackholed. */
  relayed(): number;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  if (target.host !== '127.0.0.1') throw new Error('the test proxy relays to loopback only');
  let silent = false;
  let bytes = 0;
  const pairs = new Set<[Socket, Socket]>();
  const server = createServer((client) => {
    const upstream = createConnection({ host: target.host, port: target.port });
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      from.on('data', (b: Buffer) => {
        if (silent) return;
        bytes += b.length;
        to.write(b);
      });
      from.on('error', end);
      from.on('close', end);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    endpoint: `127.0.0.1:${port}`,
    blackhole() {
      silent = true;
    },
    heal() {
      for (const [a, b] of [...pairs]) {
        a.destroy();
        b.destroy();
      }
      pairs.clear();
      silent = false;
    },
    relayed: () => bytes,
    async close() {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      pairs.clear();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
