import { describe, expect, it } from 'vitest';
import { parseCniArgs, parseRequest, sniffVersion } from '../../../src/cni/request.js';
import { CNI_CODES, CniError } from '../../../src/cni/spec.js';

const conf = (extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ cniVersion: '1.0.0', name: 'pods', type: 'tether-cni', network: 'blue', ...extra });

const env = (extra: Record<string, string | undefined> = {}): Record<string, string | undefined> => ({
  CNI_COMMAND: 'ADD',
  CNI_CONTAINERID: 'abc123',
  CNI_NETNS: '/var/run/netns/x',
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/opt/cni/bin',
  ...extra,
});

function codeOf(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    if (e instanceof CniError) return e.code;
    throw e;
  }
  throw new Error('expected a CniError');
}

describe('parseRequest', () => {
  it('parses a complete ADD', () => {
    const req = parseRequest(
      conf({ mtu: 1400, extraUnknown: 1 }),
      env({ CNI_ARGS: 'K8S_POD_NAME=p;IgnoreUnknown=1' }),
    );
    expect(req).toEqual({
      command: 'ADD',
      config: {
        cniVersion: '1.0.0',
        name: 'pods',
        type: 'tether-cni',
        network: 'blue',
        agentSocket: '/run/tether/cni.sock',
        mtu: 1400,
      },
      containerId: 'abc123',
      netns: '/var/run/netns/x',
      ifname: 'eth0',
      args: { K8S_POD_NAME: 'p', IgnoreUnknown: '1' },
    });
  });

  it('VERSION needs no config and echoes a supported requested version', () => {
    expect(parseRequest('', { CNI_COMMAND: 'VERSION' })).toEqual({
      command: 'VERSION',
      cniVersion: undefined,
    });
    expect(parseRequest('{"cniVersion":"0.4.0"}', { CNI_COMMAND: 'VERSION' })).toEqual({
      command: 'VERSION',
      cniVersion: '0.4.0',
    });
  });

  it('DEL works without CNI_NETNS', () => {
    const req = parseRequest(conf(), env({ CNI_COMMAND: 'DEL', CNI_NETNS: undefined }));
    expect(req.command).toBe('DEL');
    expect('netns' in req).toBe(false);
  });

  it.each([
    ['malformed JSON', '{"cniVersion":', env(), CNI_CODES.DECODE_FAILED],
    ['unknown version', conf({ cniVersion: '9.9.9' }), env(), CNI_CODES.INCOMPATIBLE_VERSION],
    ['missing cniVersion', conf({ cniVersion: undefined }), env(), CNI_CODES.INVALID_CONFIG],
    ['missing network', conf({ network: undefined }), env(), CNI_CODES.INVALID_CONFIG],
    ['bad network name', conf({ network: 'Blue Net' }), env(), CNI_CODES.INVALID_CONFIG],
    ['wrong type', conf({ type: 'bridge' }), env(), CNI_CODES.INVALID_CONFIG],
    ['missing name', conf({ name: '' }), env(), CNI_CODES.INVALID_CONFIG],
    ['bad mtu', conf({ mtu: 100 }), env(), CNI_CODES.INVALID_CONFIG],
    ['relative agentSocket', conf({ agentSocket: 'x.sock' }), env(), CNI_CODES.INVALID_CONFIG],
    ['bad prevResult', conf({ prevResult: { ips: 'x' } }), env(), CNI_CODES.INVALID_CONFIG],
    ['missing CNI_COMMAND', conf(), env({ CNI_COMMAND: undefined }), CNI_CODES.INVALID_ENV],
    ['unknown CNI_COMMAND', conf(), env({ CNI_COMMAND: 'FROB' }), CNI_CODES.INVALID_ENV],
    ['missing CNI_CONTAINERID', conf(), env({ CNI_CONTAINERID: undefined }), CNI_CODES.INVALID_ENV],
    ['bad CNI_CONTAINERID', conf(), env({ CNI_CONTAINERID: '-x/y' }), CNI_CODES.INVALID_ENV],
    ['missing CNI_IFNAME', conf(), env({ CNI_IFNAME: '' }), CNI_CODES.INVALID_ENV],
    ['too long CNI_IFNAME', conf(), env({ CNI_IFNAME: 'a23456789012345x' }), CNI_CODES.INVALID_ENV],
    ['missing CNI_NETNS on ADD', conf(), env({ CNI_NETNS: undefined }), CNI_CODES.INVALID_ENV],
    ['relative CNI_NETNS', conf(), env({ CNI_NETNS: 'netns/x' }), CNI_CODES.INVALID_ENV],
    ['bad CNI_ARGS', conf(), env({ CNI_ARGS: 'novalue' }), CNI_CODES.INVALID_ENV],
    [
      'CHECK with 0.3.1',
      conf({ cniVersion: '0.3.1' }),
      env({ CNI_COMMAND: 'CHECK' }),
      CNI_CODES.INCOMPATIBLE_VERSION,
    ],
    ['GC with 1.0.0', conf(), env({ CNI_COMMAND: 'GC' }), CNI_CODES.INCOMPATIBLE_VERSION],
  ])('%s → its CNI code', (_name, stdin, e, code) => {
    expect(codeOf(() => parseRequest(stdin, e))).toBe(code);
  });

  it('GC reads cni.dev/valid-attachments', () => {
    const req = parseRequest(
      conf({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ containerID: 'a', ifname: 'eth0' }] }),
      { CNI_COMMAND: 'GC' },
    );
    expect(req.command === 'GC' && req.config.validAttachments).toEqual([
      { containerID: 'a', ifname: 'eth0' },
    ]);
  });

  it('error details name the field and the expectation', () => {
    try {
      parseRequest(conf({ network: undefined }), env());
    } catch (e) {
      expect(e).toBeInstanceOf(CniError);
      expect((e as CniError).message).toContain('network');
      expect((e as CniError).details).toContain('expected');
    }
  });
});

describe('helpers', () => {
  it('parseCniArgs skips empty pairs', () => {
    expect(parseCniArgs('A=1;;B=x=y')).toEqual({ A: '1', B: 'x=y' });
    expect(parseCniArgs(undefined)).toEqual({});
  });
  it('sniffVersion only returns supported versions', () => {
    expect(sniffVersion('{"cniVersion":"0.4.0"}')).toBe('0.4.0');
    expect(sniffVersion('{"cniVersion":"9.9.9"}')).toBeUndefined();
    expect(sniffVersion('nope')).toBeUndefined();
  });
});
