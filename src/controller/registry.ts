import type { FirstBootSummaryBody } from '../api/firstboot.js';
import { API_VERSION, type TetherObject } from '../api/resource.js';
import { splitCredential } from '../api/token.js';
import { isTetherError, TetherError } from '../lib/errors.js';
import { formatIp, parseIp } from '../lib/ipv4.js';
import {
  assertNodeKeyType,
  type CaMaterial,
  certFingerprint,
  csrKeyFingerprint,
  type IssuedCert,
  normalizeSerial,
  signCsr,
} from '../lib/pki.js';
import { claimName, isClaimConflict, takeClaim } from './claimkeys.js';
import type { ControllerStore } from './mirror.js';
import type { StoredObject, TxnOp } from './store/store.js';
import { hashSecret, newToken, secretMatches, tokenObjectName } from './tokens.js';

export interface NodeStatus {
  /** `Reset`: an admin ran `tether node reset`; the name may enroll again. */
  phase: 'Pending' | 'Approved' | 'Revoked' | 'Reset';
  /** Serials of certificates the node may present: the current one first and, during
   *  rotation, the previous one. Anything else is refused even if the CA signed it. */
  certSerials?: string[];
  certNotAfter?: string;
  /** The enrollment this record came from, so a retry of the same request is recognised. */
  pendingTokenId?: string;
  /** SHA-256 of the current (or pending) key: recognises retried requests. */
  keyFingerprint?: string;
  csrPem?: string;
  /** The current certificate, handed out again to a retry that lost the answer. */
  issuedCertPem?: string;
  enrolledAt?: string;
  revokedAt?: string;
  /** The node's underlay (VTEP) address, recorded from its first hello that declared one. */
  vtep?: string;
  vtepRecordedAt?: string;
  /** The last `tether node reset`: who and when (kept across the re-enrollment). */
  lastReset?: { by: string; at: string };
  message?: string;
}

/** What `status.firstBoot` of a Node holds (docs/node.md "First boot"). */
export interface FirstBootSummary extends FirstBootSummaryBody {
  receivedAt: string;
}

export interface EnrollInput {
  credential: string;
  nodeName: string;
  csrPem: string;
  facts: Record<string, unknown>;
  expectedSite: string;
}

export type EnrollOutcome =
  | { status: 'approved'; certPem: string; site: string; node: string }
  | { status: 'pending'; site: string; node: string; retryAfterSeconds: number; message: string };

const NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** A lost compare-and-swap is decided again; each loss means another writer won, so this
 *  bounds only pathological contention. */
const MAX_ENROLL_ATTEMPTS = 1000;

function statusOf(n: StoredObject): NodeStatus {
  return (n.object.status ?? { phase: 'Pending' }) as unknown as NodeStatus;
}

function nodeObject(
  name: string,
  site: string,
  facts: Record<string, unknown>,
  status: NodeStatus,
  annotations?: Record<string, string>,
): TetherObject {
  return {
    apiVersion: API_VERSION,
    kind: 'Node',
    metadata: { name, ...(annotations ? { annotations } : {}) },
    spec: { site, facts },
    status: { ...status } as Record<string, unknown>,
  };
}

/**
 * Enrollment, approval, revocation and certificate renewal: the controller's identity
 * registry. Every decision is one store transaction with compare-and-swap, so two nodes
 * racing for the last use of a token cannot both win.
 */
export class Registry {
  constructor(
    private readonly store: ControllerStore,
    private readonly ca: CaMaterial,
    private readonly opts: {
      nodeCertSeconds: number;
      now?: () => Date;
      /** Names of a node's stored endpoints (the endpoint index), deleted with the node. */
      endpointsOf?: (node: string) => readonly string[];
    },
  ) {}

  private now(): Date {
    return this.opts.now?.() ?? new Date();
  }

  caFingerprint(): string {
    return certFingerprint(this.ca.certPem);
  }

  /** Creates a join token; the Site is created with defaults if it does not exist. */
  async createToken(
    site: string,
    ttlSeconds: number,
    uses: number,
    description = '',
  ): Promise<{ token: string; id: string; expiresAt: string; siteCreated: boolean }> {
    if (!NAME_RE.test(site))
      throw new TetherError('TETHER_E_INVALID', `bad site name "${site}"`, {
        field: 'site',
        expected: 'a DNS label',
      });
    if (!(ttlSeconds > 0))
      throw new TetherError('TETHER_E_INVALID', 'ttl must be positive', {
        field: 'ttl',
        expected: 'a duration > 0',
      });
    if (!(uses >= 1))
      throw new TetherError('TETHER_E_INVALID', 'uses must be at least 1', {
        field: 'uses',
        expected: 'an integer ≥ 1',
      });
    const t = newToken(this.caFingerprint());
    const expiresAt = new Date(this.now().getTime() + ttlSeconds * 1000).toISOString();
    const ops: TxnOp[] = [
      {
        op: 'put',
        expectRevision: 0,
        object: {
          apiVersion: API_VERSION,
          kind: 'EnrollmentToken',
          metadata: { name: tokenObjectName(t.id) },
          spec: { site, expiresAt, uses, ...(description ? { description } : {}) },
          status: { secretHash: hashSecret(t.secret), used: 0 },
        },
      },
    ];
    const siteCreated = !this.store.get('Site', site);
    if (siteCreated) {
      ops.push({
        op: 'put',
        expectRevision: 0,
        object: { apiVersion: API_VERSION, kind: 'Site', metadata: { name: site }, spec: {} },
      });
    }
    await this.store.txn(ops);
    return { token: t.text, id: t.id, expiresAt, siteCreated };
  }

  async enroll(input: EnrollInput): Promise<EnrollOutcome> {
    const { id, secret } = splitCredential(input.credential);
    if (!NAME_RE.test(input.nodeName) || input.nodeName.length > 63) {
      throw new TetherError('TETHER_E_INVALID', `bad node name "${input.nodeName}"`, {
        field: 'node_name',
        expected: 'a DNS label (a-z, 0-9, -), at most 63 characters',
      });
    }
    assertNodeKeyType(input.csrPem);
    const keyFp = csrKeyFingerprint(input.csrPem);
    let cert: IssuedCert | undefined;
    // Decide and commit with no await in between; signing (async) happens before a decision
    // that needs it, and the decision is then taken again on fresh state. A lost
    // compare-and-swap (another enrollment took a use meanwhile) is decided again, so exactly
    // `uses` enrollments of a token win, however many race.
    for (let attempt = 0; ; attempt++) {
      const d = this.decide(input, id, secret, keyFp);
      if (d.outcome) return d.outcome;
      if (!d.manual && !cert) {
        cert = await signCsr(this.ca, input.csrPem, {
          identity: { role: 'node', name: input.nodeName, site: d.site },
          validitySeconds: this.opts.nodeCertSeconds,
          // serverAuth too: the node that runs its site's proxy serves the site's agents.
          server: true,
        });
        continue;
      }
      const carry = d.lastReset ? { lastReset: d.lastReset } : {};
      const status: NodeStatus =
        d.manual || !cert
          ? {
              phase: 'Pending',
              pendingTokenId: id,
              keyFingerprint: keyFp,
              csrPem: input.csrPem,
              message: 'waiting for `tether node approve`',
              ...carry,
            }
          : {
              phase: 'Approved',
              certSerials: [normalizeSerial(cert.serial)],
              certNotAfter: cert.notAfter.toISOString(),
              pendingTokenId: id,
              keyFingerprint: keyFp,
              issuedCertPem: cert.certPem,
              enrolledAt: this.now().toISOString(),
              ...carry,
            };
      try {
        await this.store.txn([
          d.tokenUpdate,
          {
            op: 'put',
            expectRevision: d.nodeExpect,
            object: nodeObject(input.nodeName, d.site, input.facts, status, d.annotations),
          },
        ]);
      } catch (e) {
        if (isTetherError(e, 'TETHER_E_CONFLICT') && attempt < MAX_ENROLL_ATTEMPTS) continue;
        throw e;
      }
      if (status.phase === 'Pending') return this.pendingOutcome(input.nodeName, d.site);
      return { status: 'approved', certPem: cert!.certPem, site: d.site, node: input.nodeName };
    }
  }

  /** Every check of an enrollment against the store as it is now; synchronous. */
  private decide(
    input: EnrollInput,
    id: string,
    secret: string,
    keyFp: string,
  ):
    | { outcome: EnrollOutcome }
    | {
        outcome?: undefined;
        site: string;
        manual: boolean;
        tokenUpdate: TxnOp;
        nodeExpect: number;
        lastReset?: { by: string; at: string };
        annotations?: Record<string, string>;
      } {
    const tok = this.store.get('EnrollmentToken', tokenObjectName(id));
    const tstatus = tok?.object.status as
      | { secretHash?: string; used?: number; siteDeletedAt?: string }
      | undefined;
    if (!tok || !tstatus?.secretHash || !secretMatches(secret, tstatus.secretHash)) {
      throw new TetherError('TETHER_E_TOKEN', 'unknown enrollment token');
    }
    const tspec = tok.object.spec as { site: string; expiresAt: string; uses: number };
    const site = tspec.site;
    if (input.expectedSite && input.expectedSite !== site) {
      throw new TetherError(
        'TETHER_E_TOKEN',
        `token is for site "${site}", but this node is configured for site "${input.expectedSite}"`,
        { field: 'site' },
      );
    }
    const siteObj = this.store.get('Site', site);
    if (!siteObj || tstatus.siteDeletedAt) {
      throw new TetherError(
        'TETHER_E_SITE_GONE',
        `site "${site}" of this token ${tstatus.siteDeletedAt ? `was deleted at ${tstatus.siteDeletedAt}` : 'does not exist'}; the token died with it`,
        { field: 'site', expected: 'a new token of an existing site (`tether token create --site SITE`)' },
      );
    }
    const existing = this.store.get('Node', input.nodeName);
    const est = existing ? statusOf(existing) : undefined;
    if (existing && est) {
      const esite = (existing.object.spec as { site: string }).site;
      if (esite !== site) {
        throw new TetherError(
          'TETHER_E_TOKEN',
          `node "${input.nodeName}" belongs to site "${esite}"; this token is for site "${site}"`,
          { field: 'site' },
        );
      }
      // A retry of the request that created this record (its answer was lost, or it waits
      // for manual approval): same token, same key.
      if (est.pendingTokenId === id && est.keyFingerprint === keyFp) {
        if (est.phase === 'Pending') return { outcome: this.pendingOutcome(input.nodeName, site) };
        if (est.phase === 'Approved' && est.issuedCertPem) {
          return {
            outcome: { status: 'approved', certPem: est.issuedCertPem, site, node: input.nodeName },
          };
        }
      }
      if (est.phase === 'Revoked')
        throw new TetherError('TETHER_E_REVOKED', `node "${input.nodeName}" has been revoked`, {
          expected: `an administrator to run \`tether node reset ${input.nodeName}\` first`,
        });
      if (est.phase !== 'Reset') {
        throw new TetherError(
          'TETHER_E_NODE_EXISTS',
          est.phase === 'Pending'
            ? `node "${input.nodeName}" is already waiting for approval with another key`
            : `node "${input.nodeName}" is already enrolled`,
          {
            field: 'node_name',
            expected: `another name, or an administrator to run \`tether node reset ${input.nodeName}\` first`,
          },
        );
      }
    }
    if (new Date(tspec.expiresAt).getTime() <= this.now().getTime()) {
      throw new TetherError('TETHER_E_TOKEN', `enrollment token expired at ${tspec.expiresAt}`);
    }
    if ((tstatus.used ?? 0) >= tspec.uses) {
      throw new TetherError('TETHER_E_TOKEN', 'enrollment token already used');
    }
    const manual = (siteObj.object.spec as { approval?: string } | undefined)?.approval === 'manual';
    return {
      site,
      manual,
      tokenUpdate: {
        op: 'put',
        expectRevision: tok.revision,
        object: { ...tok.object, status: { ...tstatus, used: (tstatus.used ?? 0) + 1 } },
      },
      nodeExpect: existing ? existing.revision : 0,
      ...(est?.lastReset ? { lastReset: est.lastReset } : {}),
      ...(existing?.object.metadata.annotations ? { annotations: existing.object.metadata.annotations } : {}),
    };
  }

  private pendingOutcome(node: string, site: string): EnrollOutcome {
    return {
      status: 'pending',
      node,
      site,
      retryAfterSeconds: 10,
      message: `node "${node}" waits for approval: run \`tether node approve ${node}\``,
    };
  }

  private requireNode(name: string): StoredObject {
    const n = this.store.get('Node', name);
    if (!n) throw new TetherError('TETHER_E_NOT_FOUND', `node "${name}" not found`, { field: 'name' });
    return n;
  }

  /** Deletes of the node's endpoints, to go in the same transaction as its revoke/reset/delete. */
  private endpointDeletes(node: string): TxnOp[] {
    return (this.opts.endpointsOf?.(node) ?? []).map((name) => ({ op: 'delete', kind: 'Endpoint', name }));
  }

  async approve(name: string): Promise<TetherObject> {
    const n = this.requireNode(name);
    const st = statusOf(n);
    if (st.phase === 'Revoked') throw new TetherError('TETHER_E_REVOKED', `node "${name}" has been revoked`);
    if (st.phase === 'Approved') return n.object;
    if (!st.csrPem) throw new TetherError('TETHER_E_STATE', `node "${name}" has no pending request`);
    const site = (n.object.spec as { site: string }).site;
    const cert = await signCsr(this.ca, st.csrPem, {
      identity: { role: 'node', name, site },
      validitySeconds: this.opts.nodeCertSeconds,
      // serverAuth too: the node that runs its site's proxy serves the site's agents.
      server: true,
    });
    const { csrPem: _drop, message: _m, ...rest } = st;
    const object: TetherObject = {
      ...n.object,
      status: {
        ...rest,
        phase: 'Approved',
        issuedCertPem: cert.certPem,
        certSerials: [normalizeSerial(cert.serial)],
        certNotAfter: cert.notAfter.toISOString(),
        enrolledAt: this.now().toISOString(),
      },
    };
    await this.store.txn([{ op: 'put', object, expectRevision: n.revision }]);
    return this.requireNode(name).object;
  }

  /** Revokes a node; its endpoints go in the same transaction, so no other node keeps
   *  forwarding to it past that revision. */
  async revoke(name: string): Promise<TetherObject> {
    const n = this.requireNode(name);
    const st = statusOf(n);
    const object: TetherObject = {
      ...n.object,
      status: { ...st, phase: 'Revoked', certSerials: [], revokedAt: this.now().toISOString() },
    };
    await this.store.txn([{ op: 'put', object, expectRevision: n.revision }, ...this.endpointDeletes(name)]);
    return this.requireNode(name).object;
  }

  /**
   * `tether node reset NAME`: forgets the node's certificates, key, recorded VTEP and
   * endpoints, so that the name can enroll again with a token of its site. Who did it and
   * when stays on the record (status.lastReset and annotations), also after re-enrollment.
   */
  async reset(name: string, by: string): Promise<TetherObject> {
    const n = this.requireNode(name);
    const site = (n.object.spec as { site: string }).site;
    const at = this.now().toISOString();
    const object: TetherObject = {
      ...n.object,
      metadata: {
        ...n.object.metadata,
        annotations: {
          ...n.object.metadata.annotations,
          'tether.dev/reset-by': by,
          'tether.dev/reset-at': at,
        },
      },
      status: {
        phase: 'Reset',
        certSerials: [],
        lastReset: { by, at },
        message: `reset by ${by}; may enroll again with a token of site ${site}`,
      },
    };
    await this.store.txn([{ op: 'put', object, expectRevision: n.revision }, ...this.endpointDeletes(name)]);
    return this.requireNode(name).object;
  }

  /**
   * The transaction that deletes `kind/name`, with what must die with it: a Node's
   * endpoints; a Site's enrollment tokens, which are marked dead rather than deleted, so a
   * node that presents one is told why (TETHER_E_SITE_GONE), also after a site of the same
   * name has been created again.
   */
  deleteOps(kind: string, name: string, expectRevision?: number): TxnOp[] {
    const ops: TxnOp[] = [{ op: 'delete', kind, name, ...(expectRevision ? { expectRevision } : {}) }];
    if (kind === 'Node') ops.push(...this.endpointDeletes(name));
    // A network's endpoints are node-reported state that means nothing without it: they go in
    // the same transaction (left behind, they would come back to life if a network of that
    // name were created again, and their addresses would stay claimed). Policies are an
    // admin's intent and stay.
    if (kind === 'VirtualNetwork')
      for (const e of this.store.list('Endpoint').items)
        if ((e.object.spec as { network?: unknown }).network === name)
          ops.push({ op: 'delete', kind: 'Endpoint', name: e.name, expectRevision: e.revision });
    if (kind === 'Site') {
      for (const t of this.store.list('EnrollmentToken').items) {
        const st = (t.object.status ?? {}) as Record<string, unknown>;
        if ((t.object.spec as { site?: string }).site === name && !st.siteDeletedAt)
          ops.push({
            op: 'put',
            expectRevision: t.revision,
            object: { ...t.object, status: { ...st, siteDeletedAt: this.now().toISOString() } },
          });
      }
    }
    return ops;
  }

  /**
   * Records the underlay (VTEP) address a node declares in its hello, the first time it
   * declares one. That address, not what endpoint reports say, is the node's VTEP from then
   * on; a different one later, or one another node holds, is refused (TETHER_E_CLAIM).
   */
  async recordVtep(name: string, vtep: string): Promise<void> {
    const ip = parseIp(vtep);
    // Canonical form only (no leading zeros: "10.0.0.01" must not pass a string compare as a
    // second address), and a unicast address another host could send VXLAN to.
    if (ip === undefined || formatIp(ip) !== vtep || !isUnicastUnderlay(ip))
      throw new TetherError(
        'TETHER_E_INVALID',
        `underlay address "${vtep}" is not a unicast IPv4 address in canonical form`,
        {
          field: 'hello.underlay_ip',
          expected:
            'a unicast IPv4 address like 192.0.2.10 (not 0.0.0.0/8, multicast, 240.0.0.0/4 or broadcast; no leading zeros)',
        },
      );
    for (let attempt = 0; ; attempt++) {
      const n = this.requireNode(name);
      const st = statusOf(n);
      if (st.vtep === vtep) return;
      if (st.vtep) {
        throw new TetherError(
          'TETHER_E_CLAIM',
          `node "${name}" declares underlay ${vtep}, but its recorded VTEP is ${st.vtep}`,
          {
            field: 'hello.underlay_ip',
            expected: `${st.vtep}, or an administrator to run \`tether node reset ${name}\` and re-enroll`,
          },
        );
      }
      // Once per node lifetime, so a scan of the nodes is affordable here.
      const taken = (other: string) => {
        throw new TetherError('TETHER_E_CLAIM', `underlay ${vtep} is the VTEP of node "${other}"`, {
          field: 'hello.underlay_ip',
          expected: "this node's own underlay address",
        });
      };
      for (const other of this.store.list('Node').items)
        if (other.name !== name && statusOf(other).vtep === vtep) taken(other.name);
      try {
        // The scan read this replica's copy; the claim makes the check hold across two hellos
        // in flight (here or on another replica): exactly one of them creates Claim/vtep.<ip>.
        let claim: TxnOp | undefined;
        try {
          claim = takeClaim(this.store, claimName('vtep', vtep), { kind: 'Node', name }, (h) => {
            const holder = h.kind === 'Node' ? this.store.get('Node', h.name) : undefined;
            return holder !== undefined && statusOf(holder).vtep === vtep;
          });
        } catch (e) {
          if (isTetherError(e, 'TETHER_E_CLAIM'))
            taken(String((e.details.holder as { name?: unknown }).name));
          throw e;
        }
        await this.store.txn([
          {
            op: 'put',
            expectRevision: n.revision,
            object: { ...n.object, status: { ...st, vtep, vtepRecordedAt: this.now().toISOString() } },
          },
          ...(claim ? [claim] : []),
        ]);
        return;
      } catch (e) {
        if (isTetherError(e, 'TETHER_E_CONFLICT') && attempt < MAX_ENROLL_ATTEMPTS) {
          // A lost claim race: wait for the copy to see the winner, whose VTEP then refuses us.
          if (isClaimConflict(e)) await new Promise((r) => setTimeout(r, Math.min(500, 50 * (attempt + 1))));
          continue;
        }
        throw e;
      }
    }
  }

  /**
   * Stores a node's first-boot progress in its status (`status.firstBoot`). Reports carry the
   * whole picture and a sequence number: a repeated or reordered one (a queue flushed after
   * the WAN came back) never replaces a newer one.
   */
  async recordFirstBoot(name: string, report: FirstBootSummary): Promise<{ seq: number }> {
    for (let attempt = 0; ; attempt++) {
      const n = this.requireNode(name);
      const st = statusOf(n);
      const cur = (st as { firstBoot?: FirstBootSummary }).firstBoot;
      if (cur && cur.seq >= report.seq) return { seq: cur.seq };
      try {
        await this.store.txn([
          {
            op: 'put',
            expectRevision: n.revision,
            object: { ...n.object, status: { ...st, firstBoot: report } as Record<string, unknown> },
          },
        ]);
        return { seq: report.seq };
      } catch (e) {
        if (isTetherError(e, 'TETHER_E_CONFLICT') && attempt < MAX_ENROLL_ATTEMPTS) continue;
        throw e;
      }
    }
  }

  /**
   * Issues a fresh certificate to a node presenting its current one; the presented one
   * stays valid until it expires so the live session is not cut. The previous certificate
   * cannot renew (it would push the current one out); it only gets the current certificate
   * again when it asks with the current key — a renewal whose answer was lost.
   */
  async renew(name: string, presentedSerial: string, csrPem: string): Promise<{ certPem: string }> {
    const n = this.requireNode(name);
    const st = statusOf(n);
    if (st.phase !== 'Approved') throw new TetherError('TETHER_E_REVOKED', `node "${name}" is ${st.phase}`);
    assertNodeKeyType(csrPem);
    const presented = normalizeSerial(presentedSerial);
    const [current, previous] = st.certSerials ?? [];
    if (presented !== current) {
      if (presented === previous && st.issuedCertPem && st.keyFingerprint === csrKeyFingerprint(csrPem)) {
        return { certPem: st.issuedCertPem };
      }
      throw new TetherError(
        'TETHER_E_PERMISSION',
        `certificate ${presented} is not the current certificate of node "${name}"; only the current one renews`,
        { field: 'certificate', expected: `the certificate with serial ${current ?? '(none)'}` },
      );
    }
    const site = (n.object.spec as { site: string }).site;
    const cert = await signCsr(this.ca, csrPem, {
      identity: { role: 'node', name, site },
      validitySeconds: this.opts.nodeCertSeconds,
      // serverAuth too: the node that runs its site's proxy serves the site's agents.
      server: true,
    });
    const object: TetherObject = {
      ...n.object,
      status: {
        ...st,
        certSerials: [normalizeSerial(cert.serial), presented],
        certNotAfter: cert.notAfter.toISOString(),
        keyFingerprint: csrKeyFingerprint(csrPem),
        issuedCertPem: cert.certPem,
      },
    };
    await this.store.txn([{ op: 'put', object, expectRevision: n.revision }]);
    return { certPem: cert.certPem };
  }
}

/**
 * Whether an address can be a VTEP: not "this network", multicast, reserved or broadcast,
 * which would make other nodes flood the underlay. Loopback stays allowed: it can only
 * black-hole the declaring node's own endpoints, and single-machine tests use 127.0.0.x.
 */
export function isUnicastUnderlay(ip: number): boolean {
  const a = ip >>> 24;
  return !(a === 0 || a >= 224);
}
