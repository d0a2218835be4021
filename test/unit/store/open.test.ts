import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { loadEtcdTls, openDatastore, parseDatastoreUrl } from '../../../src/controller/store/open.js';
import { isTetherError } from '../../../src/lib/errors.js';

const root = mkdtempSync(join(tmpdir(), 'tether-open-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function configErr(f: () => unknown): { field?: unknown; message: string } {
  try {
    f();
  } catch (e) {
    if (isTetherError(e, 'TETHER_E_CONFIG')) return { field: e.details.field, message: e.message };
    throw e;
  }
  throw new Error('expected TETHER_E_CONFIG');
}

describe('parseDatastoreUrl', () => {
  it('parses every accepted form', () => {
    expect(parseDatastoreUrl('memory:')).toEqual({ backend: 'memory' });
    expect(parseDatastoreUrl('sqlite:/var/lib/tether')).toEqual({
      backend: 'sqlite',
      dataDir: '/var/lib/tether',
    });
    expect(parseDatastoreUrl('sqlite:rel/dir')).toEqual({ backend: 'sqlite', dataDir: 'rel/dir' });
    expect(parseDatastoreUrl('etcd://127.0.0.1:2379,127.0.0.2:2379')).toEqual({
      backend: 'etcd',
      endpoints: ['127.0.0.1:2379', '127.0.0.2:2379'],
      tls: false,
      prefix: '/tether/',
    });
    expect(parseDatastoreUrl('etcds://etcd.example.com:2379/prod/tether/')).toEqual({
      backend: 'etcd',
      endpoints: ['etcd.example.com:2379'],
      tls: true,
      prefix: '/prod/tether/',
    });
    expect(parseDatastoreUrl('etcd://[::1]:2379,[fd00::2]:2379').backend).toBe('etcd');
  });

  it('refuses malformed URLs with TETHER_E_CONFIG naming the flag', () => {
    const bad = [
      '',
      'mysql://x',
      'sqlite:',
      'sqlite://host/x',
      'memory:x',
      'etcd://',
      'etcd://127.0.0.1',
      'etcd://127.0.0.1:0',
      'etcd://127.0.0.1:65536',
      'etcd://127.0.0.1:2379,',
      'etcd://300.0.0.1:2379',
      'etcd://a.example:1,b.example:2',
      'etcd://127.0.0.1:1,[::1]:2',
      'etcd://h_st:2379',
      'etcd://127.0.0.1:2379/no-slash',
      'etcd://127.0.0.1:2379/a//b/',
      'etcd://127.0.0.1:2379/a b/',
      'sqlite:/x\0y',
      `etcd://${'1.1.1.1:1,'.repeat(40)}1.1.1.1:1`,
      `sqlite:${'x'.repeat(5000)}`,
    ];
    for (const u of bad) {
      const e = configErr(() => parseDatastoreUrl(u, '--to'));
      expect(e.field, u).toBe('--to');
      expect(e.message.startsWith('--to: '), u).toBe(true);
    }
  });

  it('fuzz: any string parses to a spec or fails with TETHER_E_CONFIG, never anything else', () => {
    const piece = fc.oneof(
      fc.string(),
      fc.constantFrom(
        'etcd://',
        'etcds://',
        'sqlite:',
        'memory:',
        ':',
        ',',
        '/',
        '[',
        ']',
        '127.0.0.1',
        '::1',
        '2379',
        'a.b',
      ),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 8 }), (parts) => {
        const u = parts.join('');
        try {
          const spec = parseDatastoreUrl(u);
          if (spec.backend === 'etcd') {
            expect(spec.endpoints.length).toBeGreaterThan(0);
            expect(spec.prefix.endsWith('/')).toBe(true);
          }
        } catch (e) {
          expect(isTetherError(e, 'TETHER_E_CONFIG')).toBe(true);
        }
      }),
      { numRuns: 3000 },
    );
  });
});

describe('TLS options and openDatastore', () => {
  it('refuses TLS files without etcds://, a cert without its key, and unreadable or non-PEM files', () => {
    expect(
      configErr(() => loadEtcdTls(parseDatastoreUrl('etcd://127.0.0.1:1'), { caFile: '/x' })).field,
    ).toBe('--datastore');
    const etcds = parseDatastoreUrl('etcds://127.0.0.1:1');
    expect(configErr(() => loadEtcdTls(etcds, { certFile: '/x' })).field).toBe('--etcd-cert');
    expect(configErr(() => loadEtcdTls(etcds, { caFile: join(root, 'missing.pem') })).field).toBe(
      '--etcd-ca',
    );
    const notPem = join(root, 'not.pem');
    writeFileSync(notPem, 'hello');
    expect(configErr(() => loadEtcdTls(etcds, { caFile: notPem })).message).toMatch(/no PEM block/);
  });

  it('opens memory and sqlite stores that work', async () => {
    for (const url of ['memory:', `sqlite:${join(root, 'db')}`]) {
      const ds = await openDatastore(parseDatastoreUrl(url));
      expect(ds.backend).toBe(url.split(':')[0]);
      await ds.probe();
      expect(await ds.revision()).toBe(0);
      await ds.close();
    }
  });
});
