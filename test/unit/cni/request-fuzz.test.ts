// Property-based: whatever a runtime (or anyone who can run the plugin) puts on stdin and in
// CNI_*, parsing ends in a request or in a CNI error object with a spec or documented code,
// never in a crash. Sizes and depths go past every bound the parser has.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_STDIN_BYTES, parseRequest } from '../../../src/cni/request.js';
import { CNI_CODES, CniError } from '../../../src/cni/spec.js';
import { REPO, runProcess } from '../../integration/support/proc.js';

const CODES = new Set<number>(Object.values(CNI_CODES));
const COMMANDS = ['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC', 'add', '', 'NOPE'];

const json = fc.jsonValue({ maxDepth: 6 });
const netconf = fc.record(
  {
    cniVersion: fc.oneof(fc.constantFrom('1.1.0', '1.0.0', '0.4.0', '0.3.1', '0.3.0', '9.9.9', ''), json),
    name: fc.oneof(fc.string(), json),
    type: fc.oneof(fc.constant('tether'), json),
    network: fc.oneof(fc.string({ maxLength: 70 }), json),
    socket: fc.oneof(fc.string(), json),
    mtu: fc.oneof(fc.integer({ min: -10, max: 100_000 }), json),
    runtimeConfig: fc.oneof(
      fc.record({
        ips: fc.oneof(fc.array(fc.oneof(fc.ipV4(), fc.string(), fc.ipV6())), json),
        portMappings: fc.oneof(
          fc.array(
            fc.record({
              hostPort: fc.oneof(fc.integer({ min: -1, max: 70_000 }), json),
              containerPort: fc.oneof(fc.integer({ min: -1, max: 70_000 }), json),
              protocol: fc.oneof(fc.constantFrom('tcp', 'udp', 'sctp', 'TCP'), json),
            }),
          ),
          json,
        ),
      }),
      json,
    ),
    args: json,
    prevResult: json,
  },
  { requiredKeys: [] },
);
const env = fc.record({
  CNI_COMMAND: fc.constantFrom(...COMMANDS),
  CNI_CONTAINERID: fc.oneof(fc.string({ maxLength: 80 }), fc.stringMatching(/^[a-z0-9]{1,64}$/)),
  CNI_NETNS: fc.oneof(fc.constant('/proc/1/ns/net'), fc.string()),
  CNI_IFNAME: fc.oneof(fc.constant('eth0'), fc.string({ maxLength: 20 })),
  CNI_ARGS: fc.oneof(
    fc.constant('IgnoreUnknown=1;TETHER_LABELS=app:web'),
    fc.string(),
    fc.array(fc.tuple(fc.string(), fc.string())).map((kv) => kv.map(([k, v]) => `${k}=${v}`).join(';')),
  ),
  CNI_PATH: fc.string(),
});

function outcome(stdin: string, e: Record<string, string>): void {
  try {
    parseRequest(stdin, e);
  } catch (err) {
    expect(err, String(err)).toBeInstanceOf(CniError);
    const c = err as CniError;
    expect(CODES.has(c.code), `code ${c.code}`).toBe(true);
    expect(c.message.length).toBeGreaterThan(0);
    // The error object a runtime reads must serialise.
    expect(() => JSON.stringify(c.toObject('1.1.0'))).not.toThrow();
  }
}

describe('tether-cni request parsing never crashes', () => {
  it('on structured but hostile network configs and environments', () => {
    fc.assert(
      fc.property(netconf, env, (conf, e) => outcome(JSON.stringify(conf), e)),
      { numRuns: 400 },
    );
  });

  it('on arbitrary text and arbitrary JSON on stdin', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 400 }),
          json.map((j) => JSON.stringify(j)),
        ),
        env,
        outcome,
      ),
      { numRuns: 400 },
    );
  });

  it('on nesting far deeper than any config has', () => {
    for (const depth of [65, 1_000, 100_000]) {
      outcome(
        `{"cniVersion":"1.0.0","name":"n","type":"tether","args":${'['.repeat(depth)}${']'.repeat(depth)}}`,
        {
          CNI_COMMAND: 'ADD',
          CNI_CONTAINERID: 'c1',
          CNI_NETNS: '/proc/1/ns/net',
          CNI_IFNAME: 'eth0',
          CNI_PATH: '/opt/cni/bin',
        },
      );
    }
  });

  it('refuses stdin over the size bound with code 6 (decode failed), naming the bound', () => {
    const big = JSON.stringify({
      cniVersion: '1.0.0',
      name: 'n',
      type: 'tether',
      pad: 'x'.repeat(MAX_STDIN_BYTES),
    });
    try {
      parseRequest(big, {
        CNI_COMMAND: 'ADD',
        CNI_CONTAINERID: 'c1',
        CNI_NETNS: '/proc/1/ns/net',
        CNI_IFNAME: 'eth0',
        CNI_PATH: '/opt/cni/bin',
      });
      expect.unreachable();
    } catch (e) {
      expect((e as CniError).code).toBe(CNI_CODES.DECODE_FAILED);
      expect(`${(e as CniError).message} ${(e as CniError).details}`).toContain(String(MAX_STDIN_BYTES));
    }
  });

  it('the real plugin answers a 4 MiB stdin with a CNI error object (code 6), not a crash', async () => {
    const r = await runProcess(`${REPO}bin/tether-cni`, [], {
      env: {
        CNI_COMMAND: 'ADD',
        CNI_CONTAINERID: 'c1',
        CNI_NETNS: '/proc/1/ns/net',
        CNI_IFNAME: 'eth0',
        CNI_PATH: '/opt/cni/bin',
      },
      input: `{"cniVersion":"1.0.0","name":"n","type":"tether","pad":"${'x'.repeat(4 * MAX_STDIN_BYTES)}"}`,
      timeoutMs: 30_000,
    });
    expect(r.code).toBe(1);
    const err = JSON.parse(r.stdout) as { code: number; msg: string };
    expect(err.code).toBe(CNI_CODES.DECODE_FAILED);
    expect(err.msg).toContain('too large');
    expect(r.stderr).toBe('');
  }, 30_000);
});
