/**
 * Benchmark runner: imports every bench/*.bench.ts, runs the cases whose name contains one
 * of the command-line filters (all when none), prints a table and merges the results into
 * bench/results.json as [{ name, value, unit }] (entries of cases not run are kept).
 *
 * Each case runs in a fresh Node process (this script with --case NAME and the same Node
 * flags), so no case measures the heap, JIT state or memory left behind by another.
 */

import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { BenchCase, BenchResult } from './types.ts';

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const childCase = argv[0] === '--case' ? argv[1] : undefined;
const filters = argv.filter((a) => !a.startsWith('-'));

const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.ts'))
  .sort();
const cases: BenchCase[] = [];
for (const f of files) {
  const mod = (await import(pathToFileURL(join(here, f)).href)) as { benchmarks?: BenchCase[] };
  for (const c of mod.benchmarks ?? []) cases.push(c);
}

if (childCase !== undefined) {
  // child: run one case, print its results as JSON on the last line of stdout
  const c = cases.find((x) => x.name === childCase);
  if (c === undefined) {
    console.error(`bench: no case named ${childCase}`);
    process.exit(2);
  }
  const rs = await c.run();
  process.stdout.write(`\n${JSON.stringify(rs)}\n`);
  process.exit(0);
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
    const out = execFileSync(
      process.execPath,
      [...process.execArgv, fileURLToPath(import.meta.url), '--case', c.name],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 },
    );
    const lines = out.trimEnd().split('\n');
    // whatever the case printed itself comes first; its results are the last line
    if (lines.length > 1) process.stdout.write(`${lines.slice(0, -1).join('\n')}\n`);
    const rs = JSON.parse(lines[lines.length - 1] ?? '[]') as BenchResult[];
    for (const r of rs) {
      results.push(r);
      console.log(`  ${r.name.padEnd(52)} ${fmt(r.value).padStart(10)} ${r.unit}`);
    }
  } catch (e) {
    console.error(`bench: ${c.name} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exitCode = 1;
  }
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
