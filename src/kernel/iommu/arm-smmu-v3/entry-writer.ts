/**
 * The arm-smmu-v3 entry writer: update a live STE or CD without a window in which the SMMU
 * could see a configuration that is neither the old nor the new one.
 *
 * Follows Linux's arm_smmu_write_entry(): a configuration is described by the bits it makes
 * the hardware use (getUsed) plus bits that may change at any time (getUpdateSafe); the update
 * sequence is derived from that description:
 *  - 0 qwords differ in used bits: write everything at once;
 *  - exactly 1 ("critical qword"): first set every bit the current entry ignores, then the
 *    critical qword in one 64-bit store, then clear what the new entry ignores (hitless);
 *  - 2 or more: break — qword 0 := 0 (V=0), write qwords 1..7, then qword 0.
 * Each step writes only the qwords that change and is followed by one sync (CFGI + CMD_SYNC);
 * a step that changes nothing costs no sync.
 *
 * Entries here are 8 × 64-bit words as bigint: this is driver code, not a hot path.
 */

import { fieldMask as m } from '../../../arch/smmuv3/bits.ts';
import { CD } from '../../../arch/smmuv3/cd.ts';
import { STE, STE_CONFIG } from '../../../arch/smmuv3/ste.ts';

export const NUM_ENTRY_QWORDS = 8;
export type Entry = bigint[];

export interface EntryOps {
  /** Bits of each qword the hardware reads for the configuration `entry` describes. */
  getUsed(entry: readonly bigint[]): bigint[];
  /** Bits that may differ from both old and new values at any moment without harm. */
  getUpdateSafe?(cur: readonly bigint[], target: readonly bigint[]): bigint[];
}

/** One step: the qwords to store (index → value), then one sync. */
export interface WriteStep {
  readonly writes: ReadonlyArray<readonly [index: number, value: bigint]>;
}

export type WritePath = 'none' | 'all-at-once' | 'hitless' | 'breaking';

export interface WritePlan {
  readonly path: WritePath;
  readonly steps: readonly WriteStep[];
  /** Bits the target sets outside its own used mask (Linux WARNs on these). */
  readonly unusedTargetBits: readonly bigint[];
}

const zero = (): bigint[] => new Array<bigint>(NUM_ENTRY_QWORDS).fill(0n);

// ------------------------------------------------------------------ STE

const S1DSS_BYPASS = 1n;
/** Linux STRTAB_STE_0_S1CTXPTR_MASK, GENMASK(51, 6): the pointer bits a 52-bit-PA SMMU reads. */
const S1CTXPTR_MASK = ((1n << 52n) - 1n) & ~((1n << 6n) - 1n);
const EATS_TRANS = 1n;
const EATS_S1CHK = 2n;

/** Linux arm_smmu_get_ste_used(). */
export function getSteUsed(ent: readonly bigint[]): bigint[] {
  const used = zero();
  used[0] = m(STE.V);
  if ((ent[0]! & m(STE.V)) === 0n) return used;
  used[0] |= m(STE.Config);
  const cfg = Number((ent[0]! >> BigInt(STE.Config.lsb)) & 7n);
  if (cfg & 1) {
    // S1 translates (S1_TRANS or NESTED)
    used[0] |= m(STE.S1Fmt) | S1CTXPTR_MASK | m(STE.S1CDMax);
    used[1] |= m(STE.S1DSS) | m(STE.S1CIR) | m(STE.S1COR) | m(STE.S1CSH) | m(STE.S1STALLD) | m(STE.STRW);
    used[1] |= m(STE.EATS) | m(STE.MEV);
    used[2] |= m(STE.S2VMID);
    if (((ent[1]! >> BigInt(STE.S1DSS.lsb)) & 3n) === S1DSS_BYPASS) used[1] |= m(STE.SHCFG);
  }
  if (cfg & 2) {
    // S2 translates (S2_TRANS or NESTED)
    used[1] |= m(STE.S2FWB) | m(STE.EATS) | m(STE.SHCFG) | m(STE.MEV);
    used[2] |=
      m(STE.S2VMID) | vtcrMask() | m(STE.S2AA64) | m(STE.S2ENDI) | m(STE.S2PTW) | m(STE.S2S) | m(STE.S2R);
    used[3] |= m(STE.S2TTB);
  }
  if (cfg === STE_CONFIG.BYPASS) used[1] |= m(STE.SHCFG);
  return used;
}

/** STE qword-2 bits 50:32: the VTCR fields S2T0SZ..S2PS. */
function vtcrMask(): bigint {
  return (
    m(STE.S2T0SZ) | m(STE.S2SL0) | m(STE.S2IR0) | m(STE.S2OR0) | m(STE.S2SH0) | m(STE.S2TG) | m(STE.S2PS)
  );
}

const eats = (e: readonly bigint[]) => (e[1]! >> BigInt(STE.EATS.lsb)) & 3n;
const s2s = (e: readonly bigint[]) => (e[2]! & m(STE.S2S)) !== 0n;

/** Linux arm_smmu_get_ste_update_safe(). */
export function getSteUpdateSafe(cur: readonly bigint[], target: readonly bigint[]): bigint[] {
  const safe = zero();
  // ATS is disabled at the endpoint whenever EATS_TRANS changes, so the bit is free to move —
  // unless split-stage ATS (S1CHK) or stall (S2S; S2S with EATS is illegal) is involved.
  if (eats(cur) !== EATS_S1CHK && eats(target) !== EATS_S1CHK && !s2s(cur) && !s2s(target)) {
    safe[1] |= EATS_TRANS << BigInt(STE.EATS.lsb);
  }
  // Software must tolerate merged event records even with MEV=0.
  safe[1] |= m(STE.MEV);
  return safe;
}

export const steOps: EntryOps = { getUsed: getSteUsed, getUpdateSafe: getSteUpdateSafe };

// ------------------------------------------------------------------ CD

/** Linux arm_smmu_get_cd_used(). */
export function getCdUsed(ent: readonly bigint[]): bigint[] {
  const used = zero();
  used[0] = m(CD.V);
  if ((ent[0]! & m(CD.V)) === 0n) return used;
  const all = (1n << 64n) - 1n;
  for (let i = 0; i < NUM_ENTRY_QWORDS; i++) used[i] = all;
  if (ent[0]! & m(CD.EPD0)) {
    // TTB0 walks disabled: its table fields are ignored
    used[0]! &= ~(m(CD.T0SZ) | m(CD.TG0) | m(CD.IR0) | m(CD.OR0) | m(CD.SH0));
    used[1]! &= ~m(CD.TTB0);
  }
  return used;
}

export const cdOps: EntryOps = { getUsed: getCdUsed };

// ------------------------------------------------------------------ the algorithm

/**
 * Plan the update of `entry` (current contents) to `target`, as arm_smmu_write_entry() does.
 * Returns the steps; applying them in order, with a sync after each, is the caller's job.
 */
export function planWriteEntry(
  ops: EntryOps,
  entry: readonly bigint[],
  target: readonly bigint[],
): WritePlan {
  const curUsed = ops.getUsed(entry);
  const targetUsed = ops.getUsed(target);
  const safe = ops.getUpdateSafe ? ops.getUpdateSafe(entry, target) : zero();
  const unusedUpdate = zero();
  const unusedTargetBits = zero();
  let diff = 0;
  for (let i = 0; i < NUM_ENTRY_QWORDS; i++) {
    safe[i] = safe[i]! & curUsed[i]! & targetUsed[i]!;
    unusedTargetBits[i] = target[i]! & ~targetUsed[i]!;
    const cu = curUsed[i]! & ~safe[i]!;
    unusedUpdate[i] = (entry[i]! & cu) | (target[i]! & ~cu);
    if ((unusedUpdate[i]! & targetUsed[i]!) !== target[i]!) diff |= 1 << i;
  }
  const work = entry.slice();
  const steps: WriteStep[] = [];
  const set = (src: readonly bigint[], start: number, len: number) => {
    const writes: Array<readonly [number, bigint]> = [];
    for (let i = start; i < start + len; i++) {
      if (work[i] !== src[i]) {
        work[i] = src[i]!;
        writes.push([i, src[i]!]);
      }
    }
    if (writes.length) steps.push({ writes });
  };
  const bits = popcount(diff);
  let path: WritePath;
  if (bits === 1) {
    const crit = 31 - Math.clz32(diff);
    unusedUpdate[crit] = entry[crit]!;
    set(unusedUpdate, 0, NUM_ENTRY_QWORDS);
    set(target, crit, 1);
    set(target, 0, NUM_ENTRY_QWORDS);
    path = 'hitless';
  } else if (bits > 1) {
    unusedUpdate[0] = 0n;
    set(unusedUpdate, 0, 1);
    set(target, 1, NUM_ENTRY_QWORDS - 1);
    set(target, 0, 1);
    path = 'breaking';
  } else {
    set(target, 0, NUM_ENTRY_QWORDS);
    path = steps.length ? 'all-at-once' : 'none';
  }
  return { path, steps, unusedTargetBits };
}

function popcount(x: number): number {
  let n = 0;
  for (; x; x &= x - 1) n++;
  return n;
}

/**
 * True if `e` differs from `t` on the bits `used` names, ignoring `safe` bits
 * (the KUnit harness's "differs" check).
 */
export function entryDiffers(
  e: readonly bigint[],
  t: readonly bigint[],
  used: readonly bigint[],
  safe: readonly bigint[],
): boolean {
  for (let i = 0; i < NUM_ENTRY_QWORDS; i++) {
    const mask = used[i]! & ~safe[i]!;
    if ((e[i]! & mask) !== (t[i]! & mask)) return true;
  }
  return false;
}
