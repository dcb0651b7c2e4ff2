/**
 * Scenarios: a user's own experiment, written as a module whose default export is
 * `defineScenario({ name, ...labOptions, async run(ctx) { ... } })`. `iommu-lab run FILE` boots a
 * lab for it (one per seed), runs `run` as a kernel task while virtual time moves, and reports
 * what happened: pass, or the assertion that failed with the virtual time, the last kernel log
 * lines and the command that reproduces it.
 */

import { inspect, isDeepStrictEqual } from 'node:util';
import { Rng } from '../platform/rng.ts';
import type { DmaViolation, SanitizeMode } from '../platform/sanitizer.ts';
import { formatDmesg, type TraceEvent, type TraceSink } from '../platform/trace.ts';
import { LabError, ScenarioFailure } from './errors.ts';
import type { InjectionName } from './inject.ts';
import { boot, type Lab, type LabOptions, SanitizerPanic } from './lab.ts';

/** What a scenario module's default export describes. */
export interface ScenarioDefinition<R = unknown> extends Omit<LabOptions, 'seed'> {
  /** Short name (letters, digits, - and _), used in reports and reproduction commands. */
  name: string;
  /** One line on what it shows. */
  description?: string;
  /**
   * Machine bugs the run may report without failing (might-sleep splats, DMA-API debug reports,
   * bad frees ...): false (default) fails the run on any; true accepts them all.
   */
  allowBugs?: boolean;
  /** The experiment: runs as a kernel task (process context) on a freshly booted lab. */
  run(ctx: ScenarioContext): Promise<R | undefined> | R | undefined;
  /** Lines summarising the result for the text output (default: none). */
  report?(result: R): string[];
}

const BRAND = Symbol.for('iommu-lab.scenario');

/** Declare a scenario (checks its shape; returns it unchanged, typed). */
export function defineScenario<R = unknown>(def: ScenarioDefinition<R>): ScenarioDefinition<R> {
  const why = scenarioShapeError(def);
  if (why !== null) throw new LabError(`defineScenario: ${why}`);
  Object.defineProperty(def, BRAND, { value: true, enumerable: false });
  return def;
}

/** Why `v` is not a scenario definition, or null if it is one. */
export function scenarioShapeError(v: unknown): string | null {
  if (v === null || typeof v !== 'object') return `expected an object, got ${v === null ? 'null' : typeof v}`;
  const d = v as Partial<ScenarioDefinition>;
  if (typeof d.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(d.name)) {
    return `name must be a string of letters, digits, '.', '-' and '_' (got ${inspect(d.name)})`;
  }
  if (typeof d.run !== 'function') return `scenario '${d.name}' has no run(ctx) function`;
  if (d.report !== undefined && typeof d.report !== 'function')
    return `scenario '${d.name}': report must be a function`;
  return null;
}

/** The random numbers a scenario may use: derived from the seed, apart from the machine's own. */
export interface ScenarioRng {
  /** A uniformly random unsigned 32-bit integer. */
  next32(): number;
  /** An integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number;
  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T;
  /** True with probability p. */
  chance(p: number): boolean;
  /** `n` random bytes. */
  bytes(n: number): Uint8Array;
}

/** Assertions that fail the run with a readable message (node:assert works too). */
export interface Expectation<T> {
  /** The same value (Object.is). */
  toBe(expected: T): void;
  /** Deeply equal. */
  toEqual(expected: unknown): void;
  /** Truthy. */
  toBeTruthy(): void;
  /** Falsy. */
  toBeFalsy(): void;
  /** A number greater than n. */
  toBeGreaterThan(n: number): void;
  /** A number at least n. */
  toBeGreaterThanOrEqual(n: number): void;
  /** A number less than n. */
  toBeLessThan(n: number): void;
  /** A string containing the text, or an array containing an element equal to it. */
  toContain(item: unknown): void;
  /** A string matching the regular expression. */
  toMatch(re: RegExp): void;
  /** The same checks, inverted. */
  readonly not: Omit<Expectation<T>, 'not'>;
}

/** What `run(ctx)` receives. */
export interface ScenarioContext {
  /** The booted lab. */
  readonly lab: Lab;
  /** The run's seed. */
  readonly seed: number;
  /** Random numbers derived from the seed (independent of the machine's own). */
  readonly rng: ScenarioRng;
  /** `ctx.expect(value, "what it is").toBe(...)`: fails the run when it does not hold. */
  expect<T>(actual: T, what?: string): Expectation<T>;
  /** Fail the run now with `message`. */
  fail(message: string): never;
  /** A line in the kernel log, from the scenario ("scenario: message"). */
  log(message: string): void;
}

/** How one run ended. */
export interface ScenarioResult {
  scenario: string;
  seed: number;
  ok: boolean;
  /** Virtual time at the end, ns. */
  virtualTimeNs: number;
  /** What `run` returned (JSON-able), or null. */
  result: unknown;
  /** Why it failed, or null. */
  error: null | {
    kind:
      | 'assertion'
      | 'exception'
      | 'bugs'
      | 'virtual-time-limit'
      | 'blocked'
      | 'boot'
      | 'wall-clock-limit'
      | 'load'
      | 'sanitizer';
    message: string;
    /** Where in the scenario file it failed (first stack frame outside iommu-lab), if known. */
    at?: string;
  };
  /** Machine bugs reported during the run (each one line). */
  bugs: string[];
  /** On failure: the last kernel log lines before it. */
  lastLog: string[];
  /**
   * The DMA-isolation sanitizer's findings (null when it was off): its mode and every report.
   * A report fails the run (error kind 'sanitizer') unless the scenario sets allowBugs.
   */
  sanitizer: null | { mode: 'report' | 'panic'; reports: DmaViolation[] };
}

/** Options of runScenario. */
export interface RunOptions {
  seed: number;
  /** Extra trace sinks (the CLI's --trace / --log / live log). */
  sinks?: TraceSink[];
  /** Override the scenario's virtual-time limit, ns. */
  virtualTimeLimitNs?: number;
  /** Kernel log lines kept for a failure report. Default 20. */
  lastLogLines?: number;
  /** Override the scenario's `sanitize` option (the CLI's --sanitize). */
  sanitize?: SanitizeMode;
  /** Injections to turn on from boot, on top of the scenario's own `inject` (the CLI's --inject). */
  inject?: InjectionName[];
}

function fmt(v: unknown): string {
  return inspect(v, {
    depth: 4,
    breakLength: Number.POSITIVE_INFINITY,
    maxArrayLength: 16,
    maxStringLength: 200,
  });
}

function makeExpect(actual: unknown, what: string | undefined, negate: boolean): Expectation<unknown> {
  const name = what ? `${what}: ` : '';
  const check = (ok: boolean, desc: string) => {
    if (ok === negate)
      throw new ScenarioFailure(`${name}expected ${fmt(actual)} ${negate ? 'not ' : ''}${desc}`);
  };
  const e = {
    toBe: (x: unknown) => check(Object.is(actual, x), `to be ${fmt(x)}`),
    toEqual: (x: unknown) => check(isDeepStrictEqual(actual, x), `to equal ${fmt(x)}`),
    toBeTruthy: () => check(Boolean(actual), 'to be truthy'),
    toBeFalsy: () => check(!actual, 'to be falsy'),
    toBeGreaterThan: (n: number) => check((actual as number) > n, `to be > ${n}`),
    toBeGreaterThanOrEqual: (n: number) => check((actual as number) >= n, `to be >= ${n}`),
    toBeLessThan: (n: number) => check((actual as number) < n, `to be < ${n}`),
    toContain: (x: unknown) =>
      check(
        typeof actual === 'string'
          ? actual.includes(String(x))
          : Array.isArray(actual) && actual.some((a) => isDeepStrictEqual(a, x)),
        `to contain ${fmt(x)}`,
      ),
    toMatch: (re: RegExp) => check(typeof actual === 'string' && re.test(actual), `to match ${re}`),
  };
  return negate
    ? (e as unknown as Expectation<unknown>)
    : Object.assign(e, { not: makeExpect(actual, what, true) });
}

function makeRng(seed: number): ScenarioRng {
  // a stream apart from the machine's, so that a scenario's choices do not shift the model's
  const r = new Rng((seed ^ 0x5ce0a710) >>> 0);
  const int = (lo: number, hi: number) => {
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || hi < lo)
      throw new LabError(`rng.int(${lo}, ${hi}): bad range`);
    return lo + Math.floor((r.next32() / 2 ** 32) * (hi - lo + 1));
  };
  return {
    next32: () => r.next32(),
    int,
    pick: <T>(items: readonly T[]) => {
      if (items.length === 0) throw new LabError('rng.pick: empty array');
      return items[int(0, items.length - 1)]!;
    },
    chance: (p: number) => r.next32() / 2 ** 32 < p,
    bytes: (n: number) => {
      const b = new Uint8Array(n);
      for (let i = 0; i < n; i++) b[i] = r.next32() & 0xff;
      return b;
    },
  };
}

/** The first stack frame of `e` that is not iommu-lab's own or Node's. */
function userFrame(e: unknown): string | undefined {
  if (!(e instanceof Error) || e.stack === undefined) return undefined;
  for (const line of e.stack.split('\n').slice(1)) {
    const m = /\(?((?:file:\/\/)?\/[^()]+:\d+:\d+)\)?\s*$/.exec(line.trim());
    if (m === null) continue;
    const where = m[1]!.replace(/^file:\/\//, '');
    if (
      /\/(src|dist)\/(api|platform|kernel|hw|arch|tools)\//.test(where) ||
      where.includes('node_modules') ||
      where.startsWith('node:')
    )
      continue;
    return where;
  }
  return undefined;
}

/**
 * Boot a lab for `def` with `opts.seed` and run it in this thread. Never throws for a failing
 * scenario: the result says how it ended. (The CLI runs this in a worker thread, which also puts
 * a wall-clock limit on it.)
 */
export async function runScenario<R>(def: ScenarioDefinition<R>, opts: RunOptions): Promise<ScenarioResult> {
  const keep = opts.lastLogLines ?? 20;
  const recent: TraceEvent[] = [];
  const tail: TraceSink = {
    write: (e) => {
      if (e.level === 'debug') return;
      recent.push(e);
      if (recent.length > keep * 2) recent.splice(0, recent.length - keep);
    },
  };
  const out: ScenarioResult = {
    scenario: def.name,
    seed: opts.seed,
    ok: false,
    virtualTimeNs: 0,
    result: null,
    error: null,
    bugs: [],
    lastLog: [],
    sanitizer: null,
  };
  const { run: _run, report: _report, name: _name, description: _d, allowBugs, ...labOpts } = def;
  let lab: Lab;
  try {
    lab = await boot({
      ...labOpts,
      seed: opts.seed,
      virtualTimeLimitNs: opts.virtualTimeLimitNs ?? labOpts.virtualTimeLimitNs,
      sanitize: opts.sanitize ?? labOpts.sanitize,
      inject: [...new Set([...(labOpts.inject ?? []), ...(opts.inject ?? [])])],
      traceSinks: [tail, ...(opts.sinks ?? []), ...(labOpts.traceSinks ?? [])],
    });
  } catch (e) {
    out.error = { kind: 'boot', message: e instanceof Error ? e.message : String(e) };
    return out;
  }
  const ctx: ScenarioContext = {
    lab,
    seed: opts.seed,
    rng: makeRng(opts.seed),
    expect: (actual, what) => makeExpect(actual, what, false) as Expectation<typeof actual>,
    fail: (message) => {
      throw new ScenarioFailure(message);
    },
    log: (message) => lab.machine.trace.emit('scenario', 'scenario.log', message, {}, 'info'),
  };
  try {
    const r = await lab.run(() => def.run(ctx), def.name);
    out.result = r === undefined ? null : r;
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    let kind: NonNullable<ScenarioResult['error']>['kind'] = 'exception';
    if (e instanceof ScenarioFailure || (e instanceof Error && e.name === 'AssertionError'))
      kind = 'assertion';
    else if (e instanceof SanitizerPanic) kind = 'sanitizer';
    else if (e instanceof LabError && /virtual-time limit/.test(message)) kind = 'virtual-time-limit';
    else if (e instanceof LabError && /never finishes/.test(message)) kind = 'blocked';
    out.error = {
      kind,
      message: e instanceof Error && kind === 'exception' ? `${e.name}: ${message}` : message,
    };
    const at = userFrame(e);
    if (at !== undefined) out.error.at = at;
  }
  out.virtualTimeNs = lab.now;
  out.bugs = lab.bugs.map((b) => `[${(b.time / 1e9).toFixed(6)}] ${b.kind}: ${b.message}`);
  if (out.error === null && out.bugs.length > 0 && allowBugs !== true) {
    out.error = {
      kind: 'bugs',
      message: `the run reported ${out.bugs.length} bug(s); the first: ${out.bugs[0]}`,
    };
  }
  const san = lab.sanitizer;
  if (san !== null) {
    out.sanitizer = { mode: san.mode, reports: [...san.reports] };
    if (out.error === null && san.reports.length > 0 && allowBugs !== true) {
      out.error = {
        kind: 'sanitizer',
        message: `the DMA-isolation sanitizer reported ${san.reports.length} violation(s); the first:\n${san.reports[0]!.text}`,
      };
    }
  }
  out.ok = out.error === null;
  if (!out.ok) out.lastLog = recent.slice(-keep).map(formatDmesg);
  lab.machine.trace.close();
  return out;
}
