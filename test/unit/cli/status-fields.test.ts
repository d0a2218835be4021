// The issue-11 rows of `tether status`: WAN RTT and controller clock, upstream RTT through a
// neighbour's proxy, peer VTEPs, profile with its pending reboot, first boot, VFs.
import { describe, expect, it } from 'vitest';
import { renderView, type StatusView } from '../../../src/cli/commands/status.js';

const base: StatusView = {
  source: 'live',
  sourceDetail: 'control API',
  node: 'n1',
  site: 's1',
  controller: 'c',
  daemon: 'running',
  session: 'connected',
  revision: 1,
  refusedEndpoints: [],
};
const rtt = { srttMs: 42.5, lastRttMs: 40, offsetMs: -1500, offsetErrorMs: 20, samples: 9, at: 't' };

describe('tether status: RTT, VTEPs, profile, first boot, VFs', () => {
  it('shows the WAN RTT and the controller clock, or the upstream RTT through a neighbour', () => {
    const t = renderView({ ...base, wan: { via: 'proxy', rtt } });
    expect(t).toMatch(/WAN RTT\s+43 ms \(last 40 ms, 9 sample\(s\), site proxy's WAN session\)/);
    expect(t).toMatch(/controller clock\s+-1\.5 s against this node \(±20 ms\)/);
    const n = renderView({
      ...base,
      upstream: { kind: 'proxy', address: '10.0.0.2:7444', node: 'n2' },
      upstreamRtt: { ...rtt, srttMs: 0.8 },
    });
    expect(n).toMatch(/upstream RTT\s+0\.8 ms to the site proxy/);
    expect(renderView(base)).toMatch(/WAN RTT\s+not measured yet/);
  });

  it('lists the peer VTEPs, the profile with its pending reboot, first boot and the VFs', () => {
    const t = renderView({
      ...base,
      vtep: {
        ip: '10.201.0.11',
        ifname: 'lan0',
        mtu: 1500,
        vxlanPort: 4789,
        peers: [{ vtep: '10.202.0.11', node: 's2n1', site: 's2', networks: ['blue', 'red'] }],
      },
      host: {
        profile: {
          name: 'du',
          state: 'awaiting-reboot',
          pendingReboot: ['write kernel arguments', 'blacklist irdma'],
        },
        firstBoot: {
          phase: 'profile',
          reboots: { done: 0, planned: 1, pending: false },
          step: { n: 3, of: 6 },
        },
        vfs: [
          {
            pf: '0000:51:00.0',
            netdev: 'ens1f0',
            numVfs: 3,
            totalVfs: 128,
            vfs: [
              { index: 0, pci: '0000:51:01.0', driver: 'vfio-pci' },
              { index: 1, pci: '0000:51:01.1', driver: 'vfio-pci' },
              { index: 2, pci: '0000:51:01.2', driver: 'iavf', netdev: 'ens1f0v2' },
            ],
          },
        ],
      },
    });
    expect(t).toMatch(/vtep\s+10\.201\.0\.11 on lan0, underlay MTU 1500, 1 peer VTEP\(s\)/);
    expect(t).toMatch(/peer s2n1\s+10\.202\.0\.11 \(site s2\): blue, red/);
    expect(t).toMatch(/profile\s+du: boot configuration written, reboot pending/);
    expect(t).toMatch(/pending reboots\s+1 \(write kernel arguments; blacklist irdma\)/);
    expect(t).toMatch(/first boot\s+profile \(3\/6\)/);
    expect(t).toMatch(/VFs ens1f0\s+3 of 128 on 0000:51:00\.0 \(2 vfio-pci, 1 iavf\)/);
    const failed = renderView({
      ...base,
      host: {
        profile: { state: 'none' },
        firstBoot: {
          phase: 'failed',
          failedPhase: 'enroll',
          lastError: { phase: 'enroll', code: 'TETHER_E_TOKEN', message: 'token expired' },
          reboots: { done: 0, pending: false },
        },
        vfs: [],
      },
    });
    expect(failed).toMatch(/first boot\s+failed in enroll: TETHER_E_TOKEN token expired/);
    expect(failed).toMatch(/pending reboots\s+0/);
  });

  it('shows the shells the site proxy relays and the shell frames it dropped', () => {
    const none = { bad: 0, notOwner: 0, notAttached: 0, notAllowed: 0 };
    const active = renderView({
      ...base,
      proxy: { role: 'active', agents: 2, shells: { open: 1, dropped: { ...none, bad: 1, notOwner: 2 } } },
    });
    expect(active).toMatch(/proxy role\s+active, 2 agent\(s\), 1 shell\(s\) relayed/);
    expect(active).toMatch(/proxy shell drops\s+3 frame\(s\) since start \(bad frame 1, not its shell 2\)/);
    const standby = renderView({
      ...base,
      proxy: { role: 'standby', activeNode: 'n2', shells: { open: 0, dropped: none } },
    });
    expect(standby).toMatch(/proxy role\s+standby, active: n2$/m);
    expect(standby).not.toContain('proxy shell drops');
  });
});
