import type { Command } from 'commander';
import { Admin } from '../admin.js';
import { parseDuration, parsePositiveInt } from '../flags.js';
import { out, renderStructured, say } from '../output.js';

export function registerToken(program: Command): void {
  const tok = program.command('token').description('manage enrollment (join) tokens');
  tok
    .command('create')
    .description('create a join token bound to one site; prints it on stdout')
    .requiredOption('--site <site>', 'site the token enrolls nodes into (created if missing)')
    .option('--ttl <duration>', 'lifetime, e.g. 30m, 1h, 7d', '1h')
    .option('--uses <n>', 'how many nodes may use it', '1')
    .option('--description <text>', 'free text kept with the token')
    .option('--config <file>', 'admin client config')
    .option('-o, --output <fmt>', 'json|yaml')
    .action(
      async (o: {
        site: string;
        ttl: string;
        uses: string;
        description?: string;
        config?: string;
        output?: string;
      }) => {
        const admin = Admin.fromFlag(o.config);
        try {
          const res = await admin.createToken({
            site: o.site,
            ttl_seconds: Math.round(parseDuration(o.ttl, '--ttl')),
            uses: parsePositiveInt(o.uses, '--uses'),
            description: o.description ?? '',
          });
          if (o.output === 'json' || o.output === 'yaml') {
            out(
              renderStructured(
                { token: res.token, id: res.id, site: res.site, expiresAt: res.expires_at },
                o.output,
              ),
            );
            return;
          }
          out(`${res.token}\n`);
          say(`token ${res.id} for site ${res.site}, expires ${res.expires_at}`);
          say(`on the node: tether node enroll --controller ${admin.config.server} --token <token>`);
        } finally {
          admin.close();
        }
      },
    );
}
