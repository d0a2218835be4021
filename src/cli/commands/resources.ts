import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { TetherObject } from '../../api/resource.js';
import { parseResourceDocuments, validateObject } from '../../api/validate.js';
import { TetherError } from '../../lib/errors.js';
import { readInputFile } from '../../lib/input.js';
import { Admin } from '../admin.js';
import { EXIT } from '../exit.js';
import { resolveKind, tableFor } from '../kinds.js';
import { out, parseOutputFormat, renderStructured, renderTable, say } from '../output.js';

function readInputs(path: string): Array<{ file: string; text: string }> {
  if (path === '-') return [{ file: '<stdin>', text: readInputFile(0, { name: '<stdin>' }) }];
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch {
    throw new TetherError('TETHER_E_NOT_FOUND', `no such file or directory: ${path}`, { file: path });
  }
  if (!st.isDirectory()) return [{ file: path, text: readInputFile(path) }];
  return readdirSync(path)
    .filter((n) => /\.(ya?ml|json)$/.test(n))
    .sort()
    .map((n) => ({ file: join(path, n), text: readInputFile(join(path, n)) }));
}

/** Parses and validates everything locally first, so a bad file is reported with its line
 *  before anything reaches the controller (which validates again). */
export function loadResources(paths: readonly string[]): Array<{ object: TetherObject; source: string }> {
  const res: Array<{ object: TetherObject; source: string }> = [];
  for (const p of paths) {
    for (const { file, text } of readInputs(p)) {
      for (const doc of parseResourceDocuments(text, file)) {
        if (doc.object === null || doc.object === undefined) continue;
        const object = validateObject(doc.object, { file, lineOf: doc.lineOf });
        res.push({ object, source: `${file}:${doc.line}` });
      }
    }
  }
  return res;
}

export function registerResources(program: Command): void {
  program
    .command('apply')
    .description(
      'create or update resources from YAML/JSON files, a directory, or - for stdin (all or nothing)',
    )
    .requiredOption('-f, --filename <path...>', 'file, directory or -')
    .option('--config <file>', 'admin client config')
    .option('-o, --output <fmt>', 'json|yaml|name')
    .action(async (o: { filename: string[]; config?: string; output?: string }) => {
      const items = loadResources(o.filename);
      if (items.length === 0)
        throw new TetherError('TETHER_E_INVALID', 'no resources found in input', {
          file: o.filename.join(', '),
        });
      const admin = Admin.fromFlag(o.config);
      try {
        const res = await admin.apply({
          json: items.map((i) => Buffer.from(JSON.stringify(i.object))),
          sources: items.map((i) => i.source),
          expect_revision: 0,
        });
        const fmt = parseOutputFormat(o.output);
        if (fmt === 'json' || fmt === 'yaml') {
          out(renderStructured({ revision: res.revision, results: res.results }, fmt));
          return;
        }
        for (const r of res.results)
          out(`${r.kind.toLowerCase()}/${r.name} ${fmt === 'name' ? '' : r.action}\n`.replace(' \n', '\n'));
        say(`revision ${res.revision}`);
      } finally {
        admin.close();
      }
    });

  program
    .command('get')
    .description('list resources of a kind, or show one (exit 3 when not found)')
    .argument('<kind>', 'sites, nodes, tokens, vn, netpol, endpoints, profiles')
    .argument('[name]', 'one object')
    .option('--config <file>', 'admin client config')
    .option('-o, --output <fmt>', 'table|json|yaml|name', 'table')
    .option(
      '-w, --watch',
      'after listing, stream changes (one line, or one JSON object per line with -o json)',
    )
    .action(
      async (
        kindWord: string,
        name: string | undefined,
        o: { config?: string; output: string; watch?: boolean },
      ) => {
        const kind = resolveKind(kindWord);
        const fmt = parseOutputFormat(o.output);
        const admin = Admin.fromFlag(o.config);
        try {
          if (o.watch) {
            const { revision, items } = await admin.list(kind);
            const show = (type: string, rev: number, obj: TetherObject) => {
              if (name && obj.metadata.name !== name) return;
              if (fmt === 'json') out(`${JSON.stringify({ type, revision: rev, object: obj })}\n`);
              else
                out(
                  `${type.toUpperCase().padEnd(7)} ${kind.toLowerCase()}/${obj.metadata.name}   revision ${rev}\n`,
                );
            };
            for (const it of items) show('exists', it.metadata.revision ?? revision, it);
            say(`watching ${kind} from revision ${revision} (Ctrl-C to stop)`);
            const stop = new AbortController();
            process.once('SIGINT', () => stop.abort());
            process.once('SIGTERM', () => stop.abort());
            await admin.watch(kind, revision, (e) => show(e.type, e.revision, e.object), stop.signal);
            return;
          }
          const items = name ? [await admin.get(kind, name)] : (await admin.list(kind)).items;
          if (fmt === 'json' || fmt === 'yaml') {
            out(
              renderStructured(name ? items[0] : { apiVersion: 'tether.dev/v1', kind: 'List', items }, fmt),
            );
          } else if (fmt === 'name') {
            for (const i of items) out(`${kind.toLowerCase()}/${i.metadata.name}\n`);
          } else if (items.length === 0) {
            say(`no ${kind} resources`);
          } else {
            const t = tableFor(kind, items);
            out(renderTable(t.headers, t.rows));
          }
        } finally {
          admin.close();
        }
      },
    );

  program
    .command('describe')
    .description('show one resource in full, with its live status')
    .argument('<kind>')
    .argument('<name>')
    .option('--config <file>', 'admin client config')
    .option('-o, --output <fmt>', 'yaml|json', 'yaml')
    .action(async (kindWord: string, name: string, o: { config?: string; output: string }) => {
      const kind = resolveKind(kindWord);
      const admin = Admin.fromFlag(o.config);
      try {
        const obj = await admin.get(kind, name);
        out(renderStructured(obj, o.output === 'json' ? 'json' : 'yaml'));
      } finally {
        admin.close();
      }
    });

  program
    .command('delete')
    .description('delete a resource by kind and name, or everything named in files')
    .argument('[kind]')
    .argument('[name]')
    .option('-f, --filename <path...>', 'delete the resources in these files')
    .option('--config <file>', 'admin client config')
    .action(
      async (
        kindWord: string | undefined,
        name: string | undefined,
        o: { filename?: string[]; config?: string },
      ) => {
        const targets: Array<{ kind: string; name: string }> = [];
        if (o.filename)
          for (const i of loadResources(o.filename))
            targets.push({ kind: i.object.kind, name: i.object.metadata.name });
        else if (kindWord && name) targets.push({ kind: resolveKind(kindWord), name });
        else
          throw new TetherError('TETHER_E_INVALID', 'say what to delete', {
            expected: 'KIND NAME or -f FILE',
          });
        const admin = Admin.fromFlag(o.config);
        try {
          let missing = 0;
          for (const t of targets) {
            try {
              const r = await admin.delete(t.kind, t.name);
              out(`${t.kind.toLowerCase()}/${t.name} deleted\n`);
              say(`revision ${r.revision}`);
            } catch (e) {
              if (e instanceof TetherError && e.code === 'TETHER_E_NOT_FOUND') {
                say(`${t.kind.toLowerCase()}/${t.name} not found`);
                missing++;
              } else throw e;
            }
          }
          if (missing) process.exitCode = EXIT.NOT_FOUND;
        } finally {
          admin.close();
        }
      },
    );
}
