import { describe, expect, it } from 'vitest';
import type { TetherObject } from '../../../src/api/resource.js';
import { certSpki, nodeSummary, sliceView } from '../../../src/controller/slice.js';
import {
  encodeHeartbeat,
  type Heartbeat,
  haPublicKeyOf,
  haSignerOf,
  openHeartbeat,
} from '../../../src/node/gateway/ha.js';
import { sitePki } from '../../integration/support/site.js';

// The roster's public keys (docs/gateway.md "Heartbeat authentication"): the controller puts
// the SPKI of the certificate it issued into the node's summary, and a heartbeat the node
// signs with the key of that certificate verifies with it.

const record = (name: string, phase: string, issuedCertPem: string): TetherObject => ({
  apiVersion: 'tether.dev/v1',
  kind: 'Node',
  metadata: { name },
  spec: { site: 's1', facts: { hostname: 'h' } },
  status: { phase, vtep: '192.0.2.1', certSerials: ['01'], issuedCertPem, csrPem: 'x' },
});
const hb: Heartbeat = {
  gateway: 'gw',
  node: 'gw-a',
  seq: 1,
  ts: 1,
  eligible: true,
  eligibleForMs: 0,
  role: 'active',
};

describe('the public key of each node in the site roster', () => {
  it("carries the issued certificate's SPKI; the node's own key signs what it verifies; a renewal changes it", async () => {
    const pki = await sitePki('s1');
    const n = await pki.node('gw-a');
    const summary = nodeSummary(record('gw-a', 'Approved', n.certPem));
    expect(Object.keys(summary.status ?? {}).sort()).toEqual(['certSerials', 'phase', 'publicKey', 'vtep']);
    expect(JSON.stringify(summary)).not.toMatch(/BEGIN|csrPem|facts/);
    const pub = haPublicKeyOf(summary);
    expect(pub).toBeDefined();
    const keys = [{ ...pub!, node: 'gw-a' }];
    expect(openHeartbeat(encodeHeartbeat(hb, [haSignerOf(n.keyPem)]), keys).ok).toBe(true);
    // Renewed: a new key and certificate. The roster follows the record; the old key's
    // heartbeats are from a key the receiver no longer knows.
    const renewed = await pki.node('gw-a');
    const after = haPublicKeyOf(sliceView(record('gw-a', 'Approved', renewed.certPem)));
    expect(after?.keyId.equals(pub!.keyId)).toBe(false);
    const afterKeys = [{ ...after!, node: 'gw-a' }];
    expect(openHeartbeat(encodeHeartbeat(hb, [haSignerOf(renewed.keyPem)]), afterKeys).ok).toBe(true);
    expect(openHeartbeat(encodeHeartbeat(hb, [haSignerOf(n.keyPem)]), afterKeys)).toEqual({
      ok: false,
      drop: 'unknown-key',
    });
  });
  it('no key for a node that is not approved, or whose record holds no readable certificate', async () => {
    const n = await (await sitePki('s1')).node('gw-a');
    for (const phase of ['Pending', 'Revoked', 'Reset'])
      expect(nodeSummary(record('gw-a', phase, n.certPem)).status).not.toHaveProperty('publicKey');
    expect(nodeSummary(record('gw-a', 'Approved', '-----BEGIN CERTIFICATE-----x')).status).not.toHaveProperty(
      'publicKey',
    );
    expect(certSpki(undefined)).toBeUndefined();
    expect(certSpki(42)).toBeUndefined();
  });
  it('the Gateway is sent as it is stored: no key material in it', () => {
    const gw: TetherObject = {
      apiVersion: 'tether.dev/v1',
      kind: 'Gateway',
      metadata: { name: 'gw' },
      spec: { site: 's1', nodes: ['gw-a', 'gw-b'] },
    };
    expect(sliceView(gw)).toBe(gw);
  });
});
