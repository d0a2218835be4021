import { readFileSync } from 'node:fs';
import { hostname, release } from 'node:os';
import type { Command } from 'commander';
import { TetherError } from '../../lib/errors.js';
import { ProcessRunner } from '../../lib/exec.js';
import { loadIdentity } from '../../node/identity.js';
import { DEFAULT_BUNDLE_CAP, writeBundle } from '../../node/support/bundle.js';
import { DEFAULT_NODE_DIR } from '../admin.js';
import { parsePositiveInt } from '../flags.js';
import { say } from '../term.js';
import { detectSource, readLogLines } from './logs.js';
import { nodeStatusView } from './status.js';

/** Versions of what the node runs on, for the bundle's versions.json. */
async function versions(runner: ProcessRunner): Promise<Record<string, string>> {
  const v: Record<string, string> = { node: process.version, kernel: release() };
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    if (pkg.version) v.tether = pkg.version;
  } catch {
    v.tether = process.env.npm_package_version ?? 'unknown';
  }
  for (const [name, args] of [
    ['nft', ['--version']],
    ['ip', ['-V']],
    ['bird', ['--version']],
  ] as const) {
    const r = await runner
      .run(name, [...args], { allowFailure: true, timeoutMs: 3000 })
      .catch(() => undefined);
    v[name] = r ? (`${r.stdout}${r.stderr}`.trim().split('\n')[0]?.slice(0, 200) ?? '') : 'not installed';
  }
  return v;
}

export function registerBundle(program: Command): void {
  program
    .command('bundle')
    .description(
      'a support bundle for the NOC: status, diag, logs, Tether-owned kernel state, redacted config, versions (.tar.gz with manifest)',
    )
    .option('--state-dir <dir>', 'node state directory', DEFAULT_NODE_DIR)
    .option('-o, --output <file>', 'where to write the tarball (default ./tether-bundle-<node>.tar.gz)')
    .option('--max-size <bytes>', 'cap on the uncompressed contents', String(DEFAULT_BUNDLE_CAP))
    .addHelpText(
      'after',
      '\nExamples:\n  tether bundle\n  tether bundle -o /tmp/site42.tar.gz --max-size 8388608\n',
    )
    .action(async (o: { stateDir: string; output?: string; maxSize: string }) => {
      const cap = parsePositiveInt(o.maxSize, '--max-size');
      // A bundle is most needed from a node that is not enrolled or whose credentials are
      // damaged: fall back to the host name rather than refuse.
      let id: { name: string };
      try {
        id = loadIdentity(o.stateDir);
      } catch {
        id = { name: hostname() };
      }
      const runner = new ProcessRunner();
      const parts: Record<string, unknown> = {};
      parts.status = await nodeStatusView(o.stateDir).catch((e: unknown) => ({ error: String(e) }));
      try {
        const { runDiag } = await import('../../node/support/diag.js');
        parts.diag = await runDiag({ stateDir: o.stateDir, runner });
      } catch (e) {
        parts.diag = { error: e instanceof TetherError ? e.message : String(e) };
      }
      parts.versions = await versions(runner);
      let logs: string | undefined;
      try {
        logs = `${(await readLogLines(o.stateDir, await detectSource(o.stateDir))).join('\n')}\n`;
      } catch (e) {
        logs = `${JSON.stringify({ level: 'error', msg: `logs not read: ${(e as Error).message}` })}\n`;
      }
      const file = o.output ?? `tether-bundle-${id.name.replace(/[^A-Za-z0-9_.-]/g, '_')}.tar.gz`;
      const m = await writeBundle(file, {
        stateDir: o.stateDir,
        runner,
        parts,
        logs,
        node: id.name,
        capBytes: cap,
      });
      const redactions = m.files.reduce((n, f) => n + f.redactions, 0);
      say(
        `wrote ${file}: ${m.files.length} file(s), ${redactions} secret(s) redacted${m.omitted.length ? `, ${m.omitted.length} left out (see manifest.json)` : ''}`,
      );
    });
}
