// Circular-queue arithmetic shared by the Command, Event and PRI queues (IHI 0070 §3.5).
//
// A PROD or CONS value holds an index in its low LOG2SIZE bits and a wrap bit just above;
// the queue is empty when index and wrap are equal, full when the indexes are equal and the
// wrap bits differ. Bit 31 (OVFLG / OVACKFLG) and CMDQ_CONS.ERR live above and are kept
// apart from the pointer by the callers.

import { Q_BASE } from '../../arch/smmuv3/regs.ts';
import { TWO32 } from '../../platform/u64.ts';

/** Mask of the index-plus-wrap bits of a queue of 2^log2 entries. */
export function qPtrMask(log2: number): number {
  return ((2 << log2) - 1) >>> 0;
}

export function qIdx(p: number, log2: number): number {
  return p & ((1 << log2) - 1);
}

export function qWrap(p: number, log2: number): number {
  return (p >>> log2) & 1;
}

export function qEmpty(prod: number, cons: number, log2: number): boolean {
  const m = qPtrMask(log2);
  return (prod & m) === (cons & m);
}

export function qFull(prod: number, cons: number, log2: number): boolean {
  return qIdx(prod, log2) === qIdx(cons, log2) && qWrap(prod, log2) !== qWrap(cons, log2);
}

/** The pointer after `p` (index+1 with wrap), flags stripped. */
export function qInc(p: number, log2: number): number {
  return ((p & qPtrMask(log2)) + 1) & qPtrMask(log2);
}

/** Effective LOG2SIZE of a queue BASE register value, capped at the IDR1 maximum. */
export function qLog2(baseLo: number, maxLog2: number): number {
  return Math.min(baseLo & Q_BASE.LOG2SIZE_MASK, maxLog2);
}

/**
 * Effective base address of a queue: ADDR[51:5], aligned down to the queue's size in bytes
 * (the SMMU ignores the low address bits a misaligned base would need).
 */
export function qBaseAddr(baseLo: number, baseHi: number, log2: number, entBytes: number): number {
  const addr = ((baseHi & Q_BASE.ADDR_MASK_HI) >>> 0) * TWO32 + ((baseLo & Q_BASE.ADDR_MASK_LO) >>> 0);
  const size = Math.max(32, entBytes * 2 ** log2);
  return addr - (addr % size);
}
