/**
 * dma.map_single.strict against an older commit, in one run: the older tree is taken from git
 * (BENCH_BASE_REV, default 081b3c5, the commit before the kernel-model performance work;
 * `git archive` of its src/ and test/ into a temporary directory), and rounds of one
 * measurement each (bench/dma-strict-pairs.ts, a fresh Node process per measurement, the same
 * loop for both trees) alternate between it and this tree, the order flipping every round so
 * that a drift of the shared host hits both alike. Reported: each side's median and range, and
 * the median over rounds of each round's own ratio (this tree / base).
 */

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BenchCase, type BenchResult, median } from './types.ts';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const ROUNDS = 7;
const PAIRS = 20_000;

function measure(tree: string): number {
  const out = execFileSync(
    process.execPath,
    ['--import', 'tsx', join(here, 'dma-strict-pairs.ts'), tree, String(PAIRS)],
    { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return (JSON.parse(out.trim().split('\n').at(-1)!) as { rate: number }).rate;
}

export const benchmarks: BenchCase[] = [
  {
    name: 'dma.map_single.strict.vs_base',
    async run(): Promise<BenchResult[]> {
      const rev = process.env.BENCH_BASE_REV ?? '081b3c5';
      const dir = mkdtempSync(join(tmpdir(), 'iommu-lab-base-'));
      try {
        try {
          const tar = join(dir, 'base.tar');
          execFileSync('git', ['-C', root, 'archive', '-o', tar, rev, 'package.json', 'src', 'test']);
          execFileSync('tar', ['-x', '-f', tar, '-C', dir]);
        } catch (e) {
          console.log(
            `dma.map_single.strict.vs_base: skipped, no tree for ${rev}: ${String(e).split('\n')[0]}`,
          );
          return [];
        }
        const base: number[] = [];
        const ours: number[] = [];
        const ratios: number[] = [];
        for (let round = 0; round < ROUNDS; round++) {
          let b: number;
          let o: number;
          if (round % 2 === 0) {
            b = measure(dir);
            o = measure(root);
          } else {
            o = measure(root);
            b = measure(dir);
          }
          base.push(b);
          ours.push(o);
          ratios.push(o / b);
          console.error(
            `  round ${round}: ${rev} ${b.toFixed(0)}, this tree ${o.toFixed(0)} pairs/s: ${(o / b).toFixed(2)}x`,
          );
        }
        const range = (xs: number[], d = 0) => `${Math.min(...xs).toFixed(d)}-${Math.max(...xs).toFixed(d)}`;
        return [
          {
            name: 'dma.map_single.strict.vs_base',
            value: median(ratios),
            unit: `x ${rev} (median of ${ROUNDS} alternating rounds' ratios, ${range(ratios, 2)})`,
          },
          {
            name: 'dma.map_single.strict.vs_base.this_tree',
            value: median(ours),
            unit: `pairs/s (median of ${ROUNDS}, ${range(ours)})`,
          },
          {
            name: 'dma.map_single.strict.vs_base.base',
            value: median(base),
            unit: `pairs/s at ${rev} (median of ${ROUNDS}, ${range(base)})`,
          },
        ];
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  },
];
