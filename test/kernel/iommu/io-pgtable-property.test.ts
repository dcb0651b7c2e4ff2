// Property tests: io-pgtable operations against a reference interval map of leaves.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EEXIST } from '../../../src/kernel/iommu/errno.ts';
import { pgsizes } from '../../../src/kernel/iommu/io-pgtable/io-pgtable.ts';
import {
  IOMMU_CACHE,
  IOMMU_NOEXEC,
  IOMMU_PRIV,
  IOMMU_READ,
  IOMMU_WRITE,
} from '../../../src/kernel/iommu/prot.ts';
import { makePgtable, SZ_2M, SZ_4K, SZ_16K, SZ_32M, SZ_64K, SZ_512M } from './helpers.ts';

interface Leaf {
  iova: number;
  size: number;
  pa: number;
}

/** The reference: a set of leaves, with Linux's rules for map and unmap expressed on intervals. */
class RefMap {
  leaves: Leaf[] = [];
  /** Linux mode: last-level tables that exist (by base IOVA), empty or not. */
  readonly tables = new Set<number>();
  constructor(
    readonly sizes: readonly number[],
    readonly ptes: number,
    readonly linuxTables = false,
  ) {}
  covering(iova: number): Leaf | undefined {
    return this.leaves.find((l) => iova >= l.iova && iova < l.iova + l.size);
  }
  inside(lo: number, hi: number): Leaf[] {
    return this.leaves.filter((l) => l.iova < hi && l.iova + l.size > lo);
  }
  /** Entries of one table from iova's slot to the table's end. */
  slotsLeft(iova: number, size: number): number {
    return this.ptes - (Math.floor(iova / size) % this.ptes);
  }
  map(iova: number, pa: number, size: number, count: number): number {
    const n = Math.min(count, this.slotsLeft(iova, size));
    const c = this.covering(iova);
    if (c !== undefined && c.size > size) return -EEXIST; // a bigger block is in the way
    // arm_lpae_init_pte checks the slots in order: a smaller-page table in slot i is freed (and its
    // mappings dropped) before slot i+1 is found to hold a leaf and the call fails with -EEXIST
    for (let i = 0; i < n; i++) {
      const lo = iova + i * size;
      const l = this.covering(lo);
      if (l !== undefined && l.size === size) return -EEXIST;
      this.leaves = this.leaves.filter((x) => !(x.iova >= lo && x.iova < lo + size));
      this.tables.delete(lo);
    }
    for (let i = 0; i < n; i++) this.leaves.push({ iova: iova + i * size, size, pa: pa + i * size });
    if (size === this.sizes[0]) {
      const span = this.sizes[1]!;
      this.tables.add(Math.floor(iova / span) * span);
    }
    return n * size;
  }
  unmap(iova: number, size: number, count: number): number {
    const c = this.covering(iova);
    if (c !== undefined && c.size > size) return 0; // partial block: refused
    const n = Math.min(count, this.slotsLeft(iova, size));
    let i = 0;
    for (; i < n; i++) {
      const lo = iova + i * size;
      const under = this.inside(lo, lo + size);
      // Linux: an entry holding a table (even an empty one) is "mapped" and is removed whole
      const table = this.linuxTables && this.tables.has(lo);
      if (under.length === 0 && !table) break;
      this.leaves = this.leaves.filter((l) => !under.includes(l));
      this.tables.delete(lo);
    }
    return i * size;
  }
  toPhys(iova: number): number {
    const l = this.covering(iova);
    return l === undefined ? 0 : l.pa + (iova - l.iova);
  }
}

const granules = [
  { name: '4K', bm: SZ_4K + SZ_2M + 0x40000000, ias: 32 },
  { name: '16K', bm: SZ_16K + SZ_32M, ias: 36 },
  { name: '64K', bm: SZ_64K + SZ_512M, ias: 40 },
];

describe('io-pgtable vs a reference interval map', () => {
  for (const g of granules.flatMap((x) => [
    { ...x, freeEmpty: true },
    { ...x, freeEmpty: false },
  ])) {
    it(`${g.name} granule, ${g.freeEmpty ? 'freeEmptyTables (tables exist iff non-empty)' : 'Linux table lifetime + walk cache'}`, () => {
      const sizes = pgsizes(g.bm);
      const small = sizes[0]!;
      // a window a few blocks wide so that pages, blocks and table boundaries collide
      const window = sizes[1]! * 4;
      const op = fc.record({
        kind: fc.constantFrom('map', 'map', 'unmap', 'unmap'),
        sizeIdx: fc.nat({ max: 9 }).map((x) => (x < 8 ? 0 : 1)),
        slot: fc.nat(),
        count: fc.integer({ min: 1, max: 40 }),
        pa: fc.nat({ max: 0xfff }),
      });
      fc.assert(
        fc.property(
          fc.array(op, { minLength: 1, maxLength: 60 }),
          fc.array(fc.nat(), { maxLength: 30 }),
          (ops, probes) => {
            const { ops: t, m } = makePgtable('arm-64-lpae-s1', g.bm, g.ias, 48, {
              freeEmptyTables: g.freeEmpty,
            });
            const ref = new RefMap(sizes, small / 8, !g.freeEmpty);
            const base = 3 * window;
            for (const o of ops) {
              const size = sizes[o.sizeIdx]!;
              const iova = base + (o.slot % (window / size)) * size;
              if (o.kind === 'map') {
                const pa = 0x8000_0000 + o.pa * sizes[1]!;
                expect(t.mapPages(iova, pa, size, o.count, IOMMU_READ | IOMMU_WRITE)).toBe(
                  ref.map(iova, pa, size, o.count),
                );
              } else {
                expect(t.unmapPages(iova, size, o.count, null)).toBe(ref.unmap(iova, size, o.count));
              }
            }
            for (const l of ref.leaves) expect(t.iovaToPhys(l.iova + 7)).toBe(l.pa + 7);
            for (const p of probes) {
              const iova = base - small + (p % (window + 2 * small));
              expect(t.iovaToPhys(iova)).toBe(ref.toPhys(iova));
            }
            // tables exist only for what is mapped: unmapping everything returns to the bare pgd
            for (const l of [...ref.leaves]) expect(t.unmapPages(l.iova, l.size, 1, null)).toBe(l.size);
            if (g.freeEmpty) expect(t.tablePages).toBe(t.pgdPages);
            t.free();
            expect(m.pages.usageByOwner().get('io-pgtable') ?? 0).toBe(0);
          },
        ),
        { numRuns: 150, seed: 42 },
      );
    });
  }
});

describe('io-pgtable vs a reference interval map (Linux table lifetime)', () => {
  it('non-overlapping maps and exact unmaps give exactly the reference translations', () => {
    const sizes = [SZ_4K, SZ_2M];
    fc.assert(
      fc.property(
        fc.array(fc.record({ slot: fc.nat({ max: 2047 }), big: fc.boolean(), unmap: fc.boolean() }), {
          maxLength: 80,
        }),
        (steps) => {
          const { ops: t } = makePgtable('arm-64-lpae-s2', SZ_4K + SZ_2M + 0x40000000, 40, 40);
          const ref = new RefMap(sizes, 512);
          for (const s of steps) {
            const size = s.big ? SZ_2M : SZ_4K;
            const iova = s.big ? (s.slot % 16) * SZ_2M : s.slot * SZ_4K * 16;
            const existing = ref.covering(iova);
            if (s.unmap && existing !== undefined) {
              expect(t.unmapPages(existing.iova, existing.size, 1, null)).toBe(
                ref.unmap(existing.iova, existing.size, 1),
              );
            } else if (existing === undefined && ref.inside(iova, iova + size).length === 0) {
              expect(t.mapPages(iova, iova + 0x10_0000_0000, size, 1, IOMMU_READ)).toBe(
                ref.map(iova, iova + 0x10_0000_0000, size, 1),
              );
            }
          }
          for (let a = 0; a < 16 * SZ_2M; a += SZ_4K * 5) expect(t.iovaToPhys(a + 3)).toBe(ref.toPhys(a + 3));
        },
      ),
      { numRuns: 100, seed: 7 },
    );
  });
});

describe('io-pgtable single-page paths through the walk cache', () => {
  it('many last-level tables, mixed protections, pages and runs: same as a reference, descriptor for descriptor', () => {
    const prots = [
      IOMMU_READ,
      IOMMU_READ | IOMMU_WRITE,
      IOMMU_READ | IOMMU_NOEXEC | IOMMU_CACHE,
      IOMMU_WRITE | IOMMU_PRIV,
    ];
    fc.assert(
      fc.property(
        // table-sized regions scattered over the 48-bit space: enough of them that walk-cache
        // sets overflow and entries are replaced
        fc.uniqueArray(fc.nat({ max: 2 ** 27 - 1 }), { minLength: 1, maxLength: 400 }),
        fc.array(
          fc.record({
            unmap: fc.boolean(),
            region: fc.nat(),
            page: fc.nat({ max: 511 }),
            count: fc.oneof(fc.constant(1), fc.constant(1), fc.integer({ min: 2, max: 6 })),
            prot: fc.nat({ max: prots.length - 1 }),
            pa: fc.nat({ max: 0xfffff }),
          }),
          { minLength: 1, maxLength: 400 },
        ),
        fc.boolean(),
        (regions, ops, watched) => {
          const { ops: t, m } = makePgtable('arm-64-lpae-s1', SZ_4K + SZ_2M + 0x40000000, 48, 48);
          const ref = new Map<number, { pa: number; prot: number }>();
          // a write watcher must be told of every PTE store, fast path or not
          let stores = 0;
          if (watched) m.mem.watch(0, 2 ** 52, () => stores++);
          for (const o of ops) {
            const before = stores;
            const base = regions[o.region % regions.length]! * SZ_2M;
            const iova = base + o.page * SZ_4K;
            const n = Math.min(o.count, 512 - o.page);
            let changed: boolean;
            if (o.unmap) {
              let k = 0;
              while (k < n && ref.has(iova + k * SZ_4K)) ref.delete(iova + k++ * SZ_4K);
              expect(t.unmapPages(iova, SZ_4K, o.count, null)).toBe(k * SZ_4K);
              changed = k > 0;
            } else {
              const pa = 0x1_0000_0000 + o.pa * SZ_4K;
              let clash = false;
              for (let k = 0; k < n; k++) clash ||= ref.has(iova + k * SZ_4K);
              const want = clash ? -EEXIST : n * SZ_4K;
              if (!clash)
                for (let k = 0; k < n; k++)
                  ref.set(iova + k * SZ_4K, { pa: pa + k * SZ_4K, prot: prots[o.prot]! });
              expect(t.mapPages(iova, pa, SZ_4K, o.count, prots[o.prot]!)).toBe(want);
              changed = !clash;
            }
            if (watched) expect(stores > before).toBe(changed);
          }
          for (const [iova, e] of ref) {
            const leaf = t.lookup(iova + 5);
            expect(leaf?.level).toBe(3);
            expect(leaf!.lo >>> 0).toBe((t.protLo(e.prot) | 3 | (e.pa % 2 ** 32)) >>> 0);
            expect(leaf!.hi).toBe(t.protHi(e.prot) | Math.floor(e.pa / 2 ** 32));
          }
          for (const iova of ref.keys()) expect(t.unmapPages(iova, SZ_4K, 1, null)).toBe(SZ_4K);
          for (const r of regions) expect(t.iovaToPhys(r * SZ_2M)).toBe(0);
          t.free();
          expect(m.pages.usageByOwner().get('io-pgtable') ?? 0).toBe(0);
        },
      ),
      { numRuns: 60, seed: 11 },
    );
  });
});

describe('io-pgtable walk cache against memory', () => {
  it('follows a table descriptor rewritten behind its back, as Linux reads memory on every walk', () => {
    const { ops: t, m } = makePgtable('arm-64-lpae-s1', SZ_4K + SZ_2M + 0x40000000, 48, 48);
    const iova = 0x1234_4000_0000 + 0x5 * SZ_2M;
    expect(t.mapPages(iova, 0x1_0000_0000, SZ_4K, 1, IOMMU_READ)).toBe(SZ_4K);
    expect(t.mapPages(iova + SZ_4K, 0x1_0000_1000, SZ_4K, 1, IOMMU_READ)).toBe(SZ_4K); // cached now
    // the level-2 descriptor of iova's 2 MiB region: walk the tables in memory
    const desc = (table: number, idx: number) => {
      m.mem.read64(table + idx * 8);
      return {
        pa: table + idx * 8,
        next: (m.mem.r64[1]! & 0xffff) * 2 ** 32 + ((m.mem.r64[0]! & 0xfffff000) >>> 0),
      };
    };
    const l0 = desc(t.pgd, Math.floor(iova / 2 ** 39) % 512);
    const l1 = desc(l0.next, Math.floor(iova / 2 ** 30) % 512);
    const l2 = desc(l1.next, Math.floor(iova / 2 ** 21) % 512);
    const oldTable = l2.next;
    expect(t.lookup(iova)!.ptep).toBe(oldTable + ((iova / SZ_4K) % 512) * 8);
    // someone else (a stray DMA, another component) points it at a different, empty table
    const other = m.pages.alloc(0, 'elsewhere');
    m.mem.write64(l2.pa, (other & 0xfffff000) | 3, Math.floor(other / 2 ** 32));
    // the next map and unmap in that region use the table memory now names
    const page = iova + 7 * SZ_4K;
    expect(t.mapPages(page, 0x1_0000_7000, SZ_4K, 1, IOMMU_READ)).toBe(SZ_4K);
    expect(t.lookup(page)!.ptep).toBe(other + 7 * 8);
    m.mem.read64(oldTable + 7 * 8);
    expect([m.mem.r64[0], m.mem.r64[1]]).toEqual([0, 0]);
    expect(t.iovaToPhys(page + 3)).toBe(0x1_0000_7003);
    expect(t.unmapPages(page, SZ_4K, 1, null)).toBe(SZ_4K);
    m.mem.read64(other + 7 * 8);
    expect([m.mem.r64[0], m.mem.r64[1]]).toEqual([0, 0]);
    // the page mapped before the rewrite is no longer reachable through memory
    expect(t.iovaToPhys(iova)).toBe(0);
  });
});
