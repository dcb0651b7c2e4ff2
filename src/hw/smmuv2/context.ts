// One SMMUv2 context bank: its registers, and the translation configuration derived from them
// (with CBAR / CBA2R from GR1 and, for a nested bank, the stage-2 bank it points to) in the form
// the shared translation engine takes (smmu-common/translate-types.ts).
//
// Formats. CBA2R.VA64 = 1 selects the AArch64 (VMSAv8-64) formats: TCR as TCR_EL1 with TCR2
// (PASIZE, AS, TBI), or TCR as VTCR_EL2 for stage 2. CBA2R.VA64 = 0, and every bank of an SMMUv1
// without the 64 KiB supplement, selects the AArch32 formats: stage 1 TTBCR with EAE = 1 (the
// long-descriptor LPAE format Linux's io-pgtable ARM_32_LPAE_S1 writes) and the AArch32 VTCR
// for stage 2 (ARM_32_LPAE_S2). A long-descriptor table is a VMSAv8-64 4K-granule table with a
// 40-bit output, so the engine walks it as such: input size 32 - T0SZ at stage 1 (T0SZ 0..7),
// 32 - T0SZ at stage 2 (T0SZ signed, -8..7: up to a 40-bit IPA). Stage 1 picks TTBR0 or TTBR1
// by the AArch32 rules (the port passes a TTBR1-region address sign-extended, so the engine's
// bit-55 selection agrees). AArch32 short-descriptor contexts (TTBCR.EAE = 0) are not modelled
// (ID0.PTFS_NO_AARCH32S is set): every transaction takes a translation fault.
//
// TCR2.SEP (AArch64 stage 1): a device's address, at most as wide as the upstream bus, is
// sign-extended from the SEP bit before translation (SEP 7, UPSTREAM: from the top bit of the
// upstream bus, ID2.UBS; UBS 0b0101 is a 49-bit bus, so bit 48), which is how a 49-bit GPU
// address with bit 48 set reaches the TTBR1 half. An address with bits set above the SEP bit
// (wider than the bus) is taken as it is. FAR records the extended address.
//
// Not modelled: SCTLR.ASIDPNE and sCR0.VMIDPNE (TLB entries are tagged by VMID and ASID, shared
// by banks that use the same pair), big endian tables (SCTLR.E = 1: translation fault), TRE/AFE
// (short-descriptor only).

import {
  CBA2R,
  CBAR,
  CBAR_TYPE_S1_TRANS_S2_FAULT,
  CBAR_TYPE_S1_TRANS_S2_TRANS,
  CBAR_TYPE_S2_TRANS,
  getField,
  SCTLR,
  sCR0,
  TCR,
  TCR2,
  TCR2_SEP_UPSTREAM,
  VTCR,
} from '../../arch/smmuv2/regs.ts';
import { ipsToBits } from '../../arch/vmsa/granule.ts';
import { TWO32 } from '../../platform/u64.ts';
import {
  makeStage1Config,
  makeStage2Config,
  type TranslationConfig,
  WORLD_NS_EL1,
} from '../smmu-common/translate-types.ts';
import type { SmmuV2Features } from './features.ts';

/** The bank's CBAR, CBA2R or stage-2 pointer is not usable: the transaction is an ICF global fault. */
export const MODE_INVALID = 0;
/** No enabled stage (SCTLR.M = 0): the transaction passes untranslated. */
export const MODE_BYPASS = 1;
/** Translate through `cfg`. */
export const MODE_TRANSLATE = 2;

/** A transaction held by a context bank (stalled, or waiting behind a stalled one). */
export class HeldTxn {
  /** The fault that stalled it (engine code), 0 while it only waits. */
  fault = 0;
  constructor(
    readonly sid: number,
    readonly iova: number,
    readonly access: number,
    readonly stag: number,
    /** The bank it translates through. */
    readonly bank: ContextBank,
    readonly since: number,
  ) {}
}

/** Register state of one context bank, and what is derived from it. */
export class ContextBank {
  sctlr = 0;
  actlr = 0;
  tcr2 = 0;
  ttbr0Lo = 0;
  ttbr0Hi = 0;
  ttbr1Lo = 0;
  ttbr1Hi = 0;
  tcr = 0;
  contextidr = 0;
  mair0 = 0;
  mair1 = 0;
  parLo = 0;
  parHi = 0;
  fsr = 0;
  farLo = 0;
  farHi = 0;
  fsynr0 = 0;
  fsynr1 = 0;
  ipafarLo = 0;
  ipafarHi = 0;
  /** High word latched by a 32-bit write to a 64-bit operation register (TLBI*, ATS1*). */
  opHi = 0;
  /** Reads of TLBSTATUS still to show SACTIVE. */
  syncBusy = 0;
  /** TLB maintenance written but not yet synced (applied by TLBSYNC). */
  readonly pendingTlbi: Array<() => void> = [];

  // ---- stall state
  /** The stalled transaction (FSR.SS), or null. */
  stalled: HeldTxn | null = null;
  /** A RESUME has been accepted and its outcome is scheduled. */
  resuming = false;
  /** Transactions waiting behind the stall or the outstanding fault, oldest first. */
  readonly queue: HeldTxn[] = [];
  /** A drain of the queue is scheduled. */
  drainScheduled = false;
  /** The context interrupt this bank drives is asserted, on line irqLine. */
  irqHigh = false;
  irqLine = -1;

  // ---- derived (valid while gen === the device's configuration generation)
  gen = -1;
  mode = MODE_INVALID;
  cfg: TranslationConfig | null = null;
  /** Stage-1 AArch32 input ranges: TTBR0 for [0, t0End), TTBR1 for [t1Start, 2^32). */
  aa32 = false;
  t0End = 0;
  t1Start = 0;
  /** Stage 1 then a stage-2 fault (CBAR type S1_TRANS_S2_FAULT). */
  s2Fault = false;
  /** TCR2.SEP as an address bit (31..48) of an AArch64 stage-1 bank; -1: no sign extension. */
  sepBit = -1;
  /** The high-word bits above sepBit (ORed in when the sign bit is set). */
  sepMask = 0;
  /** The stage-2 bank of a nested bank (stage-2 faults are recorded there), else null. */
  s2Bank: ContextBank | null = null;
  /** VMID that tags this bank's TLB entries. */
  vmid = 0;
  /** ASID of stage-1 entries. */
  asid = 0;
  /** Uses the AArch64 formats (CBA2R.VA64): TLBIVA takes a 64-bit value. */
  va64 = false;
  /** Stage 1 is enabled (ATS1* operations and TLBI by VA / ASID apply). */
  hasS1 = false;

  constructor(readonly index: number) {}

  get farValue(): number {
    return this.farHi * TWO32 + (this.farLo >>> 0);
  }
}

/** What the derivation needs from the device: GR1 and sCR0 values, the banks, the features. */
export interface BankEnv {
  readonly features: SmmuV2Features;
  readonly banks: readonly ContextBank[];
  readonly cbar: Uint32Array;
  readonly cba2r: Uint32Array;
  readonly scr0: number;
}

const HI48 = 0xffff; // TTBR bits 47:32

/** TCR2.SEP 0..6 -> the address bit sign-extended from. */
const SEP_BITS = [31, 35, 39, 41, 43, 47, 48];

/**
 * The high word of input address (lo, hi) after bank `b`'s TCR2.SEP sign extension: when the
 * address fits the bus (nothing set above the SEP bit) and the SEP bit is set, every bit above
 * it is set. Hot path: no allocation.
 */
export function sepExtendHi(b: ContextBank, lo: number, hi: number): number {
  const s = b.sepBit;
  if (s < 0) return hi;
  if (s === 31) return hi === 0 && (lo | 0) < 0 ? -1 : hi;
  if (hi >>> (s - 31) !== 0) return hi;
  return (hi >>> (s - 32)) & 1 ? hi | b.sepMask : hi;
}

/** TCR.TG0 (00 4K, 01 64K, 10 16K) -> log2 granule, 0 if reserved or not implemented. */
function tg0Shift(tg: number, f: SmmuV2Features): number {
  return tg === 0 && f.g4k ? 12 : tg === 1 && f.g64k ? 16 : tg === 2 && f.g16k ? 14 : 0;
}

/** TCR.TG1 (01 16K, 10 4K, 11 64K) -> log2 granule, 0 if reserved or not implemented. */
function tg1Shift(tg: number, f: SmmuV2Features): number {
  return tg === 2 && f.g4k ? 12 : tg === 3 && f.g64k ? 16 : tg === 1 && f.g16k ? 14 : 0;
}

function bankVmid(env: BankEnv, n: number): number {
  const f = env.features;
  return f.vmid16 && getField(env.scr0, sCR0.VMID16EN) !== 0
    ? getField(env.cba2r[n]!, CBA2R.VMID16)
    : getField(env.cbar[n]!, CBAR.VMID);
}

function isVa64(env: BankEnv, n: number): boolean {
  return env.features.hasCba2r && getField(env.cba2r[n]!, CBA2R.VA64) !== 0;
}

/** Derive `b`'s translation configuration from the registers (called when any of them changed). */
export function deriveBank(env: BankEnv, b: ContextBank): void {
  const f = env.features;
  const n = b.index;
  const cbar = env.cbar[n]!;
  const type = getField(cbar, CBAR.TYPE);
  b.cfg = null;
  b.s2Bank = null;
  b.s2Fault = false;
  b.aa32 = false;
  b.sepBit = -1;
  b.sepMask = 0;
  b.hasS1 = false;
  b.va64 = isVa64(env, n);
  b.vmid = bankVmid(env, n);
  b.asid = 0;
  b.mode = MODE_INVALID;
  // which types this bank may take: the first NUMS2CB banks are stage-2 only
  const s1Ok = f.s1 && n >= f.numS2Cb;
  let s2: ContextBank | null = null;
  if (type === CBAR_TYPE_S2_TRANS) {
    if (!f.s2) return;
    s2 = b;
  } else {
    if (!s1Ok) return;
    if (type === CBAR_TYPE_S1_TRANS_S2_TRANS) {
      const m = getField(cbar, CBAR.CBNDX);
      const t = env.banks[m];
      if (!f.nested || t === undefined || m === n || getField(env.cbar[m]!, CBAR.TYPE) !== CBAR_TYPE_S2_TRANS)
        return;
      s2 = t;
      b.s2Bank = t;
      b.vmid = bankVmid(env, m);
    }
    b.s2Fault = type === CBAR_TYPE_S1_TRANS_S2_FAULT;
  }
  const s1On = type !== CBAR_TYPE_S2_TRANS && getField(b.sctlr, SCTLR.M) !== 0;
  const s2On = s2 !== null && getField(s2.sctlr, SCTLR.M) !== 0;
  if (!s1On && !s2On && !b.s2Fault) {
    b.mode = MODE_BYPASS;
    return;
  }
  const cfg: TranslationConfig = {
    s1Enabled: s1On,
    s2Enabled: s2On,
    world: WORLD_NS_EL1,
    vmid: b.vmid,
    s1: makeStage1Config(),
    s2: makeStage2Config(),
  };
  if (s1On) deriveStage1(env, b, cfg, s2On ? f.iasBits : f.oasBits);
  if (s2On) deriveStage2(env, s2!, cfg);
  b.cfg = cfg;
  b.mode = MODE_TRANSLATE;
}

function deriveStage1(env: BankEnv, b: ContextBank, cfg: TranslationConfig, outBits: number): void {
  const f = env.features;
  const s1 = cfg.s1;
  const tcr = b.tcr;
  const sctlr = b.sctlr;
  b.hasS1 = true;
  s1.affd = getField(sctlr, SCTLR.AFFD) !== 0;
  s1.wxn = getField(sctlr, SCTLR.WXN) !== 0;
  s1.uwxn = getField(sctlr, SCTLR.UWXN) !== 0;
  s1.endi = getField(sctlr, SCTLR.E) !== 0;
  s1.epd0 = getField(tcr, TCR.EPD0) !== 0;
  s1.epd1 = getField(tcr, TCR.EPD1) !== 0;
  s1.mairLo = b.mair0 | 0;
  s1.mairHi = b.mair1 | 0;
  const a1 = getField(tcr, TCR.A1) !== 0;
  const asidWord = a1 ? b.ttbr1Hi : b.ttbr0Hi;
  if (b.va64) {
    const tcr2 = b.tcr2;
    s1.tg0 = tg0Shift(getField(tcr, TCR.TG0), f);
    s1.tg1 = tg1Shift(getField(tcr, TCR.TG1), f);
    s1.t0sz = getField(tcr, TCR.T0SZ);
    s1.t1sz = getField(tcr, TCR.T1SZ);
    s1.tbi0 = getField(tcr2, TCR2.TBI0) !== 0;
    s1.tbi1 = getField(tcr2, TCR2.TBI1) !== 0;
    s1.ips = Math.min(ipsToBits(getField(tcr2, TCR2.PASIZE)), outBits);
    // TCR2.SEP (SMMUv2; an SMMUv1's AArch64 contexts of the 64 KiB supplement have no TCR2 and
    // take the address as it is). UPSTREAM: the bus's top bit (UBS code 0b0101, 48 here, is a
    // 49-bit bus)
    if (f.version === 2) {
      const sep = getField(tcr2, TCR2.SEP);
      const bit = sep === TCR2_SEP_UPSTREAM ? (f.ubsBits === 48 ? 48 : f.ubsBits - 1) : SEP_BITS[sep]!;
      b.sepBit = bit;
      b.sepMask = bit >= 32 ? ~((2 << (bit - 32)) - 1) : -1;
    }
    b.asid = getField(tcr2, TCR2.AS) !== 0 ? asidWord >>> 16 : (asidWord >>> 16) & 0xff;
  } else if (getField(tcr, TCR.EAE) === 0) {
    // short-descriptor: not implemented (reserved granule: every translation faults)
    s1.tg0 = 0;
    s1.tg1 = 0;
  } else {
    const t0 = tcr & 7;
    const t1 = (tcr >>> 16) & 7;
    s1.tg0 = 12;
    s1.tg1 = 12;
    s1.t0sz = 32 + t0;
    s1.t1sz = 32 + t1;
    s1.ips = Math.min(40, outBits);
    b.aa32 = true;
    b.t0End = t0 > 0 ? 2 ** (32 - t0) : t1 > 0 ? TWO32 - 2 ** (32 - t1) : TWO32;
    b.t1Start = t1 > 0 ? TWO32 - 2 ** (32 - t1) : t0 > 0 ? 2 ** (32 - t0) : TWO32;
    b.asid = (asidWord >>> 16) & 0xff;
  }
  s1.asid = b.asid;
  s1.ttb0 = (b.ttbr0Hi & HI48) * TWO32 + (b.ttbr0Lo >>> 0);
  s1.ttb1 = (b.ttbr1Hi & HI48) * TWO32 + (b.ttbr1Lo >>> 0);
}

function deriveStage2(env: BankEnv, s2b: ContextBank, cfg: TranslationConfig): void {
  const f = env.features;
  const s2 = cfg.s2;
  const vtcr = s2b.tcr;
  s2.vmid = cfg.vmid;
  s2.s2affd = getField(s2b.sctlr, SCTLR.AFFD) !== 0;
  s2.s2endi = getField(s2b.sctlr, SCTLR.E) !== 0;
  s2.s2ttb = (s2b.ttbr0Hi & HI48) * TWO32 + (s2b.ttbr0Lo >>> 0);
  s2.s2sl0 = getField(vtcr, VTCR.SL0);
  if (isVa64(env, s2b.index)) {
    s2.s2tg = tg0Shift(getField(vtcr, VTCR.TG0), f);
    s2.s2t0sz = getField(vtcr, VTCR.T0SZ);
    s2.s2ps = Math.min(ipsToBits(getField(vtcr, VTCR.PS)), f.oasBits);
  } else {
    // AArch32 VTCR: T0SZ[3:0] signed, S (bit 4) repeats its sign; SL0 0 (level 2) or 1 (level 1)
    const t = vtcr & 0xf;
    const signOk = ((vtcr >>> 4) & 1) === ((t >>> 3) & 1);
    s2.s2tg = signOk && s2.s2sl0 < 2 ? 12 : 0;
    s2.s2t0sz = 32 + (t >= 8 ? t - 16 : t);
    s2.s2ps = Math.min(40, f.oasBits);
  }
}
