/**
 * Seed lists and shards: `--seeds 1..100000`, `--seeds 3,7,11`, `--seeds 1..10,20`; and
 * `--shard I/N`, which keeps every N-th seed of the list starting with the I-th (1-based), so N
 * machines each given one index cover the list exactly once. `--shard auto/N` takes the index
 * from Kubernetes' JOB_COMPLETION_INDEX (0-based) of an Indexed Job.
 */

/** The most seeds one run takes (a list is materialised in memory). */
export const MAX_SEEDS = 10_000_000;

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

function seedValue(s: string): number | null {
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(s)) return null;
  const v = Number(s);
  return v <= 0xffffffff ? v : null;
}

/** Parse a seed list ("1..100", "5", "1,2,9", "1..10,20..25"), in the order given, without repeats. */
export function parseSeeds(text: string): Parsed<number[]> {
  const out: number[] = [];
  const seen = new Set<number>();
  if (text.trim() === '') return { ok: false, error: '--seeds needs a list, e.g. 1..1000 or 3,7,11' };
  for (const part of text.split(',')) {
    const p = part.trim();
    const range = /^([^.]+)\.\.([^.]+)$/.exec(p);
    const lo = seedValue(range ? range[1]! : p);
    const hi = range ? seedValue(range[2]!) : lo;
    if (lo === null || hi === null) {
      return { ok: false, error: `--seeds: "${p}" is not a seed (0..4294967295) or a range A..B` };
    }
    if (hi < lo) return { ok: false, error: `--seeds: range ${p} is empty (${hi} < ${lo})` };
    if (out.length + (hi - lo + 1) > MAX_SEEDS) {
      return { ok: false, error: `--seeds: more than ${MAX_SEEDS} seeds; split the campaign with --shard` };
    }
    for (let s = lo; s <= hi; s++) {
      if (!seen.has(s)) {
        seen.add(s);
        out.push(s);
      }
    }
  }
  return { ok: true, value: out };
}

export interface Shard {
  /** 1-based index. */
  index: number;
  count: number;
}

/** Parse `I/N` (1 <= I <= N) or `auto/N` with JOB_COMPLETION_INDEX from `env`. */
export function parseShard(text: string, env: Record<string, string | undefined> = {}): Parsed<Shard> {
  const m = /^(\d+|auto)\/(\d+)$/.exec(text.trim());
  if (m === null) return { ok: false, error: `--shard takes I/N (e.g. 2/8) or auto/N (got "${text}")` };
  const count = Number(m[2]);
  if (!(count >= 1 && count <= 100_000))
    return { ok: false, error: `--shard: N must be 1..100000 (got ${m[2]})` };
  let index: number;
  if (m[1] === 'auto') {
    const k = env.JOB_COMPLETION_INDEX;
    if (k === undefined || !/^\d+$/.test(k)) {
      return {
        ok: false,
        error: '--shard auto/N needs JOB_COMPLETION_INDEX (set by a Kubernetes Indexed Job)',
      };
    }
    index = Number(k) + 1;
  } else index = Number(m[1]);
  if (!(index >= 1 && index <= count))
    return { ok: false, error: `--shard: I must be 1..${count} (got ${index})` };
  return { ok: true, value: { index, count } };
}

/** The seeds of `seeds` that belong to `shard`: positions I-1, I-1+N, ... of the list. */
export function shardSeeds(seeds: readonly number[], shard: Shard | null): number[] {
  if (shard === null || shard.count === 1) return [...seeds];
  const out: number[] = [];
  for (let i = shard.index - 1; i < seeds.length; i += shard.count) out.push(seeds[i]!);
  return out;
}

/** Compact text of a seed list for headers and reports: "1..100", "3,7,11". */
export function describeSeeds(seeds: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < seeds.length; ) {
    let j = i;
    while (j + 1 < seeds.length && seeds[j + 1] === seeds[j]! + 1) j++;
    parts.push(j > i ? `${seeds[i]}..${seeds[j]}` : String(seeds[i]));
    i = j + 1;
  }
  return parts.join(',');
}

/** "10s", "250ms", "5us", "100ns", or a plain number of seconds, to ns; null when malformed. */
export function parseDuration(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?(?:e\d+)?)(ns|us|µs|ms|s)?$/i.exec(text.trim());
  if (m === null) return null;
  const unit = (m[2] ?? 's').toLowerCase();
  const mult = unit === 'ns' ? 1 : unit === 'us' || unit === 'µs' ? 1e3 : unit === 'ms' ? 1e6 : 1e9;
  const v = Number(m[1]) * mult;
  return Number.isFinite(v) ? Math.round(v) : null;
}
