/**
 * The io-pgtable interface (drivers/iommu/io-pgtable.h): page-table formats that IOMMU drivers
 * share. A driver describes what its hardware supports in an IoPgtableCfg, allocates a table of
 * a format, programs the resulting TTBR/TCR (or VTTBR/VTCR) into its hardware, and from then on
 * maps and unmaps through IoPgtableOps. The format calls back into the driver (IommuFlushOps)
 * for the TLB maintenance each change needs.
 *
 * Tables are bytes in simulated physical memory, allocated from the kernel page allocator, so the
 * hardware model walks exactly what software wrote.
 */

import type { Machine } from '../../../platform/machine.ts';
import type { PhysicalMemory } from '../../../platform/memory.ts';
import type { PageAllocator } from '../../../platform/page-alloc.ts';
import type { IommuIotlbGather } from '../iotlb-gather.ts';

/**
 * The formats (enum io_pgtable_fmt): ARM_64_LPAE_S1/S2, and ARM_32_LPAE_S1/S2 — the same
 * long-descriptor tables for AArch32 contexts (SMMUv1 MMU-400/401 banks, VA64 = 0), limited to a
 * 32-bit stage-1 input, a 40-bit output and the 4K granule.
 */
export type IoPgtableFmt = 'arm-64-lpae-s1' | 'arm-64-lpae-s2' | 'arm-32-lpae-s1' | 'arm-32-lpae-s2';

/** True for the stage-1 formats. */
export function ioPgtableIsS1(fmt: IoPgtableFmt): boolean {
  return fmt === 'arm-64-lpae-s1' || fmt === 'arm-32-lpae-s1';
}

/** Quirks (IO_PGTABLE_QUIRK_*). */
export const IO_PGTABLE_QUIRK_ARM_NS = 1 << 0;
/**
 * ARM_64_LPAE_S1 only: the table is for the upper half of the address space (TTBR1). Its IOVAs
 * are the sign-extended 64-bit addresses whose bits ias..63 are all ones; the model represents
 * each as the negative Number with the same two's-complement value (exact: |iova| <= 2^ias <= 2^52),
 * e.g. 0xffff_ffff_0000_0000 is -2^32 and the lowest, 0xffff_0000_0000_0000 with a 48-bit ias,
 * is -2^48. map/unmap/iova_to_phys take those negative IOVAs and refuse any other (Linux's iaext
 * check). The TCR it produces is for the TTBR1 half: TG in the TG1 encoding, tsz is T1SZ, EPD0 set.
 */
export const IO_PGTABLE_QUIRK_ARM_TTBR1 = 1 << 5;
export const IO_PGTABLE_QUIRK_ARM_OUTER_WBWA = 1 << 6;
/** Stage 1 with hardware dirty-bit management: writable leaves get DBM. */
export const IO_PGTABLE_QUIRK_ARM_HD = 1 << 7;
/** Stage 2 with forced write-back (FWB): cacheable leaves use MemAttr 0b0110. */
export const IO_PGTABLE_QUIRK_ARM_S2FWB = 1 << 8;
/** Expected failures (overlapping maps, unmapping holes) are not warned about: the self-test sets it. */
export const IO_PGTABLE_QUIRK_NO_WARN = 1 << 9;

/** struct iommu_flush_ops: TLB maintenance the format asks its driver for. */
export interface IommuFlushOps {
  /** Invalidate everything of this context. */
  tlbFlushAll(cookie: unknown): void;
  /** A table was removed: invalidate leaves and cached walks for [iova, iova+size) in `granule` steps. */
  tlbFlushWalk(iova: number, size: number, granule: number, cookie: unknown): void;
  /** A leaf was removed: queue its invalidation into `gather` (synced later by iotlb_sync). */
  tlbAddPage?(gather: IommuIotlbGather, iova: number, granule: number, cookie: unknown): void;
}

/** Stage-1 translation control (the fields an SMMU CD or a CPU TCR takes). */
export interface ArmLpaeTcr {
  /** IPS/PS: output size encoding (32→0, 36→1, 40→2, 42→3, 44→4, 48→5, 52→6). */
  ips: number;
  /** TG0 encoding: 4K→0, 64K→1, 16K→2 (with IO_PGTABLE_QUIRK_ARM_TTBR1 the TG1 one: 4K→2, 16K→1, 64K→3). */
  tg: number;
  sh: number;
  orgn: number;
  irgn: number;
  /** T0SZ = 64 - ias (T1SZ with IO_PGTABLE_QUIRK_ARM_TTBR1). */
  tsz: number;
  /**
   * IO_PGTABLE_QUIRK_ARM_TTBR1: the table is for TTBR1 and walks through TTBR0 are disabled
   * (EPD0); what arm_smmu_lpae_tcr makes of the quirk. Absent otherwise.
   */
  epd0?: boolean;
}

/** Stage-2 translation control (the VTCR fields an SMMU STE takes). */
export interface ArmLpaeVtcr {
  ps: number;
  tg: number;
  sh: number;
  orgn: number;
  irgn: number;
  /** SL0, encoded per granule (4K uses a different encoding). */
  sl: number;
  tsz: number;
}

export interface IoPgtableCfg {
  quirks: number;
  /** Supported page sizes, as a sum of powers of two (may exceed 32 bits: 4 TiB = 2^42). */
  pgsizeBitmap: number;
  /** Input address size in bits. */
  ias: number;
  /** Output address size in bits. */
  oas: number;
  /** The walker snoops CPU caches (the only mode modelled: no cache maintenance is needed). */
  coherentWalk: boolean;
  tlb: IommuFlushOps | null;
  /**
   * Not Linux: also free a table as soon as an unmap leaves it empty (Linux frees tables only when
   * a covering unmap or a block map removes them, or at free time). Off by default.
   */
  freeEmptyTables?: boolean;
  // ---- outputs, filled in by the allocator
  armLpaeS1Cfg?: { ttbr: number; tcr: ArmLpaeTcr; mair: number };
  armLpaeS2Cfg?: { vttbr: number; vtcr: ArmLpaeVtcr };
}

/** What a format needs from the machine: memory, the page allocator and the WARN machinery. */
export interface IoPgtableEnv {
  readonly mem: PhysicalMemory;
  readonly pages: PageAllocator;
  /** WARN()/WARN_ONCE(): `onceKey` makes it once per machine. */
  warn(message: string, onceKey?: string): void;
}

const warnedOnce = new WeakMap<Machine, Set<string>>();

export function machinePgtableEnv(m: Machine): IoPgtableEnv {
  return {
    mem: m.mem,
    pages: m.pages,
    warn(message: string, onceKey?: string): void {
      if (onceKey !== undefined) {
        let s = warnedOnce.get(m);
        if (s === undefined) warnedOnce.set(m, (s = new Set()));
        if (s.has(onceKey)) return;
        s.add(onceKey);
      }
      m.reportBug('warn', `WARNING: ${message}`);
    },
  };
}

/**
 * struct io_pgtable_ops. Sizes and addresses are Numbers (< 2^53). IOVAs are in [0, 2^ias), or
 * with IO_PGTABLE_QUIRK_ARM_TTBR1 negative, in [-2^ias, 0): the two's-complement values of the
 * sign-extended upper-half addresses (0xffff_ffff_0000_0000 is -2^32).
 */
export interface IoPgtableOps {
  readonly fmt: IoPgtableFmt;
  readonly cfg: IoPgtableCfg;
  /**
   * Map `pgcount` pages of `pgsize` from iova to paddr. Maps as many as fit in one table and
   * returns the bytes mapped (> 0), or -errno with nothing mapped. The caller loops.
   */
  mapPages(iova: number, paddr: number, pgsize: number, pgcount: number, prot: number): number;
  /** Unmap up to `pgcount` pages of `pgsize`; returns the bytes unmapped (0 on failure). */
  unmapPages(iova: number, pgsize: number, pgcount: number, gather: IommuIotlbGather | null): number;
  /** The physical address `iova` translates to, or 0 when unmapped. */
  iovaToPhys(iova: number): number;
  /** free_io_pgtable_ops: free every table page (the caller has made the hardware stop using them). */
  free(): void;
}

/** True if `size` is one of the sizes in `bitmap` (sizes may exceed 2^32, so no bitwise ops). */
export function pgsizeHas(bitmap: number, size: number): boolean {
  return size > 0 && Math.floor(bitmap / size) % 2 === 1 && 2 ** Math.round(Math.log2(size)) === size;
}

const pgsizesCache = new Map<number, readonly number[]>();

/** The page sizes of a bitmap, ascending (memoised: callers must not modify the array). */
export function pgsizes(bitmap: number): readonly number[] {
  let out = pgsizesCache.get(bitmap);
  if (out === undefined) {
    const list: number[] = [];
    for (let b = 0; b < 53; b++) if (Math.floor(bitmap / 2 ** b) % 2 === 1) list.push(2 ** b);
    out = Object.freeze(list);
    if (pgsizesCache.size < 64) pgsizesCache.set(bitmap, out);
  }
  return out;
}
