import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { parseControllerFlag } from '../../lib/controller-addresses.js';
import { type ErrorCode, TetherError } from '../../lib/errors.js';
import { ProcessRunner } from '../../lib/exec.js';
import { parseIp } from '../../lib/ipv4.js';
import { createLogger, silentLogger } from '../../lib/log.js';
import { parseMetricsListen } from '../../lib/metrics-server.js';
import { SystemdNotifier } from '../../lib/sdnotify.js';
import { DEFAULTS as BOOTSTRAP_DEFAULTS } from '../../node/bootstrap/discover.js';
import { type FirstBootState, firstBootPaths, runFirstBoot } from '../../node/bootstrap/firstboot.js';
import { EventRing } from '../../node/control-api.js';
import { enrollNode } from '../../node/enroll.js';
import { isEnrolled, nodePaths } from '../../node/identity.js';
import { eventFromLogLine } from '../../node/live-status.js';
import { startNode } from '../../node/run.js';
import { LOG_DIR, logFilePath, RotatingLogFile } from '../../node/support/logs.js';
import { Admin, DEFAULT_NODE_DIR } from '../admin.js';
import { parseDuration, parsePositiveInt } from '../flags.js';
import { out, paint, renderStructured, say } from '../output.js';
import { hostPorts } from './profile.js';

export function registerNode(program: Command): void {
  const node = program
    .command('node')
    .description('enroll and run this node; approve or revoke nodes (admin)');

  node
    .command('enroll')
    .description('enroll this node with a join token (the key is generated here and never leaves)')
    .requiredOption(
      '--controller <host:port,...>',
      'controller address, or every replica comma-separated (1-8, tried in order, docs/node.md)',
    )
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
          controllers: parseControllerFlag(o.controller),
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
    .option('--bird <path>', 'the BIRD 2 binary of the local gateway (docs/gateway.md)', 'bird')
    .option(
      '--endpoint-sweep <seconds>',
      'how often local endpoints are re-read from the kernel (gone namespaces released, MACs learned)',
      '10',
    )
    .option(
      '--reconcile-interval <duration>',
      'how often the kernel is re-planned against desired state (what was changed by hand is put back)',
      '5s',
    )
    .option('--shell-user <user>', 'user remote shells run as (tether shell, docs/shell.md)', 'root')
    .option('--no-shell', 'refuse remote shells on this node')
    .option('--proxy <on|off>', "sync through the site's proxy when one is known (docs/proxy.md)", 'on')
    .option('--proxy-port <port>', "port of the site proxy on each node's underlay address", '7444')
    .option(
      '--wan-heartbeat <duration>',
      "heartbeat interval of the site proxy's WAN session (the WAN counts as dead after 3 missed; each costs WAN bytes)",
      '30s',
    )
    .option(
      '--proxy-address <ip>',
      'address the site proxy listens on when the node runs no vRouter (default: the VTEP address)',
    )
    .option(
      '--metrics-listen <off|ip:port>',
      '/metrics, /livez, /readyz listener (docs/observability.md); a site has no open port, so off by default',
      'off',
    )
    .action(
      async (o: {
        stateDir: string;
        heartbeat: string;
        metricsListen: string;
        vrouter: boolean;
        underlayIf?: string;
        vtepIp?: string;
        underlayMtu?: string;
        breakoutIf?: string;
        netnsPrefix: string;
        cniSocket: string;
        endpointSweep: string;
        reconcileInterval: string;
        proxy: string;
        proxyPort: string;
        wanHeartbeat: string;
        proxyAddress?: string;
        bird: string;
        shell: boolean;
        shellUser: string;
      }) => {
        if (o.proxy !== 'on' && o.proxy !== 'off')
          throw new TetherError('TETHER_E_INVALID', `bad --proxy "${o.proxy}"`, {
            field: '--proxy',
            expected: 'on or off',
          });
        const proxyPort = parsePositiveInt(o.proxyPort, '--proxy-port');
        if (proxyPort > 65535)
          throw new TetherError('TETHER_E_INVALID', `bad --proxy-port "${o.proxyPort}"`, {
            field: '--proxy-port',
            expected: 'a TCP port 1‥65535',
          });
        if (o.proxyAddress !== undefined && parseIp(o.proxyAddress) === undefined)
          throw new TetherError('TETHER_E_INVALID', `bad --proxy-address "${o.proxyAddress}"`, {
            field: '--proxy-address',
            expected: 'an IPv4 address of this node',
          });
        const metricsListen = parseMetricsListen(o.metricsListen, '--metrics-listen');
        const reconcileIntervalMs = parseDuration(o.reconcileInterval, '--reconcile-interval') * 1000;
        if (reconcileIntervalMs < 100)
          throw new TetherError('TETHER_E_INVALID', `bad --reconcile-interval "${o.reconcileInterval}"`, {
            field: '--reconcile-interval',
            expected: 'at least 100ms',
          });
        // Every warning, error and line with an `event` field also lands in the ring the
        // local control API serves (`tether status`, GET /v1/events).
        const events = new EventRing();
        // The same lines also go to a bounded, rotated file for `tether logs` off systemd.
        mkdirSync(join(o.stateDir, LOG_DIR), { recursive: true, mode: 0o700 });
        const logFile = new RotatingLogFile(logFilePath(o.stateDir));
        const log = createLogger({
          name: 'tether-node',
          tee: (line) => {
            eventFromLogLine(events, line);
            logFile.write(line);
          },
        });
        const node = await startNode({
          stateDir: o.stateDir,
          log,
          events,
          notifier: new SystemdNotifier(),
          heartbeatMs: parseDuration(o.heartbeat, '--heartbeat') * 1000,
          version: process.env.npm_package_version,
          proxy: {
            enabled: o.proxy === 'on',
            port: proxyPort,
            wanHeartbeatMs: parseDuration(o.wanHeartbeat, '--wan-heartbeat') * 1000,
            ...(o.proxyAddress ? { address: o.proxyAddress } : {}),
          },
          reconcileIntervalMs,
          metricsListen,
          gateway: { birdBin: o.bird },
          shell: o.shell ? { user: o.shellUser } : false,
          ...(o.vrouter
            ? {
                vrouter: {
                  ...(o.underlayIf ? { underlayIf: o.underlayIf } : {}),
                  ...(o.vtepIp ? { vtepIp: o.vtepIp } : {}),
                  ...(o.underlayMtu
                    ? { underlayMtu: parsePositiveInt(o.underlayMtu, '--underlay-mtu') }
                    : {}),
                  ...(o.breakoutIf ? { breakoutIf: o.breakoutIf } : {}),
                  netnsPrefix: o.netnsPrefix,
                  cniSocket: o.cniSocket,
                  sweepMs: parsePositiveInt(o.endpointSweep, '--endpoint-sweep') * 1000,
                },
              }
            : {}),
        });
        // Ends on a signal (exit 0) or on revocation (exit 6: the unit's
        // RestartPreventExitStatus=6 keeps systemd from restarting it).
        const finished = new Promise<TetherError | undefined>((resolve) => {
          const stop = (sig: string) => {
            log.info({ sig }, 'shutting down');
            node.stop().then(
              () => resolve(undefined),
              () => resolve(undefined),
            );
          };
          process.once('SIGTERM', () => stop('SIGTERM'));
          process.once('SIGINT', () => stop('SIGINT'));
          void node.revoked.then(resolve);
        });
        // A pending promise does not keep Node running: this handle does, until we finish.
        const keepAlive = setInterval(() => {}, 1 << 30);
        const revoked = await finished.finally(() => clearInterval(keepAlive));
        if (revoked) throw revoked;
      },
    );

  node
    .command('firstboot')
    .description(
      'zero-touch first boot: discover bootstrap.yaml, preflight, apply the profile, enroll, configure; resumable (docs/node.md "First boot")',
    )
    .option('--state-dir <dir>', 'node state directory', DEFAULT_NODE_DIR)
    .option('--image-config <file>', 'bootstrap file embedded in the image', BOOTSTRAP_DEFAULTS.imagePath)
    .option(
      '--local-file <file>',
      'bootstrap file copied onto the node by hand',
      BOOTSTRAP_DEFAULTS.localFile,
    )
    .option('--cmdline <file>', 'kernel command line (tether.bootstrap=)', BOOTSTRAP_DEFAULTS.cmdline)
    .option('--config-drive-label <label...>', 'filesystem labels of a config drive', [
      ...BOOTSTRAP_DEFAULTS.labels,
    ])
    .option(
      '--config-drive-device <dev...>',
      'only these block devices may be config drives (default: any with the label)',
    )
    .option(
      '--config-drive-dir <dir...>',
      "directories holding a config drive's files, looked at instead of block devices",
    )
    .option('--dhcp-if <ifname...>', 'interfaces DHCP asks on (default: every NIC)')
    .option('--no-dhcp', 'do not ask DHCP')
    .option('--dhcp-timeout <duration>', 'how long DHCP waits for a lease per interface', '10s')
    .option(
      '--vendor-class <name>',
      'DHCP vendor class (option 60) for option 43',
      BOOTSTRAP_DEFAULTS.vendorClass,
    )
    .option('--host-root <dir>', 'host root the profile is applied to (a fixture tree in tests)', '/')
    .option('--fake-kernel', 'emulate the kernel on --host-root (tests)')
    .option('--profiles-dir <dir...>', 'extra directories searched for profiles')
    .option('--reboot-command <cmd>', 'how to reboot when the profile needs it', 'systemctl reboot')
    .option('--max-attempts <n>', 'attempts per phase before it is failed (0 = keep trying)', '0')
    .option('--backoff <duration>', 'first retry delay (full jitter, doubling, capped at 60s)', '1s')
    .option('--maintenance-retry <duration>', 'how often maintenance mode looks again', '30s')
    .action(
      async (o: {
        stateDir: string;
        imageConfig: string;
        localFile: string;
        cmdline: string;
        configDriveLabel: string[];
        configDriveDevice?: string[];
        configDriveDir?: string[];
        dhcpIf?: string[];
        dhcp: boolean;
        dhcpTimeout: string;
        vendorClass: string;
        hostRoot: string;
        fakeKernel?: boolean;
        profilesDir?: string[];
        rebootCommand: string;
        maxAttempts: string;
        backoff: string;
        maintenanceRetry: string;
      }) => {
        const maxAttempts = Number(o.maxAttempts);
        if (!Number.isSafeInteger(maxAttempts) || maxAttempts < 0)
          throw new TetherError('TETHER_E_INVALID', `bad --max-attempts "${o.maxAttempts}"`, {
            field: '--max-attempts',
            expected: 'a non-negative integer',
          });
        const reboot = o.rebootCommand.trim().split(/\s+/).filter(Boolean);
        if (reboot.length === 0)
          throw new TetherError('TETHER_E_INVALID', 'empty --reboot-command', {
            field: '--reboot-command',
            expected: 'a command, e.g. "systemctl reboot"',
          });
        const started = Date.now();
        const outcome = await runFirstBoot({
          stateDir: o.stateDir,
          discovery: {
            imagePath: o.imageConfig,
            localFile: o.localFile,
            cmdlinePath: o.cmdline,
            labels: o.configDriveLabel,
            ...(o.configDriveDevice ? { devices: o.configDriveDevice } : {}),
            ...(o.configDriveDir ? { driveDirs: o.configDriveDir } : {}),
            ...(o.dhcpIf ? { dhcpInterfaces: o.dhcpIf } : {}),
            dhcp: o.dhcp,
            dhcpTimeoutSeconds: parseDuration(o.dhcpTimeout, '--dhcp-timeout'),
            vendorClass: o.vendorClass,
          },
          runner: new ProcessRunner(),
          host: hostPorts({ root: o.hostRoot, fakeKernel: !!o.fakeKernel }),
          ...(o.profilesDir ? { profilesDirs: o.profilesDir } : {}),
          rebootCommand: reboot,
          maxAttempts,
          backoff: { baseMs: parseDuration(o.backoff, '--backoff') * 1000, capMs: 60_000 },
          maintenanceRetrySeconds: parseDuration(o.maintenanceRetry, '--maintenance-retry'),
          console: (l) => say(`tether firstboot: ${l}`),
          log: createLogger({ name: 'tether-firstboot' }),
          ...(process.env.TETHER_FIRSTBOOT_PAUSE_AT
            ? { pauseAt: process.env.TETHER_FIRSTBOOT_PAUSE_AT }
            : {}),
        });
        if (outcome === 'ready' || outcome === 'reboot') {
          if (outcome === 'ready')
            say(`tether firstboot: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
          return;
        }
        const st = JSON.parse(readFileSync(firstBootPaths(o.stateDir).state, 'utf8')) as FirstBootState;
        const e = st.lastError;
        throw new TetherError(
          (e?.code as ErrorCode | undefined) ?? 'TETHER_E_PRECONDITION',
          `first boot ${outcome === 'maintenance' ? 'is in maintenance mode' : `failed in phase ${st.failedPhase}`}: ${e?.message ?? ''}`,
          { expected: 'see the console lines above; running `tether node firstboot` again resumes' },
        );
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
