// Layering from ARCHITECTURE.md: cli -> controller/node/lab -> kernel/bgp/profiles -> api/lib.
// Everything imports inward only; cycles anywhere fail the build.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    // Generated protobuf types mirror recursive messages (etcd's Txn holds RequestOps that
    // may hold a Txn): type-only cycles there are the schema's, not a layering fault.
    {
      name: 'no-cycles',
      severity: 'error',
      from: { pathNot: '^src/api/gen/' },
      to: { circular: true },
    },
    {
      name: 'lib-is-a-leaf',
      severity: 'error',
      from: { path: '^src/lib/' },
      to: { path: '^src/(?!lib/)' },
    },
    {
      name: 'api-only-lib',
      severity: 'error',
      from: { path: '^src/api/' },
      to: { path: '^src/(?!api/|lib/)' },
    },
    {
      name: 'kernel-bgp-profiles-stay-low',
      comment: 'kernel, bgp and profiles never reach up into controller, node, lab or cli',
      severity: 'error',
      from: { path: '^src/(kernel|bgp|profiles)/' },
      to: { path: '^src/(controller|node|lab|cli|cni)/' },
    },
    {
      name: 'controller-and-node-are-peers',
      comment: 'controller and node talk only over the API, never by import',
      severity: 'error',
      from: { path: '^src/controller/' },
      to: { path: '^src/(node|lab|cli|cni)/' },
    },
    {
      name: 'node-not-controller',
      severity: 'error',
      from: { path: '^src/node/' },
      to: { path: '^src/(controller|lab|cli)/' },
    },
    {
      name: 'nothing-imports-cli',
      severity: 'error',
      from: { path: '^src/(?!cli/)' },
      to: { path: '^src/cli/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
