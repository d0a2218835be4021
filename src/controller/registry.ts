import { API_VERSION, type TetherObject } from '../api/resource.js';
import { splitCredential } from '../api/token.js';
import { TetherError } from '../lib/errors.js';
import { type CaMaterial, certFingerprint, csrKeyFingerprint, normalizeSerial, signCsr } from '../lib/pki.js';
import type { Store, StoredObject, TxnOp } from './store/store.js';
import { hashSecret, newToken, secretMatches, tokenObjectName } from './tokens.js';

export interface NodeStatus {
  phase: 'Pending' | 'Approved' | 'Revoked';
  /** Serials of certificates the node may present: the current one and, during rotation,
   *  the previous one. Anything else is refused even if the CA signed it. */
  certSerials?: string[];
  certNotAfter?: string;
  /** For a pending node: what it asked with, so a retry of the same request is recognised. */
  pendingTokenId?: string;
  keyFingerprint?: string;
  csrPem?: string;
  /** Certificate issued on manual approval, handed out on the node's next retry. */
  issuedCertPem?: string;
  enrolledAt?: string;
  revokedAt?: string;
  message?: string;
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

function statusOf(n: StoredObject): NodeStatus {
  return (n.object.status ?? { phase: 'Pending' }) as unknown as NodeStatus;
}

function nodeObject(
  name: string,
  site: string,
  facts: Record<string, unknown>,
  status: NodeStatus,
): TetherObject {
  return {
    apiVersion: API_VERSION,
    kind: 'Node',
    metadata: { name },
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
    private readonly store: Store,
    private readonly ca: CaMaterial,
    private readonly opts: { nodeCertSeconds: number; now?: () => Date },
  ) {}

  private now(): Date {
    return this.opts.now?.() ?? new Date();
  }

  caFingerprint(): string {
    return certFingerprint(this.ca.certPem);
  }

  /** Creates a join token; the Site is created with defaults if it does not exist. */
  createToken(
    site: string,
    ttlSeconds: number,
    uses: number,
    description = '',
  ): { token: string; id: string; expiresAt: string; siteCreated: boolean } {
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
    this.store.txn(ops);
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
    const tok = this.store.get('EnrollmentToken', tokenObjectName(id));
    const tstatus = tok?.object.status as { secretHash?: string; used?: number } | undefined;
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
    const keyFp = csrKeyFingerprint(input.csrPem);
    const existing = this.store.get('Node', input.nodeName);
    const est = existing?.object.status as NodeStatus | undefined;
    if (existing) {
      const esite = (existing.object.spec as { site: string }).site;
      if (est?.phase === 'Revoked')
        throw new TetherError('TETHER_E_REVOKED', `node "${input.nodeName}" has been revoked`);
      if (esite !== site) {
        throw new TetherError(
          'TETHER_E_TOKEN',
          `node "${input.nodeName}" belongs to site "${esite}"; this token is for site "${site}"`,
          { field: 'site' },
        );
      }
      // A retry of a request that is waiting for (or has just received) manual approval.
      if (est?.pendingTokenId === id && est.keyFingerprint === keyFp) {
        if (est.phase === 'Pending') return this.pendingOutcome(input.nodeName, site);
        if (est.phase === 'Approved' && est.issuedCertPem) {
          return { status: 'approved', certPem: est.issuedCertPem, site, node: input.nodeName };
        }
      }
    }
    if (new Date(tspec.expiresAt).getTime() <= this.now().getTime()) {
      throw new TetherError('TETHER_E_TOKEN', `enrollment token expired at ${tspec.expiresAt}`);
    }
    if ((tstatus.used ?? 0) >= tspec.uses) {
      throw new TetherError('TETHER_E_TOKEN', 'enrollment token already used');
    }
    const siteObj = this.store.get('Site', site);
    const manual = (siteObj?.object.spec as { approval?: string } | undefined)?.approval === 'manual';
    const tokenUpdate: TxnOp = {
      op: 'put',
      expectRevision: tok.revision,
      object: { ...tok.object, status: { ...tstatus, used: (tstatus.used ?? 0) + 1 } },
    };
    const nodeExpect = existing ? existing.revision : 0;
    if (manual) {
      this.commit([
        tokenUpdate,
        {
          op: 'put',
          expectRevision: nodeExpect,
          object: nodeObject(input.nodeName, site, input.facts, {
            phase: 'Pending',
            pendingTokenId: id,
            keyFingerprint: keyFp,
            csrPem: input.csrPem,
            message: 'waiting for `tether node approve`',
          }),
        },
      ]);
      return this.pendingOutcome(input.nodeName, site);
    }
    const cert = await signCsr(this.ca, input.csrPem, {
      identity: { role: 'node', name: input.nodeName, site },
      validitySeconds: this.opts.nodeCertSeconds,
    });
    this.commit([
      tokenUpdate,
      {
        op: 'put',
        expectRevision: nodeExpect,
        object: nodeObject(input.nodeName, site, input.facts, {
          phase: 'Approved',
          certSerials: [normalizeSerial(cert.serial)],
          certNotAfter: cert.notAfter.toISOString(),
          enrolledAt: this.now().toISOString(),
        }),
      },
    ]);
    return { status: 'approved', certPem: cert.certPem, site, node: input.nodeName };
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

  private commit(ops: TxnOp[]): void {
    try {
      this.store.txn(ops);
    } catch (e) {
      if (e instanceof TetherError && e.code === 'TETHER_E_CONFLICT') {
        throw new TetherError(
          'TETHER_E_TOKEN',
          'enrollment token was used concurrently; try again with a new token',
        );
      }
      throw e;
    }
  }

  private requireNode(name: string): StoredObject {
    const n = this.store.get('Node', name);
    if (!n) throw new TetherError('TETHER_E_NOT_FOUND', `node "${name}" not found`, { field: 'name' });
    return n;
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
    this.store.txn([{ op: 'put', object, expectRevision: n.revision }]);
    return this.requireNode(name).object;
  }

  revoke(name: string): TetherObject {
    const n = this.requireNode(name);
    const st = statusOf(n);
    const object: TetherObject = {
      ...n.object,
      status: { ...st, phase: 'Revoked', certSerials: [], revokedAt: this.now().toISOString() },
    };
    this.store.txn([{ op: 'put', object, expectRevision: n.revision }]);
    return this.requireNode(name).object;
  }

  /** Issues a fresh certificate for an authenticated node; the presented one stays valid
   *  until it expires so the live session is not cut. */
  async renew(name: string, presentedSerial: string, csrPem: string): Promise<{ certPem: string }> {
    const n = this.requireNode(name);
    const st = statusOf(n);
    if (st.phase !== 'Approved') throw new TetherError('TETHER_E_REVOKED', `node "${name}" is ${st.phase}`);
    const site = (n.object.spec as { site: string }).site;
    const cert = await signCsr(this.ca, csrPem, {
      identity: { role: 'node', name, site },
      validitySeconds: this.opts.nodeCertSeconds,
    });
    const { issuedCertPem: _old, ...rest } = st;
    const object: TetherObject = {
      ...n.object,
      status: {
        ...rest,
        certSerials: [normalizeSerial(cert.serial), normalizeSerial(presentedSerial)],
        certNotAfter: cert.notAfter.toISOString(),
      },
    };
    this.store.txn([{ op: 'put', object, expectRevision: n.revision }]);
    return { certPem: cert.certPem };
  }
}
