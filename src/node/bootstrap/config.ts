import type { ErrorObject } from 'ajv';
import { cidrContains, parseCidr } from '../../api/kinds.js';
import { parseToken } from '../../api/token.js';
import { formatPath, newAjv, parseResourceDocuments } from '../../api/validate.js';
import { TetherError } from '../../lib/errors.js';
import { parseIp } from '../../lib/ipv4.js';

/**
 * bootstrap.yaml: what a node needs to find its controller and join it with no one at the
 * box (docs/node.md "First boot"). The published copy of the schema is
 * docs/bootstrap.schema.json (a unit test keeps it identical to this one).
 */
export interface BootstrapConfig {
  apiVersion: 'tether.dev/v1';
  kind: 'Bootstrap';
  /** Controller addresses (HOST:PORT), tried in order: the first that answers is used. */
  controllers: string[];
  /** SHA-256 of the controller CA certificate (DER), 64 hex digits; must match the token's. */
  caFingerprint: string;
  token: string;
  site: string;
  /** A shipped profile name (or a file name under the profile search path); none = no profile. */
  profile?: string;
  /** Node name (default: the hostname, made a DNS label). */
  nodeName?: string;
  /** A static WAN address instead of DHCP. */
  wan?: BootstrapWan;
}

/** A static WAN: the port is named by `interface` or by its `mac` (exactly one of them):
 *  a MAC is what a box's label shows, and a name can differ between kernels and boards. */
export interface BootstrapWan {
  interface?: string;
  mac?: string;
  address: string;
  gateway?: string;
  dns?: string[];
}

/** Largest bootstrap file accepted, wherever it comes from (kernel command line, DHCP, drive). */
export const MAX_BOOTSTRAP_BYTES = 16 * 1024;

const HOST_PORT =
  '^(?:[A-Za-z0-9](?:[-A-Za-z0-9]{0,61}[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*|\\[[0-9a-fA-F:.]+\\]):[0-9]{1,5}$';
const DNS_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';

export const BOOTSTRAP_SCHEMA = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://tether.dev/schemas/bootstrap.schema.json',
  title: 'Tether node bootstrap configuration (bootstrap.yaml)',
  type: 'object',
  additionalProperties: false,
  required: ['apiVersion', 'kind', 'controllers', 'caFingerprint', 'token', 'site'],
  properties: {
    apiVersion: { const: 'tether.dev/v1', description: 'tether.dev/v1' },
    kind: { const: 'Bootstrap', description: 'Bootstrap' },
    controllers: {
      type: 'array',
      minItems: 1,
      maxItems: 8,
      items: {
        type: 'string',
        maxLength: 260,
        pattern: HOST_PORT,
        description: 'a controller address HOST:PORT (a DNS name or IPv4 address, or [IPv6])',
      },
      description: '1 to 8 controller addresses HOST:PORT, tried in order',
    },
    caFingerprint: {
      type: 'string',
      pattern: '^(sha256:)?[0-9a-f]{64}$',
      description:
        'the SHA-256 of the controller CA certificate, 64 lowercase hex digits (the token carries the same)',
    },
    token: {
      type: 'string',
      maxLength: 200,
      pattern: '^T10[0-9a-f]{64}::[a-z0-9]{6}\\.[a-z0-9]{32}$',
      description: 'a join token from `tether token create` (T10<64 hex>::<id>.<secret>)',
    },
    site: { type: 'string', maxLength: 63, pattern: DNS_LABEL, description: 'the site name, a DNS label' },
    profile: {
      type: 'string',
      maxLength: 63,
      pattern: '^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$',
      description: 'the profile to apply (a shipped profile name such as du or cu)',
    },
    nodeName: {
      type: 'string',
      maxLength: 63,
      pattern: DNS_LABEL,
      description: 'the node name, a DNS label (default: the hostname)',
    },
    wan: {
      type: 'object',
      additionalProperties: false,
      required: ['address'],
      description:
        'a static WAN address (without it the WAN uses DHCP), on the port named by interface or mac',
      properties: {
        interface: {
          type: 'string',
          pattern: '^[A-Za-z0-9][-A-Za-z0-9_.]{0,14}$',
          description: 'an interface name (at most 15 characters)',
        },
        mac: {
          type: 'string',
          pattern: '^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$',
          description: "the WAN port's MAC address, six hex pairs separated by colons",
        },
        address: {
          type: 'string',
          format: 'ipv4-cidr',
          description: 'an IPv4 address with prefix, e.g. 192.0.2.10/24',
        },
        gateway: { type: 'string', format: 'ipv4', description: 'an IPv4 address' },
        dns: {
          type: 'array',
          maxItems: 4,
          items: { type: 'string', format: 'ipv4', description: 'an IPv4 address' },
          description: 'up to 4 IPv4 resolver addresses',
        },
      },
    },
  },
} as const;

const validate = newAjv(true).compile(BOOTSTRAP_SCHEMA);

export interface BootstrapIssue {
  file: string;
  line?: number;
  field: string;
  message: string;
  expected?: string;
}

export function formatBootstrapIssue(i: BootstrapIssue): string {
  return `${i.line ? `${i.file}:${i.line}` : i.file}: ${i.field}: ${i.message}${i.expected ? ` (expected ${i.expected})` : ''}`;
}

function issueOf(e: ErrorObject, root: unknown): { field: string; message: string; expected?: string } {
  const segs: Array<string | number> = [];
  let cur: unknown = root;
  for (const raw of e.instancePath.split('/').slice(1)) {
    const k = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur)) {
      segs.push(Number(k));
      cur = cur[Number(k)];
    } else {
      segs.push(k);
      cur = cur && typeof cur === 'object' ? (cur as Record<string, unknown>)[k] : undefined;
    }
  }
  const schemaDesc = (e.parentSchema as { description?: string } | undefined)?.description;
  switch (e.keyword) {
    case 'required': {
      const missing = (e.params as { missingProperty: string }).missingProperty;
      const desc = (e.parentSchema as { properties?: Record<string, { description?: string }> }).properties?.[
        missing
      ]?.description;
      return {
        field: formatPath([...segs, missing]),
        message: 'is required',
        ...(desc ? { expected: desc } : {}),
      };
    }
    case 'additionalProperties': {
      const extra = (e.params as { additionalProperty: string }).additionalProperty;
      const known = Object.keys((e.parentSchema as { properties?: object }).properties ?? {});
      return {
        field: formatPath([...segs, extra]),
        message: 'is not a known field',
        expected: `one of ${known.join(', ')}`,
      };
    }
    default:
      return {
        field: formatPath(segs) || '(document)',
        message: e.message ?? 'is invalid',
        ...(schemaDesc ? { expected: schemaDesc } : {}),
      };
  }
}

/**
 * Parses and checks a bootstrap file: TETHER_E_PARSE / TETHER_E_INVALID / TETHER_E_TOO_LARGE
 * naming the file, line and field, with every problem in `details.issues`. `file` names the
 * source in errors (a path, `kernel command line`, `DHCP option 143 from eth0`, …).
 */
export function parseBootstrap(text: string, file: string): BootstrapConfig {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_BOOTSTRAP_BYTES)
    throw new TetherError('TETHER_E_TOO_LARGE', `bootstrap configuration is ${bytes} bytes`, {
      file,
      expected: `at most ${MAX_BOOTSTRAP_BYTES} bytes`,
    });
  const docs = parseResourceDocuments(text, file);
  if (docs.length !== 1)
    throw new TetherError('TETHER_E_INVALID', `holds ${docs.length} YAML documents`, {
      file,
      field: '(document)',
      expected: 'exactly one mapping with apiVersion: tether.dev/v1, kind: Bootstrap',
    });
  const doc = docs[0]!;
  return checkBootstrap(doc.object, file, doc.lineOf);
}

/** Checks a bootstrap configuration already parsed (from a DHCP option or URI): the same
 *  errors as parseBootstrap, with lines when `lineOf` knows them. */
export function checkBootstrap(
  obj: unknown,
  file: string,
  lineOf: (field: string) => number | undefined = () => undefined,
): BootstrapConfig {
  const issues: BootstrapIssue[] = [];
  const add = (field: string, message: string, expected?: string) =>
    issues.push({
      file,
      ...(lineOf(field) !== undefined ? { line: lineOf(field) } : {}),
      field,
      message,
      ...(expected ? { expected } : {}),
    });
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    add('(document)', 'is not a mapping', 'a mapping with apiVersion: tether.dev/v1, kind: Bootstrap');
  } else if (!validate(obj)) {
    for (const e of validate.errors ?? []) {
      const i = issueOf(e, obj);
      if (!issues.some((x) => x.field === i.field)) add(i.field, i.message, i.expected);
    }
  } else {
    const c = obj as BootstrapConfig;
    for (const [i, a] of c.controllers.entries()) {
      const port = Number(a.slice(a.lastIndexOf(':') + 1));
      if (!(port >= 1 && port <= 65535))
        add(`controllers[${i}]`, `port ${port} is out of range`, 'a TCP port 1‥65535');
    }
    const fp = c.caFingerprint.replace(/^sha256:/, '');
    const tok = parseToken(c.token);
    if (tok.caFingerprint !== fp)
      add(
        'caFingerprint',
        'does not match the CA fingerprint the join token carries',
        'the fingerprint printed by `tether token create` (the 64 hex digits after T10 in the token)',
      );
    if (c.wan && (c.wan.interface === undefined) === (c.wan.mac === undefined))
      add(
        c.wan.interface === undefined ? 'wan' : 'wan.mac',
        c.wan.interface === undefined ? 'names no port' : 'names the port twice',
        'exactly one of wan.interface (a name such as eno1) and wan.mac (such as 52:54:00:12:34:56)',
      );
    if (c.wan?.gateway) {
      const net = parseCidr(c.wan.address);
      const gw = parseIp(c.wan.gateway);
      if (net && gw !== undefined && !cidrContains(net, gw))
        add('wan.gateway', `${c.wan.gateway} is not inside ${c.wan.address}`, 'a gateway on the WAN subnet');
    }
  }
  if (issues.length) {
    const first = issues[0]!;
    throw new TetherError(
      'TETHER_E_INVALID',
      issues.length === 1
        ? first.message
        : `${issues.length} errors:\n  ${issues.slice(0, 20).map(formatBootstrapIssue).join('\n  ')}`,
      {
        file,
        ...(first.line !== undefined ? { line: first.line } : {}),
        field: first.field,
        ...(first.expected ? { expected: first.expected } : {}),
        issues,
      },
    );
  }
  const c = obj as BootstrapConfig;
  return { ...c, caFingerprint: c.caFingerprint.replace(/^sha256:/, '') };
}
