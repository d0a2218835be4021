import type { Command } from 'commander';
import { stringify } from 'yaml';
import { loadControllerConfig } from '../../controller/config.js';
import { initController, issueClientConfig, loadCa } from '../../controller/init.js';
import { controllerPaths } from '../../controller/paths.js';
import { startController } from '../../controller/run.js';
import { writeFileAtomic } from '../../lib/atomic.js';
import { asTetherError, TetherError } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';
import { SystemdNotifier } from '../../lib/sdnotify.js';
import { DEFAULT_CONTROLLER_DIR } from '../admin.js';
import { out, renderStructured, say } from '../output.js';
import type { MigrateFlags } from './controller-migrate.js';

export function registerController(program: Command): void {
  const ctl = program.command('controller').description('run the central controller');

  ctl
    .command('init')
    .description('create the CA, server and admin certificates and the config in a data directory')
    .option('--data-dir <dir>', 'data directory', DEFAULT_CONTROLLER_DIR)
    .option('--listen <host:port>', 'address to bind', '0.0.0.0:7443')
    .option('--advertise <host:port>', 'address nodes and the CLI dial', '127.0.0.1:7443')
    .option('--san <name...>', 'extra DNS names or IP addresses for the server certificate')
    .option('-o, --output <fmt>', 'json|yaml for machine-readable output')
    .action(
      async (o: { dataDir: string; listen: string; advertise: string; san?: string[]; output?: string }) => {
        const sans = o.san ?? [];
        const res = await initController({
          dataDir: o.dataDir,
          listen: o.listen,
          advertise: o.advertise,
          dnsNames: sans.filter((s) => !/^[\d.:]+$/.test(s)),
          ipAddresses: sans.filter((s) => /^[\d.:]+$/.test(s)),
        });
        if (o.output === 'json' || o.output === 'yaml') {
          out(
            renderStructured(
              {
                dataDir: o.dataDir,
                caFingerprint: res.caFingerprint,
                adminConfig: res.adminConfig,
                config: res.config,
              },
              o.output,
            ),
          );
          return;
        }
        say(`controller initialised in ${o.dataDir}`);
        say(`  CA fingerprint (sha256): ${res.caFingerprint}`);
        say(`  admin client config:     ${res.adminConfig}  (use --config or TETHER_CONFIG)`);
        say(`next: tether controller start --data-dir ${o.dataDir}`);
      },
    );

  ctl
    .command('operator')
    .description(
      'issue an operator client config: may open remote shells (tether shell) and read their audit, nothing else',
    )
    .argument('<name>', 'operator identity name (spiffe://tether/operator/NAME)')
    .option('--data-dir <dir>', 'data directory', DEFAULT_CONTROLLER_DIR)
    .option('--out <file>', 'where to write the client config (0600)', 'operator.yaml')
    .option('--days <n>', 'certificate lifetime in days', '90')
    .addHelpText(
      'after',
      '\nExample:\n  tether controller operator noc-alice --out alice.yaml\n  tether shell site1-n1 --reason "INC-4711 check link" --config alice.yaml',
    )
    .action(async (name: string, o: { dataDir: string; out: string; days: string }) => {
      const days = Number(o.days);
      if (!Number.isInteger(days) || days < 1 || days > 3650)
        throw new TetherError('TETHER_E_INVALID', `--days ${o.days}`, {
          field: '--days',
          expected: 'an integer 1–3650',
        });
      const p = controllerPaths(o.dataDir);
      const cfg = loadControllerConfig(p.config);
      const client = await issueClientConfig(
        loadCa(o.dataDir),
        cfg.advertise,
        { role: 'operator', name },
        days * 86_400,
      );
      writeFileAtomic(o.out, stringify(client), 0o600);
      say(`operator "${name}" client config written to ${o.out} (valid ${days} days)`);
    });

  // issue 12: one-way copy SQLite -> etcd (store/migrate.ts); loaded only when used.
  ctl
    .command('migrate')
    .description(
      'copy every object and report mark from one datastore to another (stop the controller first)',
    )
    .requiredOption('--from <url>', 'source datastore: sqlite:DATA_DIR (or etcd[s]://...)')
    .requiredOption('--to <url>', 'target datastore: etcd[s]://host:port[,host:port...][/prefix/]')
    .option('--dry-run', 'count and compare, write nothing')
    .option('--force', 'overwrite a target whose objects differ from the source')
    .option('--etcd-ca <file>', 'CA of the etcd members (etcds://)')
    .option('--etcd-cert <file>', 'client certificate for etcd')
    .option('--etcd-key <file>', 'client key for etcd')
    .option('--max-txn-ops <n>', "etcd's --max-txn-ops", '128')
    .option('-o, --output <fmt>', 'json|yaml for machine-readable output')
    .action(async (o: MigrateFlags) => {
      const { migrateCommand } = await import('./controller-migrate.js');
      await migrateCommand(o);
    });

  ctl
    .command('start')
    .description('serve enrollment, node sessions and the admin API (foreground; Type=notify under systemd)')
    .option('--data-dir <dir>', 'data directory', DEFAULT_CONTROLLER_DIR)
    .option('--listen <host:port>', 'override the configured bind address')
    .option(
      '--datastore <url>',
      'sqlite:PATH or etcd[s]://host:port,...[/prefix/] (default: SQLite in the data dir)',
    )
    .option('--etcd-ca <file>', 'CA of the etcd members (etcds://)')
    .option('--etcd-cert <file>', 'client certificate for etcd')
    .option('--etcd-key <file>', 'client key for etcd')
    .option(
      '--metrics-listen <off|ip:port>',
      '/metrics, /livez, /readyz listener (overrides metricsListen of controller.yaml; default off)',
    )
    .action(
      async (o: {
        dataDir: string;
        listen?: string;
        datastore?: string;
        etcdCa?: string;
        etcdCert?: string;
        etcdKey?: string;
        metricsListen?: string;
      }) => {
        const log = createLogger({ name: 'tether-controller' });
        const notifier = new SystemdNotifier();
        const tls = {
          ...(o.etcdCa ? { caFile: o.etcdCa } : {}),
          ...(o.etcdCert ? { certFile: o.etcdCert } : {}),
          ...(o.etcdKey ? { keyFile: o.etcdKey } : {}),
        };
        const running = await startController({
          dataDir: o.dataDir,
          log,
          listen: o.listen,
          ...(o.datastore !== undefined ? { datastore: o.datastore } : {}),
          ...(Object.keys(tls).length ? { datastoreTls: tls } : {}),
          ...(o.metricsListen !== undefined ? { metricsListen: o.metricsListen } : {}),
        });
        // Under `node --expose-gc`, SIGUSR2 collects garbage: lets a benchmark read live
        // memory instead of whatever the heap has not collected yet.
        const gc = (globalThis as { gc?: () => void }).gc;
        if (gc) process.on('SIGUSR2', () => gc());
        const serving = `serving on port ${running.port}`;
        notifier.ready();
        notifier.status(serving);
        // Fed only while the store takes writes and the event loop keeps time: a wedged
        // controller is restarted by systemd. Transitions are logged and shown in STATUS=.
        let unhealthy: string | undefined;
        notifier.startWatchdog(() => {
          try {
            running.health.check();
          } catch (e) {
            const why = asTetherError(e).message;
            if (unhealthy !== why) {
              log.error({ err: why }, 'unhealthy: not feeding the watchdog');
              notifier.status(`unhealthy: ${why}`);
            }
            unhealthy = why;
            throw e;
          }
          if (unhealthy !== undefined) {
            unhealthy = undefined;
            log.info('healthy again');
            notifier.status(serving);
          }
          return true;
        });
        await new Promise<void>((resolve) => {
          const stop = (sig: string) => {
            log.info({ sig }, 'shutting down');
            notifier.stopping();
            running.close().then(resolve, resolve);
          };
          process.once('SIGTERM', () => stop('SIGTERM'));
          process.once('SIGINT', () => stop('SIGINT'));
        });
        notifier.stop();
      },
    );
}
