/** One measured number in bench/results.json. */
export interface BenchResult {
  name: string;
  value: number;
  unit: string;
}

/** A benchmark case; `npm run bench -- NAME` runs the cases whose name contains NAME. */
export interface BenchCase {
  name: string;
  run: () => Promise<BenchResult[]>;
}

/** Time `fn(iterations)` after warm-up calls (separate calls, so the timed run is optimised code, not OSR). */
export function timeLoop(
  fn: (n: number) => unknown,
  iterations: number,
  warmCalls = 10,
  warmIterations = 10_000,
): number {
  for (let i = 0; i < warmCalls; i++) fn(warmIterations);
  const t0 = performance.now();
  fn(iterations);
  return (performance.now() - t0) / 1000; // seconds
}

/** Median of a non-empty list (the mean of the middle two for an even length). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 === 1 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
}
