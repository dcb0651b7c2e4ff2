/**
 * Running a scenario over seeds on worker threads: one worker per job, each loading the scenario
 * once and running the seeds it is handed one at a time. A seed that outlives the wall-clock
 * limit gets its worker terminated (and a fresh one takes over the remaining seeds); a worker
 * that dies takes only its current seed with it. Results come back in any order and are handed
 * to `onResult` in seed-list order, so what is written is the same whatever the number of jobs.
 */

import { existsSync, readdirSync, statSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { InjectionName } from '../../api/inject.ts';
import type { ScenarioResult } from '../../api/scenario.ts';
import type { SanitizeMode } from '../../platform/sanitizer.ts';
import type { TraceEvent } from '../../platform/trace.ts';
import type { FromWorker, WorkerSetup } from './protocol.ts';

export interface PoolOptions {
  file: string;
  seeds: readonly number[];
  jobs: number;
  /** Wall-clock limit per seed, ms. */
  wallLimitMs: number;
  virtualTimeLimitNs?: number;
  /** Override every seed's DMA-isolation sanitizer mode (--sanitize). */
  sanitize?: SanitizeMode;
  /** Injections to turn on from boot in every seed (--inject). */
  inject?: InjectionName[];
  /** Stream trace events (single runs). */
  streamEvents?: boolean;
  debugEvents?: boolean;
  onEvents?: (seed: number, events: TraceEvent[]) => void;
  /** Called once per seed, in the order of `seeds`. */
  onResult: (r: ScenarioResult, report: string[]) => void;
  /** Called after every finished seed (any order), for progress. */
  onProgress?: (done: number, failed: number) => void;
}

export interface PoolOutcome {
  /** The scenario's name (from the first worker that loaded it). */
  name: string;
  description: string | null;
  /** Set when the module could not be loaded: nothing ran. */
  loadError: string | null;
}

/** Newest modification time of the files under `dir` (ms). */
function newest(dir: URL): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = new URL(e.name + (e.isDirectory() ? '/' : ''), dir);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

let builtWorker: URL | null | undefined;

/**
 * Running from the sources (tests, a checkout): the built worker in dist/ when it is at least as
 * new as every source file (as bin/iommu-lab.js decides), since it starts in a fraction of the
 * time a worker compiling the sources through tsx takes; null otherwise.
 */
function freshBuiltWorker(): URL | null {
  if (builtWorker !== undefined) return builtWorker;
  builtWorker = null;
  if (process.env.IOMMU_LAB_FROM_SOURCE === '1') return null;
  const w = new URL('../../../dist/tools/scenario/worker.js', import.meta.url);
  const src = new URL('../../', import.meta.url);
  try {
    if (existsSync(w) && statSync(w).mtimeMs >= newest(src)) builtWorker = w;
  } catch {
    builtWorker = null;
  }
  return builtWorker;
}

/** The worker's entry module, and how to start it from here (sources need tsx, dist does not). */
function spawnWorker(setup: WorkerSetup): Worker {
  const fromSource = import.meta.url.endsWith('.ts');
  const built = fromSource ? freshBuiltWorker() : null;
  if (built !== null) return new Worker(built, { workerData: setup });
  const entry = new URL(`./worker${fromSource ? '.ts' : '.js'}`, import.meta.url);
  if (!entry.href.endsWith('.ts')) return new Worker(entry, { workerData: setup });
  // running from the TypeScript sources (tests, a checkout without a build): register tsx first
  const tsx = import.meta.resolve('tsx/esm/api');
  const code = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); });`;
  return new Worker(code, { eval: true, workerData: setup });
}

const lost = (
  seed: number,
  name: string,
  kind: 'wall-clock-limit' | 'exception',
  message: string,
): ScenarioResult => ({
  scenario: name,
  seed,
  ok: false,
  virtualTimeNs: 0,
  result: null,
  error: { kind, message },
  bugs: [],
  lastLog: [],
  sanitizer: null,
});

/** Run `opts.seeds`; resolves when every seed has a result (or the module failed to load). */
export function runPool(opts: PoolOptions): Promise<PoolOutcome> {
  const setup: WorkerSetup = {
    file: opts.file,
    virtualTimeLimitNs: opts.virtualTimeLimitNs,
    sanitize: opts.sanitize,
    inject: opts.inject,
    streamEvents: opts.streamEvents === true,
    debugEvents: opts.debugEvents === true,
  };
  const seeds = opts.seeds;
  const results = new Map<number, { r: ScenarioResult; report: string[] }>();
  let nextIndex = 0; // next seed to hand out
  let emitted = 0; // seeds passed to onResult, in order
  let failed = 0;
  const outcome: PoolOutcome = { name: '', description: null, loadError: null };
  const jobs = Math.max(1, Math.min(opts.jobs, seeds.length || 1));

  return new Promise<PoolOutcome>((resolveAll) => {
    let live = 0;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      resolveAll(outcome);
    };
    const record = (i: number, r: ScenarioResult, report: string[]) => {
      results.set(i, { r, report });
      if (!r.ok) failed++;
      opts.onProgress?.(results.size, failed);
      while (results.has(emitted)) {
        const x = results.get(emitted)!;
        results.delete(emitted);
        opts.onResult(x.r, x.report);
        emitted++;
      }
      if (emitted === seeds.length) finish();
    };

    const start = () => {
      if (finished || nextIndex >= seeds.length) return;
      live++;
      const w = spawnWorker(setup);
      let current = -1; // index being run
      let timer: NodeJS.Timeout | null = null;
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        live--;
        if (timer !== null) clearTimeout(timer);
      };
      const giveNext = () => {
        if (nextIndex >= seeds.length || outcome.loadError !== null) {
          current = -1;
          end();
          void w.terminate();
          return;
        }
        current = nextIndex++;
        w.postMessage({ type: 'run', seed: seeds[current]! });
        timer = setTimeout(() => {
          // the seed ran out of wall-clock time: stop this worker, let a fresh one go on
          const i = current;
          current = -1;
          end();
          void w.terminate();
          record(
            i,
            lost(
              seeds[i]!,
              outcome.name,
              'wall-clock-limit',
              `did not finish within the wall-clock limit of ${opts.wallLimitMs / 1000} s`,
            ),
            [],
          );
          start();
        }, opts.wallLimitMs);
      };
      w.on('message', (m: FromWorker) => {
        if (m.type === 'ready') {
          if (outcome.name === '') {
            outcome.name = m.name;
            outcome.description = m.description;
          }
          giveNext();
        } else if (m.type === 'load-error') {
          outcome.loadError = m.message;
          end();
          void w.terminate();
          finish();
        } else if (m.type === 'events') {
          if (current >= 0) opts.onEvents?.(seeds[current]!, m.events);
        } else if (m.type === 'result') {
          if (timer !== null) clearTimeout(timer);
          timer = null;
          const i = current;
          if (i < 0) return;
          record(i, m.result, m.report);
          giveNext();
        }
      });
      /** The worker is gone: its current seed (if any) gets `why`, a fresh worker takes over. */
      const died = (why: string, loading: string) => {
        const i = current;
        current = -1;
        end();
        if (i >= 0) {
          record(i, lost(seeds[i]!, outcome.name, 'exception', why), []);
          start();
        } else if (outcome.name === '' && outcome.loadError === null) {
          outcome.loadError = `${opts.file}: ${loading}`;
          finish();
        }
      };
      w.on('error', (e) => {
        // an uncaught exception in the worker (e.g. an unhandled rejection in the scenario)
        const msg = e instanceof Error ? e.message : String(e);
        died(`the scenario crashed its worker: ${msg}`, `cannot load: ${msg}`);
      });
      w.on('exit', () => {
        if (!ended)
          died(
            'the worker exited during the run (process.exit in the scenario?)',
            'the module exited while loading',
          );
        if (live === 0 && nextIndex >= seeds.length && emitted === seeds.length) finish();
      });
    };
    if (seeds.length === 0) {
      finish();
      return;
    }
    for (let j = 0; j < jobs; j++) start();
  });
}
