/**
 * BIRD 2 configuration as a pure function of desired state. Same input, same bytes: the
 * daemon wrapper compares rendered text to decide whether BIRD needs a `configure` at all.
 * Nothing here touches the system.
 */

export interface BirdPeer {
  /** A name unique in the config: letters, digits, `_` (used in the protocol name). */
  name: string;
  address: string;
  asn: number;
  holdSeconds: number;
  keepaliveSeconds: number;
  bfd?: { intervalMs: number; multiplier: number };
}

export interface BirdConfig {
  routerId: string;
  localAsn: number;
  peers: BirdPeer[];
  /** Prefixes announced to every peer (site networks and floating IP /32s). */
  announce: string[];
  /** Install a default route learned from a peer in the kernel's main table. */
  acceptDefaultRoute: boolean;
  /** RFC 4724 restart time. */
  gracefulRestartSeconds: number;
  /** RFC 9494 long-lived stale time; 0 turns LLGR off. */
  llgrStaleSeconds: number;
  /** Prepend the local AS this many times to everything announced (a standby gateway,
   *  src/node/gateway/ha.ts); absent or 0: announce as is. */
  prepend?: number;
}

const SAFE_NAME = /^[A-Za-z0-9_]{1,40}$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const CIDR4 = /^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/;

/** BIRD's protocol name for a peer. */
/** How long a restarted BIRD waits for its peers' End-of-RIB before announcing anyway. */
export const GR_WAIT_SECONDS = 10;

export function peerProtocol(name: string): string {
  return `tp_${name.replace(/-/g, '_')}`;
}

/** The static protocol that originates what the gateway announces. */
export const ANNOUNCE_PROTOCOL = 'tether_announce';

function assertSafe(c: BirdConfig): void {
  // The renderer is the last line before text BIRD parses: a value that slipped past
  // validation must not be able to inject configuration.
  const bad = (what: string) => {
    throw new Error(`bird render: unsafe ${what}`);
  };
  if (!IPV4.test(c.routerId)) bad(`router id ${JSON.stringify(c.routerId)}`);
  for (const p of c.peers) {
    if (!SAFE_NAME.test(peerProtocol(p.name))) bad(`peer name ${JSON.stringify(p.name)}`);
    if (!IPV4.test(p.address)) bad(`peer address ${JSON.stringify(p.address)}`);
  }
  for (const a of c.announce) if (!CIDR4.test(a)) bad(`prefix ${JSON.stringify(a)}`);
  for (const n of [
    c.localAsn,
    c.gracefulRestartSeconds,
    c.llgrStaleSeconds,
    c.prepend ?? 0,
    ...c.peers.flatMap((p) => [
      p.asn,
      p.holdSeconds,
      p.keepaliveSeconds,
      p.bfd?.intervalMs ?? 0,
      p.bfd?.multiplier ?? 0,
    ]),
  ])
    if (!Number.isSafeInteger(n) || n < 0) bad(`number ${n}`);
  if ((c.prepend ?? 0) > 8) bad(`prepend count ${c.prepend}`);
}

export function renderBirdConfig(c: BirdConfig): string {
  assertSafe(c);
  const peers = [...c.peers].sort((a, b) => a.name.localeCompare(b.name));
  const announce = [...new Set(c.announce)].sort();
  const anyBfd = peers.some((p) => p.bfd);
  // A change of prepend is a filter change: BIRD re-exports in place, the session stays.
  const prepend = c.prepend ?? 0;
  const exportLine = prepend
    ? `    export filter { if proto != "${ANNOUNCE_PROTOCOL}" then reject; ${Array.from({ length: prepend }, () => `bgp_path.prepend(${c.localAsn});`).join(' ')} accept; };`
    : `    export where proto = "${ANNOUNCE_PROTOCOL}";`;
  const out: string[] = [
    '# Rendered by Tether from the Gateway resource; edits are replaced.',
    'log stderr all;',
    // ISO timestamps: "since" of a session is then exact, so a reset is visible as a change.
    'timeformat protocol iso long;',
    `router id ${c.routerId};`,
    // After a restart (`bird -R`) BIRD holds its announcements until every peer has sent
    // End-of-RIB, by default up to 240 s. A peer this node cannot reach (the other gateway
    // node's router address, a dead router) would keep the site's routes unsent that long;
    // the routers hold them as stale for the GR time meanwhile, so a short wait loses nothing.
    `graceful restart wait ${GR_WAIT_SECONDS};`,
    '',
    'protocol device {',
    '  scan time 10;',
    '}',
    '',
    'protocol kernel tether_kernel {',
    // Routes stay in the kernel while BIRD restarts (graceful restart of the node's side).
    '  persist;',
    '  ipv4 {',
    '    import none;',
    c.acceptDefaultRoute ? '    export where source = RTS_BGP && net = 0.0.0.0/0;' : '    export none;',
    '  };',
    '}',
    '',
    `protocol static ${ANNOUNCE_PROTOCOL} {`,
    '  ipv4;',
    ...announce.map((a) => `  route ${a} blackhole;`),
    '}',
  ];
  if (anyBfd) out.push('', 'protocol bfd tether_bfd {', '}');
  for (const p of peers) {
    out.push(
      '',
      `protocol bgp ${peerProtocol(p.name)} {`,
      `  local as ${c.localAsn};`,
      `  neighbor ${p.address} as ${p.asn};`,
      `  hold time ${p.holdSeconds};`,
      `  keepalive time ${p.keepaliveSeconds};`,
      '  graceful restart on;',
      `  graceful restart time ${c.gracefulRestartSeconds};`,
    );
    if (c.llgrStaleSeconds > 0)
      out.push('  long lived graceful restart on;', `  long lived stale time ${c.llgrStaleSeconds};`);
    if (p.bfd)
      out.push(
        // After a BFD failure BIRD waits its error wait time (default 60 s, doubling to 300)
        // before it tries again: a gateway whose link came back would stay out of the site's
        // HA pair for a minute (src/node/gateway/ha.ts).
        '  error wait time 5, 60;',
        '  bfd {',
        `    min rx interval ${p.bfd.intervalMs} ms;`,
        `    min tx interval ${p.bfd.intervalMs} ms;`,
        `    multiplier ${p.bfd.multiplier};`,
        '  };',
      );
    out.push('  ipv4 {', '    import limit 100000 action block;', '    import all;', exportLine, '  };', '}');
  }
  return `${out.join('\n')}\n`;
}
