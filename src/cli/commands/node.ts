import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { detectUplink } from '../../kernel/detect.js';
import { TetherError } from '../../lib/errors.js';
import { ProcessRunner } from '../../lib/exec.js';
import { createLogger, silentLogger } from '../../lib/log.js';
import { SystemdNotifier } from '../../lib/sdnotify.js';
import { NodeDaemon } from '../../node/daemon.js';
import { enrollNode } from '../../node/enroll.js';
import { isEnrolled, loadIdentity, nodePaths } from '../../node/identity.js';
import { NodeNetworking } from '../../node/networking.js';
import { Admin, DEFAULT_NODE_DIR } from '../admin.js';
import { parseDuration, parsePositiveInt } from '../flags.js';
import { out, paint, renderStructured, say } from '../output.js';

export function registerNode(program: Command): void {
  const node = program
    .command('node')
    .description('enroll and run this node; approve or revoke nodes (admin)');

  node
    .command('enroll')
    .description('enroll this node with a join token (the key is generated here and never leaves)')
    .requiredOption('--controller <host:port>', 'controller address')
    .option('--token <token>', 'join token (or $TETHER_TOKEN, or --token-file)')
    .option('--token-file <file>', 'read the join token from a file')
    .option('--name <name>', 'node name (default: hostname)')
    .option('--site <site>', 'refuse a token for any other site')
    .option('--state-dir <dir>', 'node state directory', DEFAULT_NODE_DIR)
    .option(
      '--wait <duration>',
      'give up waiting for manual approval after this long (default: wait forever)',
    )
    .option('-o, --output <fmt>', 'json|yaml')
    .action(
      async (o: {
        controller: string;
        token?: string;
        tokenFile?: string;
        name?: string;
        site?: string;
        stateDir: string;
        wait?: string;
        output?: string;
      }) => {
        const token =
          o.token ?? (o.tokenFile ? readFileSync(o.tokenFile, 'utf8').trim() : process.env.TETHER_TOKEN);
        if (!token)
          throw new TetherError('TETHER_E_INVALID', 'no join token given', {
            field: '--token',
            expected: '--token, --token-file or $TETHER_TOKEN',
          });
        if (isEnrolled(o.stateDir)) {
          throw new TetherError(
            'TETHER_E_PRECONDITION',
            `this node is already enrolled (${nodePaths(o.stateDir).identity})`,
            {
              expected: 'a fresh state directory, or remove it to re-enroll',
            },
          );
        }
        const id = await enrollNode({
          controller: o.controller,
          token,
          stateDir: o.stateDir,
          nodeName: o.name,
          expectedSite: o.site,
          waitSeconds: o.wait ? parseDuration(o.wait, '--wait') : 0,
          log: silentLogger(),
          progress: (m) => say(m),
        });
        if (o.output === 'json' || o.output === 'yaml') out(renderStructured(id, o.output));
        else say(`${paint('enrolled', 'green')} as node ${id.name} in site ${id.site}`);
      },
    );

  node
    .command('run')
    .description(
      'run the node daemon (session, disk cache, CNI endpoint, vRouter) in the foreground; Type=notify under systemd',
    )
    .option('--state-dir <dir>', 'node state directory', DEFAULT_NODE_DIR)
    .option('--heartbeat <duration>', 'heartbeat interval; the WAN counts as dead after 3 missed', '5s')
    .option('--no-vrouter', 'run only the controller session (no kernel programming, no CNI endpoint)')
    .option('--underlay-if <ifname>', "interface carrying VXLAN (default: the default route's)")
    .option('--vtep-ip <ip>', "this node's VTEP address (default: the underlay interface's)")
    .option('--underlay-mtu <bytes>', "underlay MTU (default: the interface's); overlay MTU is 50 less")
    .option('--breakout-if <ifname>', 'uplink for local breakout (SNAT); omit to disable breakout')
    .option(
      '--netns-prefix <prefix>',
      'prefix of the per-network namespaces (unique per node on a machine)',
      'tvn',
    )
    .option('--cni-socket <path>', 'unix socket the tether-cni plugin talks to', '/run/tether/cni.sock')
    .option(
      '--endpoint-sweep <seconds>',
      'how often local endpoints are re-read from the kernel (gone namespaces released, MACs learned)',
      '10',
    )
    .action(
      async (o: {
        stateDir: string;
        heartbeat: string;
        vrouter: boolean;
        underlayIf?: string;
        vtepIp?: string;
        underlayMtu?: string;
        breakoutIf?: string;
        netnsPrefix: string;
        cniSocket: string;
        endpointSweep: string;
      }) => {
        const log = createLogger({ name: 'tether-node' });
        const identity = loadIdentity(o.stateDir);
        const consumers = [];
        let networking: NodeNetworking | undefined;
        let underlayIp: string | undefined;
        if (o.vrouter) {
          const runner = new ProcessRunner();
          const up = await detectUplink(runner, o.underlayIf);
          underlayIp = o.vtepIp ?? up.address;
          networking = new NodeNetworking({
            stateDir: o.stateDir,
            node: identity.name,
            site: identity.site,
            underlay: {
              ifname: up.ifname,
              vtepIp: underlayIp,
              mtu: o.underlayMtu ? parsePositiveInt(o.underlayMtu, '--underlay-mtu') : up.mtu,
            },
            netnsPrefix: o.netnsPrefix,
            ...(o.breakoutIf ? { breakout: { uplinkIfname: o.breakoutIf } } : {}),
            cniSocket: o.cniSocket,
            sweepMs: parsePositiveInt(o.endpointSweep, '--endpoint-sweep') * 1000,
            runner,
            log,
          });
          consumers.push(networking);
        }
        // Resolves when the daemon should end: a signal (exit 0) or revocation (exit 6:
        // the unit's RestartPreventExitStatus=6 keeps systemd from restarting it).
        let finish: (outcome: { revoked?: TetherError }) => void = () => {};
        const finished = new Promise<{ revoked?: TetherError }>((resolve) => {
          finish = resolve;
        });
        const daemon = new NodeDaemon({
          stateDir: o.stateDir,
          log,
          notifier: new SystemdNotifier(),
          heartbeatMs: parseDuration(o.heartbeat, '--heartbeat') * 1000,
          version: process.env.npm_package_version,
          consumers,
          ...(underlayIp ? { underlayIp } : {}),
          onRevoked: (err) => {
            log.error({ err: err.message }, 'node revoked by the controller; stopping');
            daemon.stop().then(
              () => finish({ revoked: err }),
              () => finish({ revoked: err }),
            );
          },
        });
        if (networking) {
          networking.onEndpoints = (eps) => daemon.reportEndpoints(eps);
          networking.onLocalChange = () => daemon.refresh();
        }
        await daemon.start();
        const stop = (sig: string) => {
          log.info({ sig }, 'shutting down');
          daemon.stop().then(
            () => finish({}),
            () => finish({}),
          );
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
        // A pending promise does not keep Node running: this handle does, until we finish.
        const keepAlive = setInterval(() => {}, 1 << 30);
        const outcome = await finished.finally(() => clearInterval(keepAlive));
        if (outcome.revoked) throw outcome.revoked;
      },
    );

  for (const [verb, desc] of [
    ['approve', 'approve a node waiting for manual approval (admin)'],
    ['revoke', 'revoke a node: its session closes at once and it is refused from then on (admin)'],
    [
      'reset',
      "forget a node's enrollment (certificates, VTEP, endpoints) so its name may enroll again with a token of its site; audited (admin)",
    ],
  ] as const) {
    node
      .command(verb)
      .description(desc)
      .argument('<name>')
      .option('--config <file>', 'admin client config')
      .option('-o, --output <fmt>', 'json|yaml')
      .action(async (name: string, o: { config?: string; output?: string }) => {
        const admin = Admin.fromFlag(o.config);
        try {
          const obj =
            verb === 'approve'
              ? await admin.approve(name)
              : verb === 'revoke'
                ? await admin.revoke(name)
                : await admin.reset(name);
          if (o.output === 'json' || o.output === 'yaml') out(renderStructured(obj, o.output));
          else say(`node/${name} ${{ approve: 'approved', revoke: 'revoked', reset: 'reset' }[verb]}`);
        } finally {
          admin.close();
        }
      });
  }
}
