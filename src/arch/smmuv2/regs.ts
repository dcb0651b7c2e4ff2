// SMMUv1/v2 programming interface (Arm IHI 0062; Linux drivers/iommu/arm/arm-smmu/arm-smmu.h):
// the register map, field positions under Linux's names, and the encodings of the ID registers.
// Pure data and pure functions; no state.
//
// Address map. The window is 2 * NUMPAGE pages of (ID1.PAGESIZE ? 64 KiB : 4 KiB): page 0 is
// the global register space GR0, page 1 is GR1 (context bank attributes), and context bank n
// is page NUMPAGE + n, where NUMPAGE = 1 << (ID1.NUMPAGENDXB + 1).
//
// Field names follow Linux where Linux names the field (ARM_SMMU_sCR0_USFCFG -> sCR0.USFCFG,
// ARM_SMMU_CB_FSR_MULTI -> FSR.MULTI); the rest follow the SMMU architecture (IHI 0062) or the
// MMU-500 TRM, and are marked where they came from a vendor header rather than Linux.

import { ipsToBits } from '../vmsa/granule.ts';

/** A field of a 32-bit register: least significant bit and width. */
export interface RegField {
  readonly lsb: number;
  readonly width: number;
}

const f = (lsb: number, width = 1): RegField => ({ lsb, width });

/** The field's value in `reg`. */
export function getField(reg: number, fl: RegField): number {
  return fl.width >= 32 ? reg >>> 0 : (reg >>> fl.lsb) & ((1 << fl.width) - 1);
}

/** `reg` with the field set to `value` (masked to the field). */
export function setField(reg: number, fl: RegField, value: number): number {
  const m = (fl.width >= 32 ? -1 : (1 << fl.width) - 1) << fl.lsb;
  return ((reg & ~m) | ((value << fl.lsb) & m)) >>> 0;
}

/** The field's mask in place. */
export function fieldMask(fl: RegField): number {
  return ((fl.width >= 32 ? -1 : (1 << fl.width) - 1) << fl.lsb) >>> 0;
}

// ================================================================ GR0: global registers

export const GR0 = {
  sCR0: 0x000,
  /** Secure Configuration Register 1 (not modelled beyond reads as zero). */
  sCR1: 0x004,
  /** Auxiliary configuration (IMPLEMENTATION DEFINED; MMU-500: CACHE_LOCK, *_TLBEN). */
  sACR: 0x010,
  ID0: 0x020,
  ID1: 0x024,
  ID2: 0x028,
  ID3: 0x02c,
  ID4: 0x030,
  ID5: 0x034,
  ID6: 0x038,
  ID7: 0x03c,
  /** 64-bit: address of the transaction that caused the last global fault. */
  sGFAR: 0x040,
  sGFSR: 0x048,
  sGFSRRESTORE: 0x04c,
  sGFSYNR0: 0x050,
  sGFSYNR1: 0x054,
  sGFSYNR2: 0x058,
  /** Invalidate every TLB entry (secure software only; non-secure: TLBIALLNSNH). */
  STLBIALL: 0x060,
  TLBIVMID: 0x064,
  TLBIALLNSNH: 0x068,
  TLBIALLH: 0x06c,
  sTLBGSYNC: 0x070,
  sTLBGSTATUS: 0x074,
  /** Stream match register n: 0x800 + 4n. */
  SMR: 0x800,
  /** Stream-to-context register n: 0xc00 + 4n. */
  S2CR: 0xc00,
} as const;

export const GR0_SMR = (n: number): number => GR0.SMR + 4 * n;
export const GR0_S2CR = (n: number): number => GR0.S2CR + 4 * n;

/** sCR0 (Linux ARM_SMMU_sCR0_*; TRANSIENTCFG..NSCFG from the MMU-500 TRM / vendor header). */
export const sCR0 = {
  CLIENTPD: f(0),
  GFRE: f(1),
  GFIE: f(2),
  EXIDENABLE: f(3),
  GCFGFRE: f(4),
  GCFGFIE: f(5),
  TRANSIENTCFG: f(6, 2),
  STALLD: f(8),
  GSE: f(9),
  USFCFG: f(10),
  VMIDPNE: f(11),
  PTM: f(12),
  FB: f(13),
  BSU: f(14, 2),
  MEMATTR: f(16, 4),
  MTCFG: f(20),
  SMCFCFG: f(21),
  SHCFG: f(22, 2),
  RACFG: f(24, 2),
  WACFG: f(26, 2),
  NSCFG: f(28, 2),
  VMID16EN: f(31),
} as const;

/** MMU-500 sACR bits Linux touches (arm-smmu-impl.c). */
export const sACR_MMU500 = {
  SMTNMB_TLBEN: f(8),
  S2CRB_TLBEN: f(10),
  CACHE_LOCK: f(26),
} as const;

export const ID0 = {
  NUMSMRG: f(0, 8),
  EXIDS: f(8),
  NUMSIDB: f(9, 4),
  /** Bit 13 (BTM) per the MMU-500 TRM; Linux does not use it. */
  BTM: f(13),
  CTTW: f(14),
  NUMIRPT: f(16, 8),
  PTFS_NO_AARCH32S: f(24),
  PTFS_NO_AARCH32: f(25),
  ATOSNS: f(26),
  SMS: f(27),
  NTS: f(28),
  S2TS: f(29),
  S1TS: f(30),
  /** Security extensions implemented (MMU-500 TRM). */
  SES: f(31),
} as const;

export const ID1 = {
  NUMCB: f(0, 8),
  NUMS2CB: f(16, 8),
  NUMPAGENDXB: f(28, 3),
  PAGESIZE: f(31),
} as const;

export const ID2 = {
  IAS: f(0, 4),
  OAS: f(4, 4),
  UBS: f(8, 4),
  PTFS_4K: f(12),
  PTFS_16K: f(13),
  PTFS_64K: f(14),
  VMID16: f(15),
} as const;

export const ID7 = {
  MINOR: f(0, 4),
  MAJOR: f(4, 4),
} as const;

/**
 * sGFSR. Linux names only USF; the others follow IHI 0062 (invalid context, stream match
 * conflict, unimplemented context bank / interrupt, configuration access, external, permission,
 * unsupported upstream transaction). Write 1 to clear.
 */
export const sGFSR = {
  ICF: f(0),
  USF: f(1),
  SMCF: f(2),
  UCBF: f(3),
  UCIF: f(4),
  CAF: f(5),
  EF: f(6),
  PF: f(7),
  UUT: f(8),
  MULTI: f(31),
} as const;

/** sGFSR fault bits (everything but MULTI). */
export const sGFSR_FAULT_MASK = 0x1ff;
/** Configuration faults: reported under sCR0.GCFGFRE / GCFGFIE instead of GFRE / GFIE. */
export const sGFSR_CONFIG_MASK = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 4);

/** sGFSYNR0 (IHI 0062 / MMU-500 TRM; Linux prints the raw value). */
export const sGFSYNR0 = {
  NESTED: f(0),
  WNR: f(1),
  PNU: f(2),
  IND: f(3),
  NSSTATE: f(4),
  NSATTR: f(5),
} as const;

/** sGFSYNR1: the faulting StreamID (Linux prints (u16)gfsynr1). */
export const sGFSYNR1 = {
  STREAMID: f(0, 16),
} as const;

export const sTLBGSTATUS_GSACTIVE = 1;

/** SMR(n). With EXIDS enabled ID and MASK are 16 bits each and VALID moves to S2CR.EXIDVALID. */
export const SMR = {
  ID: f(0, 16),
  MASK: f(16, 16),
  VALID: f(31),
} as const;
/** MASK without EXIDS: bits 30:16 (bit 31 is VALID). */
export const SMR_MASK_15 = f(16, 15);

export const S2CR = {
  CBNDX: f(0, 8),
  EXIDVALID: f(10),
  TYPE: f(16, 2),
  PRIVCFG: f(24, 2),
} as const;

export const S2CR_TYPE_TRANS = 0;
export const S2CR_TYPE_BYPASS = 1;
export const S2CR_TYPE_FAULT = 2;
export const S2CR_TYPE_NAMES = ['TRANS', 'BYPASS', 'FAULT', 'RESERVED'] as const;

export const S2CR_PRIVCFG_DEFAULT = 0;
export const S2CR_PRIVCFG_DIPAN = 1;
export const S2CR_PRIVCFG_UNPRIV = 2;
export const S2CR_PRIVCFG_PRIV = 3;
export const S2CR_PRIVCFG_NAMES = ['DEFAULT', 'DIPAN', 'UNPRIV', 'PRIV'] as const;

// ================================================================ GR1: context bank attributes

export const GR1 = {
  /** CBAR(n): 0x000 + 4n. */
  CBAR: 0x000,
  /** CBFRSYNRA(n): 0x400 + 4n. */
  CBFRSYNRA: 0x400,
  /** CBA2R(n): 0x800 + 4n (SMMUv2, and SMMUv1 with the 64 KiB supplement). */
  CBA2R: 0x800,
} as const;

export const GR1_CBAR = (n: number): number => GR1.CBAR + 4 * n;
export const GR1_CBFRSYNRA = (n: number): number => GR1.CBFRSYNRA + 4 * n;
export const GR1_CBA2R = (n: number): number => GR1.CBA2R + 4 * n;

/**
 * CBAR. For TYPE S1_TRANS_S2_TRANS (nested), bits 15:8 are CBNDX, the stage-2 context bank,
 * in place of S1_BPSHCFG / S1_MEMATTR (IHI 0062; the MMU-500 register description).
 */
export const CBAR = {
  VMID: f(0, 8),
  S1_BPSHCFG: f(8, 2),
  S1_MEMATTR: f(12, 4),
  CBNDX: f(8, 8),
  TYPE: f(16, 2),
  IRPTNDX: f(24, 8),
} as const;

export const CBAR_TYPE_S2_TRANS = 0;
export const CBAR_TYPE_S1_TRANS_S2_BYPASS = 1;
export const CBAR_TYPE_S1_TRANS_S2_FAULT = 2;
export const CBAR_TYPE_S1_TRANS_S2_TRANS = 3;
export const CBAR_TYPE_NAMES = [
  'S2_TRANS',
  'S1_TRANS_S2_BYPASS',
  'S1_TRANS_S2_FAULT',
  'S1_TRANS_S2_TRANS',
] as const;
export const CBAR_S1_BPSHCFG_NSH = 3;
export const CBAR_S1_MEMATTR_WB = 0xf;

export const CBFRSYNRA = {
  SID: f(0, 16),
} as const;

export const CBA2R = {
  VA64: f(0),
  VMID16: f(16, 16),
} as const;

// ================================================================ context bank registers

/** Offsets inside a context bank's page. 64-bit registers are noted. */
export const CB = {
  SCTLR: 0x000,
  ACTLR: 0x004,
  RESUME: 0x008,
  TCR2: 0x010,
  /** 64-bit. */
  TTBR0: 0x020,
  /** 64-bit. */
  TTBR1: 0x028,
  TCR: 0x030,
  CONTEXTIDR: 0x034,
  MAIR0: 0x038,
  MAIR1: 0x03c,
  /** 64-bit. */
  PAR: 0x050,
  FSR: 0x058,
  FSRRESTORE: 0x05c,
  /** 64-bit. */
  FAR: 0x060,
  FSYNR0: 0x068,
  FSYNR1: 0x06c,
  /** 64-bit (IHI 0062): the IPA of a stage-2 fault of a nested translation. */
  IPAFAR: 0x070,
  /** 64-bit: AArch64 value (VA >> 12) | ASID << 48; AArch32 32-bit (VA & ~0xfff) | ASID. */
  TLBIVA: 0x600,
  /** 64-bit: like TLBIVA, every ASID. */
  TLBIVAA: 0x608,
  TLBIASID: 0x610,
  TLBIALL: 0x618,
  /** 64-bit: leaf-only TLBIVA. */
  TLBIVAL: 0x620,
  /** 64-bit: leaf-only TLBIVAA. */
  TLBIVAAL: 0x628,
  /** 64-bit: IPA >> 12. */
  TLBIIPAS2: 0x630,
  /** 64-bit: leaf-only TLBIIPAS2. */
  TLBIIPAS2L: 0x638,
  TLBSYNC: 0x7f0,
  TLBSTATUS: 0x7f4,
  /** 64-bit: stage-1 privileged read address translation operation. */
  ATS1PR: 0x800,
  /** 64-bit: stage-1 privileged write. */
  ATS1PW: 0x808,
  /** 64-bit: stage-1 unprivileged read. */
  ATS1UR: 0x810,
  /** 64-bit: stage-1 unprivileged write. */
  ATS1UW: 0x818,
  ATSR: 0x8f0,
} as const;

/** SCTLR (Linux ARM_SMMU_SCTLR_*; AFFD, WXN, UWXN from IHI 0062 / the vendor header). */
export const SCTLR = {
  M: f(0),
  TRE: f(1),
  AFE: f(2),
  AFFD: f(3),
  E: f(4),
  CFRE: f(5),
  CFIE: f(6),
  CFCFG: f(7),
  HUPCF: f(8),
  WXN: f(9),
  UWXN: f(10),
  ASIDPNE: f(12),
} as const;

/** MMU-500 ACTLR (Linux arm-smmu-impl.c / arm-smmu-qcom.c). */
export const ACTLR_MMU500 = {
  CMTLB: f(0),
  CPRE: f(1),
} as const;

export const RESUME_TERMINATE = 1;

export const TCR2 = {
  PASIZE: f(0, 4),
  AS: f(4),
  TBI0: f(5),
  TBI1: f(6),
  SEP: f(15, 3),
} as const;
export const TCR2_SEP_UPSTREAM = 7;

/** TCR as the stage-1 AArch64 / AArch32 long-descriptor (EAE = 1) TTBCR. */
export const TCR = {
  T0SZ: f(0, 6),
  EPD0: f(7),
  IRGN0: f(8, 2),
  ORGN0: f(10, 2),
  SH0: f(12, 2),
  TG0: f(14, 2),
  T1SZ: f(16, 6),
  A1: f(22),
  EPD1: f(23),
  IRGN1: f(24, 2),
  ORGN1: f(26, 2),
  SH1: f(28, 2),
  TG1: f(30, 2),
  /** AArch32: Extended Address Enable (long-descriptor format). Overlaps TG1[1] in AArch64. */
  EAE: f(31),
} as const;

/** AArch32 long-descriptor TTBCR: T0SZ and T1SZ are 3 bits. */
export const TTBCR_LPAE = {
  T0SZ: f(0, 3),
  T1SZ: f(16, 3),
} as const;

/** TCR as the stage-2 VTCR. AArch32 VTCR: T0SZ is 4 bits (signed) and bit 4 (S) repeats its sign. */
export const VTCR = {
  T0SZ: f(0, 6),
  SL0: f(6, 2),
  IRGN0: f(8, 2),
  ORGN0: f(10, 2),
  SH0: f(12, 2),
  TG0: f(14, 2),
  PS: f(16, 3),
  RES1: f(31),
} as const;
export const VTCR_AARCH32_T0SZ = f(0, 4);
export const VTCR_AARCH32_S = f(4);

/** TTBRn[63:48]: the ASID (AArch64; AArch32 long-descriptor: bits 55:48). */
export const TTBR_ASID_SHIFT_HI = 16;

/** FSR (Linux ARM_SMMU_CB_FSR_*). Write 1 to clear. */
export const FSR = {
  TF: f(1),
  AFF: f(2),
  PF: f(3),
  EF: f(4),
  TLBMCF: f(5),
  TLBLKF: f(6),
  ASF: f(7),
  UUT: f(8),
  FORMAT: f(9, 2),
  SS: f(30),
  MULTI: f(31),
} as const;

export const FSR_TF = 1 << 1;
export const FSR_AFF = 1 << 2;
export const FSR_PF = 1 << 3;
export const FSR_EF = 1 << 4;
export const FSR_TLBMCF = 1 << 5;
export const FSR_TLBLKF = 1 << 6;
export const FSR_ASF = 1 << 7;
export const FSR_UUT = 1 << 8;
export const FSR_SS = 1 << 30;
export const FSR_MULTI = (1 << 31) | 0;
/** Linux ARM_SMMU_CB_FSR_IGN. */
export const FSR_IGN = FSR_AFF | FSR_ASF | FSR_TLBMCF | FSR_TLBLKF;
/** Linux ARM_SMMU_CB_FSR_FAULT. */
export const FSR_FAULT = FSR_MULTI | FSR_SS | FSR_UUT | FSR_EF | FSR_PF | FSR_TF | FSR_IGN | 0;
/** The fault-type bits (a fault is recorded in them; MULTI and SS excluded). */
export const FSR_FAULT_TYPES =
  FSR_TF | FSR_AFF | FSR_PF | FSR_EF | FSR_TLBMCF | FSR_TLBLKF | FSR_ASF | FSR_UUT;

/** FSYNR0 (Linux ARM_SMMU_CB_FSYNR0_*; ATOF from IHI 0062). */
export const FSYNR0 = {
  PLVL: f(0, 2),
  WNR: f(4),
  PNU: f(5),
  IND: f(6),
  NSATTR: f(8),
  ATOF: f(9),
  PTWF: f(10),
  AFR: f(11),
  S1CBNDX: f(16, 8),
} as const;

export const TLBSTATUS_SACTIVE = 1;
export const ATSR_ACTIVE = 1;
/** PAR.F: the address translation operation faulted. */
export const PAR_F = 1;

// ================================================================ qualcomm

/** Qualcomm GFX PRR configuration, from the SMMU base (Linux ARM_SMMU_GFX_PRR_CFG_*ADDR). */
export const QCOM_GFX_PRR_CFG_LADDR = 0x6008;
export const QCOM_GFX_PRR_CFG_UADDR = 0x600c;

// ================================================================ ID encodings

/**
 * ID2.IAS / OAS / UBS size code -> bits (Linux arm_smmu_id_size_to_bits): the VMSAv8-64 size
 * encoding up to 48 bits, every code from 5 up meaning 48.
 */
export function idSizeToBits(code: number): number {
  return ipsToBits(Math.min(code & 0xf, 5));
}

/** Bits -> the smallest ID2 size code that covers them (32..48). */
export function bitsToIdSize(bits: number): number {
  return bits <= 32 ? 0 : bits <= 36 ? 1 : bits <= 40 ? 2 : bits <= 42 ? 3 : bits <= 44 ? 4 : 5;
}

/** NUMPAGE (the global space's page count, also the context bank page count) from ID1. */
export function numPages(id1: number): number {
  return 1 << (getField(id1, ID1.NUMPAGENDXB) + 1);
}
