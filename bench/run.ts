/**
 * Benchmark runner: imports every bench/*.bench.ts, runs the cases whose name contains one
 * of the command-line filters (all when none), prints a table and merges the results into
 * bench/results.json as [{ name, value, unit }] (entries of cases not run are kept).
 */

import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { BenchCase, BenchResult } from './types.ts';

const here = dirname(fileURLToPath(import.meta.url));
const filters = process.argv.slice(2).filter((a) => !a.startsWith('-'));

const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.ts'))
  .sort();
const cases: BenchCase[] = [];
for (const f of files) {
  const mod = (await import(pathToFileURL(join(here, f)).href)) as { benchmarks?: BenchCase[] };
  for (const c of mod.benchmarks ?? []) cases.push(c);
}
const selected = filters.length ? cases.filter((c) => filters.some((f) => c.name.includes(f))) : cases;
if (selected.length === 0) {
  console.error(
    `bench: no benchmark matches ${filters.join(', ')}. Cases:\n  ${cases.map((c) => c.name).join('\n  ')}`,
  );
  process.exit(2);
}

const results: BenchResult[] = [];
const fmt = (v: number) =>
  Math.abs(v) >= 1e6
    ? `${(v / 1e6).toFixed(2)}M`
    : Math.abs(v) >= 100
      ? v.toFixed(0)
      : Math.abs(v) >= 10
        ? v.toFixed(1)
        : v.toFixed(3);
for (const c of selected) {
  process.stderr.write(`bench: ${c.name} ...\n`);
  try {
    const rs = await c.run();
    for (const r of rs) {
      results.push(r);
      console.log(`  ${r.name.padEnd(52)} ${fmt(r.value).padStart(10)} ${r.unit}`);
    }
  } catch (e) {
    console.error(`bench: ${c.name} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exitCode = 1;
  }
  (globalThis as { gc?: () => void }).gc?.();
}

const out = join(here, 'results.json');
let merged: BenchResult[] = [];
if (existsSync(out)) {
  try {
    merged = (JSON.parse(readFileSync(out, 'utf8')) as BenchResult[]).filter(
      (r) => !results.some((n) => n.name === r.name),
    );
  } catch {
    merged = [];
  }
}
merged.push(...results);
merged.sort((a, b) => a.name.localeCompare(b.name));
writeFileSync(out, `${JSON.stringify(merged, null, 2)}\n`);
console.log(`\n${results.length} results written to bench/results.json`);
