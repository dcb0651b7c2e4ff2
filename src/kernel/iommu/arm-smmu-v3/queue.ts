/**
 * The driver's view of an SMMU queue (command, event or PRI queue): a ring of entries in
 * memory plus PROD/CONS registers whose low bits are the index and whose next bit is the
 * wrap flag (Linux struct arm_smmu_ll_queue and its Q_IDX/Q_WRP/Q_OVF helpers).
 */

import type { PhysicalMemory } from '../../../platform/memory.ts';

export const Q_OVF_FLAG = 0x80000000;

export class SmmuQueue {
  /** Shadow PROD/CONS, including wrap (bit `shift`) and overflow (bit 31) flags. */
  prod = 0;
  cons = 0;

  constructor(
    readonly mem: PhysicalMemory,
    readonly name: string,
    /** Physical base address of the ring. */
    readonly base: number,
    /** log2 of the number of entries. */
    readonly shift: number,
    readonly entBytes: number,
    /** Register offsets of PROD and CONS. */
    readonly prodReg: number,
    readonly consReg: number,
  ) {}

  get entries(): number {
    return 1 << this.shift;
  }

  idx(p: number): number {
    return p & ((1 << this.shift) - 1);
  }

  wrp(p: number): number {
    return p & (1 << this.shift);
  }

  ovf(p: number): number {
    return p & Q_OVF_FLAG;
  }

  /** p + n with wrap, keeping p's overflow flag. */
  inc(p: number, n = 1): number {
    const mask = (1 << (this.shift + 1)) - 1;
    return (this.ovf(p) | (((p & mask) + n) & mask)) >>> 0;
  }

  full(prod = this.prod, cons = this.cons): boolean {
    return this.idx(prod) === this.idx(cons) && this.wrp(prod) !== this.wrp(cons);
  }

  empty(prod = this.prod, cons = this.cons): boolean {
    return this.idx(prod) === this.idx(cons) && this.wrp(prod) === this.wrp(cons);
  }

  /** Free slots between a (hardware) cons and the shadow prod. */
  space(cons: number): number {
    const used =
      (this.wrp(this.prod) === this.wrp(cons) ? 0 : this.entries) + this.idx(this.prod) - this.idx(cons);
    return this.entries - used;
  }

  /** True if index `p` (with wrap) has been consumed, given the hardware cons. */
  consumed(p: number, cons: number): boolean {
    // consumed iff p is in the past half-ring relative to cons
    const mask = (1 << (this.shift + 1)) - 1;
    const d = ((cons & mask) - (p & mask)) & mask;
    return d > 0 && d <= this.entries;
  }

  slotAddr(p: number): number {
    return this.base + this.idx(p) * this.entBytes;
  }

  /** Q_BASE register value (without the RWA hint). */
  baseReg(): number {
    return this.base + this.shift;
  }
}
