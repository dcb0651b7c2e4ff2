/**
 * IOVA allocator (drivers/iommu/iova.c): a range allocator over page frame numbers of one
 * granule, allocating top-down below a limit (as Linux's rbtree allocator), size-aligned to
 * the next power of two, plus per-size caches of recently freed ranges (the rcache) that make
 * the common map/unmap cycle O(1).
 *
 * The range "tree" is a sorted array of allocated [lo, hi] PFN ranges (binary search); the
 * rcache holds sizes of up to 2^(IOVA_RANGE_CACHE_MAX_SIZE-1) pages.
 */

export const IOVA_RANGE_CACHE_MAX_SIZE = 6;
/** Ranges an rcache bin holds before frees go back to the tree (Linux: per-CPU magazines + depot). */
const RCACHE_DEPTH = 1024;

export class IovaDomain {
  /** log2 of the granule (PAGE_SHIFT of the IOVA space). */
  readonly shift: number;
  readonly granule: number;
  /** Lowest PFN ever handed out (keeps IOVA 0 unused). */
  readonly startPfn: number;
  // allocated ranges, sorted by lo
  private lo: number[] = [];
  private hi: number[] = [];
  private readonly rcache: number[][] = [];
  /** Statistics. */
  readonly stats = { allocs: 0, frees: 0, rcacheHits: 0, rcacheFrees: 0, failures: 0 };

  constructor(granule: number, startPfn = 1) {
    this.granule = granule;
    this.shift = Math.log2(granule);
    this.startPfn = Math.max(1, startPfn);
    for (let i = 0; i < IOVA_RANGE_CACHE_MAX_SIZE; i++) this.rcache.push([]);
  }

  /** Number of allocated ranges in the tree (rcache entries included: they stay allocated). */
  get ranges(): number {
    return this.lo.length;
  }

  /** First index with lo > pfn. */
  private upper(pfn: number): number {
    let a = 0;
    let b = this.lo.length;
    while (a < b) {
      const m = (a + b) >> 1;
      if (this.lo[m]! <= pfn) a = m + 1;
      else b = m;
    }
    return a;
  }

  private insert(lo: number, hi: number): void {
    const i = this.upper(lo);
    this.lo.splice(i, 0, lo);
    this.hi.splice(i, 0, hi);
  }

  /**
   * alloc_iova: `size` pages at the highest address that fits below `limitPfn` (inclusive),
   * aligned to size rounded up to a power of two when `sizeAligned`. Returns the first PFN or -1.
   */
  allocIova(size: number, limitPfn: number, sizeAligned: boolean): number {
    if (!(size >= 1)) return -1;
    const align = sizeAligned ? 2 ** Math.ceil(Math.log2(size)) : 1;
    // walk gaps downward from the limit
    let i = this.upper(limitPfn) - 1;
    let top = limitPfn; // highest free pfn candidate of the current gap
    for (;;) {
      const floor = i >= 0 ? this.hi[i]! + 1 : this.startPfn;
      if (i >= 0 && this.hi[i]! >= top) {
        // the range overlaps/above the candidate: move below it
        top = Math.min(top, this.lo[i]! - 1);
        i--;
        continue;
      }
      let start = top - size + 1;
      start -= start % align;
      if (start >= floor && start >= this.startPfn) {
        this.insert(start, start + size - 1);
        this.stats.allocs++;
        return start;
      }
      if (i < 0) break;
      top = this.lo[i]! - 1;
      i--;
    }
    this.stats.failures++;
    return -1;
  }

  /** find_iova + __free_iova: free the range starting at `pfn`; returns its size, or 0 if none. */
  freeIova(pfn: number): number {
    const i = this.upper(pfn) - 1;
    if (i < 0 || this.lo[i] !== pfn) return 0;
    const size = this.hi[i]! - this.lo[i]! + 1;
    this.lo.splice(i, 1);
    this.hi.splice(i, 1);
    this.stats.frees++;
    return size;
  }

  /** reserve_iova: mark [loPfn, hiPfn] as never allocatable (merging with what is there). */
  reserveIova(loPfn: number, hiPfn: number): void {
    for (let p = loPfn; p <= hiPfn; ) {
      const i = this.upper(p) - 1;
      if (i >= 0 && this.hi[i]! >= p) {
        p = this.hi[i]! + 1;
        continue;
      }
      const next = i + 1 < this.lo.length ? this.lo[i + 1]! : Number.POSITIVE_INFINITY;
      const end = Math.min(hiPfn, next - 1);
      this.insert(p, end);
      p = end + 1;
    }
  }

  /** True if the PFN lies in an allocated or reserved range. */
  isAllocated(pfn: number): boolean {
    const i = this.upper(pfn) - 1;
    return i >= 0 && this.hi[i]! >= pfn;
  }

  /** alloc_iova_fast: rcache first (sizes rounded up to powers of two), then the tree. */
  allocIovaFast(size: number, limitPfn: number): number {
    let sz = size;
    if (sz < 2 ** (IOVA_RANGE_CACHE_MAX_SIZE - 1)) sz = 2 ** Math.ceil(Math.log2(sz));
    const order = Math.log2(sz);
    if (Number.isInteger(order) && order < IOVA_RANGE_CACHE_MAX_SIZE) {
      const bin = this.rcache[order]!;
      for (let k = bin.length - 1; k >= 0; k--) {
        const pfn = bin[k]!;
        if (pfn + sz - 1 <= limitPfn) {
          bin[k] = bin[bin.length - 1]!;
          bin.pop();
          this.stats.rcacheHits++;
          return pfn;
        }
      }
    }
    let pfn = this.allocIova(sz, limitPfn, true);
    if (pfn < 0) {
      // free the caches back to the tree and retry once (Linux: free_cpu_cached_iovas)
      this.flushRcaches();
      pfn = this.allocIova(sz, limitPfn, true);
    }
    return pfn;
  }

  /** free_iova_fast: back into the rcache if there is room, else into the tree. */
  freeIovaFast(pfn: number, size: number): void {
    let sz = size;
    if (sz < 2 ** (IOVA_RANGE_CACHE_MAX_SIZE - 1)) sz = 2 ** Math.ceil(Math.log2(sz));
    const order = Math.log2(sz);
    if (Number.isInteger(order) && order < IOVA_RANGE_CACHE_MAX_SIZE) {
      const bin = this.rcache[order]!;
      if (bin.length < RCACHE_DEPTH) {
        bin.push(pfn);
        this.stats.rcacheFrees++;
        return;
      }
    }
    this.freeIova(pfn);
  }

  flushRcaches(): void {
    for (const bin of this.rcache) {
      for (const pfn of bin) this.freeIova(pfn);
      bin.length = 0;
    }
  }

  /** put_iova_domain: drop everything. */
  destroy(): void {
    this.lo = [];
    this.hi = [];
    for (const b of this.rcache) b.length = 0;
  }
}
