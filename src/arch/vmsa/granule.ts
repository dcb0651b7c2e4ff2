// VMSAv8-64 translation granule geometry (Arm ARM D8.2): how many address bits each lookup
// level resolves, where a walk starts for a given input size, and the stage-2 start-level
// encodings with concatenated start tables. A granule is named by its log2 size: 12, 14, 16.
// Pure functions of numbers; no state.

export const GRANULE_4K = 12;
export const GRANULE_16K = 14;
export const GRANULE_64K = 16;

/** Largest input size without FEAT_LVA/LPA2 (TxSZ = 16). */
export const IA_MAX = 48;
/** 52-bit input (TxSZ = 12): stage 1 with the 64K granule and FEAT_LVA (SMMU_IDR5.VAX). */
export const IA_MAX_LVA = 52;
/** Smallest input size without FEAT_TTST (TxSZ = 39). */
export const IA_MIN = 25;

/** Bits resolved by one full table: log2(granule / 8). */
export function stride(g: number): number {
  return g - 3;
}

/** The lowest address bit a descriptor at `level` resolves (log2 of its block/page size). */
export function levelShift(g: number, level: number): number {
  return g + (3 - level) * (g - 3);
}

/** Stage-1 start level for an input size `ia` (no concatenation at stage 1). */
export function s1StartLevel(g: number, ia: number): number {
  const s = g - 3;
  return 4 - (((ia - g + s - 1) / s) | 0);
}

/** Valid TxSZ range for stage 1: [min, max]. */
export function s1TxszMin(g: number, lva: boolean): number {
  return lva && g === GRANULE_64K ? 64 - IA_MAX_LVA : 64 - IA_MAX;
}

/** Clamp TxSZ into the valid range (out-of-range values behave as the nearest valid one). */
export function clampTxsz(txsz: number, g: number, lva: boolean): number {
  const lo = s1TxszMin(g, lva);
  const hi = 64 - IA_MIN;
  return txsz < lo ? lo : Math.min(txsz, hi);
}

/** True if a block descriptor is allowed at `level` (no FEAT_LPA2; 64K L1 needs a 52-bit OA). */
export function blockAllowed(g: number, level: number, oa52: boolean): boolean {
  if (g === GRANULE_4K) return level === 1 || level === 2;
  if (g === GRANULE_16K) return level === 2;
  return level === 2 || (level === 1 && oa52);
}

/**
 * Stage-2 start level from STE.S2SL0 (VTCR_EL2.SL0 encoding), or -1 for a reserved encoding.
 * 4K: 0 -> L2, 1 -> L1, 2 -> L0 (3 needs FEAT_LPA2: reserved here).
 * 16K/64K: 0 -> L3, 1 -> L2, 2 -> L1 (3 reserved; 64K L1 start needs a 52-bit PA as well).
 */
export function s2StartLevel(g: number, sl0: number): number {
  if (sl0 < 0 || sl0 > 2) return -1;
  return g === GRANULE_4K ? 2 - sl0 : 3 - sl0;
}

/** Inverse of s2StartLevel, for drivers and tests: the S2SL0 encoding of a start level. */
export function s2Sl0ForLevel(g: number, level: number): number {
  return g === GRANULE_4K ? 2 - level : 3 - level;
}

/**
 * Address bits resolved by the stage-2 start table (possibly concatenated), or -1 if the
 * combination of IPA size and start level is invalid: the start level must resolve at least
 * one bit, and at most stride + 4 (up to 16 concatenated tables).
 */
export function s2StartBits(g: number, ia: number, startLevel: number): number {
  if (startLevel < 0 || startLevel > 3) return -1;
  const b = ia - levelShift(g, startLevel);
  return b < 1 || b > g - 3 + 4 ? -1 : b;
}

// ---------------------------------------------------------------- field encodings

/** CD.TG0 / STE.S2TG / TCR.TG0 encoding -> granule shift (0 for reserved). */
export function tg0ToShift(tg: number): number {
  return tg === 0 ? 12 : tg === 1 ? 16 : tg === 2 ? 14 : 0;
}
/** CD.TG1 / TCR.TG1 encoding -> granule shift (0 for reserved). */
export function tg1ToShift(tg: number): number {
  return tg === 1 ? 14 : tg === 2 ? 12 : tg === 3 ? 16 : 0;
}
export const s2tgToShift = tg0ToShift;

const PS_BITS = [32, 36, 40, 42, 44, 48, 52, 52];
/** CD.IPS / STE.S2PS / SMMU_IDR5.OAS encoding -> bits (7 is reserved and treated as 52). */
export function ipsToBits(ps: number): number {
  return PS_BITS[ps & 7]!;
}
