// Child of transport-floor.ts: a bare node:http2 TLS server (no gRPC, no Tether) that holds
// N client connections with one open stream each and reports its memory per connection.

import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';

const [keyFile, certFile, nArg, clientScript] = process.argv.slice(2);
const n = Number(nArg);
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
const rssKiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0);
const settle = async () => {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 300));
  }
};

const server = http2.createSecureServer({ key: readFileSync(keyFile!), cert: readFileSync(certFile!) });
server.on('stream', (s) => s.respond({ ':status': 200 }));
await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
const addr = server.address();
const port = typeof addr === 'object' && addr ? addr.port : 0;
await settle();
const before = rssKiB();
const child = fork(clientScript!, [String(port), String(n)], { execArgv: ['--import', 'tsx'] });
await new Promise((r) => child.once('message', r));
await settle();
const after = rssKiB();
process.send?.({ before, after, perConnKiB: (after - before) / n });
child.kill();
server.close();
process.exit(0);
