/**
 * Simulated physical address space: sparse RAM plus MMIO windows, 52-bit addresses.
 *
 * RAM is page-granular and sparse: a 4 KiB frame comes into existence on its first write;
 * reads of untouched RAM return zero. A frame is found through a two-level direct index for the
 * low 1 TiB of the address space (where real machines put RAM: two loads from one small
 * Int32Array), and through an open-addressing hash table in typed arrays, with a one-entry
 * last-frame cache, above it.
 *
 * Where a frame's bytes live:
 *  - The dense window, up to 2 GiB at the start of the largest RAM region (not crossing a 4 GiB
 *    boundary; the whole of the default 1 GiB RAM), is one flat buffer laid out like the
 *    simulated addresses: its frame k has id k and its bytes at k * 4 KiB. A table walker finds
 *    a descriptor from its PA alone, without the index: one load (lowDenseWords, lowDenseBase). The
 *    buffer covers the window from its start up to the highest frame written so far, and grows
 *    by doubling (copying the frames that exist) until it covers the whole window; words
 *    beyond it read as zero, as untouched RAM does.
 *  - Every other frame: segments of 2 MiB (512 frames) in creation order (the newest segment
 *    grows by doubling from 256 KiB, so host memory tracks the frames touched).
 *  Every frame id f is also reachable as frameWords(f) (2 MiB views of the window for its frames).
 * Host memory: a window buffer of 32 MiB or more is a fresh mapping whose pages the host commits
 * when first touched, so it costs 4 KiB per frame written; a smaller one may come out of reused
 * heap memory that the host's allocator zeroes whole, so it costs its length. footprintBytes
 * counts it so.
 *
 * Nothing on the fast paths allocates or uses BigInt. Table walkers may read frames directly
 * (lowDenseWords with lowDenseBase; frameIndex, directFrameId, frameWords, frameWordIndex)
 * between stores, and software's hot paths may store into an existing frame
 * directly while `watched` is false.
 *
 * Conventions (see u64.ts):
 *  - addresses are integer Numbers below 2^52;
 *  - 8/16/32-bit reads return the value (>= 0) or BUS_ERROR (-1);
 *  - 64-bit reads return 0 or BUS_ERROR and leave the value in `r64` as [lo, hi] int32 halves;
 *  - writes return 0 or BUS_ERROR.
 * Addresses outside RAM go to the MMIO bus (32/64-bit aligned only); addresses in neither
 * answer BUS_ERROR, which a hardware model turns into an external abort.
 */

import { BUS_ERROR, type MmioBus } from './mmio.ts';
import type { DmaSanitizer } from './sanitizer.ts';
import { PA_LIMIT, TWO32 } from './u64.ts';

export { BUS_ERROR };

const PAGE = 4096;
// frames are addressed as segments of 2^9 frames (2 MiB): the dense window's are views of its
// flat buffer, by address; the others are buffers of their own in creation order (the newest
// of those starts at 64 frames and doubles, copying, as frames are created, so host memory
// tracks use)
const SEG_SHIFT = 9;
const SEG_MASK = (1 << SEG_SHIFT) - 1;
const SEG_FIRST = 64;
const EMPTY = -1; // key-hi value of an empty hash slot
// direct index: frames below 2^28 (PA < 1 TiB), chunks of 2^14 frames (64 MiB of PA)
const DIR_CHUNK_SHIFT = 14;
const DIR_CHUNK_MASK = (1 << DIR_CHUNK_SHIFT) - 1;
const DIR_CHUNKS = 1 << (28 - DIR_CHUNK_SHIFT);

const EMPTY_SEGMENT = new Int32Array(0);
const EMPTY_SEGMENT8 = new Uint8Array(0);
/** Largest dense window (bytes): 2 GiB keeps every byte index of it an int32. */
const DENSE_MAX = 2 ** 31;
const FOUR_GIB = 2 ** 32;

/**
 * Allocations at least this large are fresh mappings (glibc's largest mmap threshold): the host
 * commits their pages on first touch, and never hands out reused memory that it must zero.
 */
const HOST_MMAP_MIN = 32 * 1024 * 1024;

/**
 * The id of the existing RAM frame holding a PA below 4 GiB (palo = its int32 or uint32
 * pattern), or -1, through idx = frameIndex(): small enough to inline into a walker's loop.
 */
export function directFrameId(idx: Int32Array, palo: number): number {
  const fn = palo >>> 12;
  // chunk offsets are multiples of the chunk size, so | adds (and needs no overflow check)
  return (idx[idx[fn >>> DIR_CHUNK_SHIFT]! | (fn & DIR_CHUNK_MASK)]! - 1) | 0;
}

/** Index in frameWords(f) of the 32-bit word at byte offset (palo & 4095) of frame f. */
export function frameWordIndex(f: number, palo: number): number {
  return ((f & SEG_MASK) << 10) | ((palo & 4095) >>> 2);
}

export interface RamRegion {
  readonly base: number;
  readonly size: number;
  readonly name: string;
}

/** Called after a store into a watched range, with the exact bytes written. */
export type WriteWatcher = (pa: number, size: number) => void;

interface Watch {
  base: number;
  end: number;
  fn: WriteWatcher;
}

export class PhysicalMemory {
  /** Result of the last successful read64: [lo, hi] as int32 bit patterns. */
  readonly r64 = new Int32Array(2);
  private ram: RamRegion[] = [];
  private ram0Base = 0;
  private ram0End = 0;
  private segs8: Uint8Array[] = [];
  private segs32: Int32Array[] = [];
  /** The dense window's buffer (its first win8.length bytes; empty until the first store into it). */
  private win8 = EMPTY_SEGMENT8;
  /** Frames that exist in the dense window. */
  private nDense = 0;
  /** The window's buffer as words if the window lies below 4 GiB, else empty (lowDenseWords). */
  private low32 = EMPTY_SEGMENT;
  /** dBase as an int32 when the window lies below 4 GiB, else 0 (lowDenseBase). */
  private lowBase = 0;
  /** Frames that exist (touchedFrames). */
  private nFrames = 0;
  /** Id of the next frame created outside the dense window. */
  private nextSparse = 0;
  /** The dense window: [dBase, dBase + dSize) (dSize 0: none, or not placed yet). */
  private dBase = 0;
  private dSize = 0;
  private dPlaced = false;
  /**
   * The direct index in one Int32Array: idx[c] (c < DIR_CHUNKS) is the offset in idx of chunk
   * c's entries, or DIR_CHUNKS (an all-zero chunk) if the chunk has no frames; entries hold
   * frame id + 1 (0 = none). Chunks are appended as needed (the array is copied to grow).
   */
  private idx = new Int32Array(2 * DIR_CHUNKS).fill(DIR_CHUNKS, 0, DIR_CHUNKS);
  private dirChunks = 0;
  // hash table (frames at PA >= 1 TiB): frame number split as (kLo: low 32 bits, kHi: bits 32..39) -> frame id
  private hLo: Int32Array;
  private hHi: Int32Array;
  private hVal: Int32Array;
  private hBits: number;
  private nHashed = 0;
  private hMask: number;
  // last-hit cache: [kLo, kHi, frame id]
  private readonly last = new Int32Array([0, EMPTY, 0]);
  private watches: Watch[] = [];
  private nWatch = 0;
  /** Stores made through the store API (int32, wrapping); see storeCount. */
  private stores = 0;
  private readonly tmp8 = new Uint8Array(8);
  /** The DMA-isolation sanitizer watching this memory's machine, or null (off: the default). */
  sanitizer: DmaSanitizer | null = null;
  private sanWatchers: Array<(s: DmaSanitizer) => void> = [];

  /**
   * Call `cb` when a sanitizer is attached (at once if one is): hardware models cache it so
   * that their hot paths test one field of their own.
   */
  watchSanitizer(cb: (s: DmaSanitizer) => void): void {
    this.sanWatchers.push(cb);
    if (this.sanitizer !== null) cb(this.sanitizer);
  }

  /** Attach the sanitizer (Machine.enableSanitizer) and tell every watcher. */
  attachSanitizer(s: DmaSanitizer): void {
    this.sanitizer = s;
    for (const cb of this.sanWatchers) cb(s);
  }

  constructor(
    readonly mmio: MmioBus,
    ram: ReadonlyArray<{ base: number; size: number; name?: string }> = [],
  ) {
    this.hBits = 10;
    this.hMask = (1 << this.hBits) - 1;
    this.hLo = new Int32Array(1 << this.hBits);
    this.hHi = new Int32Array(1 << this.hBits).fill(EMPTY);
    this.hVal = new Int32Array(1 << this.hBits);
    for (const r of ram) this.addRam(r.base, r.size, r.name);
  }

  /** Declare a RAM region. Must be page-aligned, inside 52 bits, and not overlap another. */
  addRam(base: number, size: number, name = 'ram'): void {
    if (!Number.isInteger(base) || !Number.isInteger(size) || base % PAGE || size % PAGE || size <= 0) {
      throw new RangeError(`memory: RAM region ${name} must be page-aligned (base=${base}, size=${size})`);
    }
    if (base < 0 || base + size > PA_LIMIT)
      throw new RangeError(`memory: RAM region ${name} exceeds 52 bits`);
    for (const r of this.ram) {
      if (base < r.base + r.size && r.base < base + size) {
        throw new RangeError(`memory: RAM region ${name} overlaps ${r.name}`);
      }
    }
    this.ram.push({ base, size, name });
    this.ram.sort((a, b) => a.base - b.base);
    // the largest region, for the fast answer to reads of untouched RAM
    const big = this.ram.reduce((a, b) => (b.size > a.size ? b : a));
    this.ram0Base = big.base;
    this.ram0End = big.base + big.size;
  }

  regions(): readonly RamRegion[] {
    return this.ram;
  }

  /** True if every byte of [pa, pa+len) is RAM (regions that touch count as one). */
  isRam(pa: number, len = 1): boolean {
    if (!Number.isInteger(pa) || !Number.isInteger(len) || pa < 0 || len < 0) return false;
    let cur = pa;
    const end = pa + len;
    for (const r of this.ram) {
      if (cur >= r.base && cur < r.base + r.size) {
        cur = r.base + r.size;
        if (cur >= end) return true;
      }
    }
    return len === 0;
  }

  /** Frames that exist (were written). */
  get touchedFrames(): number {
    return this.nFrames;
  }

  /**
   * Bytes of host memory held for simulated RAM: the segments outside the dense window, the
   * window (4 KiB per frame written once its buffer is 32 MiB or more, else its length; see the
   * module comment), plus the index.
   */
  get footprintBytes(): number {
    const w = this.win8.length;
    let n = w >= HOST_MMAP_MIN ? this.nDense * PAGE : w;
    for (let k = this.denseSegments(); k < this.segs8.length; k++) n += this.segs8[k]!.length;
    return n + this.hLo.length * 12 + this.dirChunks * 4 * (DIR_CHUNK_MASK + 1);
  }

  /** Segment slots the dense window takes (its frames' ids come first). */
  private denseSegments(): number {
    return Math.ceil(this.dSize / (PAGE << SEG_SHIFT));
  }

  // ---------------------------------------------------------------- frame lookup

  /** Frame id for the page holding (palo, pahi), or -1 if it does not exist. */
  private find(palo: number, pahi: number): number {
    if (pahi < 256) {
      const fn = (palo >>> 12) | (pahi << 20);
      const idx = this.idx;
      return (idx[idx[fn >>> DIR_CHUNK_SHIFT]! | (fn & DIR_CHUNK_MASK)]! - 1) | 0;
    }
    return this.findHashed(palo, pahi);
  }

  private findHashed(palo: number, pahi: number): number {
    const kLo = (palo >>> 12) | (pahi << 20);
    const kHi = pahi >>> 12;
    const last = this.last;
    if (last[0] === kLo && last[1] === kHi) return last[2]!;
    const mask = this.hMask;
    let i = (Math.imul(kLo ^ Math.imul(kHi, 0x27d4eb2d), 0x9e3779b1) >>> (32 - this.hBits)) & mask;
    const hLo = this.hLo;
    const hHi = this.hHi;
    for (;;) {
      const h = hHi[i]!;
      if (h === EMPTY) return -1;
      if (h === kHi && hLo[i] === kLo) {
        const f = this.hVal[i]!;
        last[0] = kLo;
        last[1] = kHi;
        last[2] = f;
        return f;
      }
      i = (i + 1) & mask;
    }
  }

  /** Frame id for a RAM page, creating it if needed. Caller has checked that pa is RAM. */
  private frameFor(pa: number): number {
    const palo = pa >>> 0;
    const pahi = (pa / TWO32) >>> 0;
    const f = this.find(palo, pahi);
    return f >= 0 ? f : this.create((palo >>> 12) | (pahi << 20), pahi >>> 12);
  }

  private create(kLo: number, kHi: number): number {
    if (!this.dPlaced) this.placeDense();
    this.nFrames++;
    const d = kHi * TWO32 + (kLo >>> 0) - this.dBase / PAGE; // frame number in the window
    if (d >= 0 && d < this.dSize / PAGE) {
      if (d * PAGE >= this.win8.length) this.growWindow(d);
      this.nDense++;
      this.index(kLo, kHi, d);
      return d;
    }
    const f = this.nextSparse++;
    this.createSparse(kLo, kHi, f);
    return f;
  }

  /**
   * Place the dense window (once, at the first store: the regions are known by then) over the
   * largest RAM region: its segments come first, empty until stored into. Other frames' ids
   * follow them.
   */
  private placeDense(): void {
    this.dPlaced = true;
    const base = this.ram0Base;
    const size = Math.min(this.ram0End - base, DENSE_MAX, FOUR_GIB - (base % FOUR_GIB));
    if (!(size >= PAGE)) return;
    this.dBase = base;
    this.dSize = size;
    const n = this.denseSegments();
    for (let k = 0; k < n; k++) {
      this.segs8.push(EMPTY_SEGMENT8);
      this.segs32.push(EMPTY_SEGMENT);
    }
    this.nextSparse = n << SEG_SHIFT;
  }

  /**
   * Make the window's buffer cover its frame d: double its length (at least one segment) until
   * it does, at most the window's size; copy the frames that exist (only those, so the host
   * commits no page for untouched RAM) and point the window's segment views at the new buffer.
   */
  private growWindow(d: number): void {
    const seg = PAGE << SEG_SHIFT;
    let len = Math.max(seg, this.win8.length);
    while (len <= d * PAGE) len *= 2;
    len = Math.min(len, this.dSize);
    const buf = new ArrayBuffer(len);
    const w8 = new Uint8Array(buf);
    const old = this.win8;
    if (this.nDense > 0) {
      // copy each run of consecutive existing frames in one piece
      const first = this.dBase / PAGE;
      const n = old.length / PAGE;
      let run = -1; // first frame of the current run
      for (let k = 0; k <= n; k++) {
        const fn = first + k;
        const exists = k < n && this.find((fn * PAGE) >>> 0, (fn / 2 ** 20) >>> 0) >= 0;
        if (exists && run < 0) run = k;
        else if (!exists && run >= 0) {
          w8.set(old.subarray(run * PAGE, k * PAGE), run * PAGE);
          run = -1;
        }
      }
    }
    this.win8 = w8;
    if (this.dBase + this.dSize <= FOUR_GIB) {
      this.low32 = new Int32Array(buf);
      this.lowBase = this.dBase | 0;
    }
    for (let k = 0; k * seg < len; k++) {
      const n = Math.min(seg, len - k * seg);
      this.segs8[k] = new Uint8Array(buf, k * seg, n);
      this.segs32[k] = new Int32Array(buf, k * seg, n >>> 2);
    }
  }

  /** A frame outside the dense window: room in the newest segment, then the index. */
  private createSparse(kLo: number, kHi: number, f: number): void {
    const i = f & SEG_MASK;
    if (i === 0) {
      const buf = new ArrayBuffer(PAGE * SEG_FIRST);
      this.segs8.push(new Uint8Array(buf));
      this.segs32.push(new Int32Array(buf));
    } else if (i * PAGE >= this.segs8[f >>> SEG_SHIFT]!.length) {
      // grow the newest segment: nobody outside this class holds a view of it
      const k = f >>> SEG_SHIFT;
      const buf = new ArrayBuffer(i * PAGE * 2);
      const s8 = new Uint8Array(buf);
      s8.set(this.segs8[k]!);
      this.segs8[k] = s8;
      this.segs32[k] = new Int32Array(buf);
    }
    this.index(kLo, kHi, f);
  }

  /** Enter frame id f for frame number (kLo, kHi) in the direct index or the hash table. */
  private index(kLo: number, kHi: number, f: number): void {
    if (kHi === 0 && kLo >>> 28 === 0) {
      const c = kLo >>> DIR_CHUNK_SHIFT;
      let base = this.idx[c]!;
      if (base === DIR_CHUNKS) {
        base = this.idx.length;
        const grown = new Int32Array(base + DIR_CHUNK_MASK + 1);
        grown.set(this.idx);
        grown[c] = base;
        this.idx = grown;
        this.dirChunks++;
      }
      this.idx[base | (kLo & DIR_CHUNK_MASK)] = f + 1;
      return;
    }
    if (++this.nHashed * 2 > this.hLo.length) this.grow();
    this.insert(kLo, kHi, f);
  }

  private insert(kLo: number, kHi: number, f: number): void {
    const mask = this.hMask;
    let i = (Math.imul(kLo ^ Math.imul(kHi, 0x27d4eb2d), 0x9e3779b1) >>> (32 - this.hBits)) & mask;
    while (this.hHi[i] !== EMPTY) i = (i + 1) & mask;
    this.hLo[i] = kLo;
    this.hHi[i] = kHi;
    this.hVal[i] = f;
  }

  private grow(): void {
    const oLo = this.hLo;
    const oHi = this.hHi;
    const oVal = this.hVal;
    this.hBits++;
    this.hMask = (1 << this.hBits) - 1;
    this.hLo = new Int32Array(1 << this.hBits);
    this.hHi = new Int32Array(1 << this.hBits).fill(EMPTY);
    this.hVal = new Int32Array(1 << this.hBits);
    for (let i = 0; i < oHi.length; i++) if (oHi[i] !== EMPTY) this.insert(oLo[i]!, oHi[i]!, oVal[i]!);
  }

  // ---------------------------------------------------------------- scalar reads

  read8(pa: number): number {
    const palo = pa >>> 0;
    const f = this.find(palo, (pa / TWO32) >>> 0);
    if (f >= 0) return this.segs8[f >>> SEG_SHIFT]![((f & SEG_MASK) << 12) | (palo & 4095)]!;
    return this.readSlow(pa, 1);
  }

  read16(pa: number): number {
    const palo = pa >>> 0;
    if ((palo & 1) === 0) {
      const f = this.find(palo, (pa / TWO32) >>> 0);
      if (f >= 0) {
        const s = this.segs8[f >>> SEG_SHIFT]!;
        const o = ((f & SEG_MASK) << 12) | (palo & 4095);
        return s[o]! | (s[o + 1]! << 8);
      }
    }
    return this.readSlow(pa, 2);
  }

  read32(pa: number): number {
    const palo = pa >>> 0;
    if ((palo & 3) === 0) {
      const f = this.find(palo, (pa / TWO32) >>> 0);
      if (f >= 0) return this.segs32[f >>> SEG_SHIFT]![((f & SEG_MASK) << 10) | ((palo & 4095) >>> 2)]! >>> 0;
    }
    return this.readSlow(pa, 4);
  }

  /** 64-bit read: returns 0 and sets r64 = [lo, hi], or returns BUS_ERROR. */
  read64(pa: number): number {
    const palo = pa >>> 0;
    if ((palo & 7) === 0) {
      const f = this.find(palo, (pa / TWO32) >>> 0);
      if (f >= 0) {
        const s = this.segs32[f >>> SEG_SHIFT]!;
        const i = ((f & SEG_MASK) << 10) | ((palo & 4095) >>> 2);
        this.r64[0] = s[i]!;
        this.r64[1] = s[i + 1]!;
        return 0;
      }
    }
    return this.read64Slow(pa);
  }

  /**
   * Direct frame access for table walkers (no call, no double per descriptor): for a PA below
   * 4 GiB, f = directFrameId(frameIndex(), palo) is the id of the RAM frame holding it, or -1
   * if there is none (untouched RAM, not RAM, MMIO: use read64 then, which gives the
   * architected answer); its bytes are frameWords(f) at frameWordIndex(f, palo), the words
   * read64 returns. Reading this way has no side effects.
   *
   * The Int32Array holding frame f. Valid only until the next store that creates a frame.
   */
  frameWords(f: number): Int32Array {
    return this.segs32[f >>> SEG_SHIFT]!;
  }

  /**
   * For walkers that read many descriptors per call: the direct frame index, for
   * directFrameId(). Like frameWords, valid only until the next store that creates a frame.
   */
  frameIndex(): Int32Array {
    return this.idx;
  }

  /**
   * A count of the stores made through this object's store methods (writeN, writeBytes, copy,
   * fill), wrapping at 32 bits: equal values at two moments mean no such store came in between
   * (bar an exact multiple of 2^32). Direct stores into frameWords() are not counted; software
   * that makes them (io-pgtable) uses this to tell whether anything else wrote memory since it
   * last looked, so that a cache of what it read stays checked against the bytes.
   */
  get storeCount(): number {
    return this.stores;
  }

  /**
   * True while a write watcher is installed. A direct store into frameWords() is only allowed
   * when this is false (a watcher must be told of every store: use write32/write64 then).
   */
  get watched(): boolean {
    return this.nWatch !== 0;
  }

  /**
   * For table walkers that work on int32 addresses, the dense window's words when the whole
   * window lies below 4 GiB, else an empty array: the word at PA p (below 4 GiB) is
   * lowDenseWords()[((p - lowDenseBase) >>> 0) >>> 2] if that index is below its length, and
   * otherwise read64 gives it (untouched RAM, outside the window, or not RAM). Valid only until
   * the next store that creates a frame. Reading it has no side effects.
   */
  lowDenseWords(): Int32Array {
    return this.low32;
  }

  /** denseBase as an int32 bit pattern when the window lies below 4 GiB, else 0. */
  get lowDenseBase(): number {
    return this.lowBase;
  }

  /** Start of the dense window (a PA), 0 if none. */
  get denseBase(): number {
    return this.dBase;
  }

  /** Bytes in the dense window: 0 before the first store and if there is none. */
  get denseSize(): number {
    return this.dSize;
  }

  /** 64-bit read as a Number, for values known to be below 2^53 (pointers). BUS_ERROR on error. */
  read64n(pa: number): number {
    if (this.read64(pa) !== 0) return BUS_ERROR;
    return (this.r64[1]! >>> 0) * TWO32 + (this.r64[0]! >>> 0);
  }

  private readSlow(pa: number, width: number): number {
    if (
      pa % width === 0 &&
      pa >= this.ram0Base &&
      pa < this.ram0End &&
      this.find(pa >>> 0, (pa / TWO32) >>> 0) < 0
    ) {
      return 0; // an aligned read of untouched RAM
    }
    if (this.isRam(pa, width)) {
      let v = 0;
      for (let i = width - 1; i >= 0; i--) v = v * 256 + this.byteAt(pa + i);
      return v;
    }
    if (width === 4 && this.mmio.covers(pa, 4)) return this.mmio.read32(pa);
    return this.mmio.fail(pa, width, false, this.describe(pa, width));
  }

  private read64Slow(pa: number): number {
    // an aligned read of a frame nobody wrote: zeros, after a cheap check of the region it is in
    // (page-table walks of fresh tables land here all the time)
    if (
      (pa & 7) === 0 &&
      pa >= this.ram0Base &&
      pa < this.ram0End &&
      this.find(pa >>> 0, (pa / TWO32) >>> 0) < 0
    ) {
      this.r64[0] = 0;
      this.r64[1] = 0;
      return 0;
    }
    if (this.isRam(pa, 8)) {
      let lo = 0;
      let hi = 0;
      for (let i = 3; i >= 0; i--) {
        lo = (lo << 8) | this.byteAt(pa + i);
        hi = (hi << 8) | this.byteAt(pa + 4 + i);
      }
      this.r64[0] = lo;
      this.r64[1] = hi;
      return 0;
    }
    if (this.mmio.covers(pa, 8)) return this.mmio.read64(pa, this.r64);
    return this.mmio.fail(pa, 8, false, this.describe(pa, 8));
  }

  /** Byte of RAM, zero if the frame is untouched. Caller has checked that pa is RAM. */
  private byteAt(pa: number): number {
    const palo = pa >>> 0;
    const f = this.find(palo, (pa / TWO32) >>> 0);
    return f < 0 ? 0 : this.segs8[f >>> SEG_SHIFT]![((f & SEG_MASK) << 12) | (palo & 4095)]!;
  }

  private describe(pa: number, width: number): string {
    if (!Number.isInteger(pa) || pa < 0 || pa >= PA_LIMIT) return `address ${pa} outside the 52-bit space`;
    return `${width * 8}-bit access to 0x${pa.toString(16)}: not RAM and no MMIO device`;
  }

  // ---------------------------------------------------------------- scalar writes

  write8(pa: number, v: number): number {
    this.stores = (this.stores + 1) | 0;
    const palo = pa >>> 0;
    const f = this.find(palo, (pa / TWO32) >>> 0);
    if (f >= 0) {
      this.segs8[f >>> SEG_SHIFT]![((f & SEG_MASK) << 12) | (palo & 4095)] = v;
      if (this.nWatch !== 0) this.notify(pa, 1);
      return 0;
    }
    return this.writeSlow(pa, 1, v, 0);
  }

  write16(pa: number, v: number): number {
    this.stores = (this.stores + 1) | 0;
    const palo = pa >>> 0;
    if ((palo & 1) === 0) {
      const f = this.find(palo, (pa / TWO32) >>> 0);
      if (f >= 0) {
        const s = this.segs8[f >>> SEG_SHIFT]!;
        const o = ((f & SEG_MASK) << 12) | (palo & 4095);
        s[o] = v;
        s[o + 1] = v >>> 8;
        if (this.nWatch !== 0) this.notify(pa, 2);
        return 0;
      }
    }
    return this.writeSlow(pa, 2, v, 0);
  }

  write32(pa: number, v: number): number {
    this.stores = (this.stores + 1) | 0;
    const palo = pa >>> 0;
    if ((palo & 3) === 0) {
      const f = this.find(palo, (pa / TWO32) >>> 0);
      if (f >= 0) {
        this.segs32[f >>> SEG_SHIFT]![((f & SEG_MASK) << 10) | ((palo & 4095) >>> 2)] = v;
        if (this.nWatch !== 0) this.notify(pa, 4);
        return 0;
      }
    }
    return this.writeSlow(pa, 4, v, 0);
  }

  /** 64-bit write of halves (int32 or uint32 bit patterns). Single-copy atomic when aligned. */
  write64(pa: number, lo: number, hi: number): number {
    this.stores = (this.stores + 1) | 0;
    const palo = pa >>> 0;
    if ((palo & 7) === 0) {
      const f = this.find(palo, (pa / TWO32) >>> 0);
      if (f >= 0) {
        const s = this.segs32[f >>> SEG_SHIFT]!;
        const i = ((f & SEG_MASK) << 10) | ((palo & 4095) >>> 2);
        s[i] = lo;
        s[i + 1] = hi;
        if (this.nWatch !== 0) this.notify(pa, 8);
        return 0;
      }
    }
    return this.writeSlow(pa, 8, lo, hi);
  }

  /** 64-bit write of a Number value below 2^53. */
  write64n(pa: number, v: number): number {
    return this.write64(pa, v >>> 0, (v / TWO32) >>> 0);
  }

  private writeSlow(pa: number, width: number, lo: number, hi: number): number {
    // the first store into a frame of the main RAM region (aligned 32/64-bit): create the frame
    // once and store the words, instead of going byte by byte
    if (
      width >= 4 &&
      Number.isInteger(pa) &&
      (pa & (width - 1)) === 0 &&
      pa >= this.ram0Base &&
      pa < this.ram0End
    ) {
      const f = this.frameFor(pa);
      const s = this.segs32[f >>> SEG_SHIFT]!;
      const i = ((f & SEG_MASK) << 10) | (((pa >>> 0) & 4095) >>> 2);
      s[i] = lo;
      if (width === 8) s[i + 1] = hi;
      if (this.nWatch !== 0) this.notify(pa, width);
      return 0;
    }
    if (this.isRam(pa, width)) {
      const t = this.tmp8;
      for (let i = 0; i < 4; i++) {
        t[i] = lo >>> (8 * i);
        t[4 + i] = hi >>> (8 * i);
      }
      for (let i = 0; i < width; i++) {
        const a = pa + i;
        const f = this.frameFor(a);
        this.segs8[f >>> SEG_SHIFT]![((f & SEG_MASK) << 12) | ((a >>> 0) & 4095)] = t[i]!;
      }
      if (this.nWatch !== 0) this.notify(pa, width);
      return 0;
    }
    if (width === 4 && this.mmio.covers(pa, 4)) return this.mmio.write32(pa, lo);
    if (width === 8 && this.mmio.covers(pa, 8)) return this.mmio.write64(pa, lo, hi);
    return this.mmio.fail(pa, width, true, this.describe(pa, width));
  }

  // ---------------------------------------------------------------- bulk

  /** Copy [pa, pa+len) into dst[off..]. RAM only; BUS_ERROR (nothing copied) otherwise. */
  readBytes(pa: number, dst: Uint8Array, off = 0, len = dst.length - off): number {
    if (!this.isRam(pa, len) || off < 0 || off + len > dst.length) {
      return this.mmio.fail(pa, len, false, `bulk read of ${len} bytes at 0x${pa.toString(16)} not in RAM`);
    }
    while (len > 0) {
      const po = (pa >>> 0) & 4095;
      const n = Math.min(len, PAGE - po);
      const f = this.find(pa >>> 0, (pa / TWO32) >>> 0);
      if (f < 0) dst.fill(0, off, off + n);
      else {
        const s = this.segs8[f >>> SEG_SHIFT]!;
        const o = ((f & SEG_MASK) << 12) | po;
        if (n <= 64) for (let i = 0; i < n; i++) dst[off + i] = s[o + i]!;
        else dst.set(s.subarray(o, o + n), off);
      }
      pa += n;
      off += n;
      len -= n;
    }
    return 0;
  }

  /** Store src[off..off+len) at pa. RAM only; BUS_ERROR (nothing written) otherwise. */
  writeBytes(pa: number, src: Uint8Array, off = 0, len = src.length - off): number {
    this.stores = (this.stores + 1) | 0;
    if (!this.isRam(pa, len) || off < 0 || off + len > src.length) {
      return this.mmio.fail(pa, len, true, `bulk write of ${len} bytes at 0x${pa.toString(16)} not in RAM`);
    }
    const start = pa;
    const total = len;
    while (len > 0) {
      const po = (pa >>> 0) & 4095;
      const n = Math.min(len, PAGE - po);
      const f = this.frameFor(pa);
      const s = this.segs8[f >>> SEG_SHIFT]!;
      const o = ((f & SEG_MASK) << 12) | po;
      if (n <= 64) for (let i = 0; i < n; i++) s[o + i] = src[off + i]!;
      else s.set(src.subarray(off, off + n), o);
      pa += n;
      off += n;
      len -= n;
    }
    if (this.nWatch !== 0) this.notify(start, total);
    return 0;
  }

  /** memmove within RAM. Untouched source pages copy as zeros without creating frames needlessly. */
  copy(dst: number, src: number, len: number): number {
    this.stores = (this.stores + 1) | 0;
    if (!this.isRam(src, len) || !this.isRam(dst, len)) {
      return this.mmio.fail(
        src,
        len,
        false,
        `copy of ${len} bytes 0x${src.toString(16)} -> 0x${dst.toString(16)} not in RAM`,
      );
    }
    if (len === 0) return 0;
    if (dst > src && dst < src + len) {
      // overlapping forward move: stage through a buffer (rare)
      const buf = new Uint8Array(len);
      this.readBytes(src, buf);
      return this.writeBytes(dst, buf);
    }
    const start = dst;
    const total = len;
    while (len > 0) {
      const so = (src >>> 0) & 4095;
      const d0 = (dst >>> 0) & 4095;
      const n = Math.min(len, PAGE - so, PAGE - d0);
      const sf = this.find(src >>> 0, (src / TWO32) >>> 0);
      if (sf < 0) {
        const df = this.find(dst >>> 0, (dst / TWO32) >>> 0);
        if (df >= 0) {
          const o = ((df & SEG_MASK) << 12) | d0;
          this.segs8[df >>> SEG_SHIFT]!.fill(0, o, o + n);
        }
      } else {
        const df = this.frameFor(dst);
        const ss = this.segs8[sf >>> SEG_SHIFT]!;
        const ds = this.segs8[df >>> SEG_SHIFT]!;
        const so2 = ((sf & SEG_MASK) << 12) | so;
        const do2 = ((df & SEG_MASK) << 12) | d0;
        if (ss === ds) ds.copyWithin(do2, so2, so2 + n);
        else ds.set(ss.subarray(so2, so2 + n), do2);
      }
      src += n;
      dst += n;
      len -= n;
    }
    if (this.nWatch !== 0) this.notify(start, total);
    return 0;
  }

  /** Fill [pa, pa+len) with `byte`. Filling untouched pages with zero creates nothing. */
  fill(pa: number, len: number, byte: number): number {
    this.stores = (this.stores + 1) | 0;
    if (!this.isRam(pa, len)) {
      return this.mmio.fail(pa, len, true, `fill of ${len} bytes at 0x${pa.toString(16)} not in RAM`);
    }
    const start = pa;
    const total = len;
    const b = byte & 0xff;
    while (len > 0) {
      const po = (pa >>> 0) & 4095;
      const n = Math.min(len, PAGE - po);
      const f = b === 0 ? this.find(pa >>> 0, (pa / TWO32) >>> 0) : this.frameFor(pa);
      if (f >= 0) {
        const o = ((f & SEG_MASK) << 12) | po;
        this.segs8[f >>> SEG_SHIFT]!.fill(b, o, o + n);
      }
      pa += n;
      len -= n;
    }
    if (this.nWatch !== 0) this.notify(start, total);
    return 0;
  }

  // ---------------------------------------------------------------- watchers

  /**
   * Be told of every store that overlaps [base, base+size), after the bytes are in memory.
   * Returns a function that removes the watch.
   */
  watch(base: number, size: number, fn: WriteWatcher): () => void {
    const w: Watch = { base, end: base + size, fn };
    this.watches.push(w);
    this.nWatch = this.watches.length;
    return () => {
      const i = this.watches.indexOf(w);
      if (i >= 0) this.watches.splice(i, 1);
      this.nWatch = this.watches.length;
    };
  }

  private notify(pa: number, size: number): void {
    const end = pa + size;
    // copy: a watcher may add or remove watches
    for (const w of this.watches.slice()) if (pa < w.end && w.base < end) w.fn(pa, size);
  }
}
