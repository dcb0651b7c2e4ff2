/**
 * `iommu-lab run FILE`: one seed with the kernel log live on stdout, or a sweep over many seeds
 * on worker threads with a progress line and a summary, optionally one shard of a campaign, with
 * one JSON line per seed in `--out`.
 */

import { availableParallelism } from 'node:os';
import { INJECTIONS, type InjectionName } from '../../api/inject.ts';
import type { ScenarioResult } from '../../api/scenario.ts';
import type { SanitizeMode } from '../../platform/sanitizer.ts';
import { DmesgSink, formatDmesg, PerfettoSink, type TraceEvent } from '../../platform/trace.ts';
import { checkScenarioFile } from './load.ts';
import { runPool } from './pool.ts';
import { describeSeeds, parseDuration, parseSeeds, parseShard, type Shard, shardSeeds } from './seeds.ts';
import { formatSummary, type SweepHeader, type SweepSummary, summarize } from './summary.ts';

export interface RunIo {
  out: (s: string) => void;
  err: (s: string) => void;
  /** Write a whole output file (--out; the caller makes it safe: temp file and rename). */
  writeFile: (path: string, data: string) => Promise<void>;
  /** Hand over the --trace / --log contents; the CLI writes them once the run is over. */
  output: (kind: 'trace' | 'log', text: () => string) => void;
  /** Progress of a sweep: `final` on the last call. A TTY shows a bar; otherwise plain lines. */
  progress?: (line: string, final: boolean) => void;
  env?: Record<string, string | undefined>;
  /** Wall-clock milliseconds (progress rates only; never part of a result). */
  clock?: () => number;
}

export interface RunArgs {
  file: string;
  /** The global --seed (single run). */
  seed: number;
  /** --seeds LIST: a sweep. */
  seeds: string | null;
  jobs: string | null;
  shard: string | null;
  out: string | null;
  json: boolean;
  /** Record a Perfetto trace / a dmesg log of the run (handed over through io.output). */
  trace: boolean;
  log: boolean;
  virtualTimeLimit: string | null;
  wallTimeLimit: string | null;
  /** Check the arguments and print what would run, without running anything. */
  dryRun?: boolean;
  /** --sanitize[=MODE]: the DMA-isolation sanitizer for every seed (null: the scenario's own). */
  sanitize?: SanitizeMode | null;
  /** --inject NAME[,NAME...]: injections turned on from boot in every seed. */
  inject?: string | null;
  /** How the command is spelled in reproduction lines ("iommu-lab run FILE", "iommu-lab demo NAME"). */
  reproPrefix?: string;
}

/** Default wall-clock limit of one seed. */
export const DEFAULT_WALL_LIMIT_S = 120;

function usageError(io: RunIo, msg: string): number {
  io.err(`iommu-lab run: ${msg}`);
  return 2;
}

/** Run a scenario file; returns the exit status (0 passed, 1 failed or bad input, 2 usage). */
export async function runScenarioCommand(a: RunArgs, io: RunIo): Promise<number> {
  const bad = checkScenarioFile(a.file);
  if (bad !== null) {
    io.err(`iommu-lab run: ${bad}`);
    return 1;
  }
  let vlimit: number | undefined;
  if (a.virtualTimeLimit !== null) {
    const v = parseDuration(a.virtualTimeLimit);
    if (v === null || v <= 0 || v > 2 ** 53) {
      return usageError(
        io,
        `--virtual-time-limit takes a duration such as 10s, 250ms or 5us, at most 2^53 ns (got "${a.virtualTimeLimit}")`,
      );
    }
    vlimit = v;
  }
  let wallMs = DEFAULT_WALL_LIMIT_S * 1000;
  if (a.wallTimeLimit !== null) {
    const v = parseDuration(a.wallTimeLimit);
    if (v === null || v < 1e6 || v > 86_400e9) {
      return usageError(
        io,
        `--wall-time-limit takes a duration from 1ms to 24h, e.g. 30s (got "${a.wallTimeLimit}")`,
      );
    }
    wallMs = Math.round(v / 1e6);
  }
  let inject: InjectionName[] | undefined;
  if (a.inject != null) {
    const names = a.inject.split(',').map((n) => n.trim());
    const bad = names.find((n) => !(INJECTIONS as readonly string[]).includes(n));
    if (bad !== undefined)
      return usageError(io, `--inject: unknown injection "${bad}" (known: ${INJECTIONS.join(', ')})`);
    inject = names as InjectionName[];
  }
  const base = a.reproPrefix ?? `iommu-lab run ${a.file}`;
  const repro = `${inject ? `${base} --inject ${inject.join(',')}` : base}${a.sanitize ? ` --sanitize=${a.sanitize}` : ''}`;
  if (a.seeds === null) {
    for (const [flag, v] of [
      ['--jobs', a.jobs],
      ['--shard', a.shard],
      ['--out', a.out],
    ] as const) {
      if (v !== null) return usageError(io, `${flag} applies to sweeps (give --seeds LIST)`);
    }
    if (a.dryRun) {
      io.out(`would run ${a.file} once, seed ${a.seed}`);
      return 0;
    }
    return single(a, io, vlimit, wallMs, repro, inject);
  }
  if (a.trace || a.log) {
    return usageError(
      io,
      '--trace and --log record one run; rerun a seed of the sweep with --seed N for them',
    );
  }
  const parsed = parseSeeds(a.seeds);
  if (!parsed.ok) return usageError(io, parsed.error);
  let shard: Shard | null = null;
  if (a.shard !== null) {
    const s = parseShard(a.shard, io.env ?? {});
    if (!s.ok) return usageError(io, s.error);
    shard = s.value;
  }
  let jobs = availableParallelism();
  if (a.jobs !== null) {
    if (!/^\d+$/.test(a.jobs) || Number(a.jobs) < 1 || Number(a.jobs) > 256) {
      return usageError(io, `--jobs takes a number of worker threads, 1..256 (got "${a.jobs}")`);
    }
    jobs = Number(a.jobs);
  }
  if (a.dryRun) {
    const mine = shardSeeds(parsed.value, shard);
    const head = mine.slice(0, 8).join(', ');
    io.out(
      `would run ${a.file} over ${mine.length} seed(s)${shard ? ` (shard ${shard.index}/${shard.count} of ${parsed.value.length})` : ''}: ${head}${mine.length > 8 ? ', ...' : ''}; ${jobs} job(s)${a.out !== null ? `; results to ${a.out}` : ''}`,
    );
    return 0;
  }
  return sweep(a, io, parsed.value, shard, jobs, vlimit, wallMs, repro, inject);
}

async function single(
  a: RunArgs,
  io: RunIo,
  vlimit: number | undefined,
  wallMs: number,
  repro: string,
  inject: InjectionName[] | undefined,
): Promise<number> {
  const events: TraceEvent[] = [];
  const perfetto = a.trace ? new PerfettoSink() : null;
  const logLines: string[] = [];
  const live = a.json ? null : new DmesgSink(io.out);
  let result: ScenarioResult | null = null;
  let report: string[] = [];
  const outcome = await runPool({
    file: a.file,
    seeds: [a.seed],
    jobs: 1,
    wallLimitMs: wallMs,
    virtualTimeLimitNs: vlimit,
    sanitize: a.sanitize ?? undefined,
    inject,
    streamEvents: true,
    debugEvents: a.trace,
    onEvents: (_seed, evs) => {
      for (const e of evs) {
        perfetto?.write(e);
        if (e.level === 'debug') continue;
        live?.write(e);
        if (a.json) events.push(e);
        if (a.log) logLines.push(formatDmesg(e));
      }
    },
    onResult: (r, rep) => {
      result = r;
      report = rep;
    },
  });
  if (outcome.loadError !== null) {
    io.err(`iommu-lab run: ${outcome.loadError}`);
    return 1;
  }
  const r = result as ScenarioResult | null;
  if (r === null) {
    io.err(`iommu-lab run: ${a.file}: no result`);
    return 1;
  }
  if (perfetto !== null) io.output('trace', () => perfetto.toJSON());
  if (a.log) io.output('log', () => (logLines.length ? `${logLines.join('\n')}\n` : ''));
  const cmd = `${repro} --seed ${r.seed}`;
  if (a.json) {
    io.out(JSON.stringify({ ...r, reproduce: r.ok ? undefined : cmd, events }, null, 2));
  } else {
    io.out('');
    if (r.ok) {
      io.out(`PASS ${r.scenario} (seed ${r.seed}): ${r.virtualTimeNs} ns of virtual time`);
      for (const l of report) io.out(l);
    } else {
      io.out(`FAIL ${r.scenario} (seed ${r.seed}) at virtual time ${r.virtualTimeNs} ns: ${r.error?.kind}`);
      io.out(`  ${r.error?.message}`);
      if (r.error?.at) io.out(`  at ${r.error.at}`);
      if (r.bugs.length > 0 && r.error?.kind !== 'bugs')
        io.out(`  bugs reported: ${r.bugs.length}; the first: ${r.bugs[0]}`);
      if (r.lastLog.length > 0) {
        io.out('  last kernel log lines:');
        for (const l of r.lastLog) io.out(`    ${l}`);
      }
      io.out(`  reproduce: ${cmd}`);
    }
    // report mode prints its findings at the end (panic mode: the one that stopped the run)
    const san = r.sanitizer;
    if (san !== null) {
      io.out('');
      if (san.reports.length === 0) io.out(`DMA sanitizer (${san.mode}): no violations`);
      else {
        io.out(`DMA sanitizer (${san.mode}): ${san.reports.length} violation(s)`);
        for (const v of san.reports)
          io.out(v.count > 1 ? `${v.text}\n  (${v.count} times)\n` : `${v.text}\n`);
      }
    }
  }
  if (!r.ok)
    io.err(`iommu-lab ${repro.split(' ')[1]}: ${r.scenario} failed (seed ${r.seed}): ${r.error?.kind}`);
  return r.ok ? 0 : 1;
}

async function sweep(
  a: RunArgs,
  io: RunIo,
  all: number[],
  shard: Shard | null,
  jobs: number,
  vlimit: number | undefined,
  wallMs: number,
  repro: string,
  inject: InjectionName[] | undefined,
): Promise<number> {
  const seeds = shardSeeds(all, shard);
  const clock = io.clock ?? (() => 0);
  const t0 = clock();
  const lines: string[] = [];
  const results: ScenarioResult[] = [];
  const header: SweepHeader = {
    type: 'sweep',
    scenario: '',
    file: a.file,
    seeds: describeSeeds(all),
    shard: shard === null ? null : `${shard.index}/${shard.count}`,
    count: seeds.length,
  };
  let lastShown = -1;
  const progress = (done: number, failed: number, final: boolean) => {
    if (io.progress === undefined) return;
    const elapsed = (clock() - t0) / 1000;
    const rate = elapsed > 0 ? done / elapsed : 0;
    const eta = rate > 0 ? (seeds.length - done) / rate : Number.POSITIVE_INFINITY;
    const pct = seeds.length ? Math.floor((done / seeds.length) * 100) : 100;
    if (!final && pct === lastShown) return;
    lastShown = pct;
    io.progress(
      `${done}/${seeds.length} seeds (${pct}%), ${failed} failed, ${rate.toFixed(1)} seeds/s, ETA ${Number.isFinite(eta) ? `${Math.ceil(eta)} s` : '?'}`,
      final,
    );
  };
  const outcome = await runPool({
    file: a.file,
    seeds,
    jobs,
    wallLimitMs: wallMs,
    virtualTimeLimitNs: vlimit,
    sanitize: a.sanitize ?? undefined,
    inject,
    onResult: (r) => {
      results.push(r);
      if (a.out !== null) lines.push(JSON.stringify({ type: 'result', ...r }));
    },
    onProgress: (done, failed) => progress(done, failed, false),
  });
  if (outcome.loadError !== null) {
    io.err(`iommu-lab run: ${outcome.loadError}`);
    return 1;
  }
  progress(results.length, results.filter((r) => !r.ok).length, true);
  header.scenario = outcome.name;
  if (a.out !== null) {
    try {
      await io.writeFile(a.out, `${[JSON.stringify(header), ...lines].join('\n')}\n`);
    } catch (e) {
      io.err(`iommu-lab run: cannot write ${a.out}: ${e instanceof Error ? e.message : String(e)}`);
      return 1;
    }
  }
  // this run answers for its own shard; missing seeds of the campaign are report's business
  const summary: SweepSummary = summarize(
    [{ header: { ...header, seeds: describeSeeds(seeds) }, results }],
    repro,
  );
  if (shard !== null) summary.scenario = `${summary.scenario} (shard ${shard.index}/${shard.count})`;
  if (a.json) io.out(JSON.stringify(summary, null, 2));
  else for (const l of formatSummary(summary)) io.out(l);
  if (summary.failed > 0) io.err(`iommu-lab run: ${summary.failed} of ${summary.results} seeds failed`);
  return summary.failed === 0 && summary.missing === 0 ? 0 : 1;
}
