/**
 * The translation engine every SMMU model shares (walker + TLB): what happens to one
 * transaction once the device has resolved its configuration (SMMUv3: STE/CD; SMMUv2: a context
 * bank) into a TranslationConfig. Input-address checks (TBI, TTB0/TTB1 selection by VA
 * bit 55, the T0SZ/T1SZ range), the TLB lookup, on a miss the walk (stage 1, stage 2 or
 * nested) and the TLB fill, then the permission check. The result goes into a caller-owned
 * TranslationResult; nothing allocates per call.
 *
 * Also the TLB maintenance the command queue needs, named after the commands (tlbiNhAsid,
 * tlbiS2Ipa, ...), and translateIpa() for the CD fetch of a nested stream (Class = CD).
 *
 * Caching rules (Arm ARM / IHI 0070): only successful walks are cached (never translation,
 * access-flag or address-size faults); an entry is cached even when the access it was walked
 * for fails the permission check, so a later permission upgrade without TLBI keeps faulting.
 * EPDx is checked on a TLB miss only (a hit for a range whose walks were disabled later still
 * translates, as on hardware). Nested walks cache the combined S1+S2 translation (size = the
 * smaller leaf) plus each stage-2 translation as its own entry.
 */

import { D_AF, D_NG, DH_DBM } from '../../arch/vmsa/descriptor.ts';
import { clampTxsz } from '../../arch/vmsa/granule.ts';
import type { PhysicalMemory } from '../../platform/memory.ts';
import { TWO32 } from '../../platform/u64.ts';
import {
  EF_DBM1,
  EF_DBM2,
  EF_NESTED,
  HI_VPN,
  KIND_S1,
  MASK_EXACT,
  MASK_VMID_ONLY,
  S_ATTR_INFO,
  S_CTX,
  S_MASK,
  S_OAHI,
  S_OALO,
  S_PERM,
  S_VHI,
  Tlb,
} from './tlb.ts';
import {
  C_BAD_CD,
  CLASS_CD,
  CLASS_IN,
  type EngineOptions,
  F_PERMISSION,
  F_TLB_CONFLICT,
  F_TRANSLATION,
  type Stage1Config,
  type TranslationConfig,
  type TranslationResult,
  WORLD_EL2,
  WORLD_EL2_E2H,
  WORLD_NS_EL1,
} from './translate-types.ts';
import { offsetBelow, s1PermMask, Walker } from './walk.ts';

/**
 * s1PermMask for every input, as a table: index = apEff | pxn << 2 | uxn << 3 | single << 4 |
 * wxn << 5 | pan << 6 (apEff = AP[2:1] after APTable). Built from s1PermMask, so identical.
 */
const S1_PERM = new Uint8Array(128).map((_, i) =>
  s1PermMask(i & 3, (i & 4) !== 0, (i & 8) !== 0, (i & 16) !== 0, (i & 32) !== 0, (i & 64) !== 0),
);

/**
 * The fast walk's permission table: S1_PERM with the table descriptors' hierarchical bits folded
 * in, so that the index is taken straight from the descriptor words. Index = leaf AP[2:1] |
 * leaf PXN, UXN (descriptor bits 53, 54) << 2 | PXNTable, UXNTable, APTable[1:0] (bits 59..62
 * of the tables above, ORed) << 4 | single << 8 | WXN << 9 | PAN << 10. APTable[0] removes EL0
 * access (AP[1] reads 0), APTable[1] makes the page read-only (AP[2] reads 1).
 */
const S1_PERM_H = new Uint8Array(2048).map((_, i) => {
  const ap = (i & 3 & ((i & 0x40) !== 0 ? 2 : 3)) | ((i >>> 6) & 2);
  const pxn = ((i >>> 2) | (i >>> 4)) & 1;
  const uxn = ((i >>> 3) | (i >>> 5)) & 1;
  return S1_PERM[ap | (pxn << 2) | (uxn << 3) | ((i >>> 4) & 0x70)]!;
});

// Module-local copies of imported constants for the fast walk: an imported binding is read (and
// checked for initialisation) at every use, a local const is folded into the code.
const TWO_32 = TWO32;
const AF = D_AF;
const NG = D_NG;
const DBM = DH_DBM;
const EL2 = WORLD_EL2;
const NS_EL1 = WORLD_NS_EL1;
const VHI = S_VHI;
const CTX = S_CTX;
const MASK = S_MASK;
const OALO = S_OALO;
const OAHI = S_OAHI;
const PERM = S_PERM;
const ATTR_INFO = S_ATTR_INFO;
const VMID_ONLY = MASK_VMID_ONLY;
const EXACT = MASK_EXACT;
const VPN = HI_VPN;

const KEY_SPACE = 2 ** 56;

/**
 * Length in bytes of an SMMU range TLBI (IDR3.RIL): (NUM + 1) × 2^SCALE pages of the TG granule
 * (IHI 0070 §4.4.1; Linux arm_smmu_tlb_inv_range_cmd and QEMU agree). Not the PE's TLBI RVA
 * formula, (NUM + 1) × 2^(5 × SCALE + 1).
 */
export function tlbiRangeLength(tgShift: number, scale: number, num: number): number {
  return (num + 1) * 2 ** (scale + tgShift);
}

/** What the engine derives from one stage-1 config (prepare), the TTB0 range where it matters. */
class Derived {
  el2 = false; // one VA range (EL2 without E2H): every entry global
  vmid = 0;
  ctx = 0; // TLB context word of a non-global entry (VMID << 16 | ASID)
  ctxGlobal = 0; // ... and of a global one
  hiTag = 0;
  tg0Bad = false; // TG0 a reserved encoding: C_BAD_CD
  mHi = 0; // TTB0 input range: (hi & mHi) | (lo & mLo) must be 0
  mLo = 0;
  fast = false; // the fast walk (translate64) can walk TTB0
  l0 = false; // the walk starts at level 0 (else level 1)
  idxMask = 0; // start-table index mask
  ttb = 0; // start-table address, int32, aligned to the table's size
  hierMask = 0; // 0 with HAD0 (no hierarchical permissions), else -1
  ipsSh = 0; // output size - 32
  permBase = 0; // S1_PERM_H index bits of the regime: single range, WXN, PAN
  /** Result attr (MAIR byte | SH << 8) by AttrIndx | SH << 3 of a leaf (fast walk). */
  readonly attr = new Uint16Array(32);
  dirtyUpdate = false; // HTTU with HA and HD: a DBM page's first write updates it
  constructor(readonly cfg: TranslationConfig | null) {}
}

export interface EngineCounters {
  translations: number;
  faults: number;
}

export class TranslationEngine {
  readonly tlb: Tlb | null;
  readonly walker: Walker;
  readonly oas: number;
  readonly xnx: boolean;
  readonly httu: boolean;
  readonly vax: boolean;
  /** F_TLB_CONFLICT on a break-before-make conflict (EngineOptions.tlbConflictAbort). */
  readonly tlbConflictAbort: boolean;
  readonly counters: EngineCounters = { translations: 0, faults: 0 };
  private readonly hiTagS1: Int32Array;
  /** What prepare() derived from the config of the last translation (k.cfg). */
  private k: Derived = new Derived(null);
  /** ... and from every config seen, for streams that take turns. */
  private readonly derived = new WeakMap<TranslationConfig, Derived>();

  constructor(
    private readonly mem: PhysicalMemory,
    opts: EngineOptions = {},
  ) {
    this.oas = opts.oas ?? 48;
    this.xnx = opts.xnx ?? true;
    this.httu = opts.httu ?? true;
    this.vax = opts.vax ?? false;
    this.tlbConflictAbort = opts.tlbConflictAbort === true;
    const sets = opts.tlbSets ?? 2048;
    this.tlb = sets === 0 ? null : new Tlb({ sets, ways: opts.tlbWays ?? 4 });
    this.walker = new Walker(mem, this.tlb, { oas: this.oas, xnx: this.xnx, httu: this.httu, vax: this.vax });
    // the sanitizer checks every descriptor read and records every fill: walks go through the
    // Walker (the fast walk reads the memory window directly) and the TLB keeps fill records
    if (this.tlb !== null) this.tlb.checkConflicts = this.tlbConflictAbort;
    mem.watchSanitizer((san) => {
      this.walker.san = san;
      this.walker.fastPath = false;
      if (this.tlb !== null) {
        this.tlb.track(san);
        this.tlb.checkConflicts = true;
      }
    });
    this.hiTagS1 = new Int32Array([
      Tlb.hiTag(WORLD_NS_EL1, KIND_S1),
      Tlb.hiTag(WORLD_EL2, KIND_S1),
      Tlb.hiTag(WORLD_EL2_E2H, KIND_S1),
      0,
    ]);
  }

  /** Translate an input address below 2^53 (use translate64 for full 64-bit addresses). */
  translate(cfg: TranslationConfig, iova: number, access: number, res: TranslationResult): number {
    return this.translate64(cfg, iova | 0, (iova / 4294967296) | 0, access, res); // 2^32 (a literal: no context load)
  }

  /**
   * Translate the 64-bit input address (lo, hi) for an access of kind `access` (ACCESS_* flags).
   * Returns res.fault: 0 with res.oa set, or the fault (event) code with res describing it.
   *
   * The common stage-1 TLB miss is done here in one piece (the fast walk below): 4K granule,
   * TTB0, no stage 2, start level 0 or 1, table descriptors then a page (or an L1/L2 block),
   * every table in the memory's dense window below 4 GiB (within the part of it ever written),
   * AF set, no dirty-state update due, and the access permitted. It walks, fills the TLB,
   * counts and writes `res` exactly as miss() would; anything else goes to miss() having
   * changed nothing (miss() walks from the start and reports any fault). It is written into
   * this function, with int32 addresses and no calls on the way (no double arithmetic, no
   * HeapNumber at a call boundary, no outputs through fields), so that a miss is short enough
   * for the host to overlap the cache misses of one translation with those of the next: as a
   * method of its own it cost 48 more instructions per miss (counted under valgrind), and the
   * TLB hit path is no slower for it. walk.fastpath.test.ts checks that it cannot be told from
   * miss().
   */
  translate64(
    cfg: TranslationConfig,
    lo: number,
    hi: number,
    access: number,
    res: TranslationResult,
  ): number {
    this.counters.translations++;
    lo |= 0; // int32 from here on: a uint32 above 2^31 would be a heap number at every call
    let a = access & 7;
    if ((a & 1) !== 0) a &= 5; // a write is a data access
    let k = this.k;
    if (cfg !== k.cfg) {
      if (cfg.s1Enabled !== true) return this.noStage1(cfg, lo, hi, a, res);
      k = this.derived.get(cfg) ?? this.prepare(cfg);
      this.k = k;
    }
    // TTB1 (VA bit 55 set, two-range regimes): checked from the config; TTB0: from what
    // prepare() derived
    const sel = k.el2 === true ? 0 : (hi >>> 23) & 1;
    if (sel !== 0) {
      const f = this.checkTtb1(cfg.s1, lo, hi, res);
      if (f !== 0) return f;
    } else if (k.tg0Bad === true) return this.configFault(res);
    else if (((hi & k.mHi) | (lo & k.mLo)) !== 0) return this.rangeFault(res);
    const kHi = hi & 0x00ffffff;
    const tlb = this.tlb;
    let set4k = -1; // the 4K set the key maps to, when the lookup found it (only4k)
    if (tlb !== null) {
      const vmid = k.vmid;
      let w: number;
      if (tlb.only4k === true) {
        w = tlb.lookup4k(lo, kHi, k.hiTag, k.ctx, vmid);
        set4k = tlb.missSet;
      } else w = tlb.lookup(lo, kHi, k.hiTag, k.ctx, vmid);
      if (w >= 0) {
        const t = tlb.slots;
        const q = w << 3;
        const perm = t[q + PERM]!;
        const m = perm & (perm >>> 8);
        if (((m >>> a) & 1) !== 0) {
          const sh = tlb.hitShift;
          const ai = t[q + ATTR_INFO]!;
          res.fault = 0;
          res.s2 = false;
          res.oa =
            t[q + OAHI]! * TWO_32 +
            (t[q + OALO]! >>> 0) +
            (sh < 32 ? (lo & ((1 << sh) - 1)) >>> 0 : offsetBelow(lo, kHi, sh));
          res.pageShift = sh;
          res.perm = m & 0xff;
          res.attr = ai & 0xffff;
          res.level = (ai >>> 16) & 0xf;
          res.tlbHit = true;
          if (tlb.san !== null) tlb.hitOrigin(w, res);
          return 0;
        }
        return this.deniedOnHit(cfg, w, lo, kHi, sel, a, res);
      }
    }
    if (sel === 0 && k.fast === true && this.walker.fastPath === true) {
      // biome-ignore lint/suspicious/noConfusingLabels: every decline leaves through one call of miss()
      fast: {
        // descriptors are read straight from the dense window (no call, no double, no frame
        // index): its buffer does not change during the walk, which stores nothing. A table
        // outside the window, or beyond the part of it ever written, takes miss().
        const mem = this.mem;
        const W = mem.lowDenseWords();
        const dBase = mem.lowDenseBase;
        let pa: number;
        let i: number;
        let dLo: number;
        let dHi: number;
        let hier = 0;
        let level = 1;
        let reads = 1;
        if (k.l0 === true) {
          pa = k.ttb | (((kHi >>> 7) & k.idxMask) << 3);
          i = ((pa - dBase) >>> 0) >>> 2;
          if (i >= W.length) break fast;
          dLo = W[i]!;
          dHi = W[i + 1]!;
          if ((dLo & 3) !== 3 || (dHi & 0x3ffff) !== 0) break fast;
          hier = dHi;
          pa = (dLo & ~4095) | ((((kHi << 2) | (lo >>> 30)) & 511) << 3);
          reads = 2;
        } else pa = k.ttb | ((((kHi << 2) | (lo >>> 30)) & k.idxMask) << 3);
        // level 1: a table or a 1 GiB block
        i = ((pa - dBase) >>> 0) >>> 2;
        if (i >= W.length) break fast;
        dLo = W[i]!;
        dHi = W[i + 1]!;
        if ((dLo & 3) === 3) {
          if ((dHi & 0x3ffff) !== 0) break fast;
          hier |= dHi;
          // level 2: a table or a 2 MiB block
          pa = (dLo & ~4095) | (((lo >>> 21) & 511) << 3);
          i = ((pa - dBase) >>> 0) >>> 2;
          if (i >= W.length) break fast;
          dLo = W[i]!;
          dHi = W[i + 1]!;
          reads++;
          level = 2;
          if ((dLo & 3) === 3) {
            if ((dHi & 0x3ffff) !== 0) break fast;
            hier |= dHi;
            // level 3: a page
            pa = (dLo & ~4095) | (((lo >>> 12) & 511) << 3);
            i = ((pa - dBase) >>> 0) >>> 2;
            if (i >= W.length) break fast;
            dLo = W[i]!;
            dHi = W[i + 1]!;
            reads++;
            level = 3;
            if ((dLo & 3) !== 3) break fast;
          } else if ((dLo & 3) !== 1) break fast;
        } else if ((dLo & 3) !== 1) break fast;
        // the leaf: AF = 0 (fault, AFFD or a hardware update), a possible dirty-state update, an
        // address size fault and a permission fault (the entry is cached first) go to miss()
        if ((dLo & AF) === 0 || ((dHi & DBM) !== 0 && k.dirtyUpdate === true)) break fast;
        const oaHi = dHi & 0x3ffff;
        if (oaHi >>> k.ipsSh !== 0) break fast;
        // the table descriptors' APTable/XNTable bits (unless HAD0) with the leaf's AP, PXN, UXN
        const perm =
          S1_PERM_H[
            ((dLo >>> 6) & 3) | ((dHi >>> 19) & 0xc) | (((hier & k.hierMask) >>> 23) & 0xf0) | k.permBase
          ]!;
        if (((perm >>> a) & 1) === 0) break fast;
        const sh = level === 3 ? 12 : level === 2 ? 21 : 30;
        const oaLo = dLo & ~((1 << sh) - 1);
        const attr = k.attr[((dLo >>> 2) & 7) | ((dLo >>> 5) & 0x18)]!; // AttrIndx, SH
        const info = level | ((12 - 10) << 4);
        const tlb = this.tlb;
        if (tlb !== null) {
          const global = k.el2 === true || (dLo & NG) === 0;
          // Tlb.insert's steady state, in place: a 4K entry, 4 ways, the TLB full, and the set's
          // round-robin victim of the same context and size class; the new entry takes the
          // victim's slot and list places (no list, context or size bookkeeping). Written out
          // here, not as a Tlb method: as a method (inlined) it cost 676 instead of 587
          // instructions per miss (counted under valgrind)
          let done = false;
          if (sh === 12 && set4k >= 0) {
            // (set4k: lookup4k's set for this key, so the TLB has 4 ways and only 4K entries)
            const hiTag = k.hiTag;
            const vlo = (lo >>> 12) | (kHi << 20);
            const vhi = (kHi >>> 12) | hiTag;
            const set = set4k;
            // the set's first word in slots: below 2^25 (sets <= 2^20); the mask (a no-op) tells
            // the compiler so, and the offsets below then need no overflow checks
            const q0 = (set << 5) & 0x1ffffe0;
            const t = tlb.slots;
            const r = tlb.rr[set]! & 3;
            const q = q0 + (r << 3);
            if (
              tlb.occupancy === tlb.entries && // no empty way anywhere (insert would take one)
              t[q + CTX] === (global ? k.ctxGlobal : k.ctx) &&
              t[q + MASK] === (global ? VMID_ONLY : EXACT) &&
              ((t[q + VHI]! ^ hiTag) & ~VPN) === 0
            ) {
              tlb.rr[set] = (r + 1) & 3;
              t[q] = vlo;
              t[q + VHI] = vhi;
              t[q + OALO] = oaLo;
              t[q + OAHI] = oaHi;
              t[q + PERM] = perm | 0xff00;
              t[q + ATTR_INFO] = attr | (info << 16);
              // the miss, the eviction, the fill and the walk with its reads, counted once
              tlb.fastFills[reads]++;
              done = true;
            }
          }
          if (!done) {
            if (set4k >= 0) tlb.raw.misses++; // lookup4k left it to be counted
            const wk = this.walker;
            wk.rawWalksS1++;
            wk.rawDescriptorReads += reads;
            tlb.insert(
              lo,
              kHi,
              sh,
              cfg.world,
              KIND_S1,
              k.vmid,
              cfg.s1.asid,
              global,
              oaLo,
              oaHi,
              0,
              perm | 0xff00,
              attr,
              info,
            );
            if (tlb.conflict >= 0 && this.onConflict(lo, kHi, sh, res) !== 0) return res.fault;
          }
        } else {
          const wk = this.walker;
          wk.rawWalksS1++;
          wk.rawDescriptorReads += reads;
        }
        res.fault = 0;
        res.s2 = false;
        res.oa = oaHi * TWO_32 + (oaLo >>> 0) + ((lo & ((1 << sh) - 1)) >>> 0);
        res.pageShift = sh;
        res.perm = perm;
        res.attr = attr;
        res.level = level;
        res.tlbHit = false;
        return 0;
      }
    }
    if (set4k >= 0 && tlb !== null) tlb.raw.misses++; // lookup4k left it to be counted
    return this.miss(cfg, lo, kHi, sel, a, res);
  }

  /**
   * Derive, once per stage-1 config, what every translation under it needs: the TLB tags, the
   * TTB0 range and granule checks, and whether (and how) the fast walk can walk TTB0. Kept per
   * config (by identity) for as long as the config lives. A config must not change once used
   * (TranslationConfig says so), so its identity tells whether these are still valid; the config
   * and its stage-1 part are frozen here, so a later change throws a TypeError instead of going
   * unnoticed.
   */
  private prepare(cfg: TranslationConfig): Derived {
    const s1 = cfg.s1;
    Object.freeze(s1);
    Object.freeze(cfg);
    const world = cfg.world;
    const k = new Derived(cfg);
    k.el2 = world === EL2;
    const vmid = world === NS_EL1 ? cfg.vmid & 0xffff : 0;
    k.vmid = vmid;
    k.ctx = (vmid << 16) | (s1.asid & 0xffff);
    k.ctxGlobal = vmid << 16;
    k.hiTag = this.hiTagS1[world] ?? 0;
    const g = s1.tg0;
    k.tg0Bad = g !== 12 && g !== 14 && g !== 16;
    const tsz = s1.t0sz;
    const ia = k.tg0Bad ? 48 : 64 - (tsz >= 16 && tsz <= 39 ? tsz : clampTxsz(tsz, g, this.vax));
    // bits [63:ia] ([55:ia] with TBI) must be 0
    const top = s1.tbi0 === true ? 0x00ffffff : -1;
    k.mHi = ia >= 32 ? top & ~((1 << (ia - 32)) - 1) : top;
    k.mLo = ia >= 32 ? 0 : ~((1 << ia) - 1);
    // the fast walk: 4K granule, stage 1 only, AArch64 little-endian tables, walks enabled, start at
    // level 0 or 1 (TxSZ 16..33), TTB0 and the output size within int32 arithmetic
    const ttb = s1.ttb0;
    const ips = Math.min(s1.ips, this.oas, 48);
    k.fast =
      g === 12 &&
      cfg.s2Enabled !== true &&
      s1.aa64 === true &&
      s1.endi !== true &&
      s1.epd0 !== true &&
      tsz >= 16 &&
      tsz <= 33 &&
      ttb >= 0 &&
      ttb < TWO_32 &&
      ips >= 32 &&
      Number.isInteger(ips);
    // start table: level 0 resolves bits [ia-1:39] (ia 40..48), level 1 bits [ia-1:30] (31..39)
    k.l0 = ia > 39;
    const nb = ia > 39 ? ia - 39 : ia - 30;
    k.idxMask = (1 << nb) - 1;
    k.ttb = (ttb | 0) & ~((8 << nb) - 1);
    k.hierMask = s1.had0 === true ? 0 : -1;
    k.ipsSh = ips - 32;
    k.permBase = (world === EL2 ? 256 : 0) | (s1.wxn === true ? 512 : 0) | (s1.pan === true ? 1024 : 0);
    for (let i = 0; i < 32; i++) {
      const idx = i & 7;
      const mairByte = (idx < 4 ? s1.mairLo >>> (idx * 8) : s1.mairHi >>> ((idx - 4) * 8)) & 0xff;
      k.attr[i] = mairByte | ((i >>> 3) << 8);
    }
    k.dirtyUpdate = this.httu && s1.ha === true && s1.hd === true;
    this.derived.set(cfg, k);
    return k;
  }

  /** The TTB1 range's granule and input-range checks: 0, or the fault (`res` describes it). */
  private checkTtb1(s1: Stage1Config, lo: number, hi: number, res: TranslationResult): number {
    const g = s1.tg1;
    if (g !== 12 && g !== 14 && g !== 16) return this.configFault(res);
    const tsz = s1.t1sz;
    const ia = 64 - (tsz >= 16 && tsz <= 39 ? tsz : clampTxsz(tsz, g, this.vax));
    // bits [63:ia] ([55:ia] with TBI) must all be 1
    const top = s1.tbi1 === true ? 0x00ffffff : -1;
    if (ia >= 32) {
      const m = top & ~((1 << (ia - 32)) - 1);
      if ((hi & m) !== m) return this.rangeFault(res);
    } else {
      const m = ~((1 << ia) - 1);
      if ((hi & top) !== top || (lo & m) !== m) return this.rangeFault(res);
    }
    return 0;
  }

  /**
   * Translate an IPA through stage 2 alone, e.g. the CD address of a nested stream
   * (cls = CLASS_CD; a fault is reported with S2 = 1 and that class). Returns res.fault.
   */
  translateIpa(
    cfg: TranslationConfig,
    ipa: number,
    access: number,
    cls: number,
    res: TranslationResult,
  ): number {
    let a = access & 7;
    if ((a & 1) !== 0) a &= 5;
    const wk = this.walker;
    const f = wk.s2Translate(cfg, ipa, a, cls, res);
    if (f !== 0) {
      this.counters.faults++;
      return f;
    }
    res.fault = 0;
    res.s2 = false;
    res.oa = wk.s2Pa;
    res.pageShift = wk.s2Shift;
    res.perm = wk.s2Perm;
    res.attr = wk.s2MemAttr << 12;
    res.level = wk.s2Level;
    res.tlbHit = false;
    return 0;
  }

  /**
   * Stage-2 translation of a configuration-structure IPA (CD, L1CD) of a nested stream: the PA,
   * or -1 with `res` describing the stage-2 fault (S2 = 1, Class = CD).
   */
  translateStructIpa(cfg: TranslationConfig, ipa: number, res: TranslationResult): number {
    return this.translateIpa(cfg, ipa, 0, CLASS_CD, res) === 0 ? res.oa : -1;
  }

  /** A fault of the input transaction (Class IN), counted; `res` describes it. Returns `code`. */
  private inputFault(
    res: TranslationResult,
    code: number,
    s2: boolean,
    level: number,
    tlbHit: boolean,
  ): number {
    this.counters.faults++;
    res.fault = code;
    res.faultClass = CLASS_IN;
    res.s2 = s2;
    res.fetchAddr = 0;
    res.level = level;
    res.tlbHit = tlbHit;
    return code;
  }

  private configFault(res: TranslationResult): number {
    return this.inputFault(res, C_BAD_CD, false, 0, false);
  }

  private rangeFault(res: TranslationResult): number {
    return this.inputFault(res, F_TRANSLATION, false, 0, false);
  }

  private noStage1(
    cfg: TranslationConfig,
    lo: number,
    hi: number,
    a: number,
    res: TranslationResult,
  ): number {
    if (!cfg.s2Enabled) {
      // bypass: the input address is the output address
      res.fault = 0;
      res.s2 = false;
      res.oa = (hi >>> 0) * TWO32 + (lo >>> 0);
      res.pageShift = 12;
      res.perm = 0xff;
      res.attr = 0;
      res.level = 0;
      res.tlbHit = false;
      return 0;
    }
    if (hi >>> 20 !== 0) {
      // beyond any IPA size (and beyond exact Numbers): stage-2 translation fault
      res.ipa = (hi >>> 0) * TWO32 + (lo >>> 0);
      return this.inputFault(res, F_TRANSLATION, true, 0, false);
    }
    const tlb = this.tlb;
    const hits = tlb === null ? 0 : tlb.counters.hits;
    const f = this.translateIpa(cfg, hi * TWO32 + (lo >>> 0), a, CLASS_IN, res);
    if (f === 0 && tlb !== null) res.tlbHit = tlb.counters.hits !== hits;
    return f;
  }

  /** A cached entry denies the access: report which stage, or re-walk for a dirty-state update. */
  private deniedOnHit(
    cfg: TranslationConfig,
    w: number,
    lo: number,
    kHi: number,
    sel: number,
    a: number,
    res: TranslationResult,
  ): number {
    const tlb = this.tlb!;
    const perm = tlb.entryPerm(w);
    const s1ok = ((perm >>> a) & 1) !== 0;
    if ((a & 1) !== 0 && (perm & (s1ok ? EF_DBM2 : EF_DBM1)) !== 0) {
      tlb.remove(w); // writable-clean page: walk again so the hardware marks it dirty
      return this.miss(cfg, lo, kHi, sel, a, res);
    }
    res.ipa = s1ok ? tlb.ipa[w]! + offsetBelow(lo, kHi, tlb.hitShift) : 0;
    const level = s1ok ? (tlb.entryInfo(w) >>> 8) & 0xf : tlb.entryInfo(w) & 0xf;
    return this.inputFault(res, F_PERMISSION, s1ok, level, true);
  }

  private miss(
    cfg: TranslationConfig,
    lo: number,
    kHi: number,
    sel: number,
    a: number,
    res: TranslationResult,
  ): number {
    const s1 = cfg.s1;
    if (!s1.aa64 || s1.endi) return this.configFault(res);
    if (sel === 0 ? s1.epd0 : s1.epd1) return this.rangeFault(res);
    const wk = this.walker;
    let f = wk.walkS1(cfg, lo, kHi, sel, a, res);
    if (f !== 0) {
      this.counters.faults++;
      return f;
    }
    const g = sel === 0 ? s1.tg0 : s1.tg1;
    let sh = wk.s1Shift;
    const s1Perm = wk.s1Perm;
    let perm = s1Perm | 0xff00 | wk.s1Flags;
    let attr = wk.s1Attr;
    let info = wk.s1Level | ((g - 10) << 4);
    let oaBase = wk.s1Oa;
    let ipaBase = 0;
    if (cfg.s2Enabled) {
      if (((s1Perm >>> a) & 1) === 0) return this.s1PermFault(res, wk.s1Level);
      const ipa = wk.s1Oa + offsetBelow(lo, kHi, sh);
      f = wk.s2Translate(cfg, ipa, a, CLASS_IN, res);
      if (f !== 0) {
        this.counters.faults++;
        return f;
      }
      if (wk.s2Shift < sh) sh = wk.s2Shift;
      const off = offsetBelow(lo, kHi, sh);
      oaBase = wk.s2Pa - off;
      ipaBase = ipa - off;
      perm = s1Perm | (wk.s2Perm << 8) | wk.s1Flags | wk.s2Flags | EF_NESTED;
      attr |= wk.s2MemAttr << 12;
      info |= (wk.s2Level << 8) | ((wk.s2G - 10) << 12);
    }
    const tlb = this.tlb;
    if (tlb !== null) {
      const world = cfg.world;
      const vmid = world === WORLD_NS_EL1 ? cfg.vmid & 0xffff : 0;
      tlb.insert(
        lo,
        kHi,
        sh,
        world,
        KIND_S1,
        vmid,
        s1.asid,
        wk.s1Global,
        oaBase | 0,
        (oaBase / TWO32) | 0,
        ipaBase,
        perm,
        attr,
        info,
      );
      if (tlb.conflict >= 0 && this.onConflict(lo, kHi, sh, res) !== 0) return res.fault;
    }
    if (((s1Perm >>> a) & 1) === 0) return this.s1PermFault(res, wk.s1Level);
    const m = perm & (perm >>> 8) & 0xff;
    res.fault = 0;
    res.s2 = false;
    res.oa = oaBase + offsetBelow(lo, kHi, sh);
    res.pageShift = sh;
    res.perm = m;
    res.attr = attr;
    res.level = info & 0xf;
    res.tlbHit = false;
    return 0;
  }

  /**
   * The walk for (lo, kHi) filled a 2^sh-byte entry that overlaps another of a different size
   * in its context (tlb.conflict): a break-before-make step was skipped. The sanitizer names
   * it; with tlbConflictAbort the transaction aborts with F_TLB_CONFLICT. Both entries stay until
   * a TLBI (later hits use either, as the architecture allows). Returns the fault, or 0 to go on.
   */
  private onConflict(lo: number, kHi: number, sh: number, res: TranslationResult): number {
    const tlb = this.tlb!;
    const other = tlb.conflict;
    tlb.conflict = -1;
    const san = this.walker.san;
    const iova = (kHi >>> 0) * TWO32 + (lo >>> 0);
    if (san !== null) {
      const size = (s: number) =>
        s >= 30 ? `${2 ** (s - 30)} GiB` : s >= 20 ? `${2 ** (s - 20)} MiB` : `${2 ** (s - 10)} KiB`;
      const osh = tlb.entryShift(other);
      san.reportConflict(
        san.txDevice,
        san.txSid,
        san.txSsid,
        iova,
        `the TLB holds a ${size(osh)} entry at IOVA 0x${tlb.entryBase(other).toString(16)} (ASID ${tlb.entryAsid(other)}, VMID ${tlb.entryVmid(other)}) and now a ${size(sh)} entry for IOVA 0x${iova.toString(16)}: the tables changed a ${size(Math.min(osh, sh))} mapping into a ${size(Math.max(osh, sh))} one (or the reverse) without the TLBI of the range in between`,
      );
    }
    if (!this.tlbConflictAbort) return 0;
    this.counters.faults++;
    res.fault = F_TLB_CONFLICT;
    res.faultClass = CLASS_IN;
    res.s2 = false;
    res.fetchAddr = 0;
    res.level = 0;
    res.tlbHit = false;
    return F_TLB_CONFLICT;
  }

  private s1PermFault(res: TranslationResult, level: number): number {
    return this.inputFault(res, F_PERMISSION, false, level, false);
  }

  // ================================================================ TLB maintenance (commands)
  //
  // Address-based commands take the command's fields as decoded from the queue: `addr` the
  // 64-bit address as a Number (page-aligned, so exact; bits 63:56 ignored), `len` the bytes
  // covered (one granule, or tlbiRangeLength() for a range command), `leaf` (accepted; the TLB
  // holds no stage-1 walk-cache entries, so Leaf changes nothing), and the raw TTL and TG
  // fields: TG 0 = no hint (TTL ignored), 1 = 4K, 2 = 16K, 3 = 64K; TTL 1..3 = leaf level. With
  // a hint only entries whose leaf was at that level of that granule are removed (a wrong hint
  // leaves the entry in place, as hardware that trusts the hint would).

  /** TLBI_NH_ALL: every stage-1 entry of the VMID (all ASIDs, global too). */
  tlbiNhAll(vmid: number): number {
    return this.tlb?.invalidateVmid(WORLD_NS_EL1, vmid, false) ?? 0;
  }

  /** TLBI_NH_ASID: non-global stage-1 entries of (VMID, ASID). Global entries are kept. */
  tlbiNhAsid(vmid: number, asid: number): number {
    return this.tlb?.invalidateAsid(WORLD_NS_EL1, vmid, asid) ?? 0;
  }

  /**
   * TLBI_NH_VA (asid >= 0): stage-1 entries of (VMID, ASID), and global entries of the VMID,
   * overlapping [addr, addr + len). TLBI_NH_VAA: asid = -1, every ASID.
   */
  tlbiNhVa(vmid: number, asid: number, addr: number, len = 4096, _leaf = false, ttl = 0, tg = 0): number {
    return (
      this.tlb?.invalidateVa(WORLD_NS_EL1, vmid, asid, keyOf(addr), len, hintTtl(ttl, tg), hintTg(tg)) ?? 0
    );
  }

  /** TLBI_NH_VAA: like tlbiNhVa for every ASID of the VMID. */
  tlbiNhVaa(vmid: number, addr: number, len = 4096, leaf = false, ttl = 0, tg = 0): number {
    return this.tlbiNhVa(vmid, -1, addr, len, leaf, ttl, tg);
  }

  /** TLBI_S12_VMALL: every entry of the VMID, stage 1, combined and stage 2. */
  tlbiS12Vmall(vmid: number): number {
    return this.tlb?.invalidateVmid(WORLD_NS_EL1, vmid, true) ?? 0;
  }

  /**
   * TLBI_S2_IPA: stage-2 entries of the VMID overlapping [addr, addr + len). Combined S1+S2
   * entries are not touched (software follows with TLBI_NH_ALL / S12_VMALL, as Linux does).
   */
  tlbiS2Ipa(vmid: number, addr: number, len = 4096, _leaf = false, ttl = 0, tg = 0): number {
    return this.tlb?.invalidateIpa(WORLD_NS_EL1, vmid, keyOf(addr), len, hintTtl(ttl, tg), hintTg(tg)) ?? 0;
  }

  /** TLBI_NSNH_ALL: every non-secure, non-hypervisor entry (EL1 world, all VMIDs, both stages). */
  tlbiNsnhAll(): number {
    return this.tlb?.invalidateWorlds(1 << WORLD_NS_EL1) ?? 0;
  }

  /** TLBI_EL2_ALL: every EL2 and EL2-E2H entry. */
  tlbiEl2All(): number {
    return this.tlb?.invalidateWorlds((1 << WORLD_EL2) | (1 << WORLD_EL2_E2H)) ?? 0;
  }

  /** TLBI_EL2_ASID: non-global EL2-E2H entries of the ASID. */
  tlbiEl2Asid(asid: number): number {
    return this.tlb?.invalidateAsid(WORLD_EL2_E2H, 0, asid) ?? 0;
  }

  /**
   * TLBI_EL2_VA (asid >= 0): EL2 entries (all global) and EL2-E2H entries of the ASID or global,
   * overlapping the range. TLBI_EL2_VAA: asid = -1, every ASID.
   */
  tlbiEl2Va(asid: number, addr: number, len = 4096, _leaf = false, ttl = 0, tg = 0): number {
    const t = this.tlb;
    if (t === null) return 0;
    const k = keyOf(addr);
    const l = hintTtl(ttl, tg);
    const g = hintTg(tg);
    return (
      t.invalidateVa(WORLD_EL2, 0, -1, k, len, l, g) + t.invalidateVa(WORLD_EL2_E2H, 0, asid, k, len, l, g)
    );
  }

  /** TLBI_EL2_VAA. */
  tlbiEl2Vaa(addr: number, len = 4096, leaf = false, ttl = 0, tg = 0): number {
    return this.tlbiEl2Va(-1, addr, len, leaf, ttl, tg);
  }

  /** Everything (SMMU reset). */
  tlbiAll(): number {
    return this.tlb?.invalidateAll() ?? 0;
  }
}

/** TG field (0 none, 1 4K, 2 16K, 3 64K) -> granule shift or 0. */
function hintTg(tg: number): number {
  return tg === 1 ? 12 : tg === 2 ? 14 : tg === 3 ? 16 : 0;
}

/** TTL is meaningful only with a TG. */
function hintTtl(ttl: number, tg: number): number {
  return tg === 0 ? 0 : ttl & 3;
}

/** Input-address key (VA bits 55:0) of a command address, page-aligned. */
function keyOf(va: number): number {
  const k = va % KEY_SPACE;
  return k - (k % 4096);
}
