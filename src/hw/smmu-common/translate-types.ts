/**
 * Types shared between an SMMU device model and the translation engine (walker + TLB) that
 * every SMMU model uses. The device fills a TranslationConfig once per configuration (SMMUv3:
 * per STE/CD, held in its config cache; SMMUv2: per context-bank programming) and passes it,
 * with the input address and access kind, to TranslationEngine.translate(), which writes the
 * outcome into a caller-owned, reused TranslationResult. Nothing here allocates per
 * transaction.
 *
 * Field values are *decoded* (a granule is its log2 size, an address size is a bit count),
 * so the device converts encodings once; arch/vmsa/granule.ts has the converters
 * (tg0ToShift, tg1ToShift, s2tgToShift, ipsToBits).
 */

export {
  C_BAD_CD,
  C_BAD_STE,
  CLASS_CD,
  CLASS_IN,
  CLASS_TT,
  F_ACCESS,
  F_ADDR_SIZE,
  F_PERMISSION,
  F_TLB_CONFLICT,
  F_TRANSLATION,
  F_WALK_EABT,
  FAULT_NONE,
} from '../../arch/vmsa/faults.ts';

// ---------------------------------------------------------------- access kinds (bit flags)

/** A data read: no flag set. */
export const ACCESS_READ = 0;
/** RnW = 0 (a write). A write is always a data access: ACCESS_EXEC is ignored with it. */
export const ACCESS_WRITE = 1;
/** InD = 1 (instruction fetch). */
export const ACCESS_EXEC = 2;
/** PnU = 1 (privileged). */
export const ACCESS_PRIV = 4;

// ---------------------------------------------------------------- permission masks

/**
 * A permission set is an 8-bit mask indexed by access kind (ACCESS_* flags combined, 0..7):
 * bit k set means an access of kind k is allowed. E.g. PERM_RW_ALL allows everything but
 * instruction fetch.
 */
export const PERM_NONE = 0;
export const PERM_ALL = 0xff;

// ---------------------------------------------------------------- stream worlds

/** StreamWorld of the translation regime (STE.STRW with SMMU_CR2.E2H). Tags TLB entries. */
export const WORLD_NS_EL1 = 0;
/** EL2 without E2H: one VA range (TTB0), no ASID, every entry global. */
export const WORLD_EL2 = 1;
/** EL2 with E2H: two VA ranges and ASIDs, like EL1 but tagged separately (TLBI_EL2_*). */
export const WORLD_EL2_E2H = 2;

// ---------------------------------------------------------------- configuration

/** Stage-1 context (from the CD). Addresses are IPAs when stage 2 is also enabled. */
export interface Stage1Config {
  /** CD.AA64. false (VMSAv8-32 LPAE tables) is not supported: translate reports C_BAD_CD. */
  aa64: boolean;
  /** CD.ENDI. true (big-endian tables) is not supported: translate reports C_BAD_CD. */
  endi: boolean;
  asid: number;
  ttb0: number;
  ttb1: number;
  /** CD.T0SZ / T1SZ (input size = 64 - TxSZ). Out-of-range values behave as the nearest valid one. */
  t0sz: number;
  t1sz: number;
  /** Granule of each range as log2 bytes: 12, 14 or 16 (0 = reserved encoding -> C_BAD_CD). */
  tg0: number;
  tg1: number;
  /** CD.EPD0 / EPD1: walks of that range are disabled (F_TRANSLATION). */
  epd0: boolean;
  epd1: boolean;
  /** CD.TBI0 / TBI1: top byte ignored for addresses in that range. */
  tbi0: boolean;
  tbi1: boolean;
  /** CD.HAD0 / HAD1: hierarchical permission (APTable/XNTable) disabled for that range. */
  had0: boolean;
  had1: boolean;
  /** CD.IPS decoded to bits (32..52). The engine caps it at the SMMU OAS. */
  ips: number;
  /** CD.AFFD: AF == 0 does not fault (and the AF is not updated). */
  affd: boolean;
  /** CD.HA / HD: hardware Access flag / dirty state update (only if the engine has httu). */
  ha: boolean;
  hd: boolean;
  /** CD.WXN: writable implies execute-never. */
  wxn: boolean;
  /** CD.UWXN: AArch32-only control; ignored for AArch64 tables (kept for completeness). */
  uwxn: boolean;
  /** CD.PAN: privileged data accesses to EL0-accessible pages fault. */
  pan: boolean;
  /** CD.MAIR as two int32 halves; AttrIndx selects a byte (reported in result.attr). */
  mairLo: number;
  mairHi: number;
}

/** Stage-2 context (from the STE). */
export interface Stage2Config {
  vmid: number;
  s2ttb: number;
  /** STE.S2T0SZ (IPA size = 64 - S2T0SZ). */
  s2t0sz: number;
  /** STE.S2SL0 raw encoding (0..3), interpreted per granule. Invalid combinations -> C_BAD_STE. */
  s2sl0: number;
  /** Granule as log2 bytes: 12, 14, 16 (0 = reserved -> C_BAD_STE). */
  s2tg: number;
  /** STE.S2PS decoded to bits (32..52). The engine caps it at the SMMU OAS. */
  s2ps: number;
  /** STE.S2AA64. false is not supported: C_BAD_STE. */
  s2aa64: boolean;
  /** STE.S2ENDI. true is not supported: C_BAD_STE. */
  s2endi: boolean;
  s2affd: boolean;
  s2ha: boolean;
  s2hd: boolean;
  /** STE.S2PTW: a stage-1 walk that lands in stage-2 Device memory is a stage-2 permission fault. */
  s2ptw: boolean;
}

/**
 * One resolved STE(+CD) configuration. Fill once, reuse for every transaction, never change
 * once used: the engine keeps what it derives from each config it sees (by identity) and
 * freezes the config and its stage-1 part on first use, so changing one throws a TypeError. For
 * a different configuration make a new object (e.g. `{ ...cfg, s1: { ...cfg.s1, tbi0: true } }`).
 */
export interface TranslationConfig {
  /** Stage 1 enabled (STE.Config[0]) and stage 2 enabled (STE.Config[1]). Both false = bypass. */
  s1Enabled: boolean;
  s2Enabled: boolean;
  /** Translation regime: WORLD_NS_EL1 / WORLD_EL2 / WORLD_EL2_E2H. */
  world: number;
  /**
   * VMID that tags TLB entries: STE.S2VMID for EL1-world streams (also with stage 1 only when
   * the SMMU implements stage 2), 0 otherwise.
   */
  vmid: number;
  s1: Stage1Config;
  s2: Stage2Config;
}

// ---------------------------------------------------------------- result

/** Outcome of one translation. Allocate once per caller and reuse. */
export class TranslationResult {
  /** FAULT_NONE, or the event number (F_TRANSLATION, F_PERMISSION, ..., C_BAD_CD, C_BAD_STE). */
  fault = 0;
  /** Event Class: CLASS_CD / CLASS_TT / CLASS_IN (valid when fault != 0). */
  faultClass = 0;
  /** The fault was raised by stage 2 (event S2 bit). */
  s2 = false;
  /** Output physical address (valid when fault == 0). */
  oa = 0;
  /** For a stage-2 fault: the IPA being translated (event IPA field). */
  ipa = 0;
  /** For F_WALK_EABT: the PA of the descriptor fetch that aborted (event FetchAddr). */
  fetchAddr = 0;
  /** log2 of the size of the region this translation covers (min of both stages' leaves). */
  pageShift = 0;
  /** Lookup level of the leaf (or of the faulting descriptor). */
  level = 0;
  /** Combined permission mask (see PERM_*) of stage 1 and stage 2. */
  perm = 0;
  /** Stage-1 MAIR attribute byte for AttrIndx (0 if stage 1 off) | SH << 8 | S2 MemAttr << 12. */
  attr = 0;
  /** The translation came from the TLB. */
  tlbHit = false;
  /**
   * Sanitizer only (set on a TLB hit while a DmaSanitizer is attached): the hit entry's fill
   * sequence and time, its context (VMID << 16 | ASID) and the last descriptor its walk read.
   */
  fillSeq = 0;
  fillTime = 0;
  ctx = -1;
  tbl = -1;

  clear(): void {
    this.fault = 0;
    this.faultClass = 0;
    this.s2 = false;
    this.oa = 0;
    this.ipa = 0;
    this.fetchAddr = 0;
    this.pageShift = 0;
    this.level = 0;
    this.perm = 0;
    this.attr = 0;
    this.tlbHit = false;
  }
}

/** SMMU-wide parameters of the engine (from the ID registers). */
export interface EngineOptions {
  /** SMMU_IDR5.OAS in bits (default 48). */
  oas?: number;
  /** SMMU_IDR3.XNX: stage-2 XN[0] distinguishes privileged execute (default true). */
  xnx?: boolean;
  /** SMMU_IDR0.HTTU != 0: CD.HA/HD, STE.S2HA/S2HD take effect (default true). */
  httu?: boolean;
  /** SMMU_IDR5.VAX: 52-bit stage-1 input with the 64K granule (default false). */
  vax?: boolean;
  /** TLB geometry: sets (power of two, default 2048) and ways (1..8, default 4). 0 sets = no TLB. */
  tlbSets?: number;
  tlbWays?: number;
  /** Abort a transaction whose walk fills a TLB entry overlapping another size's (F_TLB_CONFLICT). Default false. */
  tlbConflictAbort?: boolean;
}

/** Small helpers to build configs (device code may also build the objects itself). */
export function makeStage1Config(): Stage1Config {
  return {
    aa64: true,
    endi: false,
    asid: 0,
    ttb0: 0,
    ttb1: 0,
    t0sz: 16,
    t1sz: 16,
    tg0: 12,
    tg1: 12,
    epd0: false,
    epd1: true,
    tbi0: false,
    tbi1: false,
    had0: false,
    had1: false,
    ips: 48,
    affd: false,
    ha: false,
    hd: false,
    wxn: false,
    uwxn: false,
    pan: false,
    mairLo: 0,
    mairHi: 0,
  };
}

export function makeStage2Config(): Stage2Config {
  return {
    vmid: 0,
    s2ttb: 0,
    s2t0sz: 16,
    s2sl0: 2,
    s2tg: 12,
    s2ps: 48,
    s2aa64: true,
    s2endi: false,
    s2affd: false,
    s2ha: false,
    s2hd: false,
    s2ptw: false,
  };
}

export function makeTranslationConfig(): TranslationConfig {
  return {
    s1Enabled: true,
    s2Enabled: false,
    world: WORLD_NS_EL1,
    vmid: 0,
    s1: makeStage1Config(),
    s2: makeStage2Config(),
  };
}
