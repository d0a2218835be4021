import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/lib/log.js';
import { VRouter } from '../../../src/node/vrouter/agent.js';
import { type DesiredPolicy, names } from '../../../src/node/vrouter/model.js';
import { waitFor } from '../support/proc.js';
import { isRoot, local, network, nodeDesired, remote, Topo, type Workload } from './topo.js';

/** TCP echo and UDP echo on every port given, in the namespace it runs in; prints `ready`. */
const ECHO_SERVER =
  "const n=require('net'),d=require('dgram');const ps=process.argv.slice(1).map(Number);let up=0;" +
  "const ok=()=>{if(++up===2*ps.length)process.stdout.write('ready\\n')};" +
  "for(const p of ps){n.createServer(s=>{s.on('error',()=>{});s.pipe(s)}).listen(p,'0.0.0.0',ok);" +
  "const u=d.createSocket('udp4');u.on('message',(m,r)=>u.send(m,r.port,r.address));u.bind(p,'0.0.0.0',ok)}";

/**
 * One exchange: connect (TCP) or send (UDP) from `sport` (0: any) to host:port, expect the echo.
 * Exit 0 when echoed, 1 when nothing came back within 1.5 s (the negative case: dropped).
 */
const EXCHANGE =
  'const [proto,host,port,sport]=process.argv.slice(1);const t=setTimeout(()=>process.exit(1),1500);' +
  "if(proto==='tcp'){const s=require('net').connect({host,port:+port,localPort:+sport||undefined},()=>s.write('x'));" +
  "s.on('data',()=>process.exit(0));s.on('error',()=>process.exit(1))}" +
  "else{const u=require('dgram').createSocket('udp4');u.on('message',()=>process.exit(0));" +
  "u.bind(+sport||0,()=>u.send('x',+port,host))}";

/** A long-lived TCP connection: each stdin line is sent, echoed data goes to stdout. */
const STREAM =
  "const s=require('net').connect({host:process.argv[1],port:+process.argv[2]},()=>process.stdout.write('open\\n'));" +
  "s.on('data',b=>process.stdout.write(b));s.on('error',e=>{process.stdout.write('error '+e.code+'\\n');process.exit(1)});" +
  "process.stdin.on('data',b=>s.write(b))";

if (!isRoot) console.warn('skipping vRouter policy integration tests: they need root (network namespaces)');

describe.skipIf(!isRoot)('vRouter NetworkPolicy on the real kernel', () => {
  const topo = new Topo('vp');
  let web: Workload;
  let db: Workload;
  let web2: Workload;
  let other: Workload;
  const vrA = () => new VRouter(topo.runner, silentLogger());

  const denyWebDb: DesiredPolicy = {
    name: 'protect-db',
    defaultAction: 'allow',
    rules: [
      {
        name: 'web-to-db',
        action: 'deny',
        from: { matchLabels: { app: 'web' } },
        to: { matchLabels: { app: 'db' } },
      },
    ],
  };
  const onlyWebToDb: DesiredPolicy = {
    name: 'zero-trust',
    defaultAction: 'deny',
    rules: [
      {
        name: 'web-to-db',
        action: 'allow',
        from: { matchLabels: { app: 'web' } },
        to: { matchLabels: { app: 'db' } },
      },
    ],
  };

  const desired = (node: 'a' | 'b', policies: DesiredPolicy[]) => {
    const n = network('red', 300);
    const mine = topo.workloads.filter((w) => w.node === node);
    const theirs = topo.workloads.filter((w) => w.node !== node);
    n.localEndpoints = mine.map(local);
    n.remoteEndpoints = theirs.map((w) => remote(w, node === 'a' ? topo.vtepB : topo.vtepA));
    n.policies = policies;
    return nodeDesired(topo, node, [n]);
  };
  const syncBoth = async (policies: DesiredPolicy[]) => {
    for (const node of ['a', 'b'] as const) {
      const r = await vrA().sync(desired(node, policies));
      expect(r.ok, JSON.stringify(r.failures)).toBe(true);
    }
  };

  const servers: ChildProcessWithoutNullStreams[] = [];
  /** Starts ECHO_SERVER in `w` (killed by pid in afterAll) and waits until it listens. */
  const serve = async (w: Workload, ports: number[]) => {
    const child = spawn('ip', [
      'netns',
      'exec',
      w.ns,
      process.execPath,
      '-e',
      ECHO_SERVER,
      ...ports.map(String),
    ]);
    servers.push(child);
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
    });
    await waitFor(`echo server in ${w.ns}`, () => out.includes('ready'), 10_000, 20);
  };
  /** True when the exchange got its echo (see EXCHANGE). */
  const exchange = async (from: Workload, proto: 'tcp' | 'udp', to: Workload, port: number, sport = 0) =>
    (
      await topo.runner.run(process.execPath, ['-e', EXCHANGE, proto, to.ip, String(port), String(sport)], {
        netns: from.ns,
        allowFailure: true,
      })
    ).code === 0;
  const counter = async (node: 'a' | 'b', policies: DesiredPolicy[], rule: string) =>
    (await vrA().counters(desired(node, policies))).find((c) => c.rule === rule)?.packets ?? 0;
  const vnNs = (node: 'a' | 'b') => names.vnNetns(`${topo.id}${node}`, 300);
  const sysctl = async (ns: string, key: string) => (await topo.sh('sysctl', ['-n', key], ns)).trim();

  beforeAll(async () => {
    await topo.build();
    web = await topo.addWorkload('a', 'web', '10.1.0.21', '10.1.0.1', { app: 'web' });
    web2 = await topo.addWorkload('a', 'web2', '10.1.0.22', '10.1.0.1', { app: 'web' });
    db = await topo.addWorkload('b', 'db', '10.1.0.31', '10.1.0.1', { app: 'db' });
    other = await topo.addWorkload('b', 'other', '10.1.0.41', '10.1.0.1', { app: 'other' });
    await syncBoth([]);
    await serve(db, [80, 22, 53]);
    await serve(web, [22, 9999]);
  });

  afterAll(async () => {
    for (const c of servers) c.kill('SIGKILL');
    await vrA()
      .teardown(desired('a', []))
      .catch(() => undefined);
    await vrA()
      .teardown(desired('b', []))
      .catch(() => undefined);
    await topo.destroyPrefixed([`${topo.id}a`, `${topo.id}b`]);
    await topo.destroy();
  });

  const BRNF = 'net.bridge.bridge-nf-call-iptables';
  /** Zero trust: web may open TCP 80/443 and UDP 53/5353 to db, nothing else. */
  const webToDb: DesiredPolicy = {
    name: 'zt',
    defaultAction: 'deny',
    rules: [
      {
        name: 'web-db',
        action: 'allow',
        from: { matchLabels: { app: 'web' } },
        to: { matchLabels: { app: 'db' } },
        ports: [
          { protocol: 'tcp', port: 80 },
          { protocol: 'tcp', port: 443 },
          { protocol: 'udp', port: 53 },
          { protocol: 'udp', port: 5353 },
        ],
      },
    ],
  };
  const otherPingsDb = {
    name: 'other-db-ping',
    action: 'allow' as const,
    from: { matchLabels: { app: 'other' } },
    to: { matchLabels: { app: 'db' } },
    ports: [{ protocol: 'icmp' as const }],
  };

  /** A long-lived TCP connection from `from` to to:port (see STREAM); killed by pid in `close`. */
  const openStream = async (from: Workload, to: Workload, port: number) => {
    const child = spawn('ip', [
      'netns',
      'exec',
      from.ns,
      process.execPath,
      '-e',
      STREAM,
      to.ip,
      String(port),
    ]);
    servers.push(child);
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
    });
    await waitFor('the stream to open', () => out.includes('open'), 5000, 20);
    return {
      /** Sends `tag`; true when its echo comes back within 3 s. */
      roundTrip: async (tag: string) => {
        child.stdin.write(`${tag}\n`);
        return waitFor(`echo of ${tag}`, () => out.includes(tag), 3000, 20).then(
          () => true,
          () => false,
        );
      },
      output: () => out,
      close: () => child.kill('SIGKILL'),
    };
  };

  it('a network without policies keeps bridged frames out of the IP hooks and conntrack', async () => {
    await syncBoth([]);
    expect(await topo.ping(web, db.ip)).toBe(true);
    expect(await topo.ping(web, web2.ip)).toBe(true);
    for (const n of ['a', 'b'] as const) expect(await sysctl(vnNs(n), BRNF)).toBe('0');
    expect(await sysctl(vnNs('b'), 'net.netfilter.nf_conntrack_count')).toBe('0');
    const r = await vrA().sync(desired('a', []));
    expect(r.policy.mode).toBe('inet-br-netfilter');
    expect(r.policy.facts).toEqual({ brNetfilter: true, inetConntrack: true, bridgeConntrack: false });
  });

  it('stateful: replies pass, the reverse-port trick is dropped (TCP and UDP, local and across VXLAN)', async () => {
    await syncBoth([]);
    // Without policy, the same sends from db's side get through: the clients can do it.
    expect(await exchange(db, 'tcp', web, 9999, 443)).toBe(true);
    expect(await exchange(db, 'udp', web, 9999, 5353)).toBe(true);
    await syncBoth([webToDb]);
    for (const n of ['a', 'b'] as const) expect(await sysctl(vnNs(n), BRNF)).toBe('1');
    // Replies of allowed connections pass.
    expect(await exchange(web, 'tcp', db, 80)).toBe(true);
    expect(await exchange(web, 'udp', db, 53)).toBe(true);
    expect(await exchange(web2, 'tcp', db, 80)).toBe(true);
    // Not an allowed port.
    expect(await exchange(web, 'tcp', db, 22)).toBe(false);
    // The "to" side sends from an allowed port to a port of the "from" side: a new connection.
    const denyA = await counter('a', [webToDb], '(default)');
    const denyB = await counter('b', [webToDb], '(default)');
    expect(await exchange(db, 'tcp', web, 22, 443)).toBe(false);
    expect(await exchange(db, 'udp', web, 9999, 5353)).toBe(false);
    expect(await exchange(db, 'tcp', web, 22, 80)).toBe(false);
    expect(await exchange(db, 'tcp', web, 22)).toBe(false);
    expect(await topo.ping(db, web.ip)).toBe(false);
    // Dropped where they enter: on db's node, by the default deny.
    expect(await counter('b', [webToDb], '(default)')).toBeGreaterThan(denyB);
    expect(await counter('a', [webToDb], '(default)')).toBe(denyA);
    // Between two workloads of one node, too (web2 → web is not allowed at all).
    expect(await exchange(web2, 'tcp', web, 22)).toBe(false);
    expect(await sysctl(vnNs('b'), 'net.netfilter.nf_conntrack_count')).not.toBe('0');
    await syncBoth([]);
  });

  it('rules act on who opens the connection: an allow without ports and a deny are both one-way', async () => {
    const anyWebToDb: DesiredPolicy = {
      name: 'zt',
      defaultAction: 'deny',
      rules: [{ ...webToDb.rules[0]!, name: 'web-db-any' }],
    };
    delete anyWebToDb.rules[0]!.ports;
    await syncBoth([anyWebToDb]);
    expect(await exchange(web, 'tcp', db, 22)).toBe(true);
    expect(await topo.ping(web, db.ip)).toBe(true);
    expect(await exchange(db, 'tcp', web, 22)).toBe(false);
    expect(await exchange(db, 'udp', web, 9999)).toBe(false);
    expect(await topo.ping(db, web.ip)).toBe(false);
    // A deny web → db under a default allow: web cannot open to db, but db's own connections
    // to web get their replies (from web to db).
    await syncBoth([denyWebDb]);
    expect(await exchange(web, 'tcp', db, 22)).toBe(false);
    expect(await exchange(db, 'tcp', web, 22)).toBe(true);
    expect(await exchange(db, 'udp', web, 9999)).toBe(true);
    expect(await topo.ping(db, web.ip)).toBe(true);
    await syncBoth([]);
  });

  it('an established connection survives changes that still allow it (the first policy included) and is cut when none does', async () => {
    // Opened before the network has any policy: conntrack picks it up mid-stream.
    await syncBoth([]);
    const stream = await openStream(web, db, 80);
    expect(await stream.roundTrip('zero')).toBe(true);
    await syncBoth([webToDb]);
    expect(await stream.roundTrip('one')).toBe(true);
    // The connection is tracked in db's network namespace; that entry is what keeps it alive.
    const tracked = async () =>
      (await topo.sh('cat', ['/proc/net/nf_conntrack'], vnNs('b')))
        .split('\n')
        .some(
          (l) =>
            l.includes(' ESTABLISHED ') &&
            l.includes(`src=${web.ip} dst=${db.ip} `) &&
            l.includes(' dport=80 '),
        );
    expect(await tracked()).toBe(true);
    // Structure change: a rule added in front, the table replaced atomically, counters renamed.
    const wider: DesiredPolicy = { ...webToDb, rules: [otherPingsDb, ...webToDb.rules] };
    await syncBoth([wider]);
    expect(await stream.roundTrip('two')).toBe(true);
    expect(await tracked()).toBe(true);
    // Membership change: sets rewritten in place.
    web2.labels = { app: 'db' };
    try {
      await syncBoth([wider]);
      expect(await stream.roundTrip('three')).toBe(true);
    } finally {
      web2.labels = { app: 'web' };
    }
    await syncBoth([wider]);
    // A change that allows it differently (any port now) still keeps it.
    const anyPort: DesiredPolicy = { ...webToDb, rules: [{ ...webToDb.rules[0]!, ports: undefined }] };
    delete anyPort.rules[0]!.ports;
    await syncBoth([anyPort]);
    expect(await stream.roundTrip('four')).toBe(true);
    // No rule allows it any more: cut at once, without waiting for the connection to end.
    await syncBoth([{ ...webToDb, rules: [otherPingsDb] }]);
    expect(await stream.roundTrip('five')).toBe(false);
    expect(stream.output()).not.toContain('five');
    stream.close();
    await syncBoth([]);
  });

  it('counters count per rule: each rule its own connections, the default deny the rest', async () => {
    const two: DesiredPolicy = { ...webToDb, rules: [...webToDb.rules, otherPingsDb] };
    await syncBoth([two]);
    const snap = async (node: 'a' | 'b') =>
      Object.fromEntries((await vrA().counters(desired(node, [two]))).map((c) => [c.rule, c.packets]));
    const b0 = await snap('b');
    expect(Object.keys(b0)).toEqual(['web-db', 'other-db-ping', '(default)']);
    expect(await exchange(web, 'tcp', db, 80)).toBe(true);
    const b1 = await snap('b');
    expect(b1['web-db']).toBeGreaterThan(b0['web-db']!);
    expect(b1['other-db-ping']).toBe(b0['other-db-ping']);
    expect(await topo.ping(other, db.ip, 2)).toBe(true);
    const b2 = await snap('b');
    expect(b2['other-db-ping']).toBeGreaterThan(b1['other-db-ping']!);
    expect(b2['web-db']).toBe(b1['web-db']);
    const a2 = await snap('a');
    expect(await topo.ping(web, db.ip)).toBe(false);
    const a3 = await snap('a');
    expect(a3['(default)']).toBeGreaterThan(a2['(default)']!);
    expect(a3['web-db']).toBe(a2['web-db']);
    await syncBoth([]);
  });

  it('a deny policy between two labelled groups blocks traffic, its drop counter rises, removing it restores traffic', async () => {
    expect(await topo.ping(web, db.ip, 2)).toBe(true);
    await syncBoth([denyWebDb]);
    const before = (await vrA().counters(desired('a', [denyWebDb])))[0]!;
    expect(before).toMatchObject({ network: 'red', policy: 'protect-db', rule: 'web-to-db' });
    expect(await topo.ping(web, db.ip, 2)).toBe(false);
    expect(await topo.ping(web2, db.ip)).toBe(false);
    // not selected by the rule: still allowed
    expect(await topo.ping(web, other.ip)).toBe(true);
    const after = (await vrA().counters(desired('a', [denyWebDb])))[0]!;
    expect(after.packets).toBeGreaterThan(before.packets);
    await syncBoth([]);
    expect(await topo.ping(web, db.ip, 2)).toBe(true);
  });

  it('a default-deny policy lets only the allowed pair talk (replies included) and counts the rest', async () => {
    await syncBoth([onlyWebToDb]);
    expect(await topo.ping(web, db.ip, 2)).toBe(true);
    expect(await topo.ping(web, other.ip)).toBe(false);
    expect(await topo.ping(other, db.ip)).toBe(false);
    const counters = await vrA().counters(desired('b', [onlyWebToDb]));
    const deflt = counters.find((c) => c.rule === '(default)');
    expect(deflt?.packets ?? 0).toBeGreaterThan(0);
    await syncBoth([]);
    expect(await topo.ping(other, db.ip)).toBe(true);
  });

  it('an endpoint joining a selected group is enforced by updating the set, keeping counters', async () => {
    await syncBoth([denyWebDb]);
    expect(await topo.ping(web, db.ip)).toBe(false);
    const c1 = (await vrA().counters(desired('a', [denyWebDb])))[0]!.packets;
    other.labels = { app: 'db' };
    await syncBoth([denyWebDb]);
    expect(await topo.ping(web, other.ip)).toBe(false);
    const c2 = (await vrA().counters(desired('a', [denyWebDb])))[0]!.packets;
    expect(c2).toBeGreaterThan(c1);
    other.labels = { app: 'other' };
    await syncBoth([]);
  });

  it('a port-scoped deny blocks only that TCP port', async () => {
    const noPg: DesiredPolicy = {
      name: 'no-postgres',
      defaultAction: 'allow',
      rules: [
        {
          name: 'web-pg',
          action: 'deny',
          from: { matchLabels: { app: 'web' } },
          to: { matchLabels: { app: 'db' } },
          ports: [{ protocol: 'tcp', port: 5432 }],
        },
      ],
    };
    // A TCP server inside the db workload namespace (Node itself; killed by pid below).
    const server = spawn(
      'ip',
      [
        'netns',
        'exec',
        db.ns,
        process.execPath,
        '-e',
        "const n=require('net');for(const p of [5432,8080])n.createServer(s=>{s.on('error',()=>{});s.end('ok')}).listen(p,'0.0.0.0')",
      ],
      { stdio: 'ignore' },
    );
    const tcp = (port: number) =>
      topo.try('timeout', ['2', 'bash', '-c', `exec 3<>/dev/tcp/${db.ip}/${port}`], web.ns);
    try {
      await waitFor('the TCP server in db', () => tcp(8080), 10_000, 50);
      expect(await tcp(5432)).toBe(true);
      await syncBoth([noPg]);
      expect(await tcp(5432)).toBe(false);
      expect(await tcp(8080)).toBe(true);
      expect(await topo.ping(web, db.ip)).toBe(true);
      const [c] = await vrA().counters(desired('a', [noPg]));
      expect(c?.packets ?? 0).toBeGreaterThan(0);
      await syncBoth([]);
      expect(await tcp(5432)).toBe(true);
    } finally {
      server.kill('SIGKILL');
    }
  });
});
