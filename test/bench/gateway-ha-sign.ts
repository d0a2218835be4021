/**
 * What signing gateway HA heartbeats with each node's own key costs (src/node/gateway/ha.ts,
 * docs/gateway.md "Heartbeat authentication"): per heartbeat, CPU of the sender's encode
 * (ECDSA P-256 / SHA-256 sign, wire version 3) plus the receiver's open (one verify), against
 * the baseline of the same run, the HMAC-SHA256 of version 2 it replaced (encode + constant
 * time check, re-implemented here as it was). Also what a forged datagram costs a receiver:
 * one with an unknown key id (no verify at all) and one that claims a listed node's key id
 * (one failing verify). Rounds interleave the variants (BENCH_HA_SIGN_ROUNDS, default 7, of
 * BENCH_HA_SIGN_N heartbeats each, default 2000); medians of the per-round figures.
 *   npm run bench (BENCH_ONLY=gateway-ha-sign) or: npx tsx test/bench/gateway-ha-sign.ts
 */
import { createHmac, generateKeyPairSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import {
  encodeHeartbeat,
  type HaVerifyKey,
  type Heartbeat,
  haPublicKeyOf,
  haSignerOf,
  openHeartbeat,
} from '../../src/node/gateway/ha.js';

type Result = Record<string, number | string>;
const ROUNDS = Number(process.env.BENCH_HA_SIGN_ROUNDS ?? 7);
const N = Number(process.env.BENCH_HA_SIGN_N ?? 2000);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** CPU µs per call of f, over N calls (this process: user + system). */
function cpuPer(f: (i: number) => void): number {
  const c0 = process.cpuUsage();
  for (let i = 0; i < N; i++) f(i);
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / N;
}

const hb = (seq: number): Heartbeat => ({
  gateway: 'gw',
  node: 'gw-a',
  seq,
  ts: 1_700_000_000_000 + seq,
  eligible: true,
  eligibleForMs: 60_000,
  role: 'active',
});

// The version-2 baseline: one HMAC-SHA256 of a site-wide key over domain ‖ body.
const V2_DOMAIN = Buffer.from('tether gateway-ha heartbeat v2\0');
const hmacKey = randomBytes(32);
const v2mac = (body: Buffer) => createHmac('sha256', hmacKey).update(V2_DOMAIN).update(body).digest();
function v2encode(h: Heartbeat): Buffer {
  const body = Buffer.from(JSON.stringify(h));
  const head = Buffer.alloc(4 + 36);
  head.set([0x54, 0x48, 2, 1]);
  v2mac(body).copy(head, 8);
  return Buffer.concat([head, body]);
}
function v2open(b: Buffer): boolean {
  const body = b.subarray(40);
  if (!timingSafeEqual(v2mac(body), b.subarray(8, 40))) return false;
  return typeof JSON.parse(body.toString('utf8')) === 'object';
}

export async function run(): Promise<Result> {
  const mk = (node: string) => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const signer = haSignerOf(privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
    const spki = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
    const pub = haPublicKeyOf({
      apiVersion: 'tether.dev/v1',
      kind: 'Node',
      metadata: { name: node },
      spec: {},
      status: { publicKey: spki },
    });
    return { signer, verify: { ...pub!, node } as HaVerifyKey };
  };
  const a = mk('gw-a');
  const c = mk('site-c');
  const keys = [a.verify];
  const forgedUnknown = encodeHeartbeat(hb(0), [c.signer]);
  const forgedClaim = Buffer.from(forgedUnknown);
  a.verify.keyId.copy(forgedClaim, 4);
  // Sanity: every variant does what it is measured for.
  if (!openHeartbeat(encodeHeartbeat(hb(1), [a.signer]), keys).ok) throw new Error('v3 round trip');
  if (!v2open(v2encode(hb(1)))) throw new Error('v2 round trip');
  const unknownDrop = openHeartbeat(forgedUnknown, keys);
  const claimDrop = openHeartbeat(forgedClaim, keys);
  if (unknownDrop.ok || unknownDrop.drop !== 'unknown-key') throw new Error('forged: unknown-key');
  if (claimDrop.ok || claimDrop.drop !== 'bad-signature') throw new Error('forged: bad-signature');
  // Warm-up (JIT, OpenSSL tables).
  for (let i = 0; i < 200; i++) {
    openHeartbeat(encodeHeartbeat(hb(i), [a.signer]), keys);
    v2open(v2encode(hb(i)));
  }
  const r = {
    v2: [] as number[],
    sign: [] as number[],
    verify: [] as number[],
    unknown: [] as number[],
    claim: [] as number[],
  };
  for (let round = 0; round < ROUNDS; round++) {
    r.v2.push(cpuPer((i) => v2open(v2encode(hb(i)))));
    const dgs: Buffer[] = new Array(N);
    r.sign.push(cpuPer((i) => (dgs[i] = encodeHeartbeat(hb(i), [a.signer]))));
    r.verify.push(cpuPer((i) => openHeartbeat(dgs[i]!, keys)));
    r.unknown.push(cpuPer(() => openHeartbeat(forgedUnknown, keys)));
    r.claim.push(cpuPer(() => openHeartbeat(forgedClaim, keys)));
  }
  const v2 = median(r.v2);
  const sign = median(r.sign);
  const verify = median(r.verify);
  const both = median(r.sign.map((s, i) => s + r.verify[i]!));
  return {
    rounds: ROUNDS,
    'heartbeats per round': N,
    'datagram bytes v3 (one signature)': encodeHeartbeat(hb(1), [a.signer]).byteLength,
    'datagram bytes v2 (one HMAC)': v2encode(hb(1)).byteLength,
    'baseline v2 HMAC encode+open: CPU µs/heartbeat (median)': +v2.toFixed(2),
    'v3 ECDSA encode (sign): CPU µs (median)': +sign.toFixed(1),
    'v3 ECDSA open (verify): CPU µs (median)': +verify.toFixed(1),
    'v3 sign+verify: CPU µs/heartbeat (median)': +both.toFixed(1),
    'v3 vs v2 baseline (x)': +(both / v2).toFixed(1),
    'forged, unknown key id: CPU µs (median)': +median(r.unknown).toFixed(2),
    'forged, listed key id: CPU µs (median)': +median(r.claim).toFixed(1),
    // Two gateway nodes at the default 100 ms: each signs 10/s and verifies 10/s.
    'per gateway node at 10 heartbeats/s: CPU ms/s': +((both * 10) / 1000).toFixed(2),
    'after a renewal (two signatures sent): CPU ms/s': +(((2 * sign + verify) * 10) / 1000).toFixed(2),
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  run().then(
    (r) => {
      console.log(JSON.stringify(r, null, 2));
      process.exit(0);
    },
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
