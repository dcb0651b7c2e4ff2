// Stream Table Entry (IHI 0070 §5.2): 8 × 64-bit words.
// Bit numbers below are the spec's global STE bit numbers.

import {
  decodeFields,
  encodeFields,
  encodeFieldsInto,
  type FieldDef,
  type FieldInput,
  field,
  getField,
} from './bits.ts';

export const STE_WORDS = 8;
export const STE_DWORDS = 16;
export const STE_BYTES = 64;

/** STE.Config encodings. */
export const STE_CONFIG = {
  ABORT: 0b000,
  BYPASS: 0b100,
  S1_TRANS: 0b101,
  S2_TRANS: 0b110,
  NESTED: 0b111,
} as const;

export const STE_CONFIG_NAMES: Readonly<Record<number, string>> = {
  0: 'abort (no traffic, no event)',
  1: 'reserved (behaves as abort)',
  2: 'reserved (behaves as abort)',
  3: 'reserved (behaves as abort)',
  4: 'bypass (S1 bypass, S2 bypass)',
  5: 'S1 translate, S2 bypass',
  6: 'S1 bypass, S2 translate',
  7: 'nested (S1 and S2 translate)',
};

const CACHEABILITY = { 0: 'Non-cacheable', 1: 'WB RA', 2: 'WT RA', 3: 'WB no-RA' } as const;
const CACHEABILITY_TT = { 0: 'Non-cacheable', 1: 'WB RA WA', 2: 'WT RA', 3: 'WB RA no-WA' } as const;
const SHAREABILITY = {
  0: 'Non-shareable',
  1: 'reserved (NSH)',
  2: 'Outer Shareable',
  3: 'Inner Shareable',
} as const;
const PS = {
  0: '32 bits',
  1: '36 bits',
  2: '40 bits',
  3: '42 bits',
  4: '44 bits',
  5: '48 bits',
  6: '52 bits',
  7: '56 bits',
};

/** Every STE field, keyed by spec name. */
export const STE = {
  // Word 0
  V: field('V', 0, 1, { desc: 'STE valid' }),
  Config: field('Config', 1, 3, { values: STE_CONFIG_NAMES }),
  S1Fmt: field('S1Fmt', 4, 2, {
    values: { 0: 'linear CD table', 1: '2-level, 4KB L2', 2: '2-level, 64KB L2', 3: 'reserved (linear)' },
  }),
  S1ContextPtr: field('S1ContextPtr', 6, 50, { addr: true, desc: 'CD (table) address' }),
  S1CDMax: field('S1CDMax', 59, 5, { desc: 'log2 number of CDs' }),
  // Word 1
  S1DSS: field('S1DSS', 64, 2, {
    values: { 0: 'terminate', 1: 'bypass S1', 2: 'use substream 0', 3: 'reserved (terminate)' },
  }),
  S1CIR: field('S1CIR', 66, 2, { values: CACHEABILITY }),
  S1COR: field('S1COR', 68, 2, { values: CACHEABILITY }),
  S1CSH: field('S1CSH', 70, 2, { values: SHAREABILITY }),
  S2HWU59: field('S2HWU59', 72, 1),
  S2HWU60: field('S2HWU60', 73, 1),
  S2HWU61: field('S2HWU61', 74, 1),
  S2HWU62: field('S2HWU62', 75, 1),
  DRE: field('DRE', 76, 1, { desc: 'destructive read enable' }),
  CONT: field('CONT', 77, 4, { desc: 'contiguous hint (log2 span)' }),
  DCP: field('DCP', 81, 1, { desc: 'directed cache prefetch' }),
  PPAR: field('PPAR', 82, 1, { desc: 'PRI auto-response PASID' }),
  MEV: field('MEV', 83, 1, { desc: 'merge events' }),
  SW_RESERVED: field('SW_RESERVED', 84, 4),
  S1PIE: field('S1PIE', 88, 1),
  S2FWB: field('S2FWB', 89, 1),
  S1MPAM: field('S1MPAM', 90, 1),
  S1STALLD: field('S1STALLD', 91, 1, { desc: 'stage 1 stall disable' }),
  EATS: field('EATS', 92, 2, {
    values: { 0: 'ATS disabled', 1: 'full ATS', 2: 'split-stage ATS', 3: 'full ATS with DPT checks' },
  }),
  STRW: field('STRW', 94, 2, { values: { 0: 'EL1', 1: 'EL3 (Secure only)', 2: 'EL2', 3: 'reserved' } }),
  MemAttr: field('MemAttr', 96, 4),
  MTCFG: field('MTCFG', 100, 1, { values: { 0: 'use incoming type', 1: 'override with MemAttr' } }),
  ALLOCCFG: field('ALLOCCFG', 101, 4),
  SHCFG: field('SHCFG', 108, 2, {
    values: { 0: 'Non-shareable', 1: 'use incoming', 2: 'Outer Shareable', 3: 'Inner Shareable' },
  }),
  NSCFG: field('NSCFG', 110, 2, {
    values: { 0: 'use incoming', 1: 'reserved', 2: 'Secure', 3: 'Non-secure' },
  }),
  PRIVCFG: field('PRIVCFG', 112, 2, {
    values: { 0: 'use incoming', 1: 'reserved', 2: 'unprivileged', 3: 'privileged' },
  }),
  INSTCFG: field('INSTCFG', 114, 2, {
    values: { 0: 'use incoming', 1: 'reserved', 2: 'data', 3: 'instruction' },
  }),
  IMPL_DEF1: field('IMPL_DEF1', 116, 12),
  // Word 2
  S2VMID: field('S2VMID', 128, 16),
  IMPL_DEF2: field('IMPL_DEF2', 144, 16),
  S2T0SZ: field('S2T0SZ', 160, 6),
  S2SL0: field('S2SL0', 166, 2),
  S2IR0: field('S2IR0', 168, 2, { values: CACHEABILITY_TT }),
  S2OR0: field('S2OR0', 170, 2, { values: CACHEABILITY_TT }),
  S2SH0: field('S2SH0', 172, 2, { values: SHAREABILITY }),
  S2TG: field('S2TG', 174, 2, { values: { 0: '4KB', 1: '64KB', 2: '16KB', 3: 'reserved' } }),
  S2PS: field('S2PS', 176, 3, { values: PS }),
  S2AA64: field('S2AA64', 179, 1, { values: { 0: 'VMSAv8-32 LPAE', 1: 'VMSAv8-64' } }),
  S2ENDI: field('S2ENDI', 180, 1, { values: { 0: 'little endian', 1: 'big endian' } }),
  S2AFFD: field('S2AFFD', 181, 1, { desc: 'S2 access flag fault disable' }),
  S2PTW: field('S2PTW', 182, 1, { desc: 'protected table walk' }),
  S2HD: field('S2HD', 183, 1, { desc: 'S2 HTTU dirty' }),
  S2HA: field('S2HA', 184, 1, { desc: 'S2 HTTU access flag' }),
  S2S: field('S2S', 185, 1, { desc: 'S2 fault: stall' }),
  S2R: field('S2R', 186, 1, { desc: 'S2 fault: record' }),
  S2HAFT: field('S2HAFT', 187, 1),
  S2PIE: field('S2PIE', 188, 1),
  S2POE: field('S2POE', 189, 1),
  DPT_VMATCH: field('DPT_VMATCH', 190, 2),
  // Word 3
  S2NSW: field('S2NSW', 192, 1),
  S2NSA: field('S2NSA', 193, 1),
  S2SL0_2: field('S2SL0_2', 194, 1),
  S2DS: field('S2DS', 195, 1),
  S2TTB: field('S2TTB', 196, 48, { addr: true, desc: 'S2 translation table base [51:4]' }),
  S2SKL: field('S2SKL', 253, 2),
  // Word 4
  IMPL_DEF3: field('IMPL_DEF3', 256, 16),
  PARTID: field('PARTID', 272, 16),
  S_S2T0SZ: field('S_S2T0SZ', 288, 6),
  S_S2SL0: field('S_S2SL0', 294, 2),
  S_S2TG: field('S_S2TG', 302, 2, { values: { 0: '4KB', 1: '64KB', 2: '16KB', 3: 'reserved' } }),
  MECID: field('MECID', 304, 16),
  // Word 5
  PMG: field('PMG', 320, 8),
  MPAM_NS: field('MPAM_NS', 328, 1),
  AssuredOnly: field('AssuredOnly', 329, 1),
  TL0: field('TL0', 330, 1),
  TL1: field('TL1', 331, 1),
  VMSPtr: field('VMSPtr', 332, 44, { addr: true, desc: 'VMS address [55:12]' }),
  // Word 6
  S2SW: field('S2SW', 384, 1),
  S2SA: field('S2SA', 385, 1),
  S_S2SL0_2: field('S_S2SL0_2', 386, 1),
  S_S2TTB: field('S_S2TTB', 388, 48, { addr: true, desc: 'Secure S2 table base [51:4]' }),
  S_S2SKL: field('S_S2SKL', 445, 2),
  // Word 7 holds S2POI<p> (16 × 4 bits), kept as two 32-bit halves.
  S2POI_LO: field('S2POI_LO', 448, 32),
  S2POI_HI: field('S2POI_HI', 480, 32),
} as const satisfies Record<string, FieldDef>;

export type SteFieldName = keyof typeof STE;
export const STE_FIELDS: readonly FieldDef[] = Object.freeze(Object.values(STE));

export type SteValues = Partial<Record<SteFieldName, FieldInput>>;
export type SteDwordValues = Partial<Record<SteFieldName, number | boolean>>;

/** Decodes all STE fields from bigint words (missing words read as zero). */
export function decodeSte(words: readonly bigint[]): Record<SteFieldName, bigint> {
  return decodeFields(words, STE_FIELDS) as Record<SteFieldName, bigint>;
}

/** Builds the 8 STE words from named fields. */
export function encodeSte(values: SteValues): bigint[] {
  return encodeFields(STE_FIELDS, values, STE_WORDS);
}

/** Writes a fresh STE (zeroing all 16 dwords first) into `dw` at dword offset `off`. */
export function encodeSteInto(dw: Uint32Array, values: SteDwordValues, off = 0): void {
  dw.fill(0, off, off + STE_DWORDS);
  encodeFieldsInto(dw, STE_FIELDS, values, off);
}

// Hot-path accessors on a dword view (no BigInt, no allocation).
export const steValid = (dw: ArrayLike<number>, off = 0): boolean => (dw[off]! & 1) !== 0;
export const steConfig = (dw: ArrayLike<number>, off = 0): number => (dw[off]! >>> 1) & 7;
/** Stage 1 enabled: Config == 0b1x1. */
export const steS1Enabled = (cfg: number): boolean => (cfg & 0b101) === 0b101;
/** Stage 2 enabled: Config == 0b11x. */
export const steS2Enabled = (cfg: number): boolean => (cfg & 0b110) === 0b110;
export const steS1ContextPtr = (dw: ArrayLike<number>, off = 0): number =>
  getField(dw, STE.S1ContextPtr, off);
export const steS2Ttb = (dw: ArrayLike<number>, off = 0): number => getField(dw, STE.S2TTB, off);
export const steS2Vmid = (dw: ArrayLike<number>, off = 0): number => getField(dw, STE.S2VMID, off);
