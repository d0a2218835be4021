// Generates TypeScript types for src/api/proto into src/api/gen with @grpc/proto-loader's
// generator (pure JS, no protoc binary). `--check` regenerates into a temp dir and fails if
// the checked-in files differ, so the types can never drift from the .proto.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const protoDir = join(root, 'src/api/proto');
const outDir = join(root, 'src/api/gen');
const check = process.argv.includes('--check');

function files(dir) {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

function generate(target) {
  execFileSync(
    join(root, 'node_modules/.bin/proto-loader-gen-types'),
    [
      '--longs=Number',
      '--enums=String',
      '--defaults',
      '--oneofs',
      '--keepCase',
      '--grpcLib=@grpc/grpc-js',
      '--includeComments',
      '-I',
      protoDir,
      '-O',
      target,
      ...files(protoDir)
        .filter((f) => f.endsWith('.proto'))
        .map((f) => relative(protoDir, f)),
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  // The generator writes absolute paths and extension-less imports; NodeNext ESM needs
  // `.js`, and a machine's paths must not be committed.
  for (const f of files(target)) {
    const text = readFileSync(f, 'utf8')
      .replace(/^\/\/ Original file: .*\/src\/api\/proto\//gm, '// Original file: src/api/proto/')
      .replace(/(from '\.{1,2}\/[^']+?)(?<!\.js)'/g, "$1.js'");
    writeFileSync(f, text);
  }
}

if (!check) {
  rmSync(outDir, { recursive: true, force: true });
  generate(outDir);
} else {
  const tmp = mkdtempSync(join(tmpdir(), 'tether-gen-'));
  try {
    generate(tmp);
    const want = files(tmp)
      .map((f) => relative(tmp, f))
      .sort();
    const have = files(outDir)
      .map((f) => relative(outDir, f))
      .sort();
    const stale = want.filter(
      (f) =>
        !have.includes(f) || readFileSync(join(tmp, f), 'utf8') !== readFileSync(join(outDir, f), 'utf8'),
    );
    const extra = have.filter((f) => !want.includes(f));
    if (stale.length || extra.length) {
      console.error(`src/api/gen is stale (run npm run gen): ${[...stale, ...extra].join(', ')}`);
      process.exit(1);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
