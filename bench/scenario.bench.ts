// Sweep throughput: seeds per second of examples/isolation-property.mjs through the runner users
// get (worker threads, one fresh machine per seed), with 1 and 2 jobs, in one process run so the
// two are compared side by side. The first seeds of each job pay for loading the module and
// warming the JIT; the rate is over the whole sweep, as a user sees it. Rounds alternate the job
// counts; the median round is reported with the range.

import { join } from 'node:path';
import { runPool } from '../src/tools/scenario/pool.ts';
import { type BenchCase, median } from './types.ts';

const FILE = join(import.meta.dirname, '../examples/isolation-property.mjs');
const SEEDS = 1000;
const ROUNDS = 3;

async function seedsPerSecond(jobs: number): Promise<number> {
  const seeds = Array.from({ length: SEEDS }, (_, i) => i + 1);
  let failed = 0;
  const t0 = performance.now();
  const out = await runPool({
    file: FILE,
    seeds,
    jobs,
    wallLimitMs: 120_000,
    onResult: (r) => {
      if (!r.ok) failed++;
    },
  });
  const s = (performance.now() - t0) / 1000;
  if (out.loadError !== null || failed > 0)
    throw new Error(`sweep failed: ${out.loadError ?? `${failed} seeds`}`);
  return SEEDS / s;
}

export const benchmarks: BenchCase[] = [
  {
    name: 'scenario.sweep',
    async run() {
      const r: Record<number, number[]> = { 1: [], 2: [] };
      for (let i = 0; i < ROUNDS; i++) for (const j of [1, 2]) r[j]!.push(await seedsPerSecond(j));
      const out = [];
      for (const j of [1, 2]) {
        const xs = r[j]!;
        out.push({
          name: `scenario.sweep.isolation.jobs${j}`,
          value: Number(median(xs).toFixed(2)),
          unit: 'seeds/s',
        });
        out.push({
          name: `scenario.sweep.isolation.jobs${j}.min`,
          value: Number(Math.min(...xs).toFixed(2)),
          unit: 'seeds/s',
        });
        out.push({
          name: `scenario.sweep.isolation.jobs${j}.max`,
          value: Number(Math.max(...xs).toFixed(2)),
          unit: 'seeds/s',
        });
      }
      return out;
    },
  },
];
