/**
 * VMSAv8-64 translation table walker shared by the SMMU models (SMMUv3, SMMUv2): stage 1 and
 * stage 2, 4K/16K/64K granules, every start level, stage-2 concatenated start tables, blocks
 * and pages, access flag (fault, AFFD, or hardware update), dirty state (DBM with HD), output-
 * and table-address size checks, external aborts on descriptor fetches, and nested walks where
 * every stage-1 table address is an IPA translated through stage 2 (stage-2 translations are
 * cached in the TLB as KIND_S2 entries, like a hardware IPA/walk cache).
 *
 * Fault precedence per level follows the Arm ARM: translation, address size, access flag;
 * permission is checked by the caller (so the entry can be cached even when it faults).
 *
 * Modelling decisions (documented, not architectural requirements):
 *  - An instruction fetch needs execute permission only (as on the PE: execute-only pages work).
 *  - A write is a data access even with InD set.
 *  - In the EL2 (non-E2H) world AP[1] and PXN are ignored: one privilege level, XN = bit 54.
 *  - Stage-1 hardware updates under nesting do not check stage-2 write permission of the table.
 *  - Big-endian tables (ENDI/S2ENDI) and AArch32 tables are unsupported: C_BAD_CD / C_BAD_STE.
 *  - FEAT_LPA2 and FEAT_TTST are not modelled: TxSZ is clamped to 16..39 (12 with the 64K
 *    granule when VAX), S2T0SZ outside that range is C_BAD_STE.
 *
 * The hot path allocates nothing: outputs go to fields of this object and the caller's result.
 * The common stage-1 TLB miss (4K granule, no stage 2, tables in the memory's dense window below
 * 4 GiB) does not come here: TranslationEngine.translate64 walks, fills and answers it in one piece.
 */

import {
  D_AF,
  D_AP2,
  D_NG,
  D_S2AP_W,
  DH_APTABLE0,
  DH_DBM,
  DH_PXN,
  DH_PXNTABLE,
  DH_UXN,
  DH_UXNTABLE,
  descAddress,
  s2MemAttrIsDevice,
} from '../../arch/vmsa/descriptor.ts';
import {
  C_BAD_STE,
  CLASS_IN,
  CLASS_TT,
  F_ACCESS,
  F_ADDR_SIZE,
  F_PERMISSION,
  F_TRANSLATION,
  F_WALK_EABT,
} from '../../arch/vmsa/faults.ts';
import {
  blockAllowed,
  clampTxsz,
  levelShift,
  s1StartLevel,
  s2StartBits,
  s2StartLevel,
} from '../../arch/vmsa/granule.ts';
import type { PhysicalMemory } from '../../platform/memory.ts';
import type { DmaSanitizer } from '../../platform/sanitizer.ts';
import { TWO32 } from '../../platform/u64.ts';
import { EF_DBM1, EF_DBM2, KIND_S2, Tlb } from './tlb.ts';
import { type TranslationConfig, type TranslationResult, WORLD_EL2 } from './translate-types.ts';

/** 2^i for i in 0..64: a load instead of Math.pow on the walk path. */
const POW2 = new Float64Array(65).map((_, i) => 2 ** i);

/** Bits [sh+nb-1 : sh] of the address (lo, hi); nb <= 20. */
function index(lo: number, hi: number, sh: number, nb: number): number {
  const v = sh >= 32 ? hi >>> (sh - 32) : (lo >>> sh) | (hi << (32 - sh));
  return v & ((1 << nb) - 1);
}

/** Address bits below 2^sh of (lo, hi) as a Number. */
export function offsetBelow(lo: number, hi: number, sh: number): number {
  // (1 << 31) - 1 wraps to 0x7fffffff under `&`, so every sh < 32 works with shifts alone
  return sh < 32 ? (lo & ((1 << sh) - 1)) >>> 0 : (hi & ((1 << (sh - 32)) - 1)) * TWO32 + (lo >>> 0);
}

/** Stage-1 permission mask (bit k set = access kind k allowed; see translate-types PERM_*). */
export function s1PermMask(
  ap: number,
  pxn: boolean,
  uxn: boolean,
  single: boolean,
  wxn: boolean,
  pan: boolean,
): number {
  const privW = (ap & 2) === 0;
  if (single) {
    const x = !uxn && !(wxn && privW);
    const m = 1 | (privW ? 2 | 8 : 0) | (x ? 4 : 0);
    return m | (m << 4);
  }
  const el0 = (ap & 1) !== 0;
  const unprivW = el0 && privW;
  let privX = !pxn && !unprivW; // EL0-writable implies PXN
  let unprivX = !uxn;
  if (wxn && privW) privX = unprivX = false;
  const panBlock = pan && el0;
  return (
    (el0 ? 1 : 0) |
    (unprivW ? 2 | 8 : 0) |
    (unprivX ? 4 : 0) |
    (panBlock ? 0 : 16) |
    (privW && !panBlock ? 32 | 128 : 0) |
    (privX ? 64 : 0)
  );
}

/** Stage-2 permission mask from S2AP and XN[1:0] (xn already reduced to XN[1] << 1 without XNX). */
export function s2PermMask(s2ap: number, xn: number): number {
  const r = (s2ap & 1) !== 0;
  const w = (s2ap & 2) !== 0;
  const xu = xn === 0 || xn === 1; // EL0 executable
  const xp = xn === 0 || xn === 3; // EL1 executable
  const wm = w ? 2 | 8 : 0;
  return (r ? 1 | 16 : 0) | wm | (wm << 4) | (xu ? 4 : 0) | (xp ? 64 : 0);
}

export interface WalkerOptions {
  oas: number;
  xnx: boolean;
  httu: boolean;
  vax: boolean;
}

export class Walker {
  // ---- outputs of the last stage-1 walk
  /** Output address of the leaf region base (an IPA when stage 2 follows). */
  s1Oa = 0;
  s1Shift = 0;
  s1Perm = 0;
  s1Attr = 0;
  s1Level = 0;
  s1Global = false;
  s1Flags = 0;
  // ---- outputs of the last stage-2 translation
  /** PA of the exact IPA translated (not the region base). */
  s2Pa = 0;
  s2Shift = 0;
  s2Perm = 0;
  s2MemAttr = 0;
  s2Level = 0;
  s2G = 0;
  s2Flags = 0;
  /**
   * Let the engine take the common stage-1 TLB miss in one piece (the fast walk in
   * TranslationEngine.translate64) when it applies (false: always the general walk; tests).
   */
  fastPath = true;
  /** The DMA-isolation sanitizer (null: off): sees every descriptor read. */
  san: DmaSanitizer | null = null;
  // ---- counters
  /**
   * Stage-1 walks and descriptor reads, except those of the TLB fills that the engine's fast
   * walk did in place (Tlb.fastFills counts them): read walksS1 and descriptorReads.
   */
  rawWalksS1 = 0;
  rawDescriptorReads = 0;
  walksS2 = 0;
  hwUpdates = 0;

  constructor(
    private readonly mem: PhysicalMemory,
    private readonly tlb: Tlb | null,
    private readonly opt: WalkerOptions,
  ) {}

  /** Stage-1 walks done (the general walk's and the engine's fast walk's). */
  get walksS1(): number {
    return this.rawWalksS1 + (this.tlb === null ? 0 : this.tlb.fastWalks().walks);
  }

  /** Table and leaf descriptors read, both stages. */
  get descriptorReads(): number {
    return this.rawDescriptorReads + (this.tlb === null ? 0 : this.tlb.fastWalks().reads);
  }

  private fault(
    res: TranslationResult,
    code: number,
    cls: number,
    s2: boolean,
    level: number,
    ipa: number,
  ): number {
    res.fault = code;
    res.faultClass = cls;
    res.s2 = s2;
    res.level = level;
    res.ipa = ipa;
    res.tlbHit = false;
    return code;
  }

  private eabt(
    res: TranslationResult,
    cls: number,
    s2: boolean,
    level: number,
    ipa: number,
    pa: number,
  ): number {
    res.fetchAddr = pa;
    return this.fault(res, F_WALK_EABT, cls, s2, level, ipa);
  }

  // ================================================================ stage 2

  /**
   * Translate an IPA through stage 2 (with the TLB's KIND_S2 entries), for an access of kind
   * `a` (ACCESS_* flags, normalised) on behalf of `cls` (CLASS_CD, CLASS_TT or CLASS_IN).
   * Returns 0 with s2Pa/s2Perm/... set, or a fault code with res describing a stage-2 fault.
   * Permission is checked here: for CLASS_IN against `a`, for CD/TT as a data read (plus S2PTW).
   */
  s2Translate(cfg: TranslationConfig, ipa: number, a: number, cls: number, res: TranslationResult): number {
    const s2 = cfg.s2;
    const g = s2.s2tg;
    if (!s2.s2aa64 || s2.s2endi || (g !== 12 && g !== 14 && g !== 16)) {
      return this.fault(res, C_BAD_STE, cls, true, 0, ipa);
    }
    const tsz = s2.s2t0sz;
    const minTsz = g === 16 && this.opt.oas === 52 ? 12 : 16;
    if (tsz < minTsz || tsz > 39) return this.fault(res, C_BAD_STE, cls, true, 0, ipa);
    const ia = 64 - tsz;
    const sl = s2StartLevel(g, s2.s2sl0);
    const nb0 = s2StartBits(g, ia, sl);
    if (nb0 < 0) return this.fault(res, C_BAD_STE, cls, true, 0, ipa);
    if (!(ipa < POW2[ia]!)) return this.fault(res, F_TRANSLATION, cls, true, sl, ipa);
    const lo = ipa | 0; // int32 halves: no heap numbers at the TLB calls
    const hi = (ipa / TWO32) | 0;
    const vmid = cfg.vmid & 0xffff;
    const tlb = this.tlb;
    const access = cls === CLASS_IN ? a : 0;
    if (tlb !== null) {
      const w = tlb.lookup(lo, hi, Tlb.hiTag(cfg.world, KIND_S2), vmid << 16, vmid);
      if (w >= 0) {
        const sh = tlb.hitShift;
        const perm = tlb.entryPerm(w);
        const inf = tlb.entryInfo(w);
        this.s2Pa = tlb.entryOa(w) + offsetBelow(lo, hi, sh);
        this.s2Shift = sh;
        this.s2Perm = (perm >>> 8) & 0xff;
        this.s2MemAttr = (tlb.entryAttr(w) >>> 12) & 0xf;
        this.s2Level = (inf >>> 8) & 0xf;
        this.s2G = ((inf >>> 12) & 0xf) + 10;
        this.s2Flags = perm & EF_DBM2;
        if (((this.s2Perm >>> access) & 1) === 0 && (this.s2Flags & EF_DBM2) !== 0 && (access & 1) !== 0) {
          tlb.remove(w); // writable-clean: walk again so the hardware can mark it dirty
        } else return this.s2Check(s2.s2ptw, access, cls, res, ipa);
      }
    }
    this.walksS2++;
    const oas = this.opt.oas;
    let ps = Math.min(s2.s2ps, oas);
    if (g !== 16 && ps > 48) ps = 48;
    const psLimit = POW2[ps]!;
    let table = s2.s2ttb;
    if (!(table < psLimit)) return this.fault(res, F_ADDR_SIZE, cls, true, sl, ipa);
    table -= (table >>> 0) & ((8 << nb0) - 1); // start table alignment (<= 2^20 bytes)
    let level = sl;
    let nb = nb0;
    const mem = this.mem;
    for (;;) {
      const sh = levelShift(g, level);
      const pa = table + index(lo, hi, sh, nb) * 8;
      this.rawDescriptorReads++;
      if (this.san !== null) this.san.checkWalk(pa);
      if (mem.read64(pa) !== 0) return this.eabt(res, cls, true, level, ipa, pa);
      let dLo = mem.r64[0]!;
      const dHi = mem.r64[1]!;
      if ((dLo & 1) === 0) return this.fault(res, F_TRANSLATION, cls, true, level, ipa);
      if (level < 3 && (dLo & 2) !== 0) {
        table = descAddress(dLo, dHi, g, g);
        if (!(table < psLimit)) return this.fault(res, F_ADDR_SIZE, cls, true, level, ipa);
        level++;
        nb = g - 3;
        continue;
      }
      if (level === 3 ? (dLo & 2) === 0 : !blockAllowed(g, level, oas === 52)) {
        return this.fault(res, F_TRANSLATION, cls, true, level, ipa);
      }
      const base = descAddress(dLo, dHi, g, sh);
      if (!(base < psLimit)) return this.fault(res, F_ADDR_SIZE, cls, true, level, ipa);
      const ha = this.opt.httu && s2.s2ha;
      let upd = dLo;
      if ((dLo & D_AF) === 0) {
        if (ha) upd |= D_AF;
        else if (!s2.s2affd) return this.fault(res, F_ACCESS, cls, true, level, ipa);
      }
      const xn = this.opt.xnx ? (dHi >>> 21) & 3 : (dHi >>> 21) & 2;
      let perm = s2PermMask((dLo >>> 6) & 3, xn);
      let flags = 0;
      if ((dHi & DH_DBM) !== 0 && (dLo & D_S2AP_W) === 0 && ha && s2.s2hd) {
        const dirty = s2PermMask(((dLo >>> 6) & 3) | 2, xn);
        if ((access & 1) !== 0 && ((perm >>> access) & 1) === 0 && ((dirty >>> access) & 1) !== 0) {
          upd |= D_S2AP_W;
          perm = dirty;
        } else flags = EF_DBM2;
      }
      if (upd !== dLo) {
        this.hwUpdates++;
        if (mem.write64(pa, upd, dHi) !== 0) return this.eabt(res, cls, true, level, ipa, pa);
        dLo = upd;
      }
      const off = offsetBelow(lo, hi, sh);
      this.s2Pa = base + off;
      this.s2Shift = sh;
      this.s2Perm = perm;
      this.s2MemAttr = (dLo >>> 2) & 0xf;
      this.s2Level = level;
      this.s2G = g;
      this.s2Flags = flags;
      if (tlb !== null) {
        tlb.insert(
          lo,
          hi,
          sh,
          cfg.world,
          KIND_S2,
          vmid,
          0,
          true,
          base | 0,
          (base / TWO32) | 0,
          0,
          (perm << 8) | 0xff | flags,
          this.s2MemAttr << 12,
          (level << 8) | ((g - 10) << 12),
        );
      }
      return this.s2Check(s2.s2ptw, access, cls, res, ipa);
    }
  }

  private s2Check(s2ptw: boolean, access: number, cls: number, res: TranslationResult, ipa: number): number {
    if (((this.s2Perm >>> access) & 1) === 0)
      return this.fault(res, F_PERMISSION, cls, true, this.s2Level, ipa);
    if (s2ptw && cls === CLASS_TT && s2MemAttrIsDevice(this.s2MemAttr)) {
      return this.fault(res, F_PERMISSION, cls, true, this.s2Level, ipa);
    }
    return 0;
  }

  // ================================================================ stage 1

  /**
   * Walk the stage-1 tables of range `sel` (0 = TTB0, 1 = TTB1) for the address (lo, kHi)
   * (bits 55:0; range and TBI checks already done by the caller, granule already validated).
   * Returns 0 with s1* outputs set, or a fault code with res filled.
   */
  walkS1(
    cfg: TranslationConfig,
    lo: number,
    kHi: number,
    sel: number,
    a: number,
    res: TranslationResult,
  ): number {
    this.rawWalksS1++;
    const s1 = cfg.s1;
    const g = sel === 0 ? s1.tg0 : s1.tg1;
    const ia = 64 - clampTxsz(sel === 0 ? s1.t0sz : s1.t1sz, g, this.opt.vax);
    const nested = cfg.s2Enabled;
    const oas = this.opt.oas;
    let ips = Math.min(s1.ips, oas);
    if (g !== 16 && ips > 48) ips = 48;
    const ipsLimit = POW2[ips]!;
    const had = sel === 0 ? s1.had0 : s1.had1;
    const single = cfg.world === WORLD_EL2;
    const start = s1StartLevel(g, ia);
    let nb = ia - levelShift(g, start);
    let table = sel === 0 ? s1.ttb0 : s1.ttb1;
    if (!(table < ipsLimit)) return this.fault(res, F_ADDR_SIZE, CLASS_IN, false, start, 0);
    table -= (table >>> 0) & ((8 << nb) - 1);
    let level = start;
    let hier = 0; // accumulated APTable/XNTable bits (as in descriptor hi)
    const mem = this.mem;
    for (;;) {
      const sh = levelShift(g, level);
      const dAddr = table + index(lo, kHi, sh, nb) * 8;
      let pa = dAddr;
      if (nested) {
        const f = this.s2Translate(cfg, dAddr, 0, CLASS_TT, res);
        if (f !== 0) return f;
        pa = this.s2Pa;
      }
      this.rawDescriptorReads++;
      if (this.san !== null) this.san.checkWalk(pa);
      if (mem.read64(pa) !== 0) return this.eabt(res, CLASS_TT, false, level, 0, pa);
      let dLo = mem.r64[0]!;
      const dHi = mem.r64[1]!;
      if ((dLo & 1) === 0) return this.fault(res, F_TRANSLATION, CLASS_IN, false, level, 0);
      if (level < 3 && (dLo & 2) !== 0) {
        table = descAddress(dLo, dHi, g, g);
        if (!(table < ipsLimit)) return this.fault(res, F_ADDR_SIZE, CLASS_IN, false, level, 0);
        if (!had) hier |= dHi;
        level++;
        nb = g - 3;
        continue;
      }
      if (level === 3 ? (dLo & 2) === 0 : !blockAllowed(g, level, oas === 52)) {
        return this.fault(res, F_TRANSLATION, CLASS_IN, false, level, 0);
      }
      const base = descAddress(dLo, dHi, g, sh);
      if (!(base < ipsLimit)) return this.fault(res, F_ADDR_SIZE, CLASS_IN, false, level, 0);
      const ha = this.opt.httu && s1.ha;
      let upd = dLo;
      if ((dLo & D_AF) === 0) {
        if (ha) upd |= D_AF;
        else if (!s1.affd) return this.fault(res, F_ACCESS, CLASS_IN, false, level, 0);
      }
      // APTable[0] removes EL0 access, APTable[1] removes write access
      let ap = (dLo >>> 6) & 3;
      if ((hier & DH_APTABLE0) !== 0) ap &= ~1;
      const roTable = (hier >>> 30) & 1;
      const pxn = (dHi & DH_PXN) !== 0 || (hier & DH_PXNTABLE) !== 0;
      const uxn = (dHi & DH_UXN) !== 0 || (hier & DH_UXNTABLE) !== 0;
      let perm = s1PermMask(ap | (roTable << 1), pxn, uxn, single, s1.wxn, s1.pan);
      let flags = 0;
      if ((dHi & DH_DBM) !== 0 && (dLo & D_AP2) !== 0 && roTable === 0 && ha && s1.hd) {
        const dirty = s1PermMask(ap & 1, pxn, uxn, single, s1.wxn, s1.pan);
        if ((a & 1) !== 0 && ((perm >>> a) & 1) === 0 && ((dirty >>> a) & 1) !== 0) {
          upd &= ~D_AP2;
          perm = dirty;
        } else flags = EF_DBM1;
      }
      if (upd !== dLo) {
        this.hwUpdates++;
        if (mem.write64(pa, upd, dHi) !== 0) return this.eabt(res, CLASS_TT, false, level, 0, pa);
        dLo = upd;
      }
      this.s1Oa = base;
      this.s1Shift = sh;
      this.s1Perm = perm;
      const idx = (dLo >>> 2) & 7;
      const mairByte = (idx < 4 ? s1.mairLo >>> (idx * 8) : s1.mairHi >>> ((idx - 4) * 8)) & 0xff;
      this.s1Attr = mairByte | (((dLo >>> 8) & 3) << 8);
      this.s1Level = level;
      this.s1Global = single || (dLo & D_NG) === 0;
      this.s1Flags = flags;
      return 0;
    }
  }
}
