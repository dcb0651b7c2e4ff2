// Context Descriptor (IHI 0070 §5.4): 8 × 64-bit words.
// Bit numbers below are the spec's global CD bit numbers.

import {
  decodeFields,
  encodeFields,
  encodeFieldsInto,
  type FieldDef,
  type FieldInput,
  field,
  getField,
} from './bits.ts';

export const CD_WORDS = 8;
export const CD_DWORDS = 16;
export const CD_BYTES = 64;

const CACHEABILITY_TT = { 0: 'Non-cacheable', 1: 'WB RA WA', 2: 'WT RA', 3: 'WB RA no-WA' } as const;
const SHAREABILITY = {
  0: 'Non-shareable',
  1: 'reserved (NSH)',
  2: 'Outer Shareable',
  3: 'Inner Shareable',
} as const;
/** TG0 and TG1 use different encodings, as in TCR_ELx. */
export const CD_TG0_NAMES = { 0: '4KB', 1: '64KB', 2: '16KB', 3: 'reserved' } as const;
export const CD_TG1_NAMES = { 0: 'reserved', 1: '16KB', 2: '4KB', 3: '64KB' } as const;

/** Every CD field, keyed by spec name. */
export const CD = {
  // Word 0
  T0SZ: field('T0SZ', 0, 6),
  TG0: field('TG0', 6, 2, { values: CD_TG0_NAMES }),
  IR0: field('IR0', 8, 2, { values: CACHEABILITY_TT }),
  OR0: field('OR0', 10, 2, { values: CACHEABILITY_TT }),
  SH0: field('SH0', 12, 2, { values: SHAREABILITY }),
  EPD0: field('EPD0', 14, 1, { desc: 'TTB0 walk disable' }),
  ENDI: field('ENDI', 15, 1, { values: { 0: 'little endian', 1: 'big endian' } }),
  T1SZ: field('T1SZ', 16, 6),
  TG1: field('TG1', 22, 2, { values: CD_TG1_NAMES }),
  IR1: field('IR1', 24, 2, { values: CACHEABILITY_TT }),
  OR1: field('OR1', 26, 2, { values: CACHEABILITY_TT }),
  SH1: field('SH1', 28, 2, { values: SHAREABILITY }),
  EPD1: field('EPD1', 30, 1, { desc: 'TTB1 walk disable' }),
  V: field('V', 31, 1, { desc: 'CD valid' }),
  IPS: field('IPS', 32, 3, {
    values: {
      0: '32 bits',
      1: '36 bits',
      2: '40 bits',
      3: '42 bits',
      4: '44 bits',
      5: '48 bits',
      6: '52 bits',
      7: '56 bits',
    },
  }),
  AFFD: field('AFFD', 35, 1, { desc: 'access flag fault disable' }),
  WXN: field('WXN', 36, 1),
  UWXN: field('UWXN', 37, 1),
  TBI0: field('TBI0', 38, 1, { desc: 'top byte ignore, TTB0' }),
  TBI1: field('TBI1', 39, 1, { desc: 'top byte ignore, TTB1' }),
  PAN: field('PAN', 40, 1),
  AA64: field('AA64', 41, 1, { values: { 0: 'VMSAv8-32 LPAE', 1: 'VMSAv8-64' } }),
  HD: field('HD', 42, 1, { desc: 'HTTU dirty' }),
  HA: field('HA', 43, 1, { desc: 'HTTU access flag' }),
  S: field('S', 44, 1, { desc: 'fault: stall' }),
  R: field('R', 45, 1, { desc: 'fault: record' }),
  A: field('A', 46, 1, { desc: 'fault: abort' }),
  ASET: field('ASET', 47, 1, { values: { 0: 'shared ASID set', 1: 'non-shared ASID set' } }),
  ASID: field('ASID', 48, 16),
  // Word 1
  NSCFG0: field('NSCFG0', 64, 1),
  HAD0: field('HAD0', 65, 1, { desc: 'hierarchical attribute disable, TTB0' }),
  E0PD0: field('E0PD0', 66, 1),
  HAFT: field('HAFT', 67, 1),
  TTB0: field('TTB0', 68, 48, { addr: true, desc: 'TTB0 base [51:4]' }),
  PnCH: field('PnCH', 122, 1),
  EPAN: field('EPAN', 123, 1),
  HWU059: field('HWU059', 124, 1),
  HWU060: field('HWU060', 125, 1),
  HWU061: field('HWU061', 126, 1),
  HWU062: field('HWU062', 127, 1),
  // Word 2
  NSCFG1: field('NSCFG1', 128, 1),
  HAD1: field('HAD1', 129, 1, { desc: 'hierarchical attribute disable, TTB1' }),
  E0PD1: field('E0PD1', 130, 1),
  AIE: field('AIE', 131, 1),
  TTB1: field('TTB1', 132, 48, { addr: true, desc: 'TTB1 base [51:4]' }),
  DS: field('DS', 186, 1),
  PIE: field('PIE', 187, 1),
  HWU159: field('HWU159', 188, 1),
  HWU160: field('HWU160', 189, 1),
  HWU161: field('HWU161', 190, 1),
  HWU162: field('HWU162', 191, 1),
  // Words 3-5
  MAIR0: field('MAIR0', 192, 32),
  MAIR1: field('MAIR1', 224, 32),
  AMAIR0: field('AMAIR0', 256, 32),
  AMAIR1: field('AMAIR1', 288, 32),
  IMPL_DEF: field('IMPL_DEF', 320, 32),
  PARTID: field('PARTID', 352, 16),
  PMG: field('PMG', 368, 8),
} as const satisfies Record<string, FieldDef>;

export type CdFieldName = keyof typeof CD;
export const CD_FIELDS: readonly FieldDef[] = Object.freeze(Object.values(CD));

export type CdValues = Partial<Record<CdFieldName, FieldInput>>;
export type CdDwordValues = Partial<Record<CdFieldName, number | boolean>>;

/** Decodes all CD fields from bigint words (missing words read as zero). */
export function decodeCd(words: readonly bigint[]): Record<CdFieldName, bigint> {
  return decodeFields(words, CD_FIELDS) as Record<CdFieldName, bigint>;
}

/** Builds the 8 CD words from named fields. */
export function encodeCd(values: CdValues): bigint[] {
  return encodeFields(CD_FIELDS, values, CD_WORDS);
}

/** Writes a fresh CD (zeroing all 16 dwords first) into `dw` at dword offset `off`. */
export function encodeCdInto(dw: Uint32Array, values: CdDwordValues, off = 0): void {
  dw.fill(0, off, off + CD_DWORDS);
  encodeFieldsInto(dw, CD_FIELDS, values, off);
}

// Hot-path accessors on a dword view (no BigInt, no allocation).
export const cdValid = (dw: ArrayLike<number>, off = 0): boolean => (dw[off]! & 0x80000000) !== 0;
export const cdAsid = (dw: ArrayLike<number>, off = 0): number => dw[off + 1]! >>> 16;
export const cdTtb0 = (dw: ArrayLike<number>, off = 0): number => getField(dw, CD.TTB0, off);
/** Granule shift (12/14/16) selected by TG0 or TG1, or 0 for a reserved encoding. */
export function cdGranuleShift(dw: ArrayLike<number>, ttbr: 0 | 1, off = 0): number {
  const tg = ttbr === 0 ? (dw[off]! >>> 6) & 3 : (dw[off]! >>> 22) & 3;
  if (ttbr === 0) return tg === 0 ? 12 : tg === 1 ? 16 : tg === 2 ? 14 : 0;
  return tg === 1 ? 14 : tg === 2 ? 12 : tg === 3 ? 16 : 0;
}
