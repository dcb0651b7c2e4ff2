/**
 * Page allocator for the kernel model: a buddy allocator over RAM frames.
 *
 * Blocks of 2^order contiguous, naturally aligned 4 KiB frames (alignment matters: a 64 KiB
 * page-table granule or a concatenated stage-2 start table needs it). Every allocation is
 * zeroed and tagged with its owner (zeroed when allocated, or — with initOnFree, Linux's
 * init_on_free=1 — when freed, so that a free block is already zero; as on Linux, a store into a
 * page after it was freed, such as a device's DMA through a stale mapping, then survives into
 * the next allocation of that page). Freeing a block twice, or an address that was never
 * allocated, is detected, reported as a bug and refused (-EINVAL) — never thrown.
 *
 * Bookkeeping lives in typed arrays indexed by frame number within the pool (free lists are
 * intrusive doubly linked lists), so allocating and freeing cost O(1) per order and allocate
 * nothing. Free lists are LIFO, as Linux's: a page freed is the next one handed out.
 */

import type { PhysicalMemory } from './memory.ts';
import { MEM_FREE, memKindOfOwner } from './sanitizer.ts';

export const PAGE_SIZE = 4096;
export const PAGE_SHIFT = 12;
export const MAX_ORDER = 18; // 1 GiB blocks
const ENOMEM = -12;
const EINVAL = -22;
const NONE = -1;

export class PageAllocator {
  readonly totalFrames: number;
  private readonly baseFrame: number;
  /** Order of the free block starting at a frame, or NONE. */
  private readonly freeOrder: Int8Array;
  /** Order of the allocated block starting at a frame, or NONE. */
  private readonly allocOrder: Int8Array;
  /** 1 once a block starting here was freed (for double-free reports). */
  private readonly freed: Uint8Array;
  private readonly next: Int32Array;
  private readonly prev: Int32Array;
  private readonly head = new Int32Array(MAX_ORDER + 1).fill(NONE);
  /** Owner tag of the block starting at a frame, as an index in ownerNames (kept after free for reports). */
  private readonly ownerIds: Int32Array;
  private readonly ownerNames: string[] = [];
  /** MEM_* kind of each owner id (sanitizer.ts), from its tag. */
  private readonly ownerKinds: number[] = [];
  /**
   * Page lifecycle, per frame of the pool: the MEM_* kind of the allocation it belongs to
   * (MEM_FREE = free), and a generation that changes at every allocation and every free (so a
   * frame freed and reused has another generation). Always kept; the sanitizer adds sites.
   */
  readonly frameKind: Uint8Array;
  readonly frameGen: Uint32Array;
  private readonly ownerIndex = new Map<string, number>();
  private lastOwner = '';
  private lastOwnerId = -1;
  private usedFrames = 0;

  constructor(
    private readonly mem: PhysicalMemory,
    readonly base: number,
    readonly size: number,
    private readonly reportBug: (
      kind: 'page-double-free' | 'page-bad-free',
      message: string,
    ) => void = () => {},
    /** Zero blocks when they are freed instead of when they are allocated (init_on_free=1). */
    readonly initOnFree = false,
  ) {
    if (base % PAGE_SIZE || size % PAGE_SIZE || size <= 0)
      throw new RangeError('page allocator: pool must be page-aligned');
    if (!mem.isRam(base, size)) throw new RangeError('page allocator: pool must be RAM');
    const n = size / PAGE_SIZE;
    if (n > 2 ** 30) throw new RangeError('page allocator: pool larger than 4 TiB');
    this.totalFrames = n;
    this.baseFrame = base / PAGE_SIZE;
    this.freeOrder = new Int8Array(n).fill(NONE);
    this.allocOrder = new Int8Array(n).fill(NONE);
    this.freed = new Uint8Array(n);
    this.next = new Int32Array(n);
    this.prev = new Int32Array(n);
    this.ownerIds = new Int32Array(n).fill(NONE);
    this.frameKind = new Uint8Array(n);
    this.frameGen = new Uint32Array(n);
    // carve the pool into maximal blocks, aligned by physical frame number; push in reverse so
    // the lowest block of each order is at the head
    const blocks: Array<[number, number]> = [];
    let f = 0;
    while (f < n) {
      let o = MAX_ORDER;
      while (o > 0 && ((this.baseFrame + f) % 2 ** o !== 0 || f + 2 ** o > n)) o--;
      blocks.push([f, o]);
      f += 2 ** o;
    }
    for (let i = blocks.length - 1; i >= 0; i--) this.push(blocks[i]![0], blocks[i]![1]);
    // init_on_free keeps every free block zero: start from a zero pool (untouched RAM already is)
    if (initOnFree) mem.fill(base, size, 0);
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
    while (o <= MAX_ORDER && this.head[o] === NONE) o++;
    if (o > MAX_ORDER) return ENOMEM;
    const f = this.head[o]!;
    this.unlink(f, o);
    // split down, returning the upper halves to the free lists
    while (o > order) {
      o--;
      this.push(f + (1 << o), o);
    }
    this.allocOrder[f] = order;
    this.freed[f] = 0;
    this.ownerIds[f] =
      owner === this.lastOwner && this.lastOwnerId >= 0 ? this.lastOwnerId : this.ownerId(owner);
    this.usedFrames += 1 << order;
    this.lifecycle(f, 1 << order, this.ownerKinds[this.ownerIds[f]!]!);
    const san = this.mem.sanitizer;
    if (san !== null) san.onPagesAlloc(f, 1 << order);
    const pa = this.base + f * PAGE_SIZE;
    if (!this.initOnFree) this.mem.fill(pa, PAGE_SIZE << order, 0);
    return pa;
  }

  private ownerId(owner: string): number {
    let id = this.ownerIndex.get(owner);
    if (id === undefined) {
      id = this.ownerNames.length;
      this.ownerNames.push(owner);
      this.ownerKinds.push(memKindOfOwner(owner));
      this.ownerIndex.set(owner, id);
    }
    this.lastOwner = owner;
    this.lastOwnerId = id;
    return id;
  }

  private ownerName(f: number): string | undefined {
    const id = this.ownerIds[f]!;
    return id === NONE ? undefined : this.ownerNames[id];
  }

  /** Allocate one zeroed page. */
  allocPage(owner: string): number {
    return this.alloc(0, owner);
  }

  /** Free a block by its address. Returns 0, or -EINVAL after reporting a double/bad free. */
  freePages(pa: number): number {
    const rel = (pa - this.base) / PAGE_SIZE;
    const f = Number.isInteger(rel) && rel >= 0 && rel < this.totalFrames ? rel : NONE;
    if (f === NONE || this.allocOrder[f] === NONE) {
      if (f !== NONE && this.freed[f]) {
        this.reportBug(
          'page-double-free',
          `page allocator: double free of 0x${pa.toString(16)} (owner was "${this.ownerName(f)}")`,
        );
      } else {
        this.reportBug(
          'page-bad-free',
          `page allocator: free of 0x${pa.toString(16)}, which was never allocated`,
        );
      }
      return EINVAL;
    }
    let o = this.allocOrder[f]!;
    if (this.initOnFree) this.mem.fill(pa, PAGE_SIZE << o, 0);
    this.allocOrder[f] = NONE;
    this.freed[f] = 1;
    this.usedFrames -= 1 << o;
    this.lifecycle(f, 1 << o, MEM_FREE);
    const san = this.mem.sanitizer;
    if (san !== null) san.onPagesFree(f, 1 << o);
    let b = f;
    while (o < MAX_ORDER) {
      const buddy = ((this.baseFrame + b) ^ (1 << o)) - this.baseFrame;
      if (buddy < 0 || buddy >= this.totalFrames || this.freeOrder[buddy] !== o) break;
      this.unlink(buddy, o);
      b = Math.min(b, buddy);
      o++;
    }
    this.push(b, o);
    return 0;
  }

  private lifecycle(f: number, count: number, kind: number): void {
    this.frameKind.fill(kind, f, f + count);
    const g = this.frameGen;
    for (let i = f; i < f + count; i++) g[i]!++;
  }

  /**
   * Lifecycle of the frame holding `pa`: its MEM_* kind (0 = free) and generation, or undefined
   * outside the pool.
   */
  frameInfo(pa: number): { kind: number; generation: number } | undefined {
    const f = Math.floor((pa - this.base) / PAGE_SIZE);
    if (!(f >= 0 && f < this.totalFrames)) return undefined;
    return { kind: this.frameKind[f]!, generation: this.frameGen[f]! };
  }

  /** Owner tag of the allocated block starting at `pa`, or undefined. */
  ownerOf(pa: number): string | undefined {
    const f = (pa - this.base) / PAGE_SIZE;
    if (!Number.isInteger(f) || f < 0 || f >= this.totalFrames || this.allocOrder[f] === NONE)
      return undefined;
    return this.ownerName(f);
  }

  /** Pages in use per owner tag. */
  usageByOwner(): Map<string, number> {
    const m = new Map<string, number>();
    for (let f = 0; f < this.totalFrames; f++) {
      const o = this.allocOrder[f]!;
      if (o === NONE) continue;
      const owner = this.ownerName(f)!;
      m.set(owner, (m.get(owner) ?? 0) + (1 << o));
    }
    return m;
  }

  private push(f: number, o: number): void {
    const h = this.head[o]!;
    this.next[f] = h;
    this.prev[f] = NONE;
    if (h !== NONE) this.prev[h] = f;
    this.head[o] = f;
    this.freeOrder[f] = o;
  }

  private unlink(f: number, o: number): void {
    const n = this.next[f]!;
    const p = this.prev[f]!;
    if (p !== NONE) this.next[p] = n;
    else this.head[o] = n;
    if (n !== NONE) this.prev[n] = p;
    this.freeOrder[f] = NONE;
  }
}
