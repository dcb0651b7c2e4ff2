/**
 * Builders of the STEs and CDs the arm-smmu-v3 driver writes, after Linux's
 * arm_smmu_make_*_ste() / arm_smmu_make_*_cd(). Each returns a fresh 8-qword entry whose set
 * bits are all inside its own used mask (entry-writer.ts).
 */

import { fieldMask, setFieldBig } from '../../../arch/smmuv3/bits.ts';
import { CD } from '../../../arch/smmuv3/cd.ts';
import { STE, STE_CONFIG } from '../../../arch/smmuv3/ste.ts';
import { type Entry, NUM_ENTRY_QWORDS } from './entry-writer.ts';

/** SMMU features that change what the driver writes (ARM_SMMU_FEAT_*). */
export interface SmmuWriteFeatures {
  /** FEAT_STALLS: stalls supported (not forced): non-stalling masters get S1STALLD. */
  stalls: boolean;
  /** FEAT_STALL_FORCE: stall cannot be disabled. */
  stallForce: boolean;
  /** FEAT_ATTR_TYPES_OVR: SHCFG may be overridden (bypass streams use INCOMING). */
  attrTypesOvr: boolean;
  /** FEAT_E2H: stage 1 uses the EL2 (host) translation regime. */
  e2h: boolean;
  /** FEAT_S2FWB. */
  s2fwb: boolean;
}

export const DEFAULT_WRITE_FEATURES: SmmuWriteFeatures = {
  stalls: false,
  stallForce: false,
  attrTypesOvr: true,
  e2h: false,
  s2fwb: false,
};

/** What the master contributes to its entries. */
export interface MasterWriteConfig {
  stallEnabled: boolean;
}

export const S1DSS = { TERMINATE: 0, BYPASS: 1, SSID0: 2 } as const;
export const S1FMT = { LINEAR: 0, L2_4K: 1, L2_64K: 2 } as const;
export const EATS = { ABT: 0, TRANS: 1, S1CHK: 2 } as const;
const SHCFG_INCOMING = 1;
const STRW_NSEL1 = 0;
const STRW_EL2 = 2;
const CACHE_WBRA = 1;
const SH_ISH = 3;

const blank = (): Entry => new Array<bigint>(NUM_ENTRY_QWORDS).fill(0n);

export function makeAbortSte(): Entry {
  const e = blank();
  setFieldBig(e, STE.V, 1);
  setFieldBig(e, STE.Config, STE_CONFIG.ABORT);
  return e;
}

export function makeBypassSte(f: SmmuWriteFeatures): Entry {
  const e = blank();
  setFieldBig(e, STE.V, 1);
  setFieldBig(e, STE.Config, STE_CONFIG.BYPASS);
  if (f.attrTypesOvr) setFieldBig(e, STE.SHCFG, SHCFG_INCOMING);
  return e;
}

export interface CdTableRef {
  /** Physical (or, nested, intermediate physical) address of the CD table. */
  cdtabDma: number;
  s1fmt: number;
  s1cdmax: number;
}

export function makeCdtableSte(
  f: SmmuWriteFeatures,
  master: MasterWriteConfig,
  cdt: CdTableRef,
  atsEnabled: boolean,
  s1dss: number,
): Entry {
  const e = blank();
  setFieldBig(e, STE.V, 1);
  setFieldBig(e, STE.Config, STE_CONFIG.S1_TRANS);
  setFieldBig(e, STE.S1Fmt, cdt.s1fmt);
  setFieldBig(e, STE.S1ContextPtr, BigInt(cdt.cdtabDma) & ((1n << 52n) - 64n));
  setFieldBig(e, STE.S1CDMax, cdt.s1cdmax);
  setFieldBig(e, STE.S1DSS, s1dss);
  setFieldBig(e, STE.S1CIR, CACHE_WBRA);
  setFieldBig(e, STE.S1COR, CACHE_WBRA);
  setFieldBig(e, STE.S1CSH, SH_ISH);
  if (f.stalls && !master.stallEnabled) setFieldBig(e, STE.S1STALLD, 1);
  setFieldBig(e, STE.EATS, atsEnabled ? EATS.TRANS : EATS.ABT);
  if (s1dss === S1DSS.BYPASS && f.attrTypesOvr) setFieldBig(e, STE.SHCFG, SHCFG_INCOMING);
  setFieldBig(e, STE.STRW, f.e2h ? STRW_EL2 : STRW_NSEL1);
  return e;
}

/** Stage-2 translation parameters (io-pgtable's VTCR fields and VTTBR). */
export interface S2Config {
  vmid: number;
  vttbr: bigint;
  tsz: number;
  sl: number;
  irgn: number;
  orgn: number;
  sh: number;
  tg: number;
  ps: number;
}

export function makeS2DomainSte(
  f: SmmuWriteFeatures,
  master: MasterWriteConfig,
  s2: S2Config,
  atsEnabled: boolean,
): Entry {
  const e = blank();
  setFieldBig(e, STE.V, 1);
  setFieldBig(e, STE.Config, STE_CONFIG.S2_TRANS);
  setFieldBig(e, STE.EATS, atsEnabled ? EATS.TRANS : EATS.ABT);
  if (f.attrTypesOvr) setFieldBig(e, STE.SHCFG, SHCFG_INCOMING);
  if (f.s2fwb) setFieldBig(e, STE.S2FWB, 1);
  setFieldBig(e, STE.S2VMID, s2.vmid);
  setFieldBig(e, STE.S2T0SZ, s2.tsz);
  setFieldBig(e, STE.S2SL0, s2.sl);
  setFieldBig(e, STE.S2IR0, s2.irgn);
  setFieldBig(e, STE.S2OR0, s2.orgn);
  setFieldBig(e, STE.S2SH0, s2.sh);
  setFieldBig(e, STE.S2TG, s2.tg);
  setFieldBig(e, STE.S2PS, s2.ps);
  setFieldBig(e, STE.S2AA64, 1);
  setFieldBig(e, STE.S2PTW, 1);
  if (master.stallEnabled) setFieldBig(e, STE.S2S, 1);
  setFieldBig(e, STE.S2R, 1);
  setFieldBig(e, STE.S2TTB, s2.vttbr & fieldMask(STE.S2TTB));
  return e;
}

/**
 * A nested STE: the stage-1 CD-table words (from the vSTE) over an S2 STE's stage-2 words,
 * Config=NESTED and MEV set (event-merging limits a guest's event flood).
 */
export function makeNestedSte(cdtableSte: Entry, s2Ste: Entry): Entry {
  const e = cdtableSte.slice();
  setFieldBig(e, STE.Config, STE_CONFIG.NESTED);
  setFieldBig(e, STE.MEV, 1);
  for (let i = 2; i < NUM_ENTRY_QWORDS; i++) e[i] = s2Ste[i]!;
  return e;
}

/** Stage-1 translation parameters (io-pgtable's TCR fields, TTBR and MAIR). */
export interface S1Config {
  asid: number;
  ttbr: bigint;
  tsz: number;
  tg: number;
  irgn: number;
  orgn: number;
  sh: number;
  ips: number;
  mair: bigint;
  /** io-pgtable quirk ARM_HD: hardware dirty (and access) flag update. */
  hd?: boolean;
}

export function makeS1Cd(master: MasterWriteConfig, s1: S1Config): Entry {
  const e = blank();
  setFieldBig(e, CD.T0SZ, s1.tsz);
  setFieldBig(e, CD.TG0, s1.tg);
  setFieldBig(e, CD.IR0, s1.irgn);
  setFieldBig(e, CD.OR0, s1.orgn);
  setFieldBig(e, CD.SH0, s1.sh);
  setFieldBig(e, CD.EPD1, 1);
  setFieldBig(e, CD.V, 1);
  setFieldBig(e, CD.IPS, s1.ips);
  setFieldBig(e, CD.AA64, 1);
  if (master.stallEnabled) setFieldBig(e, CD.S, 1);
  setFieldBig(e, CD.R, 1);
  setFieldBig(e, CD.A, 1);
  setFieldBig(e, CD.ASET, 1);
  setFieldBig(e, CD.ASID, s1.asid);
  if (s1.hd) {
    setFieldBig(e, CD.HA, 1);
    setFieldBig(e, CD.HD, 1);
  }
  setFieldBig(e, CD.TTB0, s1.ttbr & fieldMask(CD.TTB0));
  e[3] = s1.mair & ((1n << 64n) - 1n);
  return e;
}

/** A CPU address space shared with a device (SVA); `pgd` null once the mm is released. */
export interface SvaMm {
  pgd: bigint;
  vaBits: number;
  mair: bigint;
}

export function makeSvaCd(
  f: SmmuWriteFeatures,
  master: MasterWriteConfig,
  mm: SvaMm | null,
  asid: number,
  mair: bigint,
): Entry {
  const e = blank();
  setFieldBig(e, CD.EPD1, 1);
  setFieldBig(e, CD.V, 1);
  setFieldBig(e, CD.IPS, 5);
  setFieldBig(e, CD.AA64, 1);
  if (master.stallEnabled) setFieldBig(e, CD.S, 1);
  setFieldBig(e, CD.R, 1);
  setFieldBig(e, CD.A, 1);
  setFieldBig(e, CD.ASET, 1);
  setFieldBig(e, CD.ASID, asid);
  if (mm !== null) {
    setFieldBig(e, CD.T0SZ, 64 - mm.vaBits);
    setFieldBig(e, CD.TG0, 0); // 4K
    setFieldBig(e, CD.IR0, 1); // WBWA
    setFieldBig(e, CD.OR0, 1);
    setFieldBig(e, CD.SH0, SH_ISH);
    setFieldBig(e, CD.TTB0, mm.pgd & fieldMask(CD.TTB0));
  } else {
    // released: walks disabled; without forced stall, fault at once rather than stall
    setFieldBig(e, CD.EPD0, 1);
    if (!f.stallForce) {
      setFieldBig(e, CD.S, 0);
      setFieldBig(e, CD.R, 0);
    }
  }
  e[3] = mair & ((1n << 64n) - 1n);
  return e;
}
