/**
 * Arm LPAE (VMSAv8-64) page tables, stage 1 and stage 2, written by software the way Linux's
 * drivers/iommu/io-pgtable-arm.c writes them: 4K/16K/64K granules, IAS/OAS up to 48 bits (52 with
 * 64K), block mappings, concatenated stage-2 start tables where the architecture requires them,
 * and the current rules:
 *  - map_pages refuses an existing leaf (-EEXIST), replaces an existing *table* by a block after
 *    freeing it, and refuses a request with neither READ nor WRITE (-EINVAL);
 *  - unmap must name a leaf size present at that level; unmapping part of a larger block is
 *    refused with WARN_ONCE("Unmap of a partial large IOPTE is not allowed") and unmaps nothing
 *    (block splitting was removed from Linux);
 *  - a table entry removed by an unmap of its whole range is cleared, its walks flushed
 *    (tlb_flush_walk) and the table pages freed.
 *
 * Speed: the IOVA is split once into int32 halves, per-level shifts/masks are precomputed,
 * descriptors are read and written as halves through PhysicalMemory.read64/write64, and nothing
 * is allocated per page. A software walk cache remembers last-level tables by IOVA prefix, so a
 * single-page map or unmap into a known table reads no upper-level descriptor; that case stores
 * the PTE straight into the table's RAM frame (when memory is unwatched) in a function small
 * enough for the caller's compiler to inline. Results are the same on every path (tests compare
 * the descriptors against a reference).
 */

import { directFrameId, frameWordIndex, type PhysicalMemory } from '../../../platform/memory.ts';
import { hexAddr } from '../../../platform/u64.ts';
import { SZ_1G, SZ_2M, SZ_4K, SZ_4T, SZ_16K, SZ_32M, SZ_64K, SZ_512M } from '../../lib/sizes.ts';
import { EEXIST, EINVAL, ENOMEM, ERANGE } from '../errno.ts';
import type { IommuIotlbGather } from '../iotlb-gather.ts';
import { IOMMU_CACHE, IOMMU_MMIO, IOMMU_NOEXEC, IOMMU_PRIV, IOMMU_READ, IOMMU_WRITE } from '../prot.ts';
import {
  ARM_LPAE_MAIR,
  ARM_LPAE_S2_MAX_CONCAT_PAGES,
  MAIR_ATTR_IDX_CACHE,
  MAIR_ATTR_IDX_DEV,
  PTE_AF_LO,
  PTE_AP_RDONLY_LO,
  PTE_AP_UNPRIV_LO,
  PTE_ATTRINDX_SHIFT,
  PTE_DBM_HI,
  PTE_HAP_READ_LO,
  PTE_HAP_WRITE_LO,
  PTE_MEMATTR_DEV_LO,
  PTE_MEMATTR_FWB_WB_LO,
  PTE_MEMATTR_NC_LO,
  PTE_MEMATTR_OIWB_LO,
  PTE_NG_LO,
  PTE_NS_LO,
  PTE_NSTABLE_HI,
  PTE_SH_IS_LO,
  PTE_SH_OS_LO,
  PTE_TYPE_BLOCK,
  PTE_TYPE_PAGE,
  PTE_TYPE_TABLE,
  PTE_XN_HI,
  TCR_RGN_NC,
  TCR_RGN_WBWA,
  TCR_SH_IS,
  TCR_SH_OS,
  TCR_TG0_4K,
  TCR_TG0_16K,
  TCR_TG0_64K,
  TCR_TG1_4K,
  TCR_TG1_16K,
  TCR_TG1_64K,
  tcrPsForOas,
} from './arm-lpae-defs.ts';
import {
  IO_PGTABLE_QUIRK_ARM_HD,
  IO_PGTABLE_QUIRK_ARM_NS,
  IO_PGTABLE_QUIRK_ARM_OUTER_WBWA,
  IO_PGTABLE_QUIRK_ARM_S2FWB,
  IO_PGTABLE_QUIRK_ARM_TTBR1,
  IO_PGTABLE_QUIRK_NO_WARN,
  type IoPgtableCfg,
  type IoPgtableEnv,
  type IoPgtableFmt,
  type IoPgtableOps,
  ioPgtableIsS1,
} from './io-pgtable.ts';

const MAX_LEVELS = 4;

/** Most slots the software walk cache grows to (3 MiB of host memory). */
const WC_MAX = 1 << 18;

// Module-local constants for the single-page paths: an imported binding is read (and checked for
// initialisation) at every use in optimised code; a local const is folded in (and x / 2^32 then
// becomes a multiplication)
const TWO32 = 4294967296;
const TYPE_PAGE = PTE_TYPE_PAGE;

/** The leaf descriptor an address resolves to (for inspection and tests). */
export interface LpaeLeaf {
  level: number;
  /** Descriptor halves. */
  lo: number;
  hi: number;
  /** Physical address of the descriptor. */
  ptep: number;
  /** Output address of the whole leaf. */
  pa: number;
  size: number;
}

/** bitmap & mask for page-size bitmaps that may exceed 32 bits. */
function pgsizeAnd(bitmap: number, mask: number): number {
  let out = 0;
  for (let b = 0; b < 53; b++) {
    const s = 2 ** b;
    if (Math.floor(bitmap / s) % 2 === 1 && Math.floor(mask / s) % 2 === 1) out += s;
  }
  return out;
}

/** arm_lpae_restrict_pgsizes: keep the sizes of one granule (the kernel's own PAGE_SIZE is 4K). */
function restrictPgsizes(cfg: IoPgtableCfg): void {
  const bm = cfg.pgsizeBitmap;
  const has = (s: number) => Math.floor(bm / s) % 2 === 1;
  let granule = 0;
  if (has(SZ_4K)) granule = SZ_4K;
  else if (bm % SZ_4K !== 0) {
    // sizes below PAGE_SIZE: the largest of them
    for (let s = SZ_4K / 2; s >= 1; s /= 2)
      if (has(s)) {
        granule = s;
        break;
      }
  } else {
    for (let s = SZ_4K * 2; s <= 2 ** 52; s *= 2)
      if (has(s)) {
        granule = s;
        break;
      }
  }
  let sizes = 0;
  let maxAddrBits = 48;
  switch (granule) {
    case SZ_4K:
      sizes = SZ_4K + SZ_2M + SZ_1G;
      break;
    case SZ_16K:
      sizes = SZ_16K + SZ_32M;
      break;
    case SZ_64K:
      maxAddrBits = 52;
      sizes = SZ_64K + SZ_512M;
      if (cfg.oas > 48) sizes += SZ_4T;
      break;
    default:
      sizes = 0;
  }
  let out = 0;
  for (const s of [SZ_4K, SZ_2M, SZ_1G, SZ_16K, SZ_32M, SZ_64K, SZ_512M, SZ_4T]) {
    if (has(s) && Math.floor(sizes / s) % 2 === 1) out += s;
  }
  cfg.pgsizeBitmap = out;
  cfg.ias = Math.min(cfg.ias, maxAddrBits);
  cfg.oas = Math.min(cfg.oas, maxAddrBits);
}

export class ArmLpaeIoPgtable implements IoPgtableOps {
  readonly fmt: IoPgtableFmt;
  readonly cfg: IoPgtableCfg;
  readonly cookie: unknown;
  /** log2 of the granule. */
  readonly pgShift: number;
  readonly granule: number;
  readonly bitsPerLevel: number;
  /** Level of the first table walked (0..3). */
  startLevel: number;
  /** Index bits of the start-level table (more than bitsPerLevel with S2 concatenation). */
  pgdBits: number;
  /** Physical address of the start-level table. */
  pgd = 0;
  /** Bytes of the start-level table. */
  pgdSize = 0;
  /** 4K pages holding the start-level table. */
  pgdPages = 0;
  /** Table pages currently allocated, including the pgd. */
  tablePages = 0;
  /** Partial-block unmaps refused (each also WARNs once). */
  partialUnmapRefused = 0;

  private readonly env: IoPgtableEnv;
  private readonly mem: PhysicalMemory;
  private readonly lvlShift = new Int32Array(MAX_LEVELS);
  private readonly lvlMask = new Int32Array(MAX_LEVELS);
  private readonly blockSize = new Float64Array(MAX_LEVELS);
  private readonly ptesPerTable: number;
  private readonly tableOrder: number;
  private readonly pa52: boolean;
  private readonly iasLimit: number;
  /**
   * The lowest IOVA: 0, or -2^ias for a TTBR1 table (IO_PGTABLE_QUIRK_ARM_TTBR1). Internally
   * every walk works on `iova - iaBase`, the address's low ias bits, so the upper-half IOVAs
   * (negative Numbers) index the tables as their 64-bit forms do; TLB maintenance is asked for
   * with the caller's IOVA.
   */
  private readonly iaBase: number;
  private readonly oasLimit: number;
  private readonly s1: boolean;
  private readonly noWarn: boolean;
  // map_pages' pgsize check, cached for the common case of one size used repeatedly
  private okPgsize = -1;
  private lastProt = -1;
  private lastProtLo = 0;
  private lastProtHi = 0;
  // parents on the current unmap path (freeEmptyTables)
  private readonly pathTable = new Float64Array(MAX_LEVELS);
  private readonly pathPtep = new Float64Array(MAX_LEVELS);
  /**
   * Software walk cache: last-level table addresses by IOVA prefix (two-way set-associative, kept
   * at two slots per last-level table up to WC_MAX, so few prefixes collide). It only skips
   * re-reading upper-level descriptors while nothing but this object has written memory since it
   * read them: PhysicalMemory.storeCount tells it whether anyone else stored anything (a device's
   * DMA, another table's update, a test), and if so every entry is read from memory again before
   * it is used (a new epoch). Freed tables are dropped from it. The bytes in memory stay the truth.
   * Slot k at [4k, 4k + 3]: prefix tag, table frame number (PA / 4 KiB) or -1, and the epoch in
   * which the entry was read from memory; sets of two slots, one cache line.
   */
  private wc = new Int32Array(8).fill(-1);
  /** Walk-cache epoch: advances whenever memory was stored to by anyone but this object. */
  private wcEpoch = 0;
  /** memory.storeCount after this object's last operation. */
  private wcSeen = 0;
  private wcShiftBits = 31;
  /** Page size the inline map/unmap paths take: the granule when the walk cache is on, else -1. */
  private fastPgsize = -1;
  /** Shift of a last-level table's span (walk-cache prefix) and index mask of a last-level table. */
  private wcShift = 0;
  private leafMask = 0;
  private readonly wcOn: boolean;
  private leafTables = 0;

  private constructor(fmt: IoPgtableFmt, cfg: IoPgtableCfg, cookie: unknown, env: IoPgtableEnv) {
    this.fmt = fmt;
    this.cfg = cfg;
    this.cookie = cookie;
    this.env = env;
    this.mem = env.mem;
    this.s1 = ioPgtableIsS1(fmt);
    this.noWarn = (cfg.quirks & IO_PGTABLE_QUIRK_NO_WARN) !== 0;
    let shift = 0;
    while (Math.floor(cfg.pgsizeBitmap / 2 ** shift) % 2 === 0) shift++;
    this.pgShift = shift;
    this.granule = 2 ** shift;
    this.bitsPerLevel = shift - 3;
    const vaBits = cfg.ias - shift;
    const levels = Math.ceil(vaBits / this.bitsPerLevel);
    this.startLevel = MAX_LEVELS - levels;
    this.pgdBits = vaBits - this.bitsPerLevel * (levels - 1);
    this.ptesPerTable = this.granule / 8;
    this.tableOrder = shift - 12;
    this.pa52 = this.granule === SZ_64K;
    this.iasLimit = 2 ** cfg.ias;
    this.iaBase = cfg.quirks & IO_PGTABLE_QUIRK_ARM_TTBR1 ? -this.iasLimit : 0;
    this.oasLimit = 2 ** cfg.oas;
    for (let l = 0; l < MAX_LEVELS; l++) {
      this.lvlShift[l] = (MAX_LEVELS - l) * this.bitsPerLevel + 3;
      this.blockSize[l] = 2 ** this.lvlShift[l]!;
    }
    this.wcOn = cfg.freeEmptyTables !== true;
    this.setMasks();
  }

  private setMasks(): void {
    for (let l = 0; l < MAX_LEVELS; l++) {
      const bits = l === this.startLevel ? this.pgdBits : this.bitsPerLevel;
      this.lvlMask[l] = bits >= 31 ? 0x7fffffff : (1 << bits) - 1;
    }
    this.wcShift = this.lvlShift[MAX_LEVELS - 2]!;
    this.leafMask = this.lvlMask[MAX_LEVELS - 1]!;
    this.fastPgsize = this.wcOn && this.startLevel < MAX_LEVELS - 1 ? this.granule : -1;
  }

  /**
   * alloc_io_pgtable_ops(ARM_64_LPAE_S1/S2, cfg, cookie): returns null (as Linux) when the
   * configuration is unsupported or memory runs out. `cfg` is adjusted (page sizes, clamped
   * sizes) and receives the TTBR/TCR/MAIR or VTTBR/VTCR to program.
   */
  static alloc(
    fmt: IoPgtableFmt,
    cfg: IoPgtableCfg,
    cookie: unknown,
    env: IoPgtableEnv,
  ): ArmLpaeIoPgtable | null {
    const s1 = ioPgtableIsS1(fmt);
    // arm_32_lpae_alloc_pgtable_s1/s2: the 64-bit format within AArch32's limits, 4K granule only
    if (fmt === 'arm-32-lpae-s1' || fmt === 'arm-32-lpae-s2') {
      if (cfg.ias > (s1 ? 32 : 40) || cfg.oas > 40) return null;
      cfg.pgsizeBitmap = pgsizeAnd(cfg.pgsizeBitmap, SZ_4K + SZ_2M + SZ_1G);
    }
    // arm_64_lpae_alloc_pgtable_s1 takes IO_PGTABLE_QUIRK_ARM_TTBR1; the 32-bit format does not
    const allowed = s1
      ? (fmt === 'arm-64-lpae-s1' ? IO_PGTABLE_QUIRK_ARM_TTBR1 : 0) |
        IO_PGTABLE_QUIRK_ARM_NS |
        IO_PGTABLE_QUIRK_ARM_OUTER_WBWA |
        IO_PGTABLE_QUIRK_ARM_HD |
        IO_PGTABLE_QUIRK_NO_WARN
      : IO_PGTABLE_QUIRK_ARM_S2FWB | IO_PGTABLE_QUIRK_NO_WARN;
    if (cfg.quirks & ~allowed) return null;
    // arm_lpae_alloc_pgtable
    const has = (sz: number) => Math.floor(cfg.pgsizeBitmap / sz) % 2 === 1;
    if (!has(SZ_4K) && !has(SZ_16K) && !has(SZ_64K)) return null;
    if (cfg.ias > 52 || cfg.oas > 52 || cfg.ias < 16 || cfg.oas < 16) return null;
    restrictPgsizes(cfg);
    if (cfg.pgsizeBitmap === 0) return null;
    const ps = tcrPsForOas(cfg.oas);
    if (ps < 0) return null;
    const d = new ArmLpaeIoPgtable(fmt, cfg, cookie, env);
    if (!s1 && d.concatMandatory()) {
      if (2 ** d.pgdBits > ARM_LPAE_S2_MAX_CONCAT_PAGES) return null; // WARN_ON in Linux
      d.pgdBits += d.bitsPerLevel;
      d.startLevel++;
      d.setMasks();
    }
    d.pgdSize = 8 * 2 ** d.pgdBits;
    const pgdOrder = Math.max(0, Math.ceil(Math.log2(d.pgdSize)) - 12);
    const pgd = env.pages.alloc(pgdOrder, 'io-pgtable');
    if (pgd < 0) return null;
    d.pgd = pgd;
    d.pgdPages = 2 ** pgdOrder;
    d.tablePages += d.pgdPages;
    const ttbr1 = (cfg.quirks & IO_PGTABLE_QUIRK_ARM_TTBR1) !== 0;
    // a TTBR1 table's granule goes in TG1, whose encoding differs
    const tg = ttbr1
      ? d.granule === SZ_4K
        ? TCR_TG1_4K
        : d.granule === SZ_16K
          ? TCR_TG1_16K
          : TCR_TG1_64K
      : d.granule === SZ_4K
        ? TCR_TG0_4K
        : d.granule === SZ_16K
          ? TCR_TG0_16K
          : TCR_TG0_64K;
    const coherent = cfg.coherentWalk;
    if (s1) {
      const outer =
        cfg.quirks & IO_PGTABLE_QUIRK_ARM_OUTER_WBWA ? TCR_RGN_WBWA : coherent ? TCR_RGN_WBWA : TCR_RGN_NC;
      cfg.armLpaeS1Cfg = {
        ttbr: pgd,
        tcr: {
          ips: ps,
          tg,
          sh: coherent ? TCR_SH_IS : TCR_SH_OS,
          irgn: coherent ? TCR_RGN_WBWA : TCR_RGN_NC,
          orgn: outer,
          tsz: 64 - cfg.ias,
          ...(ttbr1 ? { epd0: true } : {}),
        },
        mair: ARM_LPAE_MAIR,
      };
    } else {
      // SL0: 4K counts from level 2 down (2,1,0 = start level 0,1,2), 16K/64K from level 3
      const sl = d.granule === SZ_4K ? d.startLevel + 1 : d.startLevel;
      cfg.armLpaeS2Cfg = {
        vttbr: pgd,
        vtcr: {
          ps,
          tg,
          sh: coherent ? TCR_SH_IS : TCR_SH_OS,
          irgn: coherent ? TCR_RGN_WBWA : TCR_RGN_NC,
          orgn: coherent ? TCR_RGN_WBWA : TCR_RGN_NC,
          sl: ~sl & 3,
          tsz: 64 - cfg.ias,
        },
      };
    }
    return d;
  }

  /** arm_lpae_concat_mandatory (Arm DDI0487 K.a, D8.2.x: where concatenation is required). */
  private concatMandatory(): boolean {
    const { ias, oas } = this.cfg;
    if (this.granule === SZ_16K && this.startLevel === 0) return oas === 48 || ias === 48;
    if (this.granule === SZ_4K && this.startLevel === 0) return oas === 40 || oas === 42;
    if (this.granule === SZ_16K && this.startLevel === 1) return oas === 40;
    return false;
  }

  /** Leaf size at `level` (2^shift). */
  levelBlockSize(level: number): number {
    return this.blockSize[level]!;
  }

  // ------------------------------------------------------------------ descriptors

  private pteToPaddr(lo: number, hi: number): number {
    if (!this.pa52) return (hi & 0xffff) * TWO32 + ((lo & 0xfffff000) >>> 0);
    // 64K granule: PA[51:48] are folded into descriptor bits 15:12
    return ((hi & 0xffff) | (((lo >>> 12) & 0xf) << 16)) * TWO32 + ((lo & 0xffff0000) >>> 0);
  }

  private isLeaf(lo: number, lvl: number): boolean {
    return lvl === MAX_LEVELS - 1 ? (lo & 3) === PTE_TYPE_PAGE : (lo & 3) === PTE_TYPE_BLOCK;
  }

  /** arm_lpae_prot_to_pte, low half. */
  protLo(prot: number): number {
    const q = this.cfg.quirks;
    let lo: number;
    if (this.s1) {
      lo = PTE_NG_LO;
      if (!(prot & IOMMU_WRITE) && prot & IOMMU_READ) lo |= PTE_AP_RDONLY_LO;
      if (!(prot & IOMMU_PRIV)) lo |= PTE_AP_UNPRIV_LO;
      if (prot & IOMMU_MMIO) lo |= MAIR_ATTR_IDX_DEV << PTE_ATTRINDX_SHIFT;
      else if (prot & IOMMU_CACHE) lo |= MAIR_ATTR_IDX_CACHE << PTE_ATTRINDX_SHIFT;
    } else {
      lo = 0;
      if (prot & IOMMU_READ) lo |= PTE_HAP_READ_LO;
      if (prot & IOMMU_WRITE) lo |= PTE_HAP_WRITE_LO;
      if (prot & IOMMU_MMIO) lo |= PTE_MEMATTR_DEV_LO;
      else if (prot & IOMMU_CACHE)
        lo |= q & IO_PGTABLE_QUIRK_ARM_S2FWB ? PTE_MEMATTR_FWB_WB_LO : PTE_MEMATTR_OIWB_LO;
      else lo |= PTE_MEMATTR_NC_LO;
    }
    lo |= prot & IOMMU_CACHE ? PTE_SH_IS_LO : PTE_SH_OS_LO;
    if (q & IO_PGTABLE_QUIRK_ARM_NS) lo |= PTE_NS_LO;
    return lo | PTE_AF_LO;
  }

  /** arm_lpae_prot_to_pte, high half. */
  protHi(prot: number): number {
    let hi = 0;
    if (
      this.s1 &&
      (prot & IOMMU_WRITE || !(prot & IOMMU_READ)) &&
      this.cfg.quirks & IO_PGTABLE_QUIRK_ARM_HD
    ) {
      hi |= PTE_DBM_HI;
    }
    if (prot & IOMMU_NOEXEC) hi |= PTE_XN_HI;
    return hi;
  }

  /** First slot of the two-slot set of the last-level table prefix `pfx` in the walk cache. */
  private wcSlot(pfx: number): number {
    return (Math.imul(pfx, 0x9e3779b1) >>> this.wcShiftBits) & ~1;
  }

  /** Start of an operation: a store by anyone else since the last one begins a new epoch. */
  private wcSync(): void {
    const now = this.mem.storeCount;
    if (now !== this.wcSeen) {
      this.wcSeen = now;
      // epochs stay non-negative (a stale check uses -1); when they wrap, nothing old may match
      this.wcEpoch = (this.wcEpoch + 1) & 0x3fffffff;
      if (this.wcEpoch === 0) this.wcClearAll();
    }
  }

  /** End of an operation: the stores made since wcSync were this object's own. */
  private wcDone(): void {
    this.wcSeen = this.mem.storeCount;
  }

  /** The walk-cache slot holding prefix `pfx`, read from memory in this epoch, or -1 (after wcSync). */
  private wcFind(pfx: number): number {
    const e = this.wcSlot(pfx) << 2;
    const wc = this.wc;
    const ep = this.wcEpoch;
    if (wc[e] === pfx && wc[e + 1]! >= 0 && wc[e + 2] === ep) return e >> 2;
    if (wc[e + 4] === pfx && wc[e + 5]! >= 0 && wc[e + 6] === ep) return (e >> 2) + 1;
    return -1;
  }

  /**
   * Remember last-level table frame `fr` (PA / 4 KiB: a small integer, so no Number is boxed)
   * for prefix `pfx`, as read from memory in this epoch.
   */
  private wcInsert(pfx: number, fr: number): void {
    if (!(fr < 2 ** 31)) return; // tables above 8 TiB are not cached
    if (this.wc.length < 8 * this.leafTables && this.wc.length < 4 * WC_MAX) this.wcGrow();
    const wc = this.wc;
    const s0 = this.wcSlot(pfx);
    // the slot already holding pfx, else an empty one, else the one pfx's low bit picks
    let slot = s0 + (pfx & 1);
    if (wc[4 * s0] === pfx) slot = s0;
    else if (wc[4 * s0 + 4] === pfx) slot = s0 + 1;
    else if (wc[4 * s0 + 1]! < 0) slot = s0;
    else if (wc[4 * s0 + 5]! < 0) slot = s0 + 1;
    wc[4 * slot] = pfx;
    wc[4 * slot + 1] = fr;
    wc[4 * slot + 2] = this.wcEpoch;
  }

  /** Drop prefix `pfx` from the walk cache (its table is being freed). */
  private wcDrop(pfx: number): void {
    const e = this.wcSlot(pfx) << 2;
    if (this.wc[e] === pfx) this.wc[e + 1] = -1;
    if (this.wc[e + 4] === pfx) this.wc[e + 5] = -1;
  }

  private wcGrow(): void {
    let n = Math.max(1024, this.wc.length >> 1);
    while (n < 2 * this.leafTables && n < WC_MAX) n *= 2;
    this.wc = new Int32Array(4 * n).fill(-1);
    this.wcShiftBits = 32 - Math.log2(n);
  }

  private wcClearAll(): void {
    this.wc.fill(-1);
  }

  /**
   * Frame number (PA / 4 KiB) of the last-level table `iova` resolves to, reading every table
   * descriptor on the way from the start level; -1 if an entry on the way is not a table (or the
   * table lies above 8 TiB).
   */
  private leafTableFrame(iova: number): number {
    const r64 = this.mem.r64;
    const lo = iova >>> 0;
    const hi = (iova / TWO32) >>> 0;
    let table = this.pgd;
    for (let lvl = this.startLevel; lvl < MAX_LEVELS - 1; lvl++) {
      const s = this.lvlShift[lvl]!;
      const idx = (s >= 32 ? hi >>> (s - 32) : (lo >>> s) | (hi << (32 - s))) & this.lvlMask[lvl]!;
      if (this.readDesc(table + idx * 8) !== 0 || (r64[0]! & 3) !== PTE_TYPE_TABLE) return -1;
      table = this.pteToPaddr(r64[0]!, r64[1]!);
    }
    const fr = table / SZ_4K;
    return fr < 2 ** 31 ? fr : -1;
  }

  /** Prefix of `iova` above the span of one last-level table. */
  private wcPrefix(iova: number): number {
    const s = this.wcShift;
    return ((iova >>> 0) >>> s) | (((iova / TWO32) >>> 0) << (32 - s));
  }

  /** An IOVA (given as its offset from iaBase) in hex, as the 64-bit address it stands for. */
  private hexIova(t: number): string {
    return hexAddr(t + this.iaBase);
  }

  private warnUnlessNoWarn(msg: string): void {
    if (!this.noWarn) this.env.warn(`arm-lpae io-pgtable: ${msg}`);
  }

  private allocTable(): number {
    const t = this.env.pages.alloc(this.tableOrder, 'io-pgtable');
    if (t >= 0) this.tablePages += 2 ** this.tableOrder;
    return t;
  }

  private freeTablePages(pa: number, pages: number): void {
    this.env.pages.freePages(pa);
    this.tablePages -= pages;
  }

  // ------------------------------------------------------------------ map

  /**
   * The single-page paths' lookup for `iova`: the walk cache's last-level table (an entry of this
   * epoch, with no store by anyone else since) and the PTE's words, which those paths store
   * straight into (the table's frame existing, in memory's dense window below 4 GiB, memory
   * unwatched). Returns the index of the PTE's low word in mem.lowDenseWords(), or -1 for the
   * slow path. Small enough to inline, so no Number crosses a call.
   */
  private fastPte(iova: number): number {
    // wcPrefix and wcFind written out: as calls they no longer fit the caller's inlining budget
    // (measured: 10 ns a page slower)
    const lo = iova >>> 0;
    const pfx = (lo >>> this.wcShift) | (((iova / TWO32) >>> 0) << (32 - this.wcShift));
    const e = ((Math.imul(pfx, 0x9e3779b1) >>> this.wcShiftBits) & ~1) << 2;
    const wc = this.wc;
    const mem = this.mem;
    // epoch -1 matches nothing: somebody else stored to memory, so the slow path looks again
    const ep = mem.storeCount === this.wcSeen ? this.wcEpoch : -1;
    const fr =
      wc[e] === pfx && wc[e + 2] === ep
        ? wc[e + 1]!
        : wc[e + 4] === pfx && wc[e + 6] === ep
          ? wc[e + 5]!
          : -1;
    // a table below 4 GiB (frame number below 2^20): the PTE's address in int32 arithmetic
    if (fr < 0 || fr >= 0x100000 || mem.watched) return -1;
    const ptep = (fr << 12) | (((lo >>> this.pgShift) & this.leafMask) << 3);
    if (directFrameId(mem.frameIndex(), ptep) < 0) return -1;
    // the window's flat words, not the frame's view: no view to fetch (and keep)
    const i = ((ptep - mem.lowDenseBase) >>> 0) >>> 2;
    return i < mem.lowDenseWords().length ? i : -1;
  }

  /**
   * map_pages. The common case — one granule-sized page into a last-level table the walk cache
   * knows, with the protection of the previous call — is handled here with a direct store into
   * the table's frame (fastPte); everything else, with the same results, in mapPagesSlow.
   */
  mapPages(iova: number, paddr: number, pgsize: number, pgcount: number, prot: number): number {
    // arm_lpae_map_pages' iaext check: within [iaBase, iaBase + 2^ias), as an offset from iaBase
    const t = iova - this.iaBase;
    if (
      pgsize === this.fastPgsize &&
      pgcount === 1 &&
      prot === this.lastProt &&
      t >= 0 &&
      t < this.iasLimit &&
      paddr >= 0 &&
      paddr < this.oasLimit
    ) {
      const i = this.fastPte(t);
      const w = this.mem.lowDenseWords();
      // arm_lpae_init_pte for one page; an existing leaf is refused by the slow path (with its warning)
      if (i >= 0 && (w[i]! & 3) !== TYPE_PAGE) {
        const phi = (paddr / TWO32) >>> 0;
        w[i] = this.lastProtLo | TYPE_PAGE | ((paddr >>> 0) & 0xfffff000) | (((phi >>> 16) & 0xf) << 12);
        w[i + 1] = this.lastProtHi | (phi & 0xffff);
        return pgsize;
      }
    }
    return this.mapPagesSlow(t, paddr, pgsize, pgcount, prot);
  }

  private mapPagesSlow(iova: number, paddr: number, pgsize: number, pgcount: number, prot: number): number {
    this.wcSync();
    const r = this.mapWalk(iova, paddr, pgsize, pgcount, prot);
    this.wcDone();
    return r;
  }

  /** The walk of map_pages; `iova` is the offset from iaBase (as for every private walk). */
  private mapWalk(iova: number, paddr: number, pgsize: number, pgcount: number, prot: number): number {
    if (pgsize !== this.okPgsize) {
      if (
        !(pgsize > 0) ||
        Math.floor(this.cfg.pgsizeBitmap / pgsize) % 2 !== 1 ||
        2 ** Math.round(Math.log2(pgsize)) !== pgsize
      ) {
        this.env.warn(`arm-lpae io-pgtable: map of page size ${pgsize} not supported`);
        return -EINVAL;
      }
      this.okPgsize = pgsize;
    }
    if (!(iova >= 0 && iova < this.iasLimit) || !(paddr >= 0 && paddr < this.oasLimit)) {
      this.env.warn(
        `arm-lpae io-pgtable: map of iova ${this.hexIova(iova)} -> 0x${paddr.toString(16)} out of range`,
      );
      return -ERANGE;
    }
    if (!(prot & (IOMMU_READ | IOMMU_WRITE))) return -EINVAL;
    if (!(pgcount >= 1)) return -EINVAL;
    if (prot !== this.lastProt) {
      this.lastProtLo = this.protLo(prot);
      this.lastProtHi = this.protHi(prot);
      this.lastProt = prot;
    }
    const protLo = this.lastProtLo;
    const protHi = this.lastProtHi;
    const mem = this.mem;
    const r64 = mem.r64;
    const lo = iova >>> 0;
    const hi = (iova / TWO32) >>> 0;
    let table = this.pgd;
    let lvl = this.startLevel;
    let pfx = 0;
    const leafLvl = pgsize === this.fastPgsize; // the walk cache serves this size
    if (leafLvl) {
      pfx = this.wcPrefix(iova);
      const slot = this.wcFind(pfx);
      if (slot >= 0) {
        table = this.wc[4 * slot + 1]! * SZ_4K;
        lvl = MAX_LEVELS - 1;
      }
    }
    for (; ; lvl++) {
      const s = this.lvlShift[lvl]!;
      const idx = (s >= 32 ? hi >>> (s - 32) : (lo >>> s) | (hi << (32 - s))) & this.lvlMask[lvl]!;
      const ptep = table + idx * 8;
      if (pgsize === this.blockSize[lvl])
        return this.initPte(iova, paddr, protLo, protHi, lvl, idx, pgcount, ptep);
      if (lvl >= MAX_LEVELS - 1) {
        this.env.warn('arm-lpae io-pgtable: cannot allocate tables at the final level');
        return -EINVAL;
      }
      if (this.readDesc(ptep) !== 0) return -ERANGE;
      const dlo = r64[0]!;
      const dhi = r64[1]!;
      if (dlo === 0 && dhi === 0) {
        const t = this.allocTable();
        if (t < 0) return -ENOMEM;
        if (lvl === MAX_LEVELS - 2) this.leafTables++;
        // arm_lpae_install_table: the table's zeroes are in memory before the descriptor points at it
        const tlo = ((t >>> 0) & 0xfffff000) | ((((t / TWO32) >>> 16) & 0xf) << 12) | PTE_TYPE_TABLE;
        let thi = (t / TWO32) & 0xffff;
        if (this.cfg.quirks & IO_PGTABLE_QUIRK_ARM_NS) thi |= PTE_NSTABLE_HI;
        mem.write64(ptep, tlo, thi);
        table = t;
        if (leafLvl && lvl === MAX_LEVELS - 2) this.wcInsert(pfx, t / SZ_4K);
      } else if (this.isLeaf(dlo, lvl)) {
        this.warnUnlessNoWarn(`map of ${this.hexIova(iova)}: a block is already mapped there (unmap first)`);
        return -EEXIST;
      } else {
        table = this.pteToPaddr(dlo, dhi);
        if (leafLvl && lvl === MAX_LEVELS - 2) this.wcInsert(pfx, table / SZ_4K);
      }
    }
  }

  /** arm_lpae_init_pte: install up to the end of this table; all-or-nothing. */
  private initPte(
    iova: number,
    paddr: number,
    protLo: number,
    protHi: number,
    lvl: number,
    idx: number,
    pgcount: number,
    ptep: number,
  ): number {
    const mem = this.mem;
    const r64 = mem.r64;
    const per = this.ptesPerTable;
    const max = per - (idx & (per - 1));
    const n = Math.min(pgcount, max);
    const sz = this.blockSize[lvl]!;
    for (let i = 0; i < n; i++) {
      this.readDesc(ptep + i * 8);
      const dlo = r64[0]!;
      if (this.isLeaf(dlo, lvl)) {
        this.warnUnlessNoWarn(`map of ${this.hexIova(iova + i * sz)}: already mapped (unmap first)`);
        return -EEXIST;
      }
      if (lvl < MAX_LEVELS - 1 && (dlo & 3) === PTE_TYPE_TABLE) {
        // a block replaces a table: unmap and free the old table first
        const tableBase = ptep - idx * 8;
        if (this.unmapAt(iova + i * sz, sz, 1, lvl, tableBase, null) !== sz) {
          this.env.warn('arm-lpae io-pgtable: could not free the table a block replaces');
          return -EINVAL;
        }
      }
    }
    const type = lvl === MAX_LEVELS - 1 ? PTE_TYPE_PAGE : PTE_TYPE_BLOCK;
    const lo0 = protLo | type;
    for (let i = 0; i < n; i++) {
      const pa = paddr + i * sz;
      const phi = (pa / TWO32) >>> 0;
      mem.write64(
        ptep + i * 8,
        lo0 | (((pa >>> 0) & 0xfffff000) | (((phi >>> 16) & 0xf) << 12)),
        protHi | (phi & 0xffff),
      );
    }
    return n * sz;
  }

  // ------------------------------------------------------------------ unmap

  /** unmap_pages; one granule-sized page found through the walk cache is handled here (see mapPages). */
  unmapPages(iova: number, pgsize: number, pgcount: number, gather: IommuIotlbGather | null): number {
    const t = iova - this.iaBase;
    if (pgsize === this.fastPgsize && pgcount === 1 && t >= 0 && t < this.iasLimit) {
      const i = this.fastPte(t);
      const w = this.mem.lowDenseWords();
      // __arm_lpae_unmap of one mapped page: clear it, queue its invalidation
      if (i >= 0 && (w[i]! & 3) === TYPE_PAGE) {
        w[i] = 0;
        w[i + 1] = 0;
        if (gather !== null && !gather.queued) {
          const tlb = this.cfg.tlb;
          if (tlb !== null && tlb.tlbAddPage !== undefined) tlb.tlbAddPage(gather, iova, pgsize, this.cookie);
        }
        return pgsize;
      }
    }
    return this.unmapPagesSlow(t, pgsize, pgcount, gather);
  }

  private unmapPagesSlow(
    iova: number,
    pgsize: number,
    pgcount: number,
    gather: IommuIotlbGather | null,
  ): number {
    this.wcSync();
    const r = this.unmapWalk(iova, pgsize, pgcount, gather);
    this.wcDone();
    return r;
  }

  private unmapWalk(iova: number, pgsize: number, pgcount: number, gather: IommuIotlbGather | null): number {
    if (!(pgsize > 0) || Math.floor(this.cfg.pgsizeBitmap / pgsize) % 2 !== 1 || !(pgcount >= 1)) {
      this.env.warn(`arm-lpae io-pgtable: unmap of page size ${pgsize} x ${pgcount} not supported`);
      return 0;
    }
    if (!(iova >= 0 && iova < this.iasLimit)) {
      this.env.warn(`arm-lpae io-pgtable: unmap of iova ${this.hexIova(iova)} out of range`);
      return 0;
    }
    if (pgsize === this.fastPgsize) {
      // start at the last-level table: the walk cache's, once it is known to match memory
      const pfx = this.wcPrefix(iova);
      const slot = this.wcFind(pfx);
      let fr = slot >= 0 ? this.wc[4 * slot + 1]! : -1;
      if (fr < 0) {
        fr = this.leafTableFrame(iova);
        if (fr >= 0) this.wcInsert(pfx, fr);
      }
      if (fr >= 0) {
        return this.unmapAt(iova, pgsize, pgcount, MAX_LEVELS - 1, fr * SZ_4K, gather);
      }
    }
    return this.unmapAt(iova, pgsize, pgcount, this.startLevel, this.pgd, gather);
  }

  /** __arm_lpae_unmap from `lvl`, whose table is at `table`. */
  private unmapAt(
    iova: number,
    size: number,
    pgcount: number,
    lvl: number,
    table: number,
    gather: IommuIotlbGather | null,
  ): number {
    const mem = this.mem;
    const r64 = mem.r64;
    const lo = iova >>> 0;
    const hi = (iova / TWO32) >>> 0;
    const top = lvl;
    for (;;) {
      if (lvl >= MAX_LEVELS) return 0;
      const s = this.lvlShift[lvl]!;
      const idx = (s >= 32 ? hi >>> (s - 32) : (lo >>> s) | (hi << (32 - s))) & this.lvlMask[lvl]!;
      const ptep = table + idx * 8;
      this.pathTable[lvl] = table;
      this.pathPtep[lvl] = ptep;
      if (this.readDesc(ptep) !== 0) return 0;
      let dlo = r64[0]!;
      let dhi = r64[1]!;
      if (dlo === 0 && dhi === 0) {
        this.warnUnlessNoWarn(`unmap of ${this.hexIova(iova)}: nothing mapped`);
        return 0;
      }
      if (size === this.blockSize[lvl]) {
        const per = this.ptesPerTable;
        const max = per - (idx & (per - 1));
        const n = Math.min(pgcount, max);
        let i = 0;
        for (; i < n; i++) {
          if (i > 0) {
            this.readDesc(ptep + i * 8);
            dlo = r64[0]!;
            dhi = r64[1]!;
          }
          if (dlo === 0 && dhi === 0) {
            this.warnUnlessNoWarn(`unmap of ${this.hexIova(iova + i * size)}: nothing mapped`);
            break;
          }
          if (!this.isLeaf(dlo, lvl)) {
            // the range was mapped with smaller pages: drop the whole table
            mem.write64(ptep + i * 8, 0, 0);
            const tlb = this.cfg.tlb;
            if (tlb !== null)
              tlb.tlbFlushWalk(this.iaBase + iova + i * size, size, this.granule, this.cookie);
            this.freePgtable(lvl + 1, this.pteToPaddr(dlo, dhi), iova + i * size);
          }
        }
        for (let j = 0; j < i; j++) mem.write64(ptep + j * 8, 0, 0);
        if (gather !== null && !gather.queued) {
          const tlb = this.cfg.tlb;
          if (tlb !== null && tlb.tlbAddPage !== undefined) {
            for (let j = 0; j < i; j++)
              tlb.tlbAddPage(gather, this.iaBase + iova + j * size, size, this.cookie);
          }
        }
        if (i > 0 && this.cfg.freeEmptyTables === true && lvl > this.startLevel && top === this.startLevel) {
          this.reclaimEmpty(iova, lvl);
        }
        return i * size;
      }
      if (this.isLeaf(dlo, lvl)) {
        this.partialUnmapRefused++;
        this.env.warn(
          'arm-lpae io-pgtable: Unmap of a partial large IOPTE is not allowed',
          'lpae-partial-unmap',
        );
        return 0;
      }
      table = this.pteToPaddr(dlo, dhi);
      lvl++;
    }
  }

  /** freeEmptyTables: free the tables on the path that the unmap left empty, bottom up. */
  private reclaimEmpty(iova: number, lvl: number): void {
    const mem = this.mem;
    const r64 = mem.r64;
    const per = this.ptesPerTable;
    for (let l = lvl; l > this.startLevel; l--) {
      const t = this.pathTable[l]!;
      for (let i = 0; i < per; i++) {
        this.readDesc(t + i * 8);
        if (r64[0] !== 0 || r64[1] !== 0) return;
      }
      const span = this.blockSize[l - 1]!;
      const base = iova - (iova % span);
      mem.write64(this.pathPtep[l - 1]!, 0, 0);
      const tlb = this.cfg.tlb;
      if (tlb !== null) tlb.tlbFlushWalk(this.iaBase + base, span, this.granule, this.cookie);
      if (l === MAX_LEVELS - 1) this.leafTables--;
      this.freeTablePages(t, 2 ** this.tableOrder);
    }
  }

  /** __arm_lpae_free_pgtable: free a table and every table below it. */
  private freePgtable(lvl: number, table: number, iova: number): void {
    if (this.wcOn) {
      if (lvl === MAX_LEVELS - 1) this.wcDrop(this.wcPrefix(iova));
      else this.wcClearAll();
    }
    this.freeTables(lvl, table);
  }

  /**
   * read64 of a descriptor into mem.r64 (0, or BUS_ERROR), small enough to inline into the walk
   * loops: a table below 4 GiB in an existing frame is read in place, anything else by read64.
   */
  private readDesc(pa: number): number {
    const mem = this.mem;
    // the dense window's words below 4 GiB: one load, no frame lookup (see lowDenseWords)
    const W = mem.lowDenseWords();
    const i = pa < TWO32 ? ((pa - (mem.lowDenseBase >>> 0)) >>> 0) >>> 2 : W.length;
    if (i < W.length) {
      mem.r64[0] = W[i]!;
      mem.r64[1] = W[i + 1]!;
      return 0;
    }
    const f = pa < TWO32 ? directFrameId(mem.frameIndex(), pa) : -1;
    if (f < 0) return mem.read64(pa);
    const w = mem.frameWords(f);
    const j = frameWordIndex(f, pa);
    mem.r64[0] = w[j]!;
    mem.r64[1] = w[j + 1]!;
    return 0;
  }

  /**
   * Index of the first descriptor of `table` at or after i that is not zero (n if none). Frames
   * below 4 GiB are scanned word by word in place (freeing only reads, so they stay put); a
   * table page that was never written is all zeroes; anything else is left to read64.
   */
  private nextUsed(table: number, i: number, n: number): number {
    const mem = this.mem;
    while (i < n) {
      const pa = table + i * 8;
      if (pa >= TWO32) return i;
      const end = Math.min(n, i + ((SZ_4K - (pa & 4095)) >>> 3)); // this 4K frame's last entry + 1
      const f = directFrameId(mem.frameIndex(), pa);
      if (f >= 0) {
        const w = mem.frameWords(f);
        for (let k = frameWordIndex(f, pa); i < end; i++, k += 2) if ((w[k]! | w[k + 1]!) !== 0) return i;
      }
      i = end;
    }
    return n;
  }

  private freeTables(lvl: number, table: number): void {
    if (lvl === MAX_LEVELS - 1) this.leafTables--;
    const mem = this.mem;
    const r64 = mem.r64;
    if (lvl < MAX_LEVELS - 1) {
      const n = lvl === this.startLevel ? 2 ** this.pgdBits : this.ptesPerTable;
      for (let i = this.nextUsed(table, 0, n); i < n; i = this.nextUsed(table, i + 1, n)) {
        this.readDesc(table + i * 8);
        const lo = r64[0]!;
        const hi = r64[1]!;
        if ((lo === 0 && hi === 0) || this.isLeaf(lo, lvl)) continue;
        this.freeTables(lvl + 1, this.pteToPaddr(lo, hi));
      }
    }
    const pages = lvl === this.startLevel ? this.pgdPages : 2 ** this.tableOrder;
    this.freeTablePages(table, pages);
  }

  free(): void {
    if (this.pgd === 0) return;
    this.freePgtable(this.startLevel, this.pgd, 0);
    this.pgd = 0;
  }

  // ------------------------------------------------------------------ lookup

  /**
   * The leaf descriptor for `iova`, or null if it is unmapped or outside the table's half (a
   * TTBR1 table takes the negative, sign-extended IOVAs only).
   */
  lookup(userIova: number): LpaeLeaf | null {
    const iova = userIova - this.iaBase;
    if (!(iova >= 0 && iova < this.iasLimit) || this.pgd === 0) return null;
    const mem = this.mem;
    const r64 = mem.r64;
    const lo = iova >>> 0;
    const hi = (iova / TWO32) >>> 0;
    let table = this.pgd;
    for (let lvl = this.startLevel; lvl < MAX_LEVELS; lvl++) {
      const s = this.lvlShift[lvl]!;
      const idx = (s >= 32 ? hi >>> (s - 32) : (lo >>> s) | (hi << (32 - s))) & this.lvlMask[lvl]!;
      const ptep = table + idx * 8;
      if (this.readDesc(ptep) !== 0) return null;
      const dlo = r64[0]!;
      const dhi = r64[1]!;
      if (dlo === 0 && dhi === 0) return null;
      if (this.isLeaf(dlo, lvl)) {
        return {
          level: lvl,
          lo: dlo,
          hi: dhi,
          ptep,
          pa: this.pteToPaddr(dlo, dhi),
          size: this.blockSize[lvl]!,
        };
      }
      if (lvl === MAX_LEVELS - 1) return null;
      table = this.pteToPaddr(dlo, dhi);
    }
    return null;
  }

  iovaToPhys(iova: number): number {
    const leaf = this.lookup(iova);
    if (leaf === null) return 0;
    return leaf.pa + ((iova - this.iaBase) % leaf.size);
  }
}

/** alloc_io_pgtable_ops for the Arm LPAE formats. */
export function allocIoPgtableOps(
  fmt: IoPgtableFmt,
  cfg: IoPgtableCfg,
  cookie: unknown,
  env: IoPgtableEnv,
): ArmLpaeIoPgtable | null {
  return ArmLpaeIoPgtable.alloc(fmt, cfg, cookie, env);
}
