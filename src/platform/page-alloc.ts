/**
 * Page allocator for the kernel model: a buddy allocator over RAM frames.
 *
 * Blocks of 2^order contiguous, naturally aligned 4 KiB frames (alignment matters: a 64 KiB
 * page-table granule or a concatenated stage-2 start table needs it). Every allocation is
 * zeroed and tagged with its owner. Freeing a block twice, or an address that was never
 * allocated, is detected, reported as a bug and refused (-EINVAL) — never thrown.
 */

import type { PhysicalMemory } from './memory.ts';

export const PAGE_SIZE = 4096;
export const PAGE_SHIFT = 12;
export const MAX_ORDER = 18; // 1 GiB blocks
const ENOMEM = -12;
const EINVAL = -22;

interface Allocation {
  readonly order: number;
  readonly owner: string;
}

export class PageAllocator {
  // free lists: per order, set of block start frame indices (relative to pool base)
  private free: Array<Set<number>> = [];
  private allocated = new Map<number, Allocation>();
  private freedRecently = new Map<number, string>();
  private usedFrames = 0;
  readonly totalFrames: number;

  constructor(
    private readonly mem: PhysicalMemory,
    readonly base: number,
    readonly size: number,
    private readonly reportBug: (
      kind: 'page-double-free' | 'page-bad-free',
      message: string,
    ) => void = () => {},
  ) {
    if (base % PAGE_SIZE || size % PAGE_SIZE || size <= 0)
      throw new RangeError('page allocator: pool must be page-aligned');
    if (!mem.isRam(base, size)) throw new RangeError('page allocator: pool must be RAM');
    for (let o = 0; o <= MAX_ORDER; o++) this.free.push(new Set());
    this.totalFrames = size / PAGE_SIZE;
    // carve the pool into maximal naturally aligned blocks (alignment is of the physical frame number)
    const baseFrame = base / PAGE_SIZE;
    let f = 0;
    while (f < this.totalFrames) {
      let o = MAX_ORDER;
      while (o > 0 && ((baseFrame + f) % 2 ** o !== 0 || f + 2 ** o > this.totalFrames)) o--;
      this.free[o]!.add(f);
      f += 2 ** o;
    }
  }

  get freeFrames(): number {
    return this.totalFrames - this.usedFrames;
  }

  get usedPages(): number {
    return this.usedFrames;
  }

  /** Allocate 2^order zeroed frames; returns the physical address, or -ENOMEM (-12). */
  alloc(order: number, owner: string): number {
    if (!Number.isInteger(order) || order < 0 || order > MAX_ORDER) return ENOMEM;
    let o = order;
    while (o <= MAX_ORDER && this.free[o]!.size === 0) o++;
    if (o > MAX_ORDER) return ENOMEM;
    const f = this.takeLowest(o);
    // split down, returning the upper halves to the free lists
    while (o > order) {
      o--;
      this.free[o]!.add(f + 2 ** o);
    }
    const pa = this.base + f * PAGE_SIZE;
    this.allocated.set(pa, { order, owner });
    this.freedRecently.delete(pa);
    this.usedFrames += 2 ** order;
    this.mem.fill(pa, PAGE_SIZE * 2 ** order, 0);
    return pa;
  }

  /** Allocate one zeroed page. */
  allocPage(owner: string): number {
    return this.alloc(0, owner);
  }

  /** Free a block by its address. Returns 0, or -EINVAL after reporting a double/bad free. */
  freePages(pa: number): number {
    const a = this.allocated.get(pa);
    if (a === undefined) {
      const prev = this.freedRecently.get(pa);
      if (prev !== undefined) {
        this.reportBug(
          'page-double-free',
          `page allocator: double free of 0x${pa.toString(16)} (owner was "${prev}")`,
        );
      } else {
        this.reportBug(
          'page-bad-free',
          `page allocator: free of 0x${pa.toString(16)}, which was never allocated`,
        );
      }
      return EINVAL;
    }
    this.allocated.delete(pa);
    this.freedRecently.set(pa, a.owner);
    this.usedFrames -= 2 ** a.order;
    let f = (pa - this.base) / PAGE_SIZE;
    let o = a.order;
    const baseFrame = this.base / PAGE_SIZE;
    while (o < MAX_ORDER) {
      const abs = baseFrame + f;
      const buddyAbs = abs ^ (2 ** o);
      const buddy = buddyAbs - baseFrame;
      if (!this.free[o]!.has(buddy)) break;
      this.free[o]!.delete(buddy);
      f = Math.min(f, buddy);
      o++;
    }
    this.free[o]!.add(f);
    return 0;
  }

  /** Owner tag of the block starting at `pa`, or undefined. */
  ownerOf(pa: number): string | undefined {
    return this.allocated.get(pa)?.owner;
  }

  /** Pages in use per owner tag. */
  usageByOwner(): Map<string, number> {
    const m = new Map<string, number>();
    for (const a of this.allocated.values()) m.set(a.owner, (m.get(a.owner) ?? 0) + 2 ** a.order);
    return m;
  }

  private takeLowest(o: number): number {
    // first-inserted block: O(1) and deterministic
    const f = this.free[o]!.values().next().value as number;
    this.free[o]!.delete(f);
    return f;
  }
}
