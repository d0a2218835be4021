// `--help` examples, one table for every command path, attached after the commands register
// (buildProgram). A table rather than lines in each command module: the examples are read
// together (consistent site/node names, a story a technician can follow), and a module that
// wants its own keeps them with addHelpText. test/unit/cli/help-examples.test.ts fails when a
// command has none or an example uses a flag the command lacks.
import type { Command } from 'commander';

/** [command line after `tether`, what it does]. */
type Example = readonly [string, string];

export const EXAMPLES: Readonly<Record<string, readonly Example[]>> = {
  '': [
    ['status', 'the node this shell runs on: session, WAN, networks, errors'],
    ['completion bash > /etc/bash_completion.d/tether', 'install bash completion'],
  ],
  controller: [
    ['controller init --advertise ctl.example.net:7443', 'create the CA and config of a new controller'],
  ],
  'controller init': [
    [
      'controller init --advertise ctl.example.net:7443 --san 192.0.2.10',
      'a controller reachable by name and address',
    ],
  ],
  'controller start': [['controller start --data-dir /var/lib/tether-controller', 'serve the controller']],
  'controller migrate': [
    [
      'controller migrate --from sqlite:/var/lib/tether-controller --to etcd://10.0.0.1:2379,10.0.0.2:2379 --dry-run',
      'what would be copied, writing nothing',
    ],
    [
      'controller migrate --from sqlite:/var/lib/tether-controller --to etcds://etcd-1:2379 --etcd-ca ca.pem --etcd-cert c.pem --etcd-key c.key',
      'copy every object and report mark into etcd over TLS',
    ],
  ],
  token: [['token create --site berlin-01', 'a one-use join token for site berlin-01']],
  'token create': [
    ['token create --site berlin-01 --ttl 2h --uses 3', 'three nodes may join within two hours'],
    ['token create --site berlin-01 -o json', 'token, id and expiry as JSON'],
  ],
  node: [['node enroll --controller ctl.example.net:7443 --token-file /run/tether/token', 'join this box']],
  'node enroll': [
    [
      'node enroll --controller ctl.example.net:7443 --token-file /run/tether/token --name du-01',
      'join as du-01',
    ],
    [
      'node enroll --controller ctl.example.net:7443 --token TOKEN --wait 10m',
      'wait for approval up to 10 minutes',
    ],
    [
      'node enroll --controller 10.0.0.1:7443,10.0.0.2:7443 --token-file /run/tether/token',
      'know both controller replicas (failover in this order)',
    ],
  ],
  'node run': [
    ['node run --underlay-if eth0 --vtep-ip 198.51.100.7', 'the node daemon on underlay eth0'],
    ['node run --no-vrouter --no-shell', 'session only: no data path, no remote shell'],
  ],
  'node firstboot': [
    ['node firstboot --dhcp-if eth0 --max-attempts 5', 'zero-touch first boot over DHCP on eth0'],
  ],
  'node approve': [['node approve du-01', 'let node du-01 in after its enrollment request']],
  'node revoke': [['node revoke du-01 -o json', 'revoke the certificate of du-01']],
  'node reset': [['node reset du-01', 'forget du-01 so the box can enroll again']],
  status: [
    ['status', 'the local node, live from its control API'],
    ['status -o json', 'the same as JSON for scripts'],
    ['status --state-dir /var/lib/tether-node', 'a node with a non-default state directory'],
  ],
  apply: [['apply -f network.yaml', 'create or update the objects in network.yaml']],
  get: [
    ['get nodes', 'all nodes and their session state'],
    ['get nodes du-01 -o yaml', 'one node as YAML'],
    ['get networks --watch', 'follow changes to networks'],
  ],
  describe: [['describe node du-01', 'one node in detail, with its recent conditions']],
  delete: [
    ['delete network radio-a', 'delete one network'],
    ['delete -f network.yaml', 'delete what network.yaml declares'],
  ],
  profile: [['profile list', 'the shipped site and hardware profiles']],
  'profile list': [['profile list -o json', 'profiles as JSON']],
  'profile show': [['profile show du --origins', 'the composed du profile and where each field came from']],
  'profile validate': [['profile validate du --hardware', 'check du against this box’s NICs and CPUs']],
  'profile plan': [['profile plan du', 'what applying du would change, and the reboots it needs']],
  'profile apply': [['profile apply du -o json', 'apply du and report the steps as JSON']],
  'profile schema': [['profile schema > profile.schema.json', 'the JSON Schema for editors']],
  'profile origin': [['profile origin du kernel.hugepages', 'which file set kernel.hugepages in du']],
  check: [
    ['check', 'is this box ready for its profile'],
    ['check --profile du --underlay-if eth0 -o json', 'check against du, as JSON'],
  ],
  lab: [['lab up --sites 2 --nodes-per-site 2', 'a namespace lab: controller, two sites of two nodes']],
  'lab up': [['lab up --name demo --sites 2 --nodes-per-site 1 --proxy', 'two sites behind site proxies']],
  'lab status': [['lab status --name demo', 'what the demo lab runs']],
  'lab down': [['lab down --name demo', 'stop the demo lab and delete its namespaces']],
  'lab wan': [
    ['lab wan cut --site site1', 'cut the WAN of site1'],
    ['lab wan delay 80 --site site1', 'add 80 ms each way on the WAN of site1'],
    ['lab wan restore --site site1', 'undo cuts and impairments of site1'],
  ],
  'lab impair-proxy': [
    [
      'lab impair-proxy --listen 127.0.0.1:9443 --target 127.0.0.1:7443 --control 127.0.0.1:9444',
      'a TCP relay whose delay a test can change',
    ],
  ],
  shell: [['shell du-01 --reason "INC-4711 check link" --config alice.yaml', 'a shell on du-01, audited']],
  dashboard: [
    ['dashboard', 'watch this node; q quits'],
    ['dashboard --interval 5s --state-dir /var/lib/tether-node', 'slower refresh, another state directory'],
  ],
  completion: [
    ['completion bash > /etc/bash_completion.d/tether', 'bash, for every user'],
    ['completion zsh > ~/.zsh/completions/_tether', 'zsh, with ~/.zsh/completions on $fpath before compinit'],
  ],
};

export function renderExamples(examples: readonly Example[]): string {
  const lines = examples.flatMap(([cmd, what]) => [`  $ tether ${cmd}`, `      ${what}`]);
  return `\nExamples:\n${lines.join('\n')}\n`;
}

/** Adds the Examples section to every command of `program` that has a row. */
export function attachExamples(program: Command): void {
  const visit = (cmd: Command, path: string[]): void => {
    const rows = EXAMPLES[path.join(' ')];
    if (rows) cmd.addHelpText('after', renderExamples(rows));
    for (const c of cmd.commands) visit(c, [...path, c.name()]);
  };
  visit(program, []);
}
