/**
 * Register access of the arm-smmu driver (arm_smmu_readl/writel/readq/writeq and the page
 * helpers of arm-smmu.h): page n of the window is at base + (n << pgshift); GR0 is page 0, GR1
 * page 1, context bank n page numpage + n.
 *
 * Implementations change how registers are reached (struct arm_smmu_impl read_reg/write_reg...):
 *  - NVIDIA Tegra194/234 (nvidia,smmu-500): two or three instances behind one node, programmed
 *    identically: every write goes to all of them, reads come from instance 0;
 *  - Marvell AP806 (erratum 582743): 64-bit registers are reached as two 32-bit accesses (high
 *    word first, as Linux's hi_lo_writeq / lo_hi_readq).
 */

import type { MmioRegion } from '../../lib/io.ts';

const TWO32 = 4294967296;

/** GR0 / GR1 page numbers. */
export const ARM_SMMU_GR0 = 0;
export const ARM_SMMU_GR1 = 1;

export class ArmSmmuIo {
  /** log2 of the register page size (12 or 16), from ID1.PAGESIZE. */
  pgshift = 12;
  /** Pages of the global space (= context bank pages); the context banks start at page numpage. */
  numpage = 0;
  /** Write every register to all instances (NVIDIA). */
  broadcast = false;
  /** 64-bit registers as two 32-bit accesses (Marvell erratum 582743). */
  split64 = false;

  constructor(readonly regions: readonly MmioRegion[]) {}

  /** Bytes of instance 0's mapped region (smmu->numpage before cfg_probe re-encodes it). */
  get size(): number {
    return this.regions[0]!.size;
  }

  get instances(): number {
    return this.regions.length;
  }

  /** Offset of `page`. */
  page(n: number): number {
    return n * 2 ** this.pgshift;
  }

  /** Offset of context bank `n`'s page. */
  cbPage(n: number): number {
    return this.page(this.numpage + n);
  }

  /** readl from one instance (default 0). */
  readl(page: number, off: number, inst = 0): number {
    return this.regions[inst]!.readl(this.page(page) + off);
  }

  writel(page: number, off: number, v: number): void {
    const o = this.page(page) + off;
    if (this.broadcast) for (const r of this.regions) r.writel(o, v);
    else this.regions[0]!.writel(o, v);
  }

  /** Write to one instance only (a fault handler clearing that instance's status). */
  writelInst(inst: number, page: number, off: number, v: number): void {
    this.regions[inst]!.writel(this.page(page) + off, v);
  }

  /** readq as a Number (registers hold addresses < 2^53). */
  readq(page: number, off: number, inst = 0): number {
    const r = this.regions[inst]!;
    const o = this.page(page) + off;
    if (this.split64) return r.readl(o + 4) * TWO32 + r.readl(o);
    return r.readq(o);
  }

  /** readq as a signed Number (a sign-extended address comes back negative, see MmioRegion.readqSigned). */
  readqSigned(page: number, off: number, inst = 0): number {
    const r = this.regions[inst]!;
    const o = this.page(page) + off;
    if (this.split64) return (r.readl(o + 4) | 0) * TWO32 + r.readl(o);
    return r.readqSigned(o);
  }

  /** writeq of `v` with `hiBits` ORed into bits 63:32 (an ASID in 63:48, as hiBits << 16 of it). */
  writeq(page: number, off: number, v: number, hiBits = 0): void {
    const o = this.page(page) + off;
    const n = this.broadcast ? this.regions.length : 1;
    for (let i = 0; i < n; i++) {
      const r = this.regions[i]!;
      if (this.split64) {
        r.writel(o + 4, (Math.floor(v / TWO32) | hiBits) >>> 0);
        r.writel(o, v >>> 0);
      } else r.writeq(o, v, hiBits);
    }
  }
}
