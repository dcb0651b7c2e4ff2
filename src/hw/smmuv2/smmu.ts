// The Arm SMMUv1/v2 device (IHI 0062; MMU-400/401/500 and the Qualcomm, NVIDIA and Marvell
// integrations Linux's arm-smmu driver knows): the register file, stream matching, context
// fault and global fault recording with their wired interrupts, TLB maintenance, and the DMA
// port devices translate through (port.ts). Software reaches it only through MMIO, memory and
// interrupts. Translation itself is the shared engine (hw/smmu-common), fed with each context
// bank's registers (context.ts).
//
// Register behaviour modelled:
//  - sCR0 resets with CLIENTPD = 1 (every transaction bypasses) and SMCFCFG = 1;
//  - sGFSR and FSR are write-1-to-clear; a fault that finds one already recorded sets MULTI and
//    leaves the syndrome registers alone; sGFSRRESTORE / FSRRESTORE write the value;
//  - TLB maintenance (GR0 TLBIVMID / TLBIALLNSNH / TLBIALLH / STLBIALL, the bank's TLBIVA(L),
//    TLBIVAA(L), TLBIASID, TLBIALL, TLBIIPAS2(L)) takes effect at the next sync of its space
//    (sTLBGSYNC for GR0, the bank's TLBSYNC): until then the TLB keeps the stale entries; the
//    status register then shows (GS)ACTIVE for `syncBusyReads` reads;
//  - 64-bit registers take 64-bit or 32-bit accesses; a 64-bit operation register (TLBI*, ATS1*)
//    written as two halves acts on the low-word write, with the high word written before it
//    (Linux's hi_lo order);
//  - MMU-500: sACR.CACHE_LOCK (set at reset, r2 onwards) keeps ACTLR writes from sticking;
//    sCR0.GSE / STALLD are not implemented (TRM 2.3.4);
//  - Marvell AP806 (erratum 582743): a 64-bit access reaches only the low word (writes) and
//    reads zero in the high word, so a driver must use two 32-bit accesses;
//  - qcom,smmu-500: GFX_PRR_CFG_LADDR / UADDR hold what is written; with
//    `firmwareBlocksBypass`, S2CR writes of TYPE BYPASS keep the previous TYPE.

import {
  CB,
  FSR_FAULT,
  FSR_FAULT_TYPES,
  FSR_SS,
  GR0,
  GR1,
  getField,
  QCOM_GFX_PRR_CFG_LADDR,
  QCOM_GFX_PRR_CFG_UADDR,
  S2CR,
  S2CR_TYPE_BYPASS,
  S2CR_TYPE_FAULT,
  SCTLR,
  SMR,
  sACR_MMU500,
  sCR0,
  sGFSR_CONFIG_MASK,
  sGFSR_FAULT_MASK,
  sTLBGSTATUS_GSACTIVE,
  TLBSTATUS_SACTIVE,
  TTBR_ASID_SHIFT_HI,
} from '../../arch/smmuv2/regs.ts';
import type { Machine } from '../../platform/machine.ts';
import type { MmioDevice } from '../../platform/mmio.ts';
import { TWO32 } from '../../platform/u64.ts';
import { TranslationEngine } from '../smmu-common/translate.ts';
import { ACCESS_EXEC, ACCESS_PRIV, ACCESS_WRITE } from '../smmu-common/translate-types.ts';
import { type BankEnv, ContextBank, deriveBank, sepExtendHi } from './context.ts';
import {
  encodeIdRegs,
  resolveFeatures,
  type SmmuV2Features,
  type SmmuV2IdRegs,
  type SmmuV2Options,
} from './features.ts';
import { WiredOr } from './irq-lines.ts';
import { SmmuV2Port, SmmuV2Upstream } from './port.ts';

/** Options for building an SmmuV2 on a machine. */
export interface SmmuV2Config extends SmmuV2Options {
  /** Map the register window at this physical address (features.windowSize bytes). */
  base?: number;
  /** Global fault interrupt lines (the first is driven; Linux's #global-interrupts). */
  globalIrqs?: readonly number[];
  /**
   * Context interrupt lines: SMMUv2 bank n drives contextIrqs[n]; SMMUv1 bank n drives
   * contextIrqs[CBAR.IRPTNDX]. Missing lines are not driven (software can poll FSR).
   */
  contextIrqs?: readonly number[];
  /** STAGs this instance hands out are stagOffset + k * stagStride (instances sharing masters). */
  stagOffset?: number;
  stagStride?: number;
}

export interface SmmuV2Counters {
  contextFaults: number;
  globalFaults: number;
  /** Faults that found one recorded (MULTI). */
  multi: number;
  stalls: number;
  resumes: number;
  /** RESUME writes ignored (nothing stalled, MMU-500 with FSR not clear, already resuming). */
  resumesIgnored: number;
  tlbiOps: number;
  syncs: number;
}

/** sACR reset of an MMU-500: CACHE_LOCK set (r2 onwards), TLB-enable bits clear. */
const MMU500_SACR_RESET = 1 << 26;
/** MMU-500 ACTLR reset: CMTLB | CPRE. */
const MMU500_ACTLR_RESET = 3;
/** sCR0 reset: CLIENTPD | SMCFCFG (MMU-500 TRM). */
const SCR0_RESET = (1 << 0) | (1 << 21);
const S2CR_RESET = S2CR_TYPE_FAULT << 16;

export class SmmuV2 implements MmioDevice, BankEnv {
  readonly name: string;
  readonly features: SmmuV2Features;
  readonly idRegs: SmmuV2IdRegs;
  readonly machine: Machine;
  readonly engine: TranslationEngine;
  readonly port: SmmuV2Port;
  readonly upstream: SmmuV2Upstream;
  readonly banks: ContextBank[] = [];
  readonly counters: SmmuV2Counters = {
    contextFaults: 0,
    globalFaults: 0,
    multi: 0,
    stalls: 0,
    resumes: 0,
    resumesIgnored: 0,
    tlbiOps: 0,
    syncs: 0,
  };
  /** Base of the register window once mapped, else -1. */
  base = -1;

  // ---- global registers
  scr0 = SCR0_RESET;
  sacr: number;
  gfsr = 0;
  gfsynr0 = 0;
  gfsynr1 = 0;
  gfsynr2 = 0;
  gfarLo = 0;
  gfarHi = 0;
  readonly smr: Uint32Array;
  readonly s2cr: Uint32Array;
  readonly cbar: Uint32Array;
  readonly cba2r: Uint32Array;
  readonly cbfrsynra: Uint32Array;
  private prrLo = 0;
  private prrHi = 0;
  private gsyncBusy = 0;
  private readonly pendingGlobalTlbi: Array<() => void> = [];

  /** Bumped by every write that can change a bank's derived configuration. */
  cfgGen = 0;
  /** Bumped by every write that can change stream matching. */
  smGen = 1;
  /** sCR0.CLIENTPD: hot-path copy. */
  clientPd = true;

  private readonly irqs: WiredOr;
  private readonly globalIrq: number;
  private readonly contextIrqs: readonly number[];
  private globalIrqHigh = false;
  private stagNext: number;
  private readonly stagStride: number;
  private readonly fsynr1Hook: SmmuV2Options['fsynr1'];

  constructor(machine: Machine, cfg: SmmuV2Config = {}) {
    this.machine = machine;
    const f = resolveFeatures(cfg);
    this.features = f;
    this.name = f.name;
    this.idRegs = encodeIdRegs(f);
    this.sacr = f.mmu500 && f.major >= 2 ? MMU500_SACR_RESET : 0;
    const nS2cr = f.sms ? f.numSmrg : 1 << f.sidBits;
    this.smr = new Uint32Array(f.sms ? f.numSmrg : 0);
    this.s2cr = new Uint32Array(nS2cr).fill(S2CR_RESET);
    this.cbar = new Uint32Array(f.numCb);
    this.cba2r = new Uint32Array(f.numCb);
    this.cbfrsynra = new Uint32Array(f.numCb);
    for (let i = 0; i < f.numCb; i++) {
      const b = new ContextBank(i);
      if (f.mmu500) b.actlr = MMU500_ACTLR_RESET;
      this.banks.push(b);
    }
    this.engine = new TranslationEngine(machine.mem, {
      oas: Math.max(f.iasBits, f.oasBits),
      xnx: false,
      httu: false,
      vax: false,
      tlbSets: f.tlbSets,
      tlbWays: f.tlbWays,
    });
    this.irqs = WiredOr.of(machine.irq);
    this.globalIrq = cfg.globalIrqs?.[0] ?? -1;
    this.contextIrqs = cfg.contextIrqs ?? [];
    this.stagNext = cfg.stagOffset ?? 0;
    this.stagStride = cfg.stagStride ?? 1;
    this.fsynr1Hook = cfg.fsynr1;
    this.upstream = new SmmuV2Upstream();
    this.port = new SmmuV2Port(this);
    if (cfg.base !== undefined) this.map(cfg.base);
  }

  /** Map the register window at `base`. */
  map(base: number): void {
    this.machine.mmio.map(base, this.features.windowSize, this);
    this.base = base;
  }

  /** A fresh STAG for a held transaction. */
  nextStag(): number {
    const s = this.stagNext;
    this.stagNext += this.stagStride;
    return s;
  }

  /** Derive `b`'s configuration if a register it depends on changed. */
  refresh(b: ContextBank): void {
    if (b.gen !== this.cfgGen) {
      deriveBank(this, b);
      b.gen = this.cfgGen;
    }
  }

  // ================================================================ faults and interrupts

  /**
   * Record a context fault in bank `b`: the FSR bits, and FAR / FSYNR0 / FSYNR1 / CBFRSYNRA /
   * IPAFAR when no fault is recorded yet; MULTI otherwise. Returns true when the fault was
   * recorded afresh (only then may it stall).
   */
  recordContextFault(
    b: ContextBank,
    fsrBits: number,
    sid: number,
    iova: number,
    access: number,
    fsynr0Extra: number,
    ipa: number,
  ): boolean {
    this.counters.contextFaults++;
    const fresh = (b.fsr & (FSR_FAULT_TYPES | FSR_SS)) === 0;
    if (fresh) {
      b.fsr |= fsrBits;
      b.farLo = iova | 0;
      b.farHi = sepExtendHi(b, iova, (iova / TWO32) | 0);
      b.fsynr0 =
        fsynr0Extra |
        ((access & ACCESS_WRITE) !== 0 ? 1 << 4 : 0) |
        ((access & ACCESS_PRIV) !== 0 ? 1 << 5 : 0) |
        ((access & ACCESS_EXEC) !== 0 && (access & ACCESS_WRITE) === 0 ? 1 << 6 : 0);
      b.fsynr1 = this.fsynr1Hook?.(sid, iova, (access & ACCESS_WRITE) !== 0) ?? 0;
      b.ipafarLo = ipa | 0;
      b.ipafarHi = (ipa / TWO32) | 0;
      this.cbfrsynra[b.index] = sid & 0xffff;
    } else {
      b.fsr |= FSR_FAULT & ~0x7fffffff; // MULTI
      this.counters.multi++;
    }
    this.updateBankIrq(b);
    const t = this.machine.trace;
    if (t.enabled) {
      t.emit(
        this.name,
        'smmuv2.context_fault',
        `cb${b.index}: fault 0x${fsrBits.toString(16)} sid 0x${sid.toString(16)} iova 0x${iova.toString(16)}${fresh ? '' : ' (MULTI)'}`,
        { cb: b.index, fsr: b.fsr >>> 0, sid, iova: `0x${iova.toString(16)}`, multi: !fresh },
        'debug',
      );
    }
    return fresh;
  }

  /** Record a global fault (a sGFSR bit); returns true if the transaction gets an abort (else RAZ/WI). */
  recordGlobalFault(bit: number, sid: number, iova: number, access: number): boolean {
    this.counters.globalFaults++;
    if ((this.gfsr & sGFSR_FAULT_MASK) === 0) {
      this.gfsr |= bit;
      this.gfsynr0 =
        ((access & ACCESS_WRITE) !== 0 ? 1 << 1 : 0) |
        ((access & ACCESS_PRIV) !== 0 ? 1 << 2 : 0) |
        ((access & ACCESS_EXEC) !== 0 && (access & ACCESS_WRITE) === 0 ? 1 << 3 : 0);
      this.gfsynr1 = sid & 0xffff;
      this.gfsynr2 = 0;
      this.gfarLo = iova | 0;
      this.gfarHi = (iova / TWO32) | 0;
    } else {
      this.gfsr |= (1 << 31) | 0;
      this.counters.multi++;
    }
    this.updateGlobalIrq();
    const t = this.machine.trace;
    if (t.enabled) {
      t.emit(
        this.name,
        'smmuv2.global_fault',
        `global fault 0x${bit.toString(16)} sid 0x${sid.toString(16)} iova 0x${iova.toString(16)}`,
        { gfsr: this.gfsr >>> 0, sid, iova: `0x${iova.toString(16)}` },
        'debug',
      );
    }
    const config = (bit & sGFSR_CONFIG_MASK) !== 0;
    return getField(this.scr0, config ? sCR0.GCFGFRE : sCR0.GFRE) !== 0;
  }

  /** The bank's context interrupt level: CFIE and a fault recorded (MMU-500: or a stall outstanding). */
  updateBankIrq(b: ContextBank): void {
    const f = this.features;
    const high =
      getField(b.sctlr, SCTLR.CFIE) !== 0 && ((b.fsr & FSR_FAULT) !== 0 || (f.mmu500 && b.stalled !== null));
    const idx = f.version === 1 ? this.cbar[b.index]! >>> 24 : b.index;
    const line = this.contextIrqs[idx] ?? -1;
    if (high === b.irqHigh && line === b.irqLine) return;
    // SMMUv1: CBAR.IRPTNDX may have moved the bank to another line
    if (b.irqHigh && b.irqLine >= 0 && line !== b.irqLine) this.irqs.set(b.irqLine, b, false);
    b.irqHigh = high;
    b.irqLine = line;
    if (line >= 0) this.irqs.set(line, b, high);
  }

  private updateGlobalIrq(): void {
    const g = this.gfsr & sGFSR_FAULT_MASK;
    const s = this.scr0;
    const high =
      ((g & ~sGFSR_CONFIG_MASK) !== 0 && getField(s, sCR0.GFIE) !== 0) ||
      ((g & sGFSR_CONFIG_MASK) !== 0 && getField(s, sCR0.GCFGFIE) !== 0);
    if (high === this.globalIrqHigh) return;
    this.globalIrqHigh = high;
    if (this.globalIrq >= 0) this.irqs.set(this.globalIrq, this, high);
  }

  // ================================================================ MMIO

  read32(offset: number): number {
    const f = this.features;
    const page = Math.floor(offset / 2 ** f.pgshift);
    const off = offset - page * 2 ** f.pgshift;
    if (page === 0) return this.readGr0(off) >>> 0;
    if (page === 1) return this.readGr1(off) >>> 0;
    const n = page - f.numPage;
    if (n >= 0 && n < f.numCb) return this.readCb(this.banks[n]!, off) >>> 0;
    if (f.qcom && offset === QCOM_GFX_PRR_CFG_LADDR) return this.prrLo >>> 0;
    if (f.qcom && offset === QCOM_GFX_PRR_CFG_UADDR) return this.prrHi >>> 0;
    return 0;
  }

  write32(offset: number, value: number): void {
    const f = this.features;
    const page = Math.floor(offset / 2 ** f.pgshift);
    const off = offset - page * 2 ** f.pgshift;
    const v = value | 0;
    if (page === 0) this.writeGr0(off, v);
    else if (page === 1) this.writeGr1(off, v);
    else {
      const n = page - f.numPage;
      if (n >= 0 && n < f.numCb) this.writeCb(this.banks[n]!, off, v);
      else if (f.qcom && offset === QCOM_GFX_PRR_CFG_LADDR) this.prrLo = v;
      else if (f.qcom && offset === QCOM_GFX_PRR_CFG_UADDR) this.prrHi = v;
    }
  }

  read64(offset: number, out: Int32Array): void {
    out[0] = this.read32(offset);
    // Marvell AP806 erratum 582743: the high word of a 64-bit read is lost
    out[1] = this.features.marvell ? 0 : this.read32(offset + 4);
  }

  write64(offset: number, lo: number, hi: number): void {
    const f = this.features;
    if (f.marvell) {
      // erratum 582743: only the low word arrives (the high word of an operation reads as 0)
      this.setOpHi(offset, 0);
      this.write32(offset, lo);
      return;
    }
    if (this.isOpReg(offset)) {
      this.setOpHi(offset, hi);
      this.write32(offset, lo);
    } else {
      this.write32(offset, lo);
      this.write32(offset + 4, hi);
    }
  }

  /** A 64-bit operation register (acts on its low-word write) in a context bank page. */
  private isOpReg(offset: number): boolean {
    const f = this.features;
    const page = Math.floor(offset / 2 ** f.pgshift);
    const n = page - f.numPage;
    if (n < 0 || n >= f.numCb) return false;
    const off = offset - page * 2 ** f.pgshift;
    return (off >= CB.TLBIVA && off <= CB.TLBIIPAS2L + 4) || (off >= CB.ATS1PR && off <= CB.ATS1UW + 4);
  }

  private setOpHi(offset: number, hi: number): void {
    const f = this.features;
    const n = Math.floor(offset / 2 ** f.pgshift) - f.numPage;
    const b = this.banks[n];
    if (b !== undefined) b.opHi = hi | 0;
  }

  // ---------------------------------------------------------------- GR0

  private readGr0(off: number): number {
    const f = this.features;
    if (off >= GR0.SMR && off < GR0.SMR + 4 * this.smr.length) return this.smr[(off - GR0.SMR) >>> 2]!;
    if (off >= GR0.S2CR && off < GR0.S2CR + 4 * this.s2cr.length) return this.s2cr[(off - GR0.S2CR) >>> 2]!;
    switch (off) {
      case GR0.sCR0:
        return this.scr0;
      case GR0.sACR:
        return f.mmu500 ? this.sacr : 0;
      case GR0.ID0:
        return this.idRegs.id0;
      case GR0.ID1:
        return this.idRegs.id1;
      case GR0.ID2:
        return this.idRegs.id2;
      case GR0.ID7:
        return this.idRegs.id7;
      case GR0.sGFAR:
        return this.gfarLo;
      case GR0.sGFAR + 4:
        return this.gfarHi;
      case GR0.sGFSR:
        return this.gfsr;
      case GR0.sGFSYNR0:
        return this.gfsynr0;
      case GR0.sGFSYNR1:
        return this.gfsynr1;
      case GR0.sGFSYNR2:
        return this.gfsynr2;
      case GR0.sTLBGSTATUS:
        if (this.gsyncBusy > 0) {
          this.gsyncBusy--;
          return sTLBGSTATUS_GSACTIVE;
        }
        return 0;
      default:
        return 0;
    }
  }

  private writeGr0(off: number, v: number): void {
    const f = this.features;
    if (off >= GR0.SMR && off < GR0.SMR + 4 * this.smr.length) {
      this.smr[(off - GR0.SMR) >>> 2] = v;
      this.smGen++;
      return;
    }
    if (off >= GR0.S2CR && off < GR0.S2CR + 4 * this.s2cr.length) {
      const i = (off - GR0.S2CR) >>> 2;
      let w = v >>> 0;
      if (f.firmwareBlocksBypass && getField(w, S2CR.TYPE) === S2CR_TYPE_BYPASS) {
        // the firmware traps the write and keeps the previous TYPE
        w = ((w & ~(3 << 16)) | (this.s2cr[i]! & (3 << 16))) >>> 0;
      }
      this.s2cr[i] = w;
      this.smGen++;
      return;
    }
    switch (off) {
      case GR0.sCR0:
        this.scr0 = v >>> 0;
        this.clientPd = getField(this.scr0, sCR0.CLIENTPD) !== 0;
        this.smGen++;
        this.cfgGen++;
        this.updateGlobalIrq();
        return;
      case GR0.sACR:
        if (f.mmu500) this.sacr = v >>> 0;
        return;
      case GR0.sGFSR:
        this.gfsr = (this.gfsr & ~v) >>> 0;
        this.updateGlobalIrq();
        return;
      case GR0.sGFSRRESTORE:
        this.gfsr = v >>> 0;
        this.updateGlobalIrq();
        return;
      case GR0.STLBIALL:
        this.queueGlobal(() => this.engine.tlbiAll());
        return;
      case GR0.TLBIVMID: {
        const vmid = v & 0xffff;
        this.queueGlobal(() => this.engine.tlbiS12Vmall(vmid));
        return;
      }
      case GR0.TLBIALLNSNH:
        this.queueGlobal(() => this.engine.tlbiNsnhAll());
        return;
      case GR0.TLBIALLH:
        this.queueGlobal(() => this.engine.tlbiEl2All());
        return;
      case GR0.sTLBGSYNC:
        this.counters.syncs++;
        for (const op of this.pendingGlobalTlbi) op();
        this.pendingGlobalTlbi.length = 0;
        this.gsyncBusy = f.syncBusyReads;
        return;
      default:
        return;
    }
  }

  private queueGlobal(op: () => void): void {
    this.counters.tlbiOps++;
    this.pendingGlobalTlbi.push(op);
  }

  // ---------------------------------------------------------------- GR1

  private readGr1(off: number): number {
    const n = (off & 0x3ff) >>> 2;
    if (n >= this.features.numCb) return 0;
    if (off < GR1.CBFRSYNRA) return this.cbar[n]!;
    if (off < GR1.CBA2R) return this.cbfrsynra[n]!;
    if (off < GR1.CBA2R + 0x400 && this.features.hasCba2r) return this.cba2r[n]!;
    return 0;
  }

  private writeGr1(off: number, v: number): void {
    const n = (off & 0x3ff) >>> 2;
    if (n >= this.features.numCb) return;
    if (off < GR1.CBFRSYNRA) {
      this.cbar[n] = v;
      this.cfgGen++;
      this.updateBankIrq(this.banks[n]!); // SMMUv1: IRPTNDX moves the bank to another line
    } else if (off < GR1.CBA2R) this.cbfrsynra[n] = v;
    else if (off < GR1.CBA2R + 0x400 && this.features.hasCba2r) {
      this.cba2r[n] = v;
      this.cfgGen++;
    }
  }

  // ---------------------------------------------------------------- context banks

  private readCb(b: ContextBank, off: number): number {
    switch (off) {
      case CB.SCTLR:
        return b.sctlr;
      case CB.ACTLR:
        return b.actlr;
      case CB.TCR2:
        return this.features.hasCba2r ? b.tcr2 : 0;
      case CB.TTBR0:
        return b.ttbr0Lo;
      case CB.TTBR0 + 4:
        return b.ttbr0Hi;
      case CB.TTBR1:
        return b.ttbr1Lo;
      case CB.TTBR1 + 4:
        return b.ttbr1Hi;
      case CB.TCR:
        return b.tcr;
      case CB.CONTEXTIDR:
        return b.contextidr;
      case CB.MAIR0:
        return b.mair0;
      case CB.MAIR1:
        return b.mair1;
      case CB.PAR:
        return b.parLo;
      case CB.PAR + 4:
        return b.parHi;
      case CB.FSR:
        return b.fsr;
      case CB.FAR:
        return b.farLo;
      case CB.FAR + 4:
        return b.farHi;
      case CB.FSYNR0:
        return b.fsynr0;
      case CB.FSYNR1:
        return b.fsynr1;
      case CB.IPAFAR:
        return b.ipafarLo;
      case CB.IPAFAR + 4:
        return b.ipafarHi;
      case CB.TLBSTATUS:
        if (b.syncBusy > 0) {
          b.syncBusy--;
          return TLBSTATUS_SACTIVE;
        }
        return 0;
      default:
        return 0;
    }
  }

  private writeCb(b: ContextBank, off: number, v: number): void {
    const f = this.features;
    switch (off) {
      case CB.SCTLR:
        b.sctlr = v >>> 0;
        this.cfgGen++;
        this.updateBankIrq(b);
        this.port.maybeDrain(b); // HUPCF / CFCFG may release waiting transactions
        return;
      case CB.ACTLR:
        // MMU-500 r2+: CACHE_LOCK keeps the bank's ACTLR as it is (Linux's CPRE errata check reads it back)
        if (f.mmu500 && f.major >= 2 && getField(this.sacr, sACR_MMU500.CACHE_LOCK) !== 0) return;
        b.actlr = v;
        return;
      case CB.RESUME:
        this.port.resume(b, v);
        return;
      case CB.TCR2:
        if (f.hasCba2r) b.tcr2 = v;
        break;
      case CB.TTBR0:
        b.ttbr0Lo = v;
        break;
      case CB.TTBR0 + 4:
        b.ttbr0Hi = v;
        break;
      case CB.TTBR1:
        b.ttbr1Lo = v;
        break;
      case CB.TTBR1 + 4:
        b.ttbr1Hi = v;
        break;
      case CB.TCR:
        b.tcr = v;
        break;
      case CB.CONTEXTIDR:
        b.contextidr = v;
        return;
      case CB.MAIR0:
        b.mair0 = v;
        break;
      case CB.MAIR1:
        b.mair1 = v;
        break;
      case CB.PAR:
        b.parLo = v;
        return;
      case CB.PAR + 4:
        b.parHi = v;
        return;
      case CB.FSR:
        this.writeFsr(b, (b.fsr & ~v) >>> 0);
        return;
      case CB.FSRRESTORE:
        this.writeFsr(b, v >>> 0);
        return;
      case CB.FAR:
        b.farLo = v;
        return;
      case CB.FAR + 4:
        b.farHi = v;
        return;
      case CB.FSYNR0:
        b.fsynr0 = v;
        return;
      case CB.FSYNR1:
        b.fsynr1 = v;
        return;
      case CB.IPAFAR:
        b.ipafarLo = v;
        return;
      case CB.IPAFAR + 4:
        b.ipafarHi = v;
        return;
      case CB.TLBIVA:
      case CB.TLBIVAL:
      case CB.TLBIVAA:
      case CB.TLBIVAAL:
        this.tlbiVa(b, v, b.opHi, off === CB.TLBIVAA || off === CB.TLBIVAAL);
        return;
      case CB.TLBIVA + 4:
      case CB.TLBIVAL + 4:
      case CB.TLBIVAA + 4:
      case CB.TLBIVAAL + 4:
      case CB.TLBIIPAS2 + 4:
      case CB.TLBIIPAS2L + 4:
      case CB.ATS1PR + 4:
      case CB.ATS1PW + 4:
      case CB.ATS1UR + 4:
      case CB.ATS1UW + 4:
        b.opHi = v;
        return;
      case CB.TLBIASID:
        this.tlbiAsid(b, v);
        return;
      case CB.TLBIALL:
        this.tlbiAllBank(b);
        return;
      case CB.TLBIIPAS2:
      case CB.TLBIIPAS2L:
        this.tlbiIpa(b, v, b.opHi);
        return;
      case CB.TLBSYNC:
        this.counters.syncs++;
        for (const op of b.pendingTlbi) op();
        b.pendingTlbi.length = 0;
        b.syncBusy = f.syncBusyReads;
        return;
      case CB.ATS1PR:
      case CB.ATS1PW:
      case CB.ATS1UR:
      case CB.ATS1UW:
        this.port.ats1(b, v, b.opHi, off);
        return;
      default:
        return;
    }
    // a register that shapes the translation configuration
    this.cfgGen++;
  }

  private writeFsr(b: ContextBank, next: number): void {
    let fsr = next;
    // MMU-500: SS reflects the stalled transaction; it clears only when the transaction is resumed
    if (this.features.mmu500 && b.stalled !== null) fsr |= FSR_SS;
    b.fsr = fsr >>> 0;
    this.updateBankIrq(b);
    this.port.maybeDrain(b);
  }

  // ---------------------------------------------------------------- TLB maintenance

  private queueBank(b: ContextBank, op: () => void): void {
    this.counters.tlbiOps++;
    b.pendingTlbi.push(op);
  }

  /** TLBIVA(L) / TLBIVAA(L): AArch64 value (VA >> 12) | ASID << 48, AArch32 (VA & ~0xfff) | ASID. */
  private tlbiVa(b: ContextBank, lo: number, hi: number, allAsids: boolean): void {
    this.refresh(b);
    const vmid = b.vmid;
    let va: number;
    let asid: number;
    let aa32 = false;
    if (b.va64) {
      // VA[55:12] in bits 43:0
      va = ((hi & 0xfff) * TWO32 + (lo >>> 0)) * 4096; // the TLB's key: VA bits 55:0
      asid = hi >>> TTBR_ASID_SHIFT_HI;
    } else {
      va = (lo >>> 0) - ((lo >>> 0) % 4096);
      asid = lo & 0xff;
      aa32 = true;
    }
    const engine = this.engine;
    const a = allAsids ? -1 : asid;
    this.queueBank(b, () => {
      engine.tlbiNhVa(vmid, a, va);
      // an AArch32 TTBR1-region address is cached under its sign-extended form
      if (aa32) engine.tlbiNhVa(vmid, a, 0xffffffff00000000 + va);
    });
  }

  private tlbiAsid(b: ContextBank, v: number): void {
    this.refresh(b);
    const vmid = b.vmid;
    const asid = v & 0xffff;
    const engine = this.engine;
    this.queueBank(b, () => engine.tlbiNhAsid(vmid, asid));
  }

  private tlbiAllBank(b: ContextBank): void {
    this.refresh(b);
    const vmid = b.vmid;
    const engine = this.engine;
    // entries are not tagged by bank: every entry of the bank's VMID (stage 1, and stage 2 for
    // a stage-2 bank)
    if (b.hasS1) this.queueBank(b, () => engine.tlbiNhAll(vmid));
    else this.queueBank(b, () => engine.tlbiS12Vmall(vmid));
  }

  private tlbiIpa(b: ContextBank, lo: number, hi: number): void {
    this.refresh(b);
    const vmid = b.vmid;
    const ipa = ((hi & 0xf) * TWO32 + (lo >>> 0)) * 4096; // IPA[47:12]
    const engine = this.engine;
    this.queueBank(b, () => engine.tlbiS2Ipa(vmid, ipa));
  }

  /** The bank holds transactions (one stalled, or some waiting behind a stall or a fault). */
  holds(b: ContextBank): boolean {
    return b.stalled !== null || b.queue.length > 0;
  }

  /** The SMR index a StreamID matches, -1 for none, -2 for a conflict (two valid SMRs match). */
  matchStream(sid: number): number {
    return this.port.matchStream(sid);
  }

  /** SMR VALID of entry i (S2CR.EXIDVALID when extended StreamIDs are enabled). */
  smrValid(i: number): boolean {
    if (this.features.exids && getField(this.scr0, sCR0.EXIDENABLE) !== 0)
      return getField(this.s2cr[i]!, S2CR.EXIDVALID) !== 0;
    return getField(this.smr[i]!, SMR.VALID) !== 0;
  }
}
