// Start-up of the iommu-lab command: the whole process `node bin/iommu-lab.js --version`, as a
// user waits for it. `cli.startup` runs the build in dist/ (what `npm ci` and an installed package
// run); `cli.startup.tsx` runs the same sources through tsx, the way the command started before it
// had a build (and still does in a checkout without one). Rounds alternate the two so both see
// the same load on a shared host; the value is the median, the unit names the range.

import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BenchCase, type BenchResult, median } from './types.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'bin/iommu-lab.js');
const ROUNDS = 15;

/** Wall-clock ms of one `node bin/iommu-lab.js --version`; throws unless it printed only the version. */
function startOnce(env: NodeJS.ProcessEnv): number {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [bin, '--version'], { env, encoding: 'utf8' });
  const ms = performance.now() - t0;
  if (r.status !== 0 || !/^\d+\.\d+\.\d+/.test(r.stdout) || r.stderr !== '') {
    throw new Error(`iommu-lab --version failed (exit ${r.status}): ${r.stdout}${r.stderr}`);
  }
  return ms;
}

export const benchmarks: BenchCase[] = [
  {
    name: 'cli.startup',
    async run() {
      const base = { ...process.env };
      delete base.NODE_OPTIONS;
      delete base.IOMMU_LAB_FROM_SOURCE;
      // a fresh build, so that the first path measured really is dist/ (bin says on stderr otherwise)
      const probe = spawnSync(process.execPath, [bin, '--version'], { env: base, encoding: 'utf8' });
      if (probe.stderr !== '') {
        const b = spawnSync('npm', ['run', 'build'], { cwd: root, encoding: 'utf8' });
        if (b.status !== 0) throw new Error(`npm run build failed:\n${b.stdout}${b.stderr}`);
      }
      const paths = { 'cli.startup': base, 'cli.startup.tsx': { ...base, IOMMU_LAB_FROM_SOURCE: '1' } };
      const times: Record<string, number[]> = { 'cli.startup': [], 'cli.startup.tsx': [] };
      for (const env of Object.values(paths)) startOnce(env); // warm the file cache (and tsx's)
      for (let i = 0; i < ROUNDS; i++)
        for (const [name, env] of Object.entries(paths)) times[name]!.push(startOnce(env));
      return Object.entries(times).map(
        ([name, ms]): BenchResult => ({
          name,
          value: Math.round(median(ms)),
          unit: `ms, median of ${ms.length} (range ${Math.round(Math.min(...ms))}-${Math.round(Math.max(...ms))})`,
        }),
      );
    },
  },
];
