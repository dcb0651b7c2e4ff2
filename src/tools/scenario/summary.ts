/**
 * Sweep results: the JSON-lines file a sweep writes (a header line, then one line per seed) and
 * the summary of one or many such files — passed, failed, missing, the first failing seeds with
 * the command that reproduces each. `iommu-lab report` merges the shards of a campaign with it.
 */

import type { ScenarioResult } from '../../api/scenario.ts';
import { parseSeeds } from './seeds.ts';

/** First line of a results file. */
export interface SweepHeader {
  type: 'sweep';
  scenario: string;
  /** The scenario file as given on the command line. */
  file: string;
  /** The whole campaign's seed list (before sharding), compact. */
  seeds: string;
  /** "I/N", or null for an unsharded run. */
  shard: string | null;
  /** Seeds this file should hold. */
  count: number;
}

export interface SweepSummary {
  scenario: string;
  /** Seeds of the campaign (every shard together). */
  campaign: number;
  /** Results found. */
  results: number;
  passed: number;
  failed: number;
  /** Campaign seeds with no result (a shard not run or not merged). */
  missing: number;
  /** The first missing seeds (up to 10). */
  missingSeeds: number[];
  /** The first failures (up to 10), with the command that reproduces each. */
  failures: Array<{ seed: number; kind: string; message: string; reproduce: string }>;
  /** Failures by kind. */
  byKind: Record<string, number>;
  /** Total virtual time of the results, ns. */
  virtualTimeNs: number;
}

export interface ResultsFile {
  header: SweepHeader;
  results: ScenarioResult[];
}

export function summarize(files: readonly ResultsFile[], repro?: string): SweepSummary {
  const campaign = new Set<number>();
  const bySeed = new Map<number, ScenarioResult>();
  let scenario = '';
  for (const f of files) {
    scenario ||= f.header.scenario;
    const s = parseSeeds(f.header.seeds);
    if (s.ok) for (const x of s.value) campaign.add(x);
    for (const r of f.results) if (!bySeed.has(r.seed)) bySeed.set(r.seed, r);
  }
  const ordered = [...bySeed.values()].sort((x, y) => x.seed - y.seed);
  const failedList = ordered.filter((r) => !r.ok);
  const byKind: Record<string, number> = {};
  for (const r of failedList)
    byKind[r.error?.kind ?? 'unknown'] = (byKind[r.error?.kind ?? 'unknown'] ?? 0) + 1;
  const missingSeeds: number[] = [];
  let missing = 0;
  for (const s of [...campaign].sort((x, y) => x - y)) {
    if (bySeed.has(s)) continue;
    missing++;
    if (missingSeeds.length < 10) missingSeeds.push(s);
  }
  const file = files[0]?.header.file ?? 'FILE';
  const prefix = repro ?? `iommu-lab run ${file}`;
  return {
    scenario,
    campaign: campaign.size || ordered.length,
    results: ordered.length,
    passed: ordered.length - failedList.length,
    failed: failedList.length,
    missing,
    missingSeeds,
    failures: failedList.slice(0, 10).map((r) => ({
      seed: r.seed,
      kind: r.error?.kind ?? 'unknown',
      message: r.error?.message ?? '',
      reproduce: `${prefix} --seed ${r.seed}`,
    })),
    byKind,
    virtualTimeNs: ordered.reduce((t, r) => t + r.virtualTimeNs, 0),
  };
}

export function formatSummary(s: SweepSummary): string[] {
  const lines = [
    `${s.scenario}: ${s.results} of ${s.campaign} seeds run: ${s.passed} passed, ${s.failed} failed${s.missing ? `, ${s.missing} missing` : ''}`,
  ];
  if (s.failed > 0) {
    lines.push(
      `failures by kind: ${Object.entries(s.byKind)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ')}`,
    );
    lines.push(
      `first failing seeds${s.failed > s.failures.length ? ` (${s.failures.length} of ${s.failed})` : ''}:`,
    );
    for (const f of s.failures) {
      lines.push(`  seed ${f.seed}: ${f.kind}: ${f.message.split('\n')[0]}`);
      lines.push(`    reproduce: ${f.reproduce}`);
    }
  }
  if (s.missing > 0) {
    lines.push(
      `missing seeds: ${s.missingSeeds.join(', ')}${s.missing > s.missingSeeds.length ? ', ...' : ''} (a shard not run or not given to report)`,
    );
  }
  return lines;
}

/** Parse a results file; throws an Error naming the line for anything malformed. */
export function parseResultsFile(text: string, name: string): ResultsFile {
  const lines = text.split('\n');
  let header: SweepHeader | null = null;
  const results: ScenarioResult[] = [];
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!.trim();
    if (l === '') continue;
    let v: unknown;
    try {
      v = JSON.parse(l);
    } catch {
      throw new Error(`${name}:${i + 1}: not a JSON line`);
    }
    const o = v as Record<string, unknown>;
    if (o === null || typeof o !== 'object') throw new Error(`${name}:${i + 1}: not a JSON object`);
    if (o.type === 'sweep') {
      if (header !== null) throw new Error(`${name}:${i + 1}: a second header line`);
      if (typeof o.scenario !== 'string' || typeof o.seeds !== 'string')
        throw new Error(`${name}:${i + 1}: malformed header`);
      header = o as unknown as SweepHeader;
    } else if (o.type === 'result') {
      if (typeof o.seed !== 'number' || typeof o.ok !== 'boolean')
        throw new Error(`${name}:${i + 1}: malformed result`);
      results.push(o as unknown as ScenarioResult);
    } else throw new Error(`${name}:${i + 1}: unknown line type ${JSON.stringify(o.type)}`);
  }
  if (header === null)
    throw new Error(`${name}: no header line: not a results file of 'iommu-lab run --out'`);
  return { header, results };
}
