import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BirdClient, parseProtocols } from '../../../src/bgp/birdc.js';

/** A socket that answers like BIRD, each reply sent in awkward pieces. */
function fakeBird(path: string, replies: Record<string, string>): Server {
  const srv = createServer((s) => {
    s.write('0001 BIRD 2.0.12 ready.\n');
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString();
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const cmd = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const r = replies[cmd] ?? '9001 syntax error\n';
        // Split mid-line to test reassembly.
        for (let i = 0; i < r.length; i += 7) s.write(r.slice(i, i + 7));
        nl = buf.indexOf('\n');
      }
    });
  });
  srv.listen(path);
  return srv;
}

describe('BIRD control socket client', () => {
  const dir = mkdtempSync(join(tmpdir(), 'birdc-'));
  let srv: Server | undefined;
  afterEach(() => {
    srv?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reassembles replies split anywhere, keeps continuation lines, reports error codes, answers in order', async () => {
    const path = join(dir, 'b.ctl');
    srv = fakeBird(path, {
      'show protocols all':
        '2002-Name       Proto      Table      State  Since         Info\n' +
        '1002-tp_r1      BGP        ---        up     2026-12-02 15:58:28  Established   \n' +
        '1006-  BGP state:          Established\n' +
        '     Neighbor address: 10.0.0.1\n' +
        '    Routes:         3 imported, 2 exported, 3 preferred\n' +
        '1002-tp_r2      BGP        ---        start  2026-12-02 15:58:30  Active        Socket: Connection refused\n' +
        '1006-  BGP state:          Active\n' +
        '    Last error:       Socket: Connection refused\n' +
        '1002-device1    Device     ---        up     2026-12-02 15:58:28  \n' +
        '0000 \n',
      'configure check "x"': '8002 x:3:1 syntax error, unexpected CF_SYM_UNDEFINED\n',
    });
    const c = new BirdClient(path);
    expect(await c.open()).toBe('BIRD 2.0.12 ready.');
    const [a, b] = await Promise.all([c.command('show protocols all'), c.command('configure check "x"')]);
    expect(a.code).toBe(0);
    expect(parseProtocols(a)).toEqual([
      {
        protocol: 'tp_r1',
        proto: 'up',
        since: '2026-12-02 15:58:28',
        bgpState: 'Established',
        imported: 3,
        exported: 2,
        neighborAddress: '10.0.0.1',
      },
      {
        protocol: 'tp_r2',
        proto: 'start',
        since: '2026-12-02 15:58:30',
        bgpState: 'Active',
        imported: 0,
        exported: 0,
        lastError: 'Socket: Connection refused',
      },
    ]);
    expect(b.code).toBe(8002);
    expect(b.lines[0]!.text).toMatch(/syntax error/);
    expect((await c.command('nonsense')).code).toBe(9001);
    expect(() => c.command('a\nb')).toThrow(/one line/);
    c.close();
  });

  it('a missing socket is TETHER_E_UNAVAILABLE, not a hang', async () => {
    await expect(new BirdClient(join(dir, 'none.ctl')).open()).rejects.toMatchObject({
      code: 'TETHER_E_UNAVAILABLE',
    });
  });
});
