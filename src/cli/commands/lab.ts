import type { Command } from 'commander';
import { checkDelayMs, ImpairProxy, serveImpairControl } from '../../lab/impair.js';
import { defaultLabStateDir, Lab, type LabStatusView, type WanSiteStatus } from '../../lab/index.js';
import { isTetherError, TetherError } from '../../lib/errors.js';
import { out, paint, renderStructured, renderTable, say } from '../output.js';

function int(v: string, field: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    throw new TetherError('TETHER_E_INVALID', `bad number "${v}"`, {
      field,
      expected: 'a non-negative integer',
    });
  }
  return n;
}

function renderStatus(s: LabStatusView): string {
  const lines: string[] = [];
  lines.push(`lab ${s.name} (${s.phase})  state ${s.stateDir}${s.error ? `  error: ${s.error}` : ''}`);
  lines.push(
    `controller ${s.controller.address} in ${s.controller.ns}, pid ${s.controller.pid ?? '-'} ${s.controller.alive ? 'alive' : 'DEAD'}`,
  );
  lines.push(
    `admin: ip netns exec ${s.controller.ns} tether get vn --config ${s.controller.adminConfig}`,
    '',
  );
  lines.push(
    renderTable(
      ['node', 'site', 'namespace', 'address', 'pid', 'alive', 'session', 'revision', 'networks'],
      s.nodes.map((n) => [
        n.name,
        n.site,
        n.ns,
        n.ip,
        String(n.pid ?? '-'),
        n.alive ? 'yes' : 'no',
        n.session,
        String(n.revision),
        n.vnNamespaces.join(',') || '-',
      ]),
    ),
  );
  lines.push(
    renderTable(
      ['workload', 'network', 'node', 'namespace', 'ip', 'mac'],
      s.workloads.map((w) => [w.name, w.network, w.node, w.ns, w.ip, w.mac]),
    ),
  );
  lines.push(renderWan(s.wan));
  const missing = s.namespaces.filter((n) => !n.exists).map((n) => n.name);
  lines.push(
    `namespaces: ${s.namespaces.length} recorded${missing.length ? `, missing: ${missing.join(', ')}` : ', all present'}`,
  );
  return `${lines.join('\n')}\n`;
}

function renderWan(w: WanSiteStatus[]): string {
  return renderTable(
    ['site', 'wan', 'delay', 'loss', 'dropped (cut/loss)', 'proxy', 'bytes to/from controller', 'conns'],
    w.map((x) => [
      x.site,
      x.cut ? 'CUT' : 'up',
      `${x.delayMs} ms`,
      `${x.lossPct}%`,
      `${x.drops.cut}/${x.drops.loss}`,
      `${x.proxy.address} ${x.proxy.alive ? `pid ${x.proxy.pid}` : 'DEAD'}`,
      x.proxy.bytesToController !== undefined
        ? `${x.proxy.bytesToController}/${x.proxy.bytesFromController}`
        : '-',
      String(x.proxy.connectionsOpen ?? '-'),
    ]),
  );
}

function parseHostPort(v: string, field: string): { host: string; port: number } {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(v);
  const port = Number(m?.[2]);
  if (!m?.[1] || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TetherError('TETHER_E_INVALID', `bad address "${v}"`, { field, expected: 'IPv4:PORT' });
  }
  return { host: m[1], port };
}

export function registerLab(program: Command): void {
  const lab = program
    .command('lab')
    .description(
      'a whole deployment on this machine in network namespaces (controller, WAN, sites, nodes, workloads)',
    );

  const common = (c: Command) =>
    c
      .option('--name <lab>', 'lab name; prefixes every namespace', 'tl')
      .option('--state-dir <dir>', 'lab state directory (default /run/tether-lab/<name>)');

  common(
    lab
      .command('up')
      .description(
        'build the lab: namespaces, controller, enrolled nodes, networks red and blue, CNI workloads',
      ),
  )
    .option('--sites <n>', 'number of sites (1-4)', '2')
    .option('--nodes-per-site <n>', 'nodes per site (1-4)', '2')
    .option('--workloads-per-node <n>', 'workloads per node (odd: red, even: blue)', '2')
    .option('--heartbeat <seconds>', "each node's session heartbeat (production default 5)", '1')
    .option('--wan-heartbeat <seconds>', "the site proxy's WAN heartbeat (production default 30)", '1')
    .option('--proxy <on|off>', 'off: every node holds its own WAN session, no site proxy', 'on')
    .action(
      async (o: {
        name: string;
        stateDir?: string;
        sites: string;
        nodesPerSite: string;
        workloadsPerNode: string;
        wanHeartbeat: string;
        heartbeat: string;
        proxy: string;
      }) => {
        if (o.proxy !== 'on' && o.proxy !== 'off')
          throw new TetherError('TETHER_E_INVALID', `bad --proxy "${o.proxy}"`, {
            field: '--proxy',
            expected: 'on or off',
          });
        const stateDir = o.stateDir ?? defaultLabStateDir(o.name);
        const l = await Lab.up(
          {
            name: o.name,
            stateDir,
            sites: int(o.sites, '--sites'),
            nodesPerSite: int(o.nodesPerSite, '--nodes-per-site'),
            workloadsPerNode: int(o.workloadsPerNode, '--workloads-per-node'),
            wanHeartbeatSeconds: int(o.wanHeartbeat, '--wan-heartbeat'),
            heartbeatSeconds: int(o.heartbeat, '--heartbeat'),
            proxy: o.proxy === 'on',
          },
          { progress: (m) => say(`${paint('lab:', 'dim')} ${m}`) },
        ).catch((e: unknown) => {
          if (!isTetherError(e, 'TETHER_E_PRECONDITION') && !isTetherError(e, 'TETHER_E_INVALID'))
            say(
              `${paint('lab up failed', 'red')}: what was created is recorded; \`tether lab down --name ${o.name}\` removes it`,
            );
          throw e;
        });
        say(
          `${paint('ready', 'green')}: \`tether lab status --name ${l.plan.name}\`, \`tether lab down --name ${l.plan.name}\``,
        );
      },
    );

  common(lab.command('status').description('namespaces, processes, node sessions and workloads of a lab'))
    .option('-o, --output <fmt>', 'json|yaml')
    .action(async (o: { name: string; stateDir?: string; output?: string }) => {
      const l = Lab.open(o.stateDir ?? defaultLabStateDir(o.name));
      const s = await l.status();
      if (o.output === 'json' || o.output === 'yaml') out(renderStructured(s, o.output));
      else out(renderStatus(s));
    });

  common(
    lab.command('down').description('stop what `up` started and delete exactly the namespaces it created'),
  ).action(async (o: { name: string; stateDir?: string }) => {
    const l = Lab.open(o.stateDir ?? defaultLabStateDir(o.name), {
      progress: (m) => say(`${paint('lab:', 'dim')} ${m}`),
    });
    await l.down();
  });

  common(
    lab
      .command('wan')
      .description(
        'impair the WAN between a site (--site, default every site) and the controller: cut, restore, delay MS, loss PCT, status',
      ),
  )
    .argument('<cut|restore|delay|loss|status>')
    .argument('[value]', 'delay: milliseconds added to each direction; loss: percent of packets dropped')
    .option('--site <site>', 'the site to impair (default: every site)')
    .option('-o, --output <fmt>', 'json|yaml (status)')
    .action(
      async (
        what: string,
        value: string | undefined,
        o: { name: string; stateDir?: string; site?: string; output?: string },
      ) => {
        const l = Lab.open(o.stateDir ?? defaultLabStateDir(o.name));
        const where = o.site ? `site ${o.site}` : 'every site';
        if (o.site) l.site(o.site); // a bad --site fails before anything changes
        const needValue = (unit: string) => {
          if (value === undefined)
            throw new TetherError('TETHER_E_INVALID', `lab wan ${what} needs a value`, {
              field: what,
              expected: unit,
            });
          return int(value, what);
        };
        if (what !== 'delay' && what !== 'loss' && value !== undefined)
          throw new TetherError('TETHER_E_INVALID', `lab wan ${what} takes no value (got "${value}")`);
        if (what === 'cut') {
          await l.wanCut(o.site);
          say(`WAN cut for ${where} (the controller is unreachable from it)`);
        } else if (what === 'restore') {
          await l.wanRestore(o.site);
          say(`WAN restored for ${where} (no cut, no delay, no loss)`);
        } else if (what === 'delay') {
          const ms = needValue('milliseconds, 0 to 60000');
          await l.wanDelay(o.site, ms);
          say(`WAN delay for ${where}: +${ms} ms each way`);
        } else if (what === 'loss') {
          const pct = needValue('a percentage, 0 to 100');
          await l.wanLoss(o.site, pct);
          say(`WAN loss for ${where}: ${pct}% of packets dropped each way`);
        } else if (what === 'status') {
          const st = (await l.wanStatus()).filter((x) => !o.site || x.site === o.site);
          if (o.output === 'json' || o.output === 'yaml') out(renderStructured(st, o.output));
          else out(`${renderWan(st)}\n`);
        } else {
          throw new TetherError('TETHER_E_INVALID', `bad argument "${what}"`, {
            expected: 'cut, restore, delay MS, loss PCT or status',
          });
        }
      },
    );

  // The per-site impairment proxy process `lab up` starts (not for direct use).
  lab
    .command('impair-proxy', { hidden: true })
    .requiredOption('--listen <ip:port>')
    .requiredOption('--target <ip:port>')
    .requiredOption('--control <socket>')
    .option('--delay <ms>', 'initial delay each way', '0')
    .action(async (o: { listen: string; target: string; control: string; delay: string }) => {
      const proxy = new ImpairProxy({
        listen: parseHostPort(o.listen, '--listen'),
        target: parseHostPort(o.target, '--target'),
        delayMs: checkDelayMs(int(o.delay, '--delay'), '--delay'),
      });
      await proxy.start();
      const control = await serveImpairControl(proxy, o.control);
      say(`impairment proxy ${o.listen} → ${o.target}, control ${o.control}`);
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
      control.close();
      await proxy.close();
    });
}
