/**
 * Benchmark runner: imports every bench/*.bench.ts, runs the cases whose name contains one
 * of the command-line filters (all when none), prints a table and merges the results into
 * bench/results.json as [{ name, value, unit }] (entries of cases not run are kept).
 *
 * Each case runs in a fresh Node process (this script with --case NAME --out FILE and the same
 * Node flags), so no case measures the heap, JIT state or memory left behind by another. The
 * child writes its results to FILE (non-finite values as strings); its own output goes straight
 * to the terminal.
 */

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { BenchCase, BenchResult } from './types.ts';

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const childCase = argv[0] === '--case' ? argv[1] : undefined;
const childOut = argv[2] === '--out' ? argv[3] : undefined;
const filters = argv.filter((a) => !a.startsWith('-'));

const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.ts'))
  .sort();
const cases: BenchCase[] = [];
for (const f of files) {
  const mod = (await import(pathToFileURL(join(here, f)).href)) as { benchmarks?: BenchCase[] };
  for (const c of mod.benchmarks ?? []) cases.push(c);
}

const names = new Set<string>();
for (const c of cases) {
  if (names.has(c.name)) {
    console.error(`bench: two cases are named ${c.name}; names must be unique`);
    process.exit(2);
  }
  names.add(c.name);
}

if (childCase !== undefined) {
  // child: run one case and write its results to the file the parent named
  const c = cases.find((x) => x.name === childCase);
  if (c === undefined || childOut === undefined) {
    console.error(`bench: child needs --case NAME --out FILE (got ${argv.join(' ')})`);
    process.exit(2);
  }
  const rs = await c.run();
  writeFileSync(
    childOut,
    JSON.stringify(rs, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)),
  );
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
  !Number.isFinite(v)
    ? String(v)
    : Math.abs(v) >= 1e6
      ? `${(v / 1e6).toFixed(2)}M`
      : Math.abs(v) >= 100
        ? v.toFixed(0)
        : Math.abs(v) >= 10
          ? v.toFixed(1)
          : v.toFixed(3);
for (const c of selected) {
  process.stderr.write(`bench: ${c.name} ...\n`);
  const dir = mkdtempSync(join(tmpdir(), 'iommu-lab-bench-'));
  const file = join(dir, 'results.json');
  try {
    const child = spawnSync(
      process.execPath,
      [...process.execArgv, fileURLToPath(import.meta.url), '--case', c.name, '--out', file],
      { stdio: 'inherit' },
    );
    if (child.status !== 0 || !existsSync(file)) {
      console.error(
        `bench: ${c.name} failed (${child.signal !== null ? `signal ${child.signal}` : `exit code ${child.status}`})`,
      );
      process.exitCode = 1;
      continue;
    }
    const rs = (JSON.parse(readFileSync(file, 'utf8')) as BenchResult[]).map((r) => ({
      ...r,
      value: Number(r.value),
    }));
    for (const r of rs) {
      results.push(r);
      console.log(`  ${r.name.padEnd(52)} ${fmt(r.value).padStart(10)} ${r.unit}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
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
