import type { Command } from 'commander';
import { defaultLabStateDir, Lab, type LabStatusView } from '../../lab/index.js';
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
  const missing = s.namespaces.filter((n) => !n.exists).map((n) => n.name);
  lines.push(
    `namespaces: ${s.namespaces.length} recorded${missing.length ? `, missing: ${missing.join(', ')}` : ', all present'}`,
  );
  return `${lines.join('\n')}\n`;
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
    .option('--nodes-per-site <n>', 'nodes per site (1-4)', '1')
    .option('--workloads-per-node <n>', 'workloads per node (odd: red, even: blue)', '2')
    .action(
      async (o: {
        name: string;
        stateDir?: string;
        sites: string;
        nodesPerSite: string;
        workloadsPerNode: string;
      }) => {
        const stateDir = o.stateDir ?? defaultLabStateDir(o.name);
        const l = await Lab.up(
          {
            name: o.name,
            stateDir,
            sites: int(o.sites, '--sites'),
            nodesPerSite: int(o.nodesPerSite, '--nodes-per-site'),
            workloadsPerNode: int(o.workloadsPerNode, '--workloads-per-node'),
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

  common(lab.command('wan').description('cut or restore the WAN between the sites and the controller'))
    .argument('<cut|restore>')
    .action(async (what: string, o: { name: string; stateDir?: string }) => {
      const l = Lab.open(o.stateDir ?? defaultLabStateDir(o.name));
      if (what === 'cut') await l.cutWan();
      else if (what === 'restore') await l.restoreWan();
      else
        throw new TetherError('TETHER_E_INVALID', `bad argument "${what}"`, { expected: 'cut or restore' });
      say(`WAN ${what === 'cut' ? 'cut (controller unreachable from every site)' : 'restored'}`);
    });
}
