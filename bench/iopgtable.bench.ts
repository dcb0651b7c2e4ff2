/**
 * io-pgtable (Arm LPAE, stage 1, 4K granule, 48-bit IAS) map/unmap throughput, side by side with
 * the C reference in ../shared/perf-ref (bench.c, built here with gcc -O2 into a temp directory).
 *
 * Work shape = perf-ref's "map"/"unmap" rows: 262144 4 KiB pages placed as 16-page chunks at random
 * 64 KiB-aligned IOVAs across the 48-bit space (about 32.8k table pages, 128 MiB), each page mapped
 * by its own map_pages(pgcount=1) call to a random data frame; then unmapped one page per call in a
 * random order (clear PTE + queue the TLB invalidation into a gather). Five repetitions on fresh
 * tables, median reported, as perf-ref does. Differences from the C: tables come from the kernel
 * page allocator (buddy, zeroed) instead of a bump allocator, memory is the sparse simulated RAM,
 * and each call goes through the full io-pgtable checks (page size, ranges, permissions).
 */

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ArmLpaeIoPgtable, allocIoPgtableOps } from '../src/kernel/iommu/io-pgtable/arm-lpae.ts';
import { type IoPgtableCfg, machinePgtableEnv } from '../src/kernel/iommu/io-pgtable/io-pgtable.ts';
import { IommuIotlbGather } from '../src/kernel/iommu/iotlb-gather.ts';
import { IOMMU_CACHE, IOMMU_NOEXEC, IOMMU_READ, IOMMU_WRITE } from '../src/kernel/iommu/prot.ts';
import { Machine } from '../src/platform/machine.ts';
import type { BenchCase, BenchResult as BenchEntry } from './types.ts';

const N = 262144;
const RUN = 16;
const REPS = 5;
const PERFREF_DIR = join(import.meta.dirname, '..', '..', 'shared', 'perf-ref');

/** xorshift32 with perf-ref's per-phase seeding. */
class Rnd {
  private readonly s = new Int32Array(1);
  reseed(k: number): void {
    this.s[0] = 0x2545f491 ^ Math.imul(k, 0x9e3779b1);
  }
  next(): number {
    let s = this.s[0]!;
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    this.s[0] = s;
    return s >>> 0;
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const now = () => performance.now() / 1000;

function newTable(m: Machine, counter: { n: number }): ArmLpaeIoPgtable {
  const cfg: IoPgtableCfg = {
    quirks: 0,
    pgsizeBitmap: 0x1000 + 0x200000 + 0x40000000,
    ias: 48,
    oas: 48,
    coherentWalk: true,
    tlb: {
      tlbFlushAll: () => {},
      tlbFlushWalk: () => {},
      tlbAddPage: () => {
        counter.n++;
      },
    },
  };
  const t = allocIoPgtableOps('arm-64-lpae-s1', cfg, null, machinePgtableEnv(m));
  if (t === null) throw new Error('alloc_io_pgtable_ops failed');
  return t;
}

/** Map/unmap 4K pages in perf-ref's shape; returns the medians in pages/s. */
export function measure4k(reps = REPS): { map: number; unmap: number; mapWarm: number; tables: number } {
  const m = new Machine({ seed: 1 });
  const rnd = new Rnd();
  const iovas = new Float64Array(N);
  const order = new Int32Array(N);
  const prot = IOMMU_READ | IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_CACHE;
  const dataBase = 0x8000_0000;
  const mapRates: number[] = [];
  const unmapRates: number[] = [];
  const warmRates: number[] = [];
  let tables = 0;
  const counter = { n: 0 };
  const gather = new IommuIotlbGather();
  for (let rep = 0; rep < reps; rep++) {
    (globalThis as { gc?: () => void }).gc?.();
    const t = newTable(m, counter);
    rnd.reseed(1);
    let t0 = now();
    for (let count = 0; count < N; ) {
      const r1 = rnd.next();
      const r2 = rnd.next();
      const vpn = (r1 & 15) * 2 ** 32 + ((r2 & ~(RUN - 1)) >>> 0);
      for (let j = 0; j < RUN && count < N; j++) {
        const iova = (vpn + j) * 4096;
        const pa = dataBase + (rnd.next() & 0xffff) * 4096;
        const r = t.mapPages(iova, pa, 4096, 1, prot);
        if (r > 0) iovas[count++] = iova;
        else if (r !== -17) throw new Error(`map failed: ${r}`);
      }
    }
    mapRates.push(N / (now() - t0));
    tables = t.tablePages;
    // the same maps again into tables that now exist (no table allocation): isolates the allocator's share
    for (let i = 0; i < N; i++) t.unmapPages(iovas[i]!, 4096, 1, null);
    rnd.reseed(1);
    t0 = now();
    for (let i = 0; i < N; i++) t.mapPages(iovas[i]!, dataBase + (i & 0xffff) * 4096, 4096, 1, prot);
    warmRates.push(N / (now() - t0));
    rnd.reseed(7);
    for (let i = 0; i < N; i++) order[i] = i;
    for (let i = N - 1; i > 0; i--) {
      const j = rnd.next() % (i + 1);
      const x = order[i]!;
      order[i] = order[j]!;
      order[j] = x;
    }
    t0 = now();
    let ok = 0;
    for (let i = 0; i < N; i++) ok += t.unmapPages(iovas[order[i]!]!, 4096, 1, gather) > 0 ? 1 : 0;
    unmapRates.push(N / (now() - t0));
    if (ok !== N) throw new Error(`unmapped ${ok} of ${N}`);
    t.free();
  }
  return { map: median(mapRates), unmap: median(unmapRates), mapWarm: median(warmRates), tables };
}

/** 2 MiB block maps per second: 65536 blocks as 16-block runs at random 32 MiB-aligned IOVAs. */
export function measure2m(reps = REPS): number {
  const m = new Machine({ seed: 1 });
  const rnd = new Rnd();
  const nb = 65536;
  const rates: number[] = [];
  const counter = { n: 0 };
  for (let rep = 0; rep < reps; rep++) {
    const t = newTable(m, counter);
    rnd.reseed(3);
    const t0 = now();
    for (let count = 0; count < nb; ) {
      const base = ((rnd.next() & 0x7ffff0) >>> 0) * 0x200000 + (rnd.next() & 15) * 2 ** 44;
      for (let j = 0; j < 16; j++) {
        if (
          t.mapPages(
            base + j * 0x200000,
            0x8000_0000 + (rnd.next() & 511) * 0x200000,
            0x200000,
            1,
            IOMMU_READ | IOMMU_WRITE,
          ) > 0
        )
          count++;
      }
    }
    rates.push(nb / (now() - t0));
    t.free();
  }
  return median(rates);
}

/** Build and run perf-ref's bench.c; returns its map/unmap rows (pages/s) or a reason it could not. */
export function runPerfRefC(): { map: number; unmap: number } | string {
  const src = join(PERFREF_DIR, 'bench.c');
  if (!existsSync(src)) return `perf-ref not found at ${src}`;
  const dir = mkdtempSync(join(tmpdir(), 'iommu-lab-perfref-'));
  try {
    const exe = join(dir, 'bench');
    try {
      execFileSync('gcc', ['-O2', '-o', exe, src], { stdio: 'pipe' });
    } catch (e) {
      return `gcc unavailable or failed: ${(e as Error).message.split('\n')[0]}`;
    }
    // M=100000: the translation phases (not compared here) stay short; map/unmap do not depend on M
    const out = execFileSync(exe, ['100000'], { encoding: 'utf8', maxBuffer: 1 << 20 });
    const rows = new Map<string, number>();
    for (const line of out.trim().split('\n')) {
      const [name, value] = line.split(' ');
      if (name !== undefined && value !== undefined) rows.set(name, Number(value));
    }
    const map = rows.get('map');
    const unmap = rows.get('unmap');
    if (map === undefined || unmap === undefined) return 'perf-ref output has no map/unmap rows';
    return { map, unmap };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const benchmarks: BenchCase[] = [
  {
    name: 'iopgtable',
    run: async () => {
      const c = runPerfRefC();
      const js = measure4k();
      const entries: BenchEntry[] = [
        { name: 'iopgtable.map4k', value: js.map, unit: 'pages/s' },
        { name: 'iopgtable.unmap4k', value: js.unmap, unit: 'pages/s' },
        { name: 'iopgtable.map4k.tables_present', value: js.mapWarm, unit: 'pages/s' },
        { name: 'iopgtable.tables', value: js.tables, unit: 'pages' },
      ];
      if (typeof c === 'string') {
        console.log(`iopgtable: skipping the C comparison: ${c}`);
      } else {
        entries.push(
          { name: 'perfref.c.map', value: c.map, unit: 'pages/s' },
          { name: 'perfref.c.unmap', value: c.unmap, unit: 'pages/s' },
          { name: 'iopgtable.map4k.ratio_vs_c', value: c.map / js.map, unit: 'x' },
          { name: 'iopgtable.unmap4k.ratio_vs_c', value: c.unmap / js.unmap, unit: 'x' },
          { name: 'iopgtable.map4k.tables_present.ratio_vs_c', value: c.map / js.mapWarm, unit: 'x' },
        );
      }
      entries.push({ name: 'iopgtable.map2m', value: measure2m(), unit: 'blocks/s' });
      return entries;
    },
  },
];
