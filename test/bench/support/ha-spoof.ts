// A forger on the site LAN (test/integration/gateway/ha.test.ts): run inside a gateway
// node's namespace after that node died, it sends heartbeats from the dead node's own
// address and port claiming it is up and active, signed with the node key it is given (an
// enrolled site node's own key that the Gateway does not list, or — the test's control — the
// dead node's own key), every 100 ms until SIGTERM.
//   argv[2]: JSON of HaSpoofArgs

import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { encodeHeartbeat, haSignerOf } from '../../../src/node/gateway/ha.js';

export interface HaSpoofArgs {
  gateway: string;
  /** The node it claims to be. */
  node: string;
  bind: string;
  to: string;
  port: number;
  /** The private key (PEM file) it signs with. */
  keyFile: string;
}

const a = JSON.parse(process.argv[2] ?? '{}') as HaSpoofArgs;
const keys = [haSignerOf(readFileSync(a.keyFile, 'utf8'))];
const sock = createSocket('udp4');
await new Promise<void>((r) => sock.bind(a.port, a.bind, () => r()));
let seq = 0;
const timer = setInterval(() => {
  const hb = encodeHeartbeat(
    {
      gateway: a.gateway,
      node: a.node,
      seq: seq++,
      ts: Date.now(),
      eligible: true,
      eligibleForMs: 600_000,
      role: 'active',
    },
    keys,
  );
  sock.send(hb, a.port, a.to);
}, 100);
process.stdout.write(`${JSON.stringify({ spoofing: a.node, pid: process.pid })}\n`);
process.on('SIGTERM', () => {
  clearInterval(timer);
  sock.close(() => process.exit(0));
});
