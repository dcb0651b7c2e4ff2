/**
 * SMMUv3 translation benchmarks, run beside the C reference in ../shared/perf-ref.
 *
 * Layout as in perf-ref (RESULTS.md, "default layout"): 262144 4K pages mapped as 16-page
 * chunks at random 64K-aligned IOVAs over the 48-bit space, 4K granule, 4 levels, tables built
 * in simulated memory the way a driver builds them (page allocator + 64-bit stores).
 *  - smmuv3.translate.tlb_hit: random addresses over a 2048-page working set (every 128th
 *    page), through the engine with its default TLB (2048 sets x 4 ways): almost all hits.
 *  - smmuv3.translate.walk4: random addresses over all 262144 pages with the default TLB, so
 *    ~97% miss: each op is a TLB lookup, a 4-level walk, and a fill (with eviction).
 *    smmuv3.translate.walk4.notlb is the same with the TLB disabled (the bare walk).
 *  - smmuv3.translate.nested: S1 tables in IPA space, every S1 table fetch and the output IPA
 *    translated through a 4K stage 2 (40-bit IPA, level-1 start, 2 concatenated tables), random
 *    over 65536 pages so nearly every op misses the combined and most stage-2 entries.
 * Every loop is warmed with 10 separate calls first (the timed call then runs optimised code,
 * not OSR), like perf-ref. The harness (xorshift, array load, checksum) is in every number,
 * as in perf-ref.
 *
 * The C reference: bench.c is compiled with gcc -O2 into a temporary directory (never into
 * ../shared; see perfref.ts). The run is ROUNDS rounds of (tlb_hit, notlb, walk4, one C run with
 * 2M operations per row, nested), so that C walk_cold is measured within about a second of the
 * walk4 it is paired with. Every number is its best round, so the JS and C figures and their
 * ratios come from the same machine conditions (the host is shared and noisy).
 * perfref.c.tlb / perfref.c.walk_cold are the C `tlb` and `walk_cold` rows. The ratios are best
 * round against best round; the `.round_median` entries are the median over rounds of each
 * round's own ratio (JS and C measured about a second apart), which shows whether the
 * best-against-best figure is an accident of when each side got a quiet moment. Skipped with a
 * message when gcc or the source is absent.
 */

import { TranslationEngine } from '../src/hw/smmu-common/translate.ts';
import {
  ACCESS_READ,
  makeTranslationConfig,
  type TranslationConfig,
  TranslationResult,
} from '../src/hw/smmu-common/translate-types.ts';
import { Machine } from '../src/platform/machine.ts';
import { PerfRefC } from './perfref.ts';
import { type BenchCase, type BenchResult, median } from './types.ts';

const N = 262144;
const HOT = 2048;
const RUN = 16;
const TWO32 = 2 ** 32;
const DATA_BASE = 0xa000_0000;
const DATA_FRAMES = 65536;
// stage-1 leaf: valid|page|AF|SH=inner|AP=01|nG
const LEAF_LO = 3 | (1 << 10) | (3 << 8) | (1 << 6) | (1 << 11);
// stage-2 leaf: valid|page|AF|SH|MemAttr=0xF|S2AP=RW
const S2_LEAF_LO = 3 | (1 << 10) | (3 << 8) | (0xf << 2) | (3 << 6);

/** Checksums end up here so the loops cannot be optimised away. */
export let sink = 0;

const seed = new Int32Array(1);
const reseed = (k: number) => {
  seed[0] = 0x2545f491 ^ Math.imul(k, 0x9e3779b1);
};
function rnd(): number {
  let s = seed[0]!;
  s ^= s << 13;
  s ^= s >>> 17;
  s ^= s << 5;
  seed[0] = s;
  return s >>> 0;
}

/** A driver-style 4K-granule table builder. Table descriptors hold (PA - tableOffset). */
class Tables {
  readonly root: number;
  readonly pages: number[] = [];
  count = 0;
  constructor(
    private readonly m: Machine,
    private readonly levels: number, // 4: 48-bit start L0; 3 with a concatenated L1 start
    private readonly startEntries: number,
    readonly tableOffset = 0,
  ) {
    this.root = this.alloc(startEntries > 512 ? 1 : 0);
  }

  private alloc(order = 0): number {
    const pa = this.m.pages.alloc(order, 'bench-pt');
    if (pa < 0) throw new Error('bench: out of table memory');
    this.count += 2 ** order;
    this.pages.push(pa);
    return pa;
  }

  map(iova: number, pa: number, leafLo: number): void {
    const mem = this.m.mem;
    const lo = iova >>> 0;
    const hi = (iova / TWO32) >>> 0;
    let t = this.root;
    for (let level = 4 - this.levels; level < 3; level++) {
      const sh = 12 + 9 * (3 - level);
      const mask = level === 4 - this.levels ? this.startEntries - 1 : 511;
      const idx = (sh >= 32 ? hi >>> (sh - 32) : (lo >>> sh) | (hi << (32 - sh))) & mask;
      const slot = t + idx * 8;
      mem.read64(slot);
      const dlo = mem.r64[0]!;
      const dhi = mem.r64[1]!;
      if ((dlo & 1) === 0) {
        const nt = this.alloc();
        const d = nt - this.tableOffset;
        mem.write64(slot, (d & 0xfffff000) | 3, (d / TWO32) & 0xffff);
        t = nt;
      } else t = (dhi & 0xffff) * TWO32 + ((dlo & 0xfffff000) >>> 0) + this.tableOffset;
    }
    const slot = t + ((lo >>> 12) & 511) * 8;
    mem.write64(slot, (pa & 0xfffff000) | leafLo, (pa / TWO32) & 0xffff);
  }
}

interface Layout {
  m: Machine;
  iovas: Float64Array;
  hot: Float64Array;
  cfg: TranslationConfig;
  tables: number;
}

/** perf-ref's default layout: N pages in RUN-page chunks at random RUN-aligned IOVAs. */
export function buildLayout(n: number, nested: boolean): Layout {
  const m = new Machine({ seed: 1 });
  const OFF = nested ? 0x8000_0000 : 0; // guest IPA = PA - 2 GiB
  const s1 = new Tables(m, 4, 512, OFF);
  const iovas = new Float64Array(n);
  const seen = new Set<number>();
  reseed(1);
  const dataPa: number[] = [];
  for (let count = 0; count < n; ) {
    const vhi = rnd() & 15;
    const vlo = (rnd() & ~(RUN - 1)) >>> 0;
    for (let j = 0; j < RUN && count < n; j++) {
      const iova = vhi * 2 ** 44 + (vlo + j) * 4096;
      const pa = DATA_BASE + (rnd() & (DATA_FRAMES - 1)) * 4096;
      if (seen.has(iova)) continue;
      seen.add(iova);
      s1.map(iova, pa - OFF, LEAF_LO);
      iovas[count++] = iova;
      if (nested) dataPa.push(pa);
    }
  }
  const cfg = makeTranslationConfig();
  cfg.s1.asid = 5;
  cfg.s1.ttb0 = s1.root - OFF;
  cfg.s1.t0sz = 16;
  cfg.s1.tg0 = 12;
  let tables = s1.count;
  if (nested) {
    // stage 2: 40-bit IPA, start at level 1 with 2 concatenated tables; map every stage-1
    // table page and every data page used, 4K pages (the worst case for the walk)
    const s2 = new Tables(m, 3, 1024);
    const mapped = new Set<number>();
    for (const pa of [...s1.pages, ...dataPa]) {
      if (mapped.has(pa)) continue;
      mapped.add(pa);
      s2.map(pa - OFF, pa, S2_LEAF_LO);
    }
    cfg.s2Enabled = true;
    cfg.vmid = 1;
    cfg.s2.vmid = 1;
    cfg.s2.s2ttb = s2.root;
    cfg.s2.s2tg = 12;
    cfg.s2.s2t0sz = 24;
    cfg.s2.s2sl0 = 1;
    cfg.s2.s2ps = 40;
    tables += s2.count;
  }
  const hot = new Float64Array(HOT);
  for (let i = 0; i < HOT; i++) hot[i] = iovas[i * Math.floor(n / HOT)]!;
  return { m, iovas, hot, cfg, tables };
}

export function loop(
  eng: TranslationEngine,
  cfg: TranslationConfig,
  res: TranslationResult,
  set: Float64Array,
  mask: number,
): (n: number) => number {
  return (n: number) => {
    // the captured values in locals: read once per call, not from the closure at every iteration
    const e = eng;
    const c = cfg;
    const out = res;
    const s = set;
    const k = mask;
    const read = ACCESS_READ; // an imported binding is checked for initialisation at every use
    let cs = 0;
    for (let i = 0; i < n; i++) {
      const r = rnd();
      e.translate(c, s[r & k]! + (r >>> 20), read, out);
      cs = (Math.imul(cs, 31) + (out.oa >>> 0)) | 0;
    }
    return cs;
  };
}

/** ns per op of fn(M) after 10 warm-up calls. */
export function timeNs(fn: (n: number) => number, m: number, k: number): { ns: number; cs: number } {
  reseed(k);
  let cs = 0;
  for (let j = 0; j < 10; j++) cs ^= fn(10_000);
  const t0 = performance.now();
  cs ^= fn(m);
  return { ns: ((performance.now() - t0) * 1e6) / m, cs };
}

/** Operations per timed walk4 and notlb loop, and per row of the C run they are paired with. */
const WALK_OPS = 2_000_000;

/**
 * One C run: its `tlb` and `walk_cold` rows in ns/op, or null. WALK_OPS operations per row
 * (bench.c's default is 10M): the JS walk4 loop's count, and a shorter run, so that the C rows
 * are measured within about a second of the JS ones they are paired with.
 */
function runC(c: PerfRefC): { tlb: number; walk: number } | null {
  const rows = c.run([String(WALK_OPS)]);
  const tlb = rows?.get('tlb');
  const walk = rows?.get('walk_cold');
  return tlb !== undefined && walk !== undefined ? { tlb, walk } : null;
}

/**
 * Rounds of (the JS cases with one C run among them): each metric is its best round, so both
 * sides get the same conditions.
 */
const ROUNDS = 7;

export const benchmarks: BenchCase[] = [
  {
    name: 'smmuv3.translate',
    async run(): Promise<BenchResult[]> {
      const out: BenchResult[] = [];
      const res = new TranslationResult();
      const L = buildLayout(N, false);
      const NL = buildLayout(65536, true);
      const c = new PerfRefC();
      if (c.error) console.error(`bench: perf-ref C comparison skipped: ${c.error}`);
      const best = {
        hit: Infinity,
        walk: Infinity,
        bare: Infinity,
        nested: Infinity,
        cTlb: Infinity,
        cWalk: Infinity,
      };
      const hitRatios: number[] = [];
      const walkRatios: number[] = [];
      let hitMiss = 0;
      let walkMiss = 0;
      let nestedMiss = 0;
      try {
        for (let round = 0; round < ROUNDS; round++) {
          // ---- single stage: tlb_hit (2048-page working set), notlb and walk4 (all 262144 pages);
          // walk4 last, so that the C run (next) follows it as closely as possible
          const eng = new TranslationEngine(L.m.mem);
          const hit = timeNs(loop(eng, L.cfg, res, L.hot, HOT - 1), 5_000_000, 4);
          const tc = eng.tlb!.counters;
          const h0 = tc.hits;
          const m0 = tc.misses;
          loop(eng, L.cfg, res, L.hot, HOT - 1)(1_000_000);
          hitMiss = (tc.misses - m0) / (tc.hits - h0 + tc.misses - m0);
          const eng3 = new TranslationEngine(L.m.mem, { tlbSets: 0 });
          const bare = timeNs(loop(eng3, L.cfg, res, L.iovas, N - 1), WALK_OPS, 2);
          const eng2 = new TranslationEngine(L.m.mem);
          const walk = timeNs(loop(eng2, L.cfg, res, L.iovas, N - 1), WALK_OPS, 2);
          const c2 = eng2.tlb!.counters;
          walkMiss = c2.misses / (c2.hits + c2.misses);
          sink ^= hit.cs ^ walk.cs ^ bare.cs;
          if (eng.counters.faults + eng2.counters.faults + eng3.counters.faults !== 0) {
            throw new Error('translate bench: unexpected faults');
          }
          // ---- the C reference, same conditions (right after walk4, before nested)
          const r = runC(c);
          if (r !== null) {
            if (process.env.BENCH_VERBOSE)
              console.error(`  round ${round}: C tlb ${r.tlb} walk_cold ${r.walk}`);
            best.cTlb = Math.min(best.cTlb, r.tlb);
            best.cWalk = Math.min(best.cWalk, r.walk);
            hitRatios.push(hit.ns / r.tlb);
            walkRatios.push(walk.ns / r.walk);
          }
          // ---- nested
          const engN = new TranslationEngine(NL.m.mem);
          const nested = timeNs(loop(engN, NL.cfg, res, NL.iovas, 65536 - 1), 1_000_000, 2);
          sink ^= nested.cs;
          if (engN.counters.faults !== 0) throw new Error(`nested bench: ${engN.counters.faults} faults`);
          const cn = engN.tlb!.counters;
          nestedMiss = cn.misses / (cn.hits + cn.misses);
          if (process.env.BENCH_VERBOSE) {
            const f = (x: number) => x.toFixed(1);
            console.error(
              `  round ${round}: tlb_hit ${f(hit.ns)} walk4 ${f(walk.ns)} notlb ${f(bare.ns)} nested ${f(nested.ns)}`,
            );
          }
          best.hit = Math.min(best.hit, hit.ns);
          best.walk = Math.min(best.walk, walk.ns);
          best.bare = Math.min(best.bare, bare.ns);
          best.nested = Math.min(best.nested, nested.ns);
        }
      } finally {
        c.dispose();
      }
      out.push({ name: 'smmuv3.translate.tlb_hit', value: best.hit, unit: 'ns/op' });
      out.push({ name: 'smmuv3.translate.tlb_hit.miss_ratio', value: hitMiss, unit: 'ratio' });
      out.push({ name: 'smmuv3.translate.walk4', value: best.walk, unit: 'ns/op' });
      out.push({ name: 'smmuv3.translate.walk4.miss_ratio', value: walkMiss, unit: 'ratio' });
      out.push({ name: 'smmuv3.translate.walk4.notlb', value: best.bare, unit: 'ns/op' });
      out.push({ name: 'smmuv3.translate.nested', value: best.nested, unit: 'ns/op' });
      out.push({ name: 'smmuv3.translate.nested.miss_ratio', value: nestedMiss, unit: 'ratio' });
      if (Number.isFinite(best.cTlb)) {
        out.push({ name: 'perfref.c.tlb', value: best.cTlb, unit: 'ns/op' });
        out.push({ name: 'perfref.c.walk_cold', value: best.cWalk, unit: 'ns/op' });
        out.push({ name: 'smmuv3.translate.tlb_hit.ratio_vs_c_tlb', value: best.hit / best.cTlb, unit: 'x' });
        out.push({
          name: 'smmuv3.translate.walk4.ratio_vs_c_walk_cold',
          value: best.walk / best.cWalk,
          unit: 'x',
        });
        out.push({
          name: 'smmuv3.translate.tlb_hit.ratio_vs_c_tlb.round_median',
          value: median(hitRatios),
          unit: 'x',
        });
        out.push({
          name: 'smmuv3.translate.walk4.ratio_vs_c_walk_cold.round_median',
          value: median(walkRatios),
          unit: 'x',
        });
      }
      return out;
    },
  },
];
