// Layer rules of docs/DESIGN.md: imports point downward only.
//   platform  <-  arch  <-  hw | kernel  <-  tools
// hw and kernel never import each other; nothing imports tools.
module.exports = {
  forbidden: [
    { name: 'platform-is-the-floor', severity: 'error', comment: 'platform/ imports nothing above it',
      from: { path: '^src/platform/' }, to: { path: '^src/(arch|hw|kernel|tools)/' } },
    { name: 'arch-is-pure', severity: 'error', comment: 'arch/ may import only platform/ (pure definitions)',
      from: { path: '^src/arch/' }, to: { path: '^src/(hw|kernel|tools)/' } },
    { name: 'hw-not-kernel', severity: 'error', comment: 'hardware models never know about the kernel model',
      from: { path: '^src/hw/' }, to: { path: '^src/(kernel|tools)/' } },
    { name: 'kernel-not-hw', severity: 'error', comment: 'the kernel model reaches hardware only through registers, memory and interrupts',
      from: { path: '^src/kernel/' }, to: { path: '^src/(hw|tools)/' } },
    { name: 'nothing-imports-tools', severity: 'error', from: { pathNot: '^src/tools/' }, to: { path: '^src/tools/' } },
    { name: 'no-circular', severity: 'error', comment: 'runtime import cycles (type-only cycles are harmless)',
      from: {}, to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } } },
    { name: 'not-to-unresolvable', severity: 'error', from: {}, to: { couldNotResolve: true } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
