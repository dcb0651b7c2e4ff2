// The SMMUv2 DMA port: what one transaction does, from its StreamID to an output address, a
// fault, or a stall, and how held transactions finish. Synchronous and allocation-free on the
// hot path (a TLB hit through a matched stream is a few array reads and the engine call).
//
// Order of checks (IHI 0062):
//   sCR0.CLIENTPD = 1     -> bypass
//   stream matching       -> no SMR: sCR0.USFCFG = 1 raises a USF global fault (abort, or RAZ/WI
//                            with GFRE = 0), 0 bypasses; two SMRs: with sCR0.SMCFCFG an SMCF
//                            global configuration fault, without it the lower-numbered SMR
//                            (the architecture leaves it UNPREDICTABLE: a deterministic choice)
//   S2CR.TYPE             -> BYPASS: bypass; FAULT (and the reserved 3): abort, no record;
//                            TRANS: CBNDX >= NUMCB is a UCBF and an unusable CBAR an ICF global
//                            configuration fault (abort, or RAZ/WI with GCFGFRE = 0)
//   S2CR.PRIVCFG          -> forces the access privileged / unprivileged
//   the context bank      -> translated by the shared engine; a fault is recorded in the bank
//                            (a stage-2 fault of a nested bank in its stage-2 bank, with
//                            FSYNR0.S1CBNDX), and terminated (SCTLR.CFRE = 1: abort; 0: RAZ/WI)
//                            or, with SCTLR.CFCFG = 1, stalled.
// Bypass output addresses are truncated to the OAS (Linux: "the output mask is also applied for
// bypass").
//
// Stall and hit-under-fault (SCTLR.CFCFG, HUPCF; the MMU-500 quirks are in smmu.ts):
//  - A translation, access flag, permission or address size fault with CFCFG = 1, recorded into
//    a clear FSR, stalls: FSR.SS = 1 and the device gets PORT_STALLED with a STAG. External
//    faults (EF) always terminate.
//  - While a bank has a fault outstanding (a stalled transaction, or a fault recorded in FSR and
//    not cleared) and HUPCF = 0, every later transaction of the bank waits behind it (CFCFG = 1)
//    or is terminated with MULTI (CFCFG = 0): "stall or terminate subsequent transactions in the
//    presence of an outstanding context fault". With HUPCF = 1 later transactions are processed
//    independently; one that faults while the bank cannot record it (MULTI) waits behind the
//    stalled one (CFCFG = 1).
//  - RESUME (accepted only while a transaction is stalled): the outcome happens
//    `resumeLatencyNs` later through the scheduler. Retry translates the transaction again as a
//    new arrival (it completes, or faults and stalls again with the same STAG); terminate ends it
//    with an abort (CFRE = 1) or RAZ/WI. Then the waiting transactions are processed in order.
//    Clearing FSR of a bank that has waiting transactions and nothing stalled releases them.
//  - A device hears about a held transaction exactly once, through
//    StallListener.stallCompleted, in scheduler context.

import {
  CB,
  FSR_AFF,
  FSR_ASF,
  FSR_EF,
  FSR_FAULT_TYPES,
  FSR_MULTI,
  FSR_PF,
  FSR_SS,
  FSR_TF,
  FSR_TLBMCF,
  getField,
  PAR_F,
  S2CR_PRIVCFG_PRIV,
  S2CR_PRIVCFG_UNPRIV,
  S2CR_TYPE_BYPASS,
  S2CR_TYPE_TRANS,
  SCTLR,
  SMR,
  sCR0,
  sGFSR,
} from '../../arch/smmuv2/regs.ts';
import {
  CLASS_IN,
  CLASS_TT,
  F_ACCESS,
  F_ADDR_SIZE,
  F_PERMISSION,
  F_TLB_CONFLICT,
  F_TRANSLATION,
  F_WALK_EABT,
} from '../../arch/vmsa/faults.ts';
import type { DmaSanitizer } from '../../platform/sanitizer.ts';
import { TWO32 } from '../../platform/u64.ts';
import {
  type DmaPort,
  newPortCounts,
  PORT_ABORT,
  PORT_BYPASS,
  PORT_FAULT,
  PORT_OK,
  PORT_RAZWI,
  PORT_STALLED,
  type PortCounts,
  PortResult,
  portBegin,
  portDone,
  portSanBegin,
  portSanEnd,
  portTranslated,
  type StallListener,
} from '../smmu-common/port.ts';
import { ACCESS_PRIV, ACCESS_WRITE, TranslationResult } from '../smmu-common/translate-types.ts';
import { type ContextBank, HeldTxn, MODE_BYPASS, MODE_TRANSLATE, sepExtendHi } from './context.ts';
import type { SmmuV2 } from './smmu.ts';

/** Who listens for the stall completions of each StreamID (`smmu.upstream`). */
export class SmmuV2Upstream {
  private readonly masters = new Map<number, StallListener>();

  attach(sid: number, master: StallListener): void {
    this.masters.set(sid >>> 0, master);
  }

  detach(sid: number): void {
    this.masters.delete(sid >>> 0);
  }

  master(sid: number): StallListener | undefined {
    return this.masters.get(sid >>> 0);
  }
}

/** `stalled` counts the transactions held: stalled, or waiting behind a stall. */
export interface SmmuV2PortStats extends PortCounts {
  /** Held transactions finished (completed or terminated). */
  completed: number;
}

const SID_NONE = -1;
const SID_CONFLICT = -2;

/** The engine's fault code -> the FSR bit that records it (a bad configuration is a translation fault). */
function fsrBitOf(fault: number): number {
  switch (fault) {
    case F_ACCESS:
      return FSR_AFF;
    case F_PERMISSION:
      return FSR_PF;
    case F_ADDR_SIZE:
      return FSR_ASF;
    case F_WALK_EABT:
      return FSR_EF;
    case F_TLB_CONFLICT:
      return FSR_TLBMCF;
    default:
      return FSR_TF;
  }
}

export class SmmuV2Port implements DmaPort {
  readonly stats: SmmuV2PortStats = { ...newPortCounts(), completed: 0 };
  private readonly res = new TranslationResult();
  /** Result handed to stallCompleted. */
  private readonly doneOut = new PortResult();
  /** Per StreamID: the SMR index it matched (matchVal) while matchGen equals the device's smGen. */
  private readonly matchGen: Int32Array;
  private readonly matchVal: Int32Array;
  private readonly oasLimit: number;
  /** blocker() found a bank that terminates (CFCFG = 0) rather than holds. */
  private blockTerminates = false;
  /** The DMA-isolation sanitizer (null: off). */
  private san: DmaSanitizer | null = null;

  constructor(private readonly smmu: SmmuV2) {
    const f = smmu.features;
    const n = f.exids ? 0x10000 : 1 << f.sidBits;
    this.matchGen = new Int32Array(n);
    this.matchVal = new Int32Array(n);
    this.oasLimit = 2 ** f.oasBits;
    smmu.machine.mem.watchSanitizer((san) => {
      this.san = san;
    });
  }

  /**
   * Translate one transaction (SMMUv2 has no SubstreamIDs: `ssid` is ignored). `access` combines
   * ACCESS_WRITE / ACCESS_EXEC / ACCESS_PRIV. Returns out.status.
   */
  translate(sid: number, ssid: number, iova: number, access: number, out: PortResult): number {
    if (this.san !== null) {
      portSanBegin(this.san, this.smmu.name, sid, -1, iova, this.res);
      const st = this.translate0(sid, ssid, iova, access, out);
      portSanEnd(this.san, out, this.res, st);
      return st;
    }
    return this.translate0(sid, ssid, iova, access, out);
  }

  private translate0(sid: number, _ssid: number, iova: number, access: number, out: PortResult): number {
    const s = this.smmu;
    portBegin(out, this.stats);
    out.stag = -1;
    if (s.clientPd) return this.bypass(iova, out);
    const idx = this.matchStream(sid);
    if (idx < 0) return this.unmatched(sid, iova, access, idx, out);
    const s2cr = s.s2cr[idx]!;
    const type = (s2cr >>> 16) & 3;
    if (type !== S2CR_TYPE_TRANS) {
      if (type === S2CR_TYPE_BYPASS) return this.bypass(iova, out);
      return this.done(out, PORT_ABORT);
    }
    const priv = (s2cr >>> 24) & 3;
    const a =
      priv === S2CR_PRIVCFG_PRIV
        ? access | ACCESS_PRIV
        : priv === S2CR_PRIVCFG_UNPRIV
          ? access & ~ACCESS_PRIV
          : access;
    const b = s.banks[s2cr & 0xff];
    if (b === undefined) return this.globalFault(sGFSR.UCBF.lsb, sid, iova, a, out);
    return this.run(b, sid, iova, a, out, null);
  }

  /** The SMR index `sid` matches, SID_NONE, or SID_CONFLICT (two match and sCR0.SMCFCFG = 1). */
  matchStream(sid: number): number {
    const s = this.smmu;
    const i = sid & (this.matchGen.length - 1);
    if (this.matchGen[i] === s.smGen && i === sid) return this.matchVal[i]!;
    const v = this.computeMatch(sid);
    if (i === sid) {
      this.matchGen[i] = s.smGen;
      this.matchVal[i] = v;
    }
    return v;
  }

  private computeMatch(sid: number): number {
    const s = this.smmu;
    const f = s.features;
    const exid = f.exids && getField(s.scr0, sCR0.EXIDENABLE) !== 0;
    const idMask = exid ? 0xffff : (1 << f.sidBits) - 1;
    if (sid < 0 || sid > idMask) return SID_NONE; // a StreamID wider than the SMMU takes
    if (!f.sms) return sid < s.s2cr.length ? sid : SID_NONE;
    let first = SID_NONE;
    for (let i = 0; i < s.smr.length; i++) {
      if (!s.smrValid(i)) continue;
      const smr = s.smr[i]!;
      const mask = exid ? smr >>> 16 : (smr >>> 16) & 0x7fff;
      if (((sid ^ getField(smr, SMR.ID)) & ~mask & idMask) !== 0) continue;
      if (first === SID_NONE) first = i;
      else return getField(s.scr0, sCR0.SMCFCFG) !== 0 ? SID_CONFLICT : first;
    }
    return first;
  }

  // ================================================================ the context bank

  /**
   * A transaction through bank `b` (txn: the held transaction being run again, else null).
   * Returns the status written to `out`.
   */
  private run(
    b: ContextBank,
    sid: number,
    iova: number,
    access: number,
    out: PortResult,
    txn: HeldTxn | null,
  ): number {
    const s = this.smmu;
    if (b.gen !== s.cfgGen) s.refresh(b);
    if (b.mode !== MODE_TRANSLATE) {
      if (b.mode === MODE_BYPASS) return this.bypass(iova, out);
      return this.globalFault(sGFSR.ICF.lsb, sid, iova, access, out);
    }
    // a fault outstanding in the bank (or its stage-2 bank) without hit-under-fault
    if (
      b.stalled !== null ||
      b.fsr !== 0 ||
      (b.s2Bank !== null && (b.s2Bank.stalled !== null || b.s2Bank.fsr !== 0)) ||
      b.queue.length > 0
    ) {
      const w = this.blocker(b, txn !== null);
      if (w !== null) {
        if (this.blockTerminates) {
          w.fsr |= FSR_MULTI;
          s.counters.multi++;
          s.updateBankIrq(w);
          out.recorded = true;
          return this.terminate(w, out);
        }
        return this.hold(w, b, sid, iova, access, txn, out);
      }
    }
    const res = this.res;
    const f = this.walk(b, iova, access, res);
    if (f === 0 && !b.s2Fault) return portTranslated(out, this.stats, res);
    if (f === 0) {
      // CBAR type S1_TRANS_S2_FAULT: stage 1 translated, stage 2 faults the result
      res.ipa = res.oa;
      res.level = 0;
      res.faultClass = CLASS_IN;
      return this.contextFault(b, F_TRANSLATION, true, sid, iova, access, out, txn);
    }
    return this.contextFault(b, f, res.s2, sid, iova, access, out, txn);
  }

  /**
   * The engine walk of bank `b` for `iova` (AArch32 stage 1: the TTBR0 / TTBR1 ranges first).
   * Returns the fault code (0: res holds the translation).
   */
  private walk(b: ContextBank, iova: number, access: number, res: TranslationResult): number {
    const e = this.smmu.engine;
    const cfg = b.cfg!;
    if (!b.aa32) return e.translate64(cfg, iova | 0, sepExtendHi(b, iova, (iova / TWO32) | 0), access, res);
    if (iova < b.t0End) return e.translate64(cfg, iova | 0, 0, access, res);
    if (iova >= b.t1Start && iova < TWO32) return e.translate64(cfg, iova | 0, -1, access, res); // sign-extended
    // between the two ranges, or beyond 32 bits: a stage-1 translation fault
    res.fault = F_TRANSLATION;
    res.s2 = false;
    res.level = 1;
    res.faultClass = CLASS_IN;
    res.tlbHit = false;
    return F_TRANSLATION;
  }

  /** The bank the transaction must wait behind (or, blockTerminates, be terminated by), or null. */
  private blocker(b: ContextBank, fromQueue: boolean): ContextBank | null {
    for (let x: ContextBank | null = b, i = 0; x !== null && i < 2; x = b.s2Bank, i++) {
      if (getField(x.sctlr, SCTLR.HUPCF) !== 0) continue;
      if (x.stalled !== null || (!fromQueue && x.queue.length > 0)) {
        this.blockTerminates = false;
        return x;
      }
      if ((x.fsr & FSR_FAULT_TYPES) !== 0) {
        this.blockTerminates = !this.stallMode(x);
        return x;
      }
    }
    return null;
  }

  /** SCTLR.CFCFG as in effect: sCR0.GSE forces stall and STALLD forbids it (not on MMU-500). */
  private stallMode(x: ContextBank): boolean {
    const s = this.smmu;
    const cfcfg = getField(x.sctlr, SCTLR.CFCFG) !== 0;
    if (s.features.mmu500) return cfcfg;
    return (cfcfg || getField(s.scr0, sCR0.GSE) !== 0) && getField(s.scr0, sCR0.STALLD) === 0;
  }

  private contextFault(
    b: ContextBank,
    fault: number,
    s2: boolean,
    sid: number,
    iova: number,
    access: number,
    out: PortResult,
    txn: HeldTxn | null,
  ): number {
    const s = this.smmu;
    const res = this.res;
    // a stage-2 fault of a nested bank is the stage-2 bank's, naming the stage-1 bank
    const rb = s2 && b.s2Bank !== null ? b.s2Bank : b;
    let syn = res.level & 3;
    if (res.faultClass === CLASS_TT) syn |= 1 << 10; // PTWF: the fault hit a table walk
    if (rb !== b) syn |= b.index << 16; // S1CBNDX
    const bit = fsrBitOf(fault);
    const fresh = s.recordContextFault(rb, bit, sid, iova, access, syn, s2 ? res.ipa : 0);
    out.fault = fault;
    out.recorded = true;
    if (bit !== FSR_EF && bit !== FSR_TLBMCF && this.stallMode(rb)) {
      if (fresh && rb.stalled === null) {
        const t = txn ?? new HeldTxn(sid, iova, access, s.nextStag(), b, s.machine.sched.now);
        t.fault = fault;
        rb.stalled = t;
        rb.fsr |= FSR_SS;
        s.counters.stalls++;
        s.updateBankIrq(rb);
        this.trace(rb, 'smmuv2.stall', t, `stalled (fault 0x${fault.toString(16)})`);
        return this.held(t, out);
      }
      return this.hold(rb, b, sid, iova, access, txn, out);
    }
    return this.terminate(rb, out);
  }

  /** Park a transaction behind bank `w`'s outstanding fault. */
  private hold(
    w: ContextBank,
    b: ContextBank,
    sid: number,
    iova: number,
    access: number,
    txn: HeldTxn | null,
    out: PortResult,
  ): number {
    const s = this.smmu;
    let t = txn;
    if (t === null) {
      t = new HeldTxn(sid, iova, access, s.nextStag(), b, s.machine.sched.now);
      w.queue.push(t);
    } else w.queue.unshift(t); // a held transaction run again keeps its place
    return this.held(t, out);
  }

  private held(t: HeldTxn, out: PortResult): number {
    out.stag = t.stag;
    if (out.fault === 0) out.fault = t.fault;
    return portDone(out, this.stats, PORT_STALLED);
  }

  /** Terminate per the recording bank's SCTLR.CFRE: abort, or RAZ/WI. */
  private terminate(rb: ContextBank, out: PortResult): number {
    return this.done(out, getField(rb.sctlr, SCTLR.CFRE) !== 0 ? PORT_FAULT : PORT_RAZWI);
  }

  // ================================================================ RESUME and waiting transactions

  /** A write of RESUME to bank `b` (bit 0: TERMINATE). */
  resume(b: ContextBank, value: number): void {
    const s = this.smmu;
    const t = b.stalled;
    if (t === null || b.resuming) {
      s.counters.resumesIgnored++;
      return;
    }
    // MMU-500 ignores RESUME unless every FSR field but SS is clear (Linux commit 3053a2c5086d)
    if (s.features.mmu500 && (b.fsr & ~FSR_SS) !== 0) {
      s.counters.resumesIgnored++;
      this.trace(
        b,
        'smmuv2.resume.ignored',
        t,
        `RESUME ignored: FSR 0x${(b.fsr >>> 0).toString(16)} not clear`,
      );
      return;
    }
    b.resuming = true;
    s.counters.resumes++;
    const terminate = (value & 1) !== 0;
    s.machine.sched.schedule(
      s.features.resumeLatencyNs,
      () => this.resolve(b, terminate),
      `${s.name} cb${b.index} resume`,
    );
  }

  private resolve(b: ContextBank, terminate: boolean): void {
    const s = this.smmu;
    b.resuming = false;
    const t = b.stalled;
    if (t === null) return;
    b.stalled = null;
    b.fsr &= ~FSR_SS;
    s.updateBankIrq(b);
    this.trace(b, 'smmuv2.resume', t, terminate ? 'terminated' : 'retried');
    const out = this.doneOut;
    out.recorded = false;
    out.fault = 0;
    if (terminate) {
      out.fault = t.fault;
      this.complete(t, this.terminate(b, out), out);
    } else {
      const st = this.run(t.bank, t.sid, t.iova, t.access, out, t);
      if (st !== PORT_STALLED) this.complete(t, st, out);
    }
    this.drain(b);
  }

  /** Schedule the release of `b`'s waiting transactions if nothing holds them any more. */
  maybeDrain(b: ContextBank): void {
    if (b.queue.length === 0 || b.stalled !== null || b.drainScheduled) return;
    const s = this.smmu;
    b.drainScheduled = true;
    s.machine.sched.schedule(
      s.features.resumeLatencyNs,
      () => this.drain(b),
      `${s.name} cb${b.index} release`,
    );
  }

  /** Run the waiting transactions in order until one has to wait again. */
  private drain(b: ContextBank): void {
    b.drainScheduled = false;
    const out = this.doneOut;
    while (b.queue.length > 0 && b.stalled === null) {
      const t = b.queue.shift()!;
      out.recorded = false;
      out.fault = 0;
      const st = this.run(t.bank, t.sid, t.iova, t.access, out, t);
      if (st === PORT_STALLED) {
        if (b.queue[0] === t) break; // still waiting here
        continue; // it stalled, or waits in another bank
      }
      this.complete(t, st, out);
    }
  }

  private complete(t: HeldTxn, status: number, out: PortResult): void {
    this.stats.completed++;
    out.status = status;
    if (status !== PORT_OK && out.fault === 0) out.fault = t.fault;
    this.smmu.upstream.master(t.sid)?.stallCompleted?.(t.sid, t.stag, status, out);
  }

  // ================================================================ ATS1* and global faults

  /** ATS1PR / PW / UR / UW: translate through the bank's stage 1 into PAR, recording no fault. */
  ats1(b: ContextBank, lo: number, hi: number, reg: number): void {
    const s = this.smmu;
    s.refresh(b);
    if (!s.features.atos || b.mode !== MODE_TRANSLATE || !b.hasS1) {
      b.parLo = PAR_F | FSR_TF;
      b.parHi = 0;
      return;
    }
    const va = b.va64
      ? (hi >>> 0) * TWO32 + ((lo >>> 0) - ((lo >>> 0) % 4096))
      : (lo >>> 0) - ((lo >>> 0) % 4096);
    const access =
      (reg === CB.ATS1PR || reg === CB.ATS1PW ? ACCESS_PRIV : 0) |
      (reg === CB.ATS1PW || reg === CB.ATS1UW ? ACCESS_WRITE : 0);
    const res = this.res;
    const f = this.walk(b, va, access, res);
    if (f === 0) {
      // PAR: PA[47:12], F = 0
      b.parLo = (res.oa | 0) & ~0xfff;
      b.parHi = (res.oa / TWO32) | 0;
    } else {
      // F = 1 and the fault as FSR would record it (IMPLEMENTATION-style encoding: FSR bit positions)
      b.parLo = PAR_F | fsrBitOf(f);
      b.parHi = 0;
    }
  }

  private globalFault(bitPos: number, sid: number, iova: number, access: number, out: PortResult): number {
    const abort = this.smmu.recordGlobalFault(1 << bitPos, sid, iova, access);
    out.recorded = true;
    out.fault = F_TRANSLATION;
    return this.done(out, abort ? PORT_FAULT : PORT_RAZWI);
  }

  private unmatched(sid: number, iova: number, access: number, why: number, out: PortResult): number {
    if (why === SID_CONFLICT) return this.globalFault(sGFSR.SMCF.lsb, sid, iova, access, out);
    if (getField(this.smmu.scr0, sCR0.USFCFG) === 0) return this.bypass(iova, out);
    return this.globalFault(sGFSR.USF.lsb, sid, iova, access, out);
  }

  private bypass(iova: number, out: PortResult): number {
    out.oa = iova < this.oasLimit ? iova : iova % this.oasLimit;
    out.pageShift = 12;
    out.perm = 0xff;
    out.attr = 0;
    return this.done(out, PORT_BYPASS);
  }

  private done(out: PortResult, status: number): number {
    return portDone(out, this.stats, status);
  }

  private trace(b: ContextBank, name: string, t: HeldTxn, what: string): void {
    const tr = this.smmu.machine.trace;
    if (!tr.enabled) return;
    tr.emit(
      this.smmu.name,
      name,
      `cb${b.index}: stag ${t.stag} sid 0x${t.sid.toString(16)} iova 0x${t.iova.toString(16)} ${what}`,
      { cb: b.index, stag: t.stag, sid: t.sid, iova: `0x${t.iova.toString(16)}` },
      'debug',
    );
  }
}
