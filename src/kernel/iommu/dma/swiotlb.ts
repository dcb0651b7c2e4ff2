/**
 * SWIOTLB (kernel/dma/swiotlb.c): a pool of low memory carved into 2 KiB slots. A device that
 * cannot reach a buffer (DMA mask, bus limit, or forced bouncing) gets a bounce slot instead;
 * the data is copied at map (always, CPU -> slot, so no stale data leaks to the device), at
 * unmap (slot -> CPU for FROM_DEVICE/BIDIRECTIONAL) and at the syncs.
 */

import type { Machine } from '../../../platform/machine.ts';
import { MEM_SWIOTLB } from '../../../platform/sanitizer.ts';
import type { DmaDirection } from './types.ts';

export const IO_TLB_SHIFT = 11;
export const IO_TLB_SIZE = 1 << IO_TLB_SHIFT;

export class Swiotlb {
  readonly start: number;
  readonly nslabs: number;
  private readonly used: Uint8Array;
  /** Original (CPU) address per slot, and the mapping's slot count in its first slot. */
  private readonly orig: Float64Array;
  private readonly count: Int32Array;
  readonly stats = { maps: 0, bouncesToDevice: 0, bouncesToCpu: 0, bytesCopied: 0, full: 0 };

  constructor(
    private readonly m: Machine,
    bytes = 4 << 20,
  ) {
    const order = Math.max(0, Math.ceil(Math.log2(bytes / 4096)));
    const pa = m.pages.alloc(order, 'swiotlb');
    if (pa < 0) throw new Error('swiotlb: cannot allocate the bounce pool');
    this.start = pa;
    this.nslabs = (4096 << order) >>> IO_TLB_SHIFT;
    this.used = new Uint8Array(this.nslabs);
    this.orig = new Float64Array(this.nslabs);
    this.count = new Int32Array(this.nslabs);
    // the DMA-isolation sanitizer tracks the slots themselves (a slot freed and reused while a
    // device still writes it), not just the pool's pages
    const san = m.mem.sanitizer;
    this.sanPool = san === null ? -1 : san.registerPool(this.start, IO_TLB_SIZE, this.nslabs);
  }

  private readonly sanPool: number;

  get end(): number {
    return this.start + this.nslabs * IO_TLB_SIZE;
  }

  isSwiotlbBuffer(addr: number): boolean {
    return addr >= this.start && addr < this.end;
  }

  /**
   * swiotlb_tbl_map_single: returns the bounce address, or -1 when the pool is full. `owner`
   * (the device's name) is what the DMA-isolation sanitizer expects to write the slot.
   */
  map(orig: number, size: number, owner = ''): number {
    const n = Math.ceil(size / IO_TLB_SIZE);
    // buffers of a page or more start page-aligned, as Linux does
    const stride = size >= 4096 ? 4096 / IO_TLB_SIZE : 1;
    for (let i = 0; i + n <= this.nslabs; i += stride) {
      let free = true;
      for (let k = 0; k < n; k++) {
        if (this.used[i + k] !== 0) {
          free = false;
          break;
        }
      }
      if (!free) continue;
      for (let k = 0; k < n; k++) {
        this.used[i + k] = 1;
        this.orig[i + k] = orig + k * IO_TLB_SIZE;
      }
      this.count[i] = n;
      if (this.sanPool >= 0) this.m.mem.sanitizer!.subAlloc(this.sanPool, i, n, MEM_SWIOTLB, owner);
      const tlb = this.start + i * IO_TLB_SIZE;
      this.stats.maps++;
      this.copy(tlb, orig, size, true);
      return tlb;
    }
    this.stats.full++;
    return -1;
  }

  /** swiotlb_tbl_unmap_single. */
  unmap(tlb: number, size: number, dir: DmaDirection): void {
    const i = Math.floor((tlb - this.start) / IO_TLB_SIZE);
    if (dir === 'from-device' || dir === 'bidirectional') this.copy(this.orig[i]!, tlb, size, false);
    const n = this.count[i]!;
    for (let k = 0; k < n; k++) this.used[i + k] = 0;
    this.count[i] = 0;
    if (this.sanPool >= 0) this.m.mem.sanitizer!.subFree(this.sanPool, i, n);
  }

  syncForCpu(tlb: number, size: number, dir: DmaDirection): void {
    const i = Math.floor((tlb - this.start) / IO_TLB_SIZE);
    if (dir === 'from-device' || dir === 'bidirectional')
      this.copy(this.orig[i]! + ((tlb - this.start) % IO_TLB_SIZE), tlb, size, false);
  }

  syncForDevice(tlb: number, size: number, dir: DmaDirection): void {
    const i = Math.floor((tlb - this.start) / IO_TLB_SIZE);
    if (dir === 'to-device' || dir === 'bidirectional')
      this.copy(tlb, this.orig[i]! + ((tlb - this.start) % IO_TLB_SIZE), size, true);
  }

  /** Slots in use. */
  get inUse(): number {
    let n = 0;
    for (let i = 0; i < this.nslabs; i++) n += this.used[i]!;
    return n;
  }

  private copy(dst: number, src: number, size: number, toDevice: boolean): void {
    this.m.mem.copy(dst, src, size);
    this.stats.bytesCopied += size;
    if (toDevice) this.stats.bouncesToDevice++;
    else this.stats.bouncesToCpu++;
  }
}
