import { describe, expect, it } from 'vitest';
import {
  ENDPOINT_SPEC_SCHEMA,
  ENROLLMENT_TOKEN_SPEC_SCHEMA,
  formatIPv4,
  NETWORK_POLICY_SPEC_SCHEMA,
  NODE_SPEC_SCHEMA,
  parseCidr,
  parseIPv4,
  SITE_SPEC_SCHEMA,
  VIRTUAL_NETWORK_SPEC_SCHEMA,
} from '../../../src/api/kinds.js';
import {
  formatPath,
  knownKinds,
  newAjv,
  parsePath,
  parseResourceDocuments,
  registerKind,
  validateDocuments,
  validateObject,
} from '../../../src/api/validate.js';
import { describeError, TetherError } from '../../../src/lib/errors.js';

function thrown(fn: () => unknown): TetherError {
  try {
    fn();
  } catch (e) {
    if (e instanceof TetherError) return e;
    throw e;
  }
  throw new Error('expected a TetherError, nothing was thrown');
}

/** A resource with the spec on line 6 onwards:
 *  1 apiVersion / 2 kind / 3 metadata: / 4   name: / 5 spec: / 6… spec body (indented 2). */
function res(kind: string, spec: string, name = 'x'): string {
  const body = spec
    .trim()
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
  return `apiVersion: tether.dev/v1\nkind: ${kind}\nmetadata:\n  name: ${name}\nspec:\n${body}\n`;
}

function validateText(text: string, file = 'in.yaml') {
  return validateDocuments(text, file);
}

const VN_OK = 'subnets: [10.1.0.0/24]';
const EP_OK = `network: blue
node: n1
site: s1
mac: 02:00:0a:01:00:05
ip: 10.1.0.5
vtep: 192.0.2.10`;

interface Case {
  name: string;
  text: string;
  field: string;
  expected: string;
  line: number;
  message?: string | RegExp;
  code?: 'TETHER_E_INVALID' | 'TETHER_E_PARSE';
}

const ONE_OF_KINDS =
  'one of: Endpoint, EnrollmentToken, FloatingIP, Gateway, NetworkPolicy, Node, Site, VirtualNetwork';

const cases: Case[] = [
  // --- envelope
  {
    name: 'wrong apiVersion',
    text: res('Site', 'description: a').replace('tether.dev/v1', 'tether.dev/v2'),
    field: 'apiVersion',
    expected: '"tether.dev/v1"',
    line: 1,
  },
  {
    name: 'unknown kind, with a suggestion',
    text: res('VirtualNetwrok', VN_OK),
    field: 'kind',
    expected: ONE_OF_KINDS,
    line: 2,
    message: 'unknown kind "VirtualNetwrok" (did you mean "VirtualNetwork"?)',
  },
  {
    name: 'missing kind',
    text: 'apiVersion: tether.dev/v1\nmetadata:\n  name: x\n',
    field: 'kind',
    expected: ONE_OF_KINDS,
    line: 1,
    message: 'missing required field "kind"',
  },
  {
    name: 'document is a list',
    text: '- a\n- b\n',
    field: '',
    expected: 'a mapping with apiVersion, kind, metadata and spec',
    line: 1,
  },
  {
    name: 'missing metadata',
    text: 'apiVersion: tether.dev/v1\nkind: Site\nspec: {}\n',
    field: 'metadata',
    expected: 'a mapping',
    line: 1,
    message: 'missing required field "metadata"',
  },
  {
    name: 'name with uppercase',
    text: res('Site', 'description: a', 'Cell_1'),
    field: 'metadata.name',
    expected:
      'a DNS-1123 label: at most 63 lowercase letters, digits or "-", starting and ending with a letter or digit',
    line: 4,
    message: '"Cell_1" is not valid',
  },
  {
    name: 'name too long',
    text: res('Site', 'description: a', 'a'.repeat(64)),
    field: 'metadata.name',
    expected:
      'a DNS-1123 label: at most 63 lowercase letters, digits or "-", starting and ending with a letter or digit',
    line: 4,
  },
  {
    name: 'dotted name on a kind that takes labels',
    text: res('Site', 'description: a', 'cell.1'),
    field: 'metadata.name',
    expected:
      'a DNS-1123 label: at most 63 lowercase letters, digits or "-", starting and ending with a letter or digit',
    line: 4,
  },
  {
    name: 'Endpoint name ending in a dot',
    text: res('Endpoint', EP_OK, 'pod-1.'),
    field: 'metadata.name',
    expected:
      'a DNS-1123 subdomain: at most 253 characters, dot-separated labels of lowercase letters, digits or "-"',
    line: 4,
  },
  {
    name: 'unknown top-level field',
    text: `${res('Site', 'description: a')}specs: {}\n`,
    field: 'specs',
    expected: 'only the fields apiVersion, kind, metadata, spec, status',
    line: 7,
    message: 'unknown field "specs" (did you mean "spec"?)',
  },
  {
    name: 'unknown metadata field',
    text: res('Site', 'description: a').replace('  name: x\n', '  name: x\n  lables: {a: b}\n'),
    field: 'metadata.lables',
    expected: 'only the fields name, labels, annotations, revision, createRevision, creationTimestamp',
    line: 5,
    message: 'unknown field "lables" (did you mean "labels"?)',
  },
  {
    name: 'label value not a string',
    text: res('Site', 'description: a').replace('  name: x\n', '  name: x\n  labels:\n    tier: 3\n'),
    field: 'metadata.labels.tier',
    expected: 'a string label value',
    line: 6,
    message: 'must be a string, not 3',
  },
  {
    name: 'label key with a space',
    text: res('Site', 'description: a').replace('  name: x\n', '  name: x\n  labels:\n    "a b": c\n'),
    field: 'metadata.labels["a b"]',
    expected: 'a label key: letters, digits, "-", "_", ".", "/", starting and ending alphanumeric',
    line: 6,
    message: 'invalid key "a b"',
  },
  // --- Site
  {
    name: 'Site approval not in enum',
    text: res('Site', 'approval: sometimes'),
    field: 'spec.approval',
    expected: 'one of: "auto", "manual"',
    line: 6,
    message: '"sometimes" is not allowed',
  },
  {
    name: 'Site MTU too small',
    text: res('Site', 'description: a\nunderlayMtu: 1000'),
    field: 'spec.underlayMtu',
    expected: 'an integer MTU from 1280 to 9216',
    line: 7,
  },
  {
    name: 'Site MTU not an integer',
    text: res('Site', 'underlayMtu: 1500.5'),
    field: 'spec.underlayMtu',
    expected: 'an integer MTU from 1280 to 9216',
    line: 6,
    message: 'must be an integer, not 1500.5',
  },
  {
    name: 'Site MTU as a string',
    text: res('Site', 'underlayMtu: "1500"'),
    field: 'spec.underlayMtu',
    expected: 'an integer MTU from 1280 to 9216',
    line: 6,
    message: 'must be an integer, not "1500"',
  },
  {
    name: 'Site typo in spec',
    text: res('Site', 'descripton: a'),
    field: 'spec.descripton',
    expected: 'only the fields description, approval, labels, underlayMtu, autonomySeconds, profile',
    line: 6,
    message: 'unknown field "descripton" (did you mean "description"?)',
  },
  // --- Node
  {
    name: 'Node without site',
    text: res('Node', 'facts: {cpus: 4}'),
    field: 'spec.site',
    expected: 'the name of an object (a DNS-1123 label)',
    line: 5,
    message: 'missing required field "site"',
  },
  // --- EnrollmentToken
  {
    name: 'token expiresAt not a date-time',
    text: res('EnrollmentToken', 'site: s1\nexpiresAt: tomorrow\nuses: 1'),
    field: 'spec.expiresAt',
    expected: 'an RFC 3339 date-time like 2026-01-31T12:00:00Z',
    line: 7,
    message: '"tomorrow" is not an RFC 3339 date-time',
  },
  {
    name: 'token uses 0',
    text: res('EnrollmentToken', 'site: s1\nexpiresAt: 2026-01-01T00:00:00Z\nuses: 0'),
    field: 'spec.uses',
    expected: 'an integer >= 1',
    line: 8,
  },
  // --- VirtualNetwork
  {
    name: 'VN without subnets',
    text: res('VirtualNetwork', 'localBreakout: true'),
    field: 'spec.subnets',
    expected: 'a list of at least one IPv4 CIDR',
    line: 5,
    message: 'missing required field "subnets"',
  },
  {
    name: 'VN without spec at all',
    text: 'apiVersion: tether.dev/v1\nkind: VirtualNetwork\nmetadata:\n  name: x\n',
    field: 'spec.subnets',
    expected: 'a list of at least one IPv4 CIDR',
    line: 1,
  },
  {
    name: 'VN empty subnets',
    text: res('VirtualNetwork', 'subnets: []'),
    field: 'spec.subnets',
    expected: 'a list of at least one IPv4 CIDR',
    line: 6,
  },
  {
    name: 'VN subnet not a CIDR',
    text: res('VirtualNetwork', 'subnets:\n  - 10.1.0.0/24\n  - 10.2.0.0/33'),
    field: 'spec.subnets[1]',
    expected: 'an IPv4 CIDR like 10.0.0.0/24',
    line: 8,
    message: '"10.2.0.0/33" is not an IPv4 CIDR',
  },
  {
    name: 'VN subnet octet out of range',
    text: res('VirtualNetwork', 'subnets: [10.256.0.0/16]'),
    field: 'spec.subnets[0]',
    expected: 'an IPv4 CIDR like 10.0.0.0/24',
    line: 6,
  },
  {
    name: 'VN subnet with host bits set',
    text: res('VirtualNetwork', 'subnets:\n  - 10.1.0.1/24'),
    field: 'spec.subnets[0]',
    expected: 'a network address with host bits zero, e.g. 10.1.0.0/24',
    line: 7,
    message: '10.1.0.1/24 has host bits set (did you mean 10.1.0.0/24?)',
  },
  {
    name: 'VN overlapping subnets',
    text: res('VirtualNetwork', 'subnets:\n  - 10.1.0.0/16\n  - 10.1.2.0/24'),
    field: 'spec.subnets[1]',
    expected: 'subnets that do not overlap',
    line: 8,
  },
  {
    name: 'VN gateway outside subnets[0]',
    text: res('VirtualNetwork', 'subnets: [10.1.0.0/24]\ngateway: 10.2.0.1'),
    field: 'spec.gateway',
    expected: 'an address inside spec.subnets[0] (10.1.0.0/24)',
    line: 7,
    message: '10.2.0.1 is outside 10.1.0.0/24',
  },
  {
    name: 'VN gateway is the network address',
    text: res('VirtualNetwork', 'subnets: [10.1.0.0/24]\ngateway: 10.1.0.0'),
    field: 'spec.gateway',
    expected: 'a host address inside 10.1.0.0/24',
    line: 7,
  },
  {
    name: 'VN gateway not an IPv4 address',
    text: res('VirtualNetwork', 'subnets: [10.1.0.0/24]\ngateway: 10.1.0'),
    field: 'spec.gateway',
    expected: 'an IPv4 address like 10.0.0.1',
    line: 7,
  },
  {
    name: 'VN vni out of range',
    text: res('VirtualNetwork', `${VN_OK}\nvni: 16777216`),
    field: 'spec.vni',
    expected: 'an integer VNI from 1 to 16777215',
    line: 7,
  },
  {
    name: 'VN duplicate site',
    text: res('VirtualNetwork', `${VN_OK}\nsites: [a, b, a]`),
    field: 'spec.sites[2]',
    expected: 'a list of distinct site names',
    line: 7,
  },
  {
    name: 'VN localBreakout as a string',
    text: res('VirtualNetwork', `${VN_OK}\nlocalBreakout: "yes"`),
    field: 'spec.localBreakout',
    expected: 'a boolean',
    line: 7,
    message: 'must be a boolean, not "yes"',
  },
  // --- NetworkPolicy
  {
    name: 'policy defaultAction not in enum',
    text: res('NetworkPolicy', 'network: blue\ndefaultAction: reject\nrules: []'),
    field: 'spec.defaultAction',
    expected: 'one of: "allow", "deny"',
    line: 7,
  },
  {
    name: 'policy rule missing to',
    text: res(
      'NetworkPolicy',
      'network: blue\ndefaultAction: deny\nrules:\n  - name: web\n    action: allow\n    from: {matchLabels: {app: a}}',
    ),
    field: 'spec.rules[0].to',
    expected: 'a selector {matchLabels: {...}}',
    line: 9,
    message: 'missing required field "to"',
  },
  {
    name: 'policy port out of range',
    text: res(
      'NetworkPolicy',
      `network: blue
defaultAction: deny
rules:
  - name: web
    action: allow
    from: {matchLabels: {app: a}}
    to: {matchLabels: {app: b}}
    ports:
      - {protocol: tcp, port: 80}
      - {protocol: tcp, port: 70000}`,
    ),
    field: 'spec.rules[0].ports[1].port',
    expected: 'a port from 1 to 65535',
    line: 15,
  },
  {
    name: 'policy protocol not in enum',
    text: res(
      'NetworkPolicy',
      `network: blue
defaultAction: deny
rules:
  - name: web
    action: allow
    from: {matchLabels: {}}
    to: {matchLabels: {}}
    ports:
      - protocol: sctp`,
    ),
    field: 'spec.rules[0].ports[0].protocol',
    expected: 'one of: "tcp", "udp", "icmp"',
    line: 14,
  },
  {
    name: 'policy icmp with a port',
    text: res(
      'NetworkPolicy',
      `network: blue
defaultAction: deny
rules:
  - name: ping
    action: allow
    from: {matchLabels: {}}
    to: {matchLabels: {}}
    ports:
      - protocol: icmp
        port: 8`,
    ),
    field: 'spec.rules[0].ports[0].port',
    expected: 'no port for protocol icmp',
    line: 15,
  },
  {
    name: 'policy duplicate rule names',
    text: res(
      'NetworkPolicy',
      `network: blue
defaultAction: deny
rules:
  - {name: web, action: allow, from: {matchLabels: {}}, to: {matchLabels: {}}}
  - {name: web, action: deny, from: {matchLabels: {}}, to: {matchLabels: {}}}`,
    ),
    field: 'spec.rules[1].name',
    expected: 'rule names unique within the policy',
    line: 10,
    message: 'rule name "web" is already used by spec.rules[0]',
  },
  {
    name: 'policy selector typo',
    text: res(
      'NetworkPolicy',
      `network: blue
defaultAction: deny
rules:
  - name: web
    action: allow
    from:
      matchLabel: {app: a}
    to: {matchLabels: {}}`,
    ),
    field: 'spec.rules[0].from.matchLabel',
    expected: 'only the fields matchLabels',
    line: 12,
    message: 'unknown field "matchLabel" (did you mean "matchLabels"?)',
  },
  // --- Endpoint
  {
    name: 'endpoint bad mac',
    text: res('Endpoint', EP_OK.replace('02:00:0a:01:00:05', '02-00-0a-01-00-05')),
    field: 'spec.mac',
    expected: 'a lowercase MAC address like 02:00:0a:00:00:05',
    line: 9,
  },
  {
    name: 'endpoint multicast mac',
    text: res('Endpoint', EP_OK.replace('02:00:0a:01:00:05', '01:00:5e:00:00:01')),
    field: 'spec.mac',
    expected: 'a unicast MAC (lowest bit of the first octet clear)',
    line: 9,
  },
  {
    name: 'endpoint vtep not IPv4',
    text: res('Endpoint', EP_OK.replace('192.0.2.10', '2001:db8::1')),
    field: 'spec.vtep',
    expected: 'an IPv4 address like 10.0.0.1',
    line: 11,
  },
  {
    name: 'endpoint missing ip',
    text: res('Endpoint', EP_OK.replace('ip: 10.1.0.5\n', '')),
    field: 'spec.ip',
    expected: 'an IPv4 address like 10.0.0.1',
    line: 5,
    message: 'missing required field "ip"',
  },
  {
    name: 'endpoint hostIfname too long',
    text: res('Endpoint', `${EP_OK}\nhostIfname: abcdefghijklmnop`),
    field: 'spec.hostIfname',
    expected: 'a Linux interface name (1-15 characters, no "/", ":" or spaces)',
    line: 12,
  },
  // --- syntax
  {
    name: 'YAML syntax error',
    text: 'apiVersion: tether.dev/v1\nkind: Site\nmetadata:\n  name: x: y\nspec: {}\n',
    code: 'TETHER_E_PARSE',
    field: '',
    expected: '',
    line: 4,
  },
  {
    name: 'duplicate key',
    text: 'apiVersion: tether.dev/v1\nkind: Site\nmetadata:\n  name: x\nkind: Node\n',
    code: 'TETHER_E_PARSE',
    field: '',
    expected: 'each key once per mapping',
    line: 5,
    message: /^Map keys must be unique: "kind" appears twice$/,
  },
  {
    name: 'duplicate key inside a list of mappings',
    text: 'apiVersion: tether.dev/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\nspec:\n  network: red\n  rules:\n    - name: a\n      action: allow\n    - name: b\n      action: allow\n      name: c\n',
    code: 'TETHER_E_PARSE',
    field: '',
    expected: 'each key once per mapping',
    line: 12,
    message: /"name" appears twice/,
  },
  {
    name: 'duplicate key in the second document',
    text: 'apiVersion: tether.dev/v1\nkind: Site\nmetadata:\n  name: x\n---\napiVersion: tether.dev/v1\nkind: Site\nmetadata:\n  name: y\n  labels: {a: 1, a: 2}\n',
    code: 'TETHER_E_PARSE',
    field: '',
    expected: 'each key once per mapping',
    line: 10,
    message: /"a" appears twice/,
  },
];

describe('validateObject: each bad input names file, line, field and expectation', () => {
  it.each(cases)('$name', (c) => {
    const e = thrown(() => validateText(c.text, 'res.yaml'));
    expect(e.code).toBe(c.code ?? 'TETHER_E_INVALID');
    expect(e.details.file).toBe('res.yaml');
    expect(e.details.line).toBe(c.line);
    if (e.code === 'TETHER_E_INVALID') {
      expect(e.details.field ?? '').toBe(c.field);
      expect(e.details.expected).toBe(c.expected);
      const errors = e.details.errors as Array<{ field: string }>;
      expect(errors[0]).toMatchObject({ field: c.field, expected: c.expected, line: c.line });
    }
    if (typeof c.message === 'string') expect(e.message).toBe(c.message);
    else if (c.message) expect(e.message).toMatch(c.message);
  });

  it('reports every problem in details.errors, first in document order', () => {
    const e = thrown(() =>
      validateText(
        res('Site', 'approval: maybe\nunderlayMtu: 10\nfoo: 1', 'Bad').replace('tether.dev/v1', 'v1'),
      ),
    );
    const errors = e.details.errors as Array<{ field: string; line: number }>;
    expect(errors.map((x) => [x.field, x.line])).toEqual([
      ['apiVersion', 1],
      ['metadata.name', 4],
      ['spec.approval', 6],
      ['spec.underlayMtu', 7],
      ['spec.foo', 8],
    ]);
    expect(e.details).toMatchObject({ field: 'apiVersion', line: 1, kind: 'Site', name: 'Bad' });
    expect(describeError(e)).toBe(
      'in.yaml:1: apiVersion: "v1" is not allowed (expected "tether.dev/v1") [TETHER_E_INVALID]',
    );
  });

  it('names the document index and the line in a multi-document file', () => {
    const text = `${res('Site', 'description: a', 's1')}---\n${res('VirtualNetwork', 'subnets: [10.0.0.1/8]', 'blue')}`;
    const e = thrown(() => validateText(text, 'multi.yaml'));
    expect(e.details).toMatchObject({
      file: 'multi.yaml',
      line: 13,
      field: 'spec.subnets[0]',
      document: 1,
      kind: 'VirtualNetwork',
      name: 'blue',
    });
  });

  it('rejects the same object twice in one file', () => {
    const text = `${res('Site', 'description: a')}---\n${res('Site', 'description: b')}`;
    const e = thrown(() => validateText(text, 'dup.yaml'));
    expect(e.code).toBe('TETHER_E_INVALID');
    expect(e.details).toMatchObject({ file: 'dup.yaml', line: 11, field: 'metadata.name' });
    expect(e.message).toBe('Site/x is already defined in this file at line 4');
  });

  it('without a source, errors carry no file or line but still the field', () => {
    const e = thrown(() =>
      validateObject({
        apiVersion: 'tether.dev/v1',
        kind: 'VirtualNetwork',
        metadata: { name: 'a' },
        spec: {},
      }),
    );
    expect(e.details.file).toBeUndefined();
    expect(e.details.line).toBeUndefined();
    expect(e.details.field).toBe('spec.subnets');
  });
});

describe('validateObject: good input', () => {
  it('accepts every kind and fills defaults without touching the input', () => {
    const text = [
      res(
        'Site',
        'description: cell 1\nlabels: {region: north}\napproval: manual\nautonomySeconds: 3600',
        'cell-1',
      ),
      res('Node', 'site: cell-1\nfacts: {cpus: 8, nics: [{name: eth0}]}', 'n1'),
      res('EnrollmentToken', 'site: cell-1\nexpiresAt: 2026-01-31T12:00:00Z\nuses: 3', 'tok-1'),
      res(
        'VirtualNetwork',
        'subnets: [10.1.0.0/24, 10.2.0.0/24]\ngateway: 10.1.0.1\nlocalBreakout: true\nsites: [cell-1]\nvni: 5001',
        'blue',
      ),
      res(
        'NetworkPolicy',
        `network: blue
defaultAction: deny
rules:
  - name: web
    action: allow
    from: {matchLabels: {app: frontend}}
    to: {matchLabels: {"app.kubernetes.io/name": backend}}
    ports: [{protocol: tcp, port: 443}, {protocol: icmp}]`,
        'blue-policy',
      ),
      res('Endpoint', `${EP_OK}\nhostIfname: veth1a2b\nlabels: {app: frontend}`, 'blue.pod-1.ns'),
    ].join('---\n');
    const objs = validateText(text);
    expect(objs.map((o) => o.kind)).toEqual([
      'Site',
      'Node',
      'EnrollmentToken',
      'VirtualNetwork',
      'NetworkPolicy',
      'Endpoint',
    ]);
    expect(objs[0]!.spec).toEqual({
      description: 'cell 1',
      labels: { region: 'north' },
      approval: 'manual',
      autonomySeconds: 3600,
      underlayMtu: 1500,
    });
    const input = { apiVersion: 'tether.dev/v1', kind: 'Site', metadata: { name: 'a' } };
    const out = validateObject(input);
    expect(out.spec).toEqual({ approval: 'auto', underlayMtu: 1500 });
    expect(input).toEqual({ apiVersion: 'tether.dev/v1', kind: 'Site', metadata: { name: 'a' } });
  });

  it('accepts JSON input, store-set metadata and status', () => {
    const json = JSON.stringify({
      apiVersion: 'tether.dev/v1',
      kind: 'Node',
      metadata: { name: 'n1', revision: 4, createRevision: 2, creationTimestamp: '2026-01-01T00:00:00.000Z' },
      spec: { site: 's1' },
      status: { phase: 'Approved', certSerial: '01ab' },
    });
    const [o] = validateText(json, 'n.json');
    expect(o!.status).toEqual({ phase: 'Approved', certSerial: '01ab' });
  });

  it('accepts /31 and /32 gateways and a /0 subnet', () => {
    expect(() =>
      validateText(res('VirtualNetwork', 'subnets: [10.0.0.0/31]\ngateway: 10.0.0.0')),
    ).not.toThrow();
    expect(() =>
      validateText(res('VirtualNetwork', 'subnets: [10.0.0.7/32]\ngateway: 10.0.0.7')),
    ).not.toThrow();
    expect(() => validateText(res('VirtualNetwork', 'subnets: [0.0.0.0/0]'))).not.toThrow();
  });
});

describe('parseResourceDocuments', () => {
  it('checks duplicate keys in linear time: a 100,000-key mapping parses (the library check took 40 s at 80,000)', () => {
    let t = 'apiVersion: tether.dev/v1\nkind: Site\nmetadata:\n  name: s\n  labels:\n';
    for (let i = 0; i < 100_000; i++) t += `    k${i}: v\n`;
    const docs = parseResourceDocuments(t, 'big.yaml');
    const labels = (docs[0]?.object as { metadata?: { labels?: object } } | undefined)?.metadata?.labels;
    expect(Object.keys(labels ?? {})).toHaveLength(100_000);
    const e = thrown(() => parseResourceDocuments(`${t}    k99999: again\n`, 'big.yaml'));
    expect(e.code).toBe('TETHER_E_PARSE');
    expect(e.details.line).toBe(100_006);
  });

  it('skips empty documents and gives document and field lines', () => {
    const text = `# leading comment\n---\n${res('VirtualNetwork', 'subnets:\n  - 10.0.0.0/24\n  - 10.1.0.0/24')}---\n---\n`;
    const docs = parseResourceDocuments(text, 'f.yaml');
    expect(docs).toHaveLength(1);
    const d = docs[0]!;
    expect(d.line).toBe(3);
    expect(d.lineOf('kind')).toBe(4);
    expect(d.lineOf('spec.subnets[1]')).toBe(10);
    // Missing paths resolve to their nearest existing ancestor.
    expect(d.lineOf('spec.gateway')).toBe(7);
    expect(d.lineOf('spec.subnets[7]')).toBe(8);
    expect(d.lineOf('')).toBe(3);
  });

  it('treats an empty file as no documents', () => {
    expect(parseResourceDocuments('', 'e.yaml')).toEqual([]);
    expect(parseResourceDocuments('# nothing\n', 'e.yaml')).toEqual([]);
  });

  it('keeps date-like and yes/no scalars as YAML 1.2 does', () => {
    const [d] = parseResourceDocuments('a: 2026-01-01\nb: yes\nc: "1.0"\n', 'y.yaml');
    expect(d!.object).toEqual({ a: '2026-01-01', b: 'yes', c: '1.0' });
  });

  it('refuses alias bombs', () => {
    const bomb =
      'a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n';
    expect(thrown(() => parseResourceDocuments(bomb, 'bomb.yaml')).code).toBe('TETHER_E_PARSE');
  });
});

describe('paths and addresses', () => {
  it('formats and parses readable paths', () => {
    for (const segs of [
      ['spec', 'subnets', 0],
      ['metadata', 'labels', 'app.kubernetes.io/name'],
      ['spec', 'rules', 1, 'ports', 0, 'port'],
      ['a b', 'c"d'],
    ]) {
      expect(parsePath(formatPath(segs))).toEqual(segs);
    }
    expect(formatPath(['metadata', 'labels', 'a.b'])).toBe('metadata.labels["a.b"]');
    expect(parsePath('')).toEqual([]);
  });

  it('parses IPv4 and CIDRs strictly', () => {
    expect(parseIPv4('10.0.0.1')).toBe(0x0a000001);
    expect(parseIPv4('255.255.255.255')).toBe(0xffffffff);
    for (const bad of ['10.0.0', '10.0.0.256', '010.0.0.1', '1.2.3.4.5', ' 1.2.3.4', '']) {
      expect(parseIPv4(bad)).toBeUndefined();
    }
    expect(parseCidr('10.1.2.3/16')).toEqual({
      address: 0x0a010203,
      prefix: 16,
      network: 0x0a010000,
      broadcast: 0x0a01ffff,
    });
    expect(parseCidr('0.0.0.0/0')?.broadcast).toBe(0xffffffff);
    for (const bad of ['10.0.0.0/33', '10.0.0.0/', '10.0.0.0/08', '10.0.0.0'])
      expect(parseCidr(bad)).toBeUndefined();
    expect(formatIPv4(0xc0000201)).toBe('192.0.2.1');
  });
});

describe('registerKind', () => {
  it('adds a kind that validates like the built-in ones', () => {
    registerKind(
      'Profile',
      {
        type: 'object',
        additionalProperties: false,
        required: ['role'],
        properties: { role: { enum: ['du', 'cu'] } },
      },
      undefined,
      {
        check: (o) =>
          o.metadata.name.startsWith('x')
            ? [{ field: 'metadata.name', message: 'no x names', expected: 'a name not starting with x' }]
            : [],
      },
    );
    expect(knownKinds()).toContain('Profile');
    expect(validateText(res('Profile', 'role: du', 'p1'))).toHaveLength(1);
    const e = thrown(() => validateText(res('Profile', 'role: ran', 'p')));
    expect(e.details).toMatchObject({ field: 'spec.role', line: 6, expected: 'one of: "du", "cu"' });
    expect(thrown(() => validateText(res('Profile', 'role: cu', 'xp'))).details.field).toBe('metadata.name');
    // Same definition again: fine. Different one: a bug.
    expect(thrown(() => registerKind('Profile', { type: 'object' })).code).toBe('TETHER_E_INTERNAL');
    expect(thrown(() => registerKind('profile', { type: 'object' })).code).toBe('TETHER_E_INTERNAL');
  });
});

describe('schemas', () => {
  it('built-in spec schemas compile under Ajv strict mode', () => {
    const strict = newAjv(true);
    for (const schema of [
      SITE_SPEC_SCHEMA,
      NODE_SPEC_SCHEMA,
      ENROLLMENT_TOKEN_SPEC_SCHEMA,
      VIRTUAL_NETWORK_SPEC_SCHEMA,
      NETWORK_POLICY_SPEC_SCHEMA,
      ENDPOINT_SPEC_SCHEMA,
    ]) {
      expect(() => strict.compile(schema)).not.toThrow();
    }
  });

  it('a registered schema may carry $schema, definitions and internal $refs', () => {
    registerKind('Widget', {
      $schema: 'http://json-schema.org/draft-07/schema#',
      type: 'object',
      additionalProperties: false,
      required: ['size'],
      definitions: { size: { type: 'integer', minimum: 1, description: 'a size >= 1' } },
      properties: { size: { $ref: '#/definitions/size' }, markdownDescription: { type: 'string' } },
    });
    expect(validateText(res('Widget', 'size: 3'))[0]!.spec).toEqual({ size: 3 });
    const e = thrown(() => validateText(res('Widget', 'size: 0')));
    expect(e.details).toMatchObject({ field: 'spec.size', line: 6, expected: 'a size >= 1' });
  });
});
