// The DMA port: how client devices reach the SMMU. Synchronous and allocation-free on the
// hot path: a device calls translate() (or dmaRead/dmaWrite, which translate page by page
// and move the bytes through PhysicalMemory) and gets the outcome in the same call.
//
// Order of checks for one transaction (IHI 0070 §3.3, §3.12):
//   SMMUEN == 0           -> GBPA: abort, or bypass with the input address as output (an
//                            address beyond IDR5.OAS aborts, no event: §3.4)
//   STE lookup            -> C_BAD_STREAMID / F_STE_FETCH / C_BAD_STE (recorded, abort)
//   STE.Config abort      -> abort, no event
//   both stages bypassed  -> output = input; beyond IDR5.OAS: F_ADDR_SIZE, Class IN (§3.4)
//   SubstreamID checks    -> C_BAD_SUBSTREAMID / F_STREAM_DISABLED (S1DSS)
//   CD lookup             -> F_CD_FETCH / C_BAD_CD / stage-2 fault with Class CD
//   translation           -> F_TRANSLATION / F_ADDR_SIZE / F_ACCESS / F_PERMISSION (recorded
//                            unless CD.R / STE.S2R say otherwise), F_WALK_EABT
// A translation-related fault on a stream configured to stall (CD.S / STE.S2S) returns
// PORT_STALLED: the SMMU holds the transaction (stall.ts) and the device hears the outcome later
// through UpstreamMaster.stallCompleted (upstream.ts).

import { getField } from '../../arch/smmuv3/bits.ts';
import { EVT_ID, type EventArgs } from '../../arch/smmuv3/event.ts';
import { GBPA } from '../../arch/smmuv3/regs.ts';
import { STE, STE_DWORDS } from '../../arch/smmuv3/ste.ts';
import type { Machine } from '../../platform/machine.ts';
import type { DmaSanitizer } from '../../platform/sanitizer.ts';
import {
  newPortCounts,
  PORT_ABORT,
  PORT_BYPASS,
  PORT_FAULT,
  PORT_RAZWI,
  PORT_STALLED,
  type PortCounts,
  PortResult,
  portBegin,
  portDma,
  portDone,
  portSanBegin,
  portSanEnd,
  portTranslated,
} from '../smmu-common/port.ts';
import { TranslationEngine } from '../smmu-common/translate.ts';
import {
  ACCESS_EXEC,
  ACCESS_PRIV,
  ACCESS_WRITE,
  CLASS_CD,
  CLASS_IN,
  CLASS_TT,
  F_ACCESS,
  F_ADDR_SIZE,
  F_PERMISSION,
  F_TRANSLATION,
  F_WALK_EABT,
  type TranslationConfig,
  TranslationResult,
} from '../smmu-common/translate-types.ts';
import { decodeCd, fetchCd, locateCd, type StructToPa } from './cd.ts';
import { type ContextConfig, STREAM_ABORT, STREAM_BYPASS, type StreamConfig } from './config.ts';
import type { SmmuFeatures } from './regs-idr.ts';
import type { SmmuV3 } from './smmu.ts';
import type { StalledTxn } from './stall.ts';
import { ConfigError, decodeSte, fetchSte, locateSte } from './ste.ts';

// The port every SMMU shares (outcomes, PortResult, ACCESS_*), for the code that imports it from here.
export * from '../smmu-common/port.ts';

/** The translation engine the port drives (walker + TLB) and the TLB maintenance it accepts. */
export interface TranslationBackend {
  /** Translate `iova` under `cfg`; the outcome goes to `out` (cleared by the engine). */
  translate(cfg: TranslationConfig, iova: number, access: number, out: TranslationResult): void;
  /**
   * Stage-2 translation of a configuration-structure IPA (CD or L1CD) under `cfg`: the PA, or
   * -1 with `out` describing the stage-2 fault (S2 = 1, Class CD).
   */
  translateStructIpa(cfg: TranslationConfig, ipa: number, out: TranslationResult): number;
  tlbiNhAll(vmid: number): void;
  tlbiNhAsid(vmid: number, asid: number): void;
  /** asid -1: all ASIDs (VAA). len in bytes. */
  tlbiNhVa(
    vmid: number,
    asid: number,
    addr: number,
    len: number,
    leaf: boolean,
    ttl: number,
    tg: number,
  ): void;
  tlbiEl2All(): void;
  tlbiEl2Asid(asid: number): void;
  tlbiEl2Va(asid: number, addr: number, len: number, leaf: boolean, ttl: number, tg: number): void;
  tlbiS12Vmall(vmid: number): void;
  tlbiS2Ipa(vmid: number, addr: number, len: number, leaf: boolean, ttl: number, tg: number): void;
  tlbiNsnhAll(): void;
  /**
   * Stage-2 translation of an IPA as a client access (split-stage ATS Translated transactions).
   * Optional: without it, EATS == 0b10 traffic is aborted.
   */
  translateS2?(cfg: TranslationConfig, ipa: number, access: number, out: TranslationResult): number;
}

/** Adapts the walker engineer's TranslationEngine to the port and the command queue. */
export class EngineBackend implements TranslationBackend {
  constructor(readonly engine: TranslationEngine) {}

  translate(cfg: TranslationConfig, iova: number, access: number, out: TranslationResult): void {
    this.engine.translate(cfg, iova, access, out);
  }

  translateStructIpa(cfg: TranslationConfig, ipa: number, out: TranslationResult): number {
    return this.engine.translateIpa(cfg, ipa, 0, CLASS_CD, out) === 0 ? out.oa : -1;
  }

  tlbiNhAll(vmid: number): void {
    this.engine.tlbiNhAll(vmid);
  }

  tlbiNhAsid(vmid: number, asid: number): void {
    this.engine.tlbiNhAsid(vmid, asid);
  }

  tlbiNhVa(
    vmid: number,
    asid: number,
    addr: number,
    len: number,
    leaf: boolean,
    ttl: number,
    tg: number,
  ): void {
    this.engine.tlbiNhVa(vmid, asid, addr, len, leaf, ttl, tg);
  }

  tlbiEl2All(): void {
    this.engine.tlbiEl2All();
  }

  tlbiEl2Asid(asid: number): void {
    this.engine.tlbiEl2Asid(asid);
  }

  tlbiEl2Va(asid: number, addr: number, len: number, leaf: boolean, ttl: number, tg: number): void {
    if (asid < 0) this.engine.tlbiEl2Vaa(addr, len, leaf, ttl, tg);
    else this.engine.tlbiEl2Va(asid, addr, len, leaf, ttl, tg);
  }

  tlbiS12Vmall(vmid: number): void {
    this.engine.tlbiS12Vmall(vmid);
  }

  tlbiS2Ipa(vmid: number, addr: number, len: number, leaf: boolean, ttl: number, tg: number): void {
    this.engine.tlbiS2Ipa(vmid, addr, len, leaf, ttl, tg);
  }

  tlbiNsnhAll(): void {
    this.engine.tlbiNsnhAll();
  }

  translateS2(cfg: TranslationConfig, ipa: number, access: number, out: TranslationResult): number {
    out.clear();
    const f = this.engine.translateIpa(cfg, ipa, access, CLASS_IN, out);
    if (f !== 0 && out.fault === 0) out.fault = f;
    return f;
  }
}

/** Counters for the CLI and demos. */
export interface PortStats extends PortCounts {
  /** Fault events suppressed by CD.R / STE.S2R. */
  suppressed: number;
}

export class SmmuPort {
  readonly stats: PortStats = { ...newPortCounts(), suppressed: 0 };
  /** Result of the last dmaRead/dmaWrite chunk (why a transfer stopped short). */
  readonly last = new PortResult();
  private readonly res = new TranslationResult();
  private readonly structRes = new TranslationResult();
  private readonly err = new ConfigError();
  private readonly steDw = new Uint32Array(STE_DWORDS);
  private readonly cdDw = new Uint32Array(STE_DWORDS);
  private readonly f: SmmuFeatures;
  private readonly ssidLimit: number;
  /** 2^OAS: a bypassed transaction must stay below it. */
  private readonly oasLimit: number;
  // stage-2 translation of CD/L1CD addresses for the stream being resolved
  private structCfg: TranslationConfig | null = null;
  // one-entry memo of the last resolved (sid, ssid), valid while cache.generation is unchanged
  private mSid = -1;
  private mSsid = -2;
  private mGen = -1;
  private mSt: StreamConfig | null = null;
  private mCtx: ContextConfig | null = null;
  private mCfg: TranslationConfig | null = null;
  private readonly toPa: StructToPa = (addr, err) => this.structToPa(addr, err);
  /** The held transaction being retried by CMD_RESUME (it keeps its STAG if it stalls again). */
  private retrying: StalledTxn | null = null;
  /** Access as presented by the device, before STE overrides (what a held transaction keeps). */
  private inAccess = 0;
  /** Translating for an ATS Translation Request: no events, no stall, no RAZ/WI. */
  atsMode = false;
  /** The DMA-isolation sanitizer (null: off). */
  private san: DmaSanitizer | null = null;
  /** With the sanitizer: the sequence number when each cached STE/CD was fetched. */
  private readonly cfgSeq = new WeakMap<object, number>();

  constructor(
    private readonly smmu: SmmuV3,
    private readonly engine: TranslationBackend,
  ) {
    this.f = smmu.features;
    this.ssidLimit = 2 ** this.f.ssidBits;
    this.oasLimit = 2 ** this.f.oasBits;
    smmu.machine.mem.watchSanitizer((san) => {
      this.san = san;
    });
  }

  /** The walker + TLB engine matching the SMMU's ID registers. */
  static defaultEngine(machine: Machine, f: SmmuFeatures): TranslationBackend {
    return new EngineBackend(
      new TranslationEngine(machine.mem, {
        oas: f.oasBits,
        xnx: f.xnx,
        httu: f.httu > 0,
        vax: f.va52,
        tlbSets: f.tlbSets,
        tlbWays: f.tlbWays,
        tlbConflictAbort: f.tlbConflictAbort,
      }),
    );
  }

  /**
   * Translate one transaction. `ssid` is the SubstreamID, or -1 when the transaction has none.
   * `access` combines ACCESS_WRITE / ACCESS_EXEC / ACCESS_PRIV. Returns out.status.
   */
  translate(sid: number, ssid: number, iova: number, access: number, out: PortResult): number {
    if (this.san !== null) return this.translateSan(sid, ssid, iova, access, out);
    return this.translate0(sid, ssid, iova, access, out);
  }

  /** translate() with the DMA-isolation sanitizer on: record how the translation was obtained. */
  private translateSan(sid: number, ssid: number, iova: number, access: number, out: PortResult): number {
    const san = this.san!;
    portSanBegin(san, this.smmu.name, sid, ssid, iova, this.res);
    const st = this.translate0(sid, ssid, iova, access, out);
    portSanEnd(san, out, this.res, st);
    return st;
  }

  private translate0(sid: number, ssid: number, iova: number, access: number, out: PortResult): number {
    const smmu = this.smmu;
    portBegin(out, this.stats);
    this.inAccess = access;
    if (!smmu.enabled) {
      if ((smmu.gbpa & GBPA.ABORT) !== 0 || iova >= this.oasLimit) return this.done(out, PORT_ABORT);
      out.oa = iova;
      out.pageShift = 12;
      out.perm = 0xff;
      return this.done(out, PORT_BYPASS);
    }
    const cache = smmu.cache;
    let st: StreamConfig | null;
    let ctx: ContextConfig | null = null;
    let cfg: TranslationConfig;
    if (sid === this.mSid && ssid === this.mSsid && cache.generation === this.mGen) {
      // Same stream and substream as the last transaction and no invalidation or eviction
      // since: the configuration-cache lookups would return exactly these entries.
      st = this.mSt!;
      ctx = this.mCtx;
      cfg = this.mCfg!;
      cache.touch(st, ctx);
    } else {
      st = cache.lookupSte(sid) ?? this.fillSte(sid);
      if (st === null) return this.configFault(out, sid, ssid, iova, access);
      if (st.kind === STREAM_ABORT) return this.done(out, PORT_ABORT);
      if (ssid >= 0 && (!st.s1 || st.s1CdMax === 0 || ssid >= this.ssidLimit || ssid >= 2 ** st.s1CdMax)) {
        this.err.set(EVT_ID.C_BAD_SUBSTREAMID, `SubstreamID ${ssid} not accepted by the STE`);
        return this.configFault(out, sid, ssid, iova, this.attrOverride(st, access));
      }
      if (st.kind === STREAM_BYPASS) {
        if (iova >= this.oasLimit)
          return this.translationFault(out, st, null, sid, ssid, iova, access, this.beyondOas());
        out.oa = iova;
        out.pageShift = 12;
        out.perm = 0xff;
        return this.done(out, PORT_BYPASS);
      }
      if (!st.s1) cfg = st.direct;
      else {
        let index = 0;
        if (st.s1CdMax > 0) {
          if (ssid < 0) {
            if (st.s1Dss === 0) {
              this.err.set(
                EVT_ID.F_STREAM_DISABLED,
                'transaction without SubstreamID and STE.S1DSS == terminate',
              );
              return this.configFault(out, sid, ssid, iova, this.attrOverride(st, access));
            }
            index = st.s1Dss === 1 ? -1 : 0;
          } else {
            if (ssid === 0 && st.s1Dss === 2) {
              this.err.set(EVT_ID.F_STREAM_DISABLED, 'SubstreamID 0 is reserved by STE.S1DSS == substream 0');
              return this.configFault(out, sid, ssid, iova, this.attrOverride(st, access));
            }
            index = ssid;
          }
        }
        if (index < 0) cfg = st.direct;
        else {
          ctx = cache.lookupCd(sid, index) ?? this.fillCd(st, index);
          if (ctx === null) return this.configFault(out, sid, ssid, iova, this.attrOverride(st, access));
          if (ctx.stream !== st) this.relink(ctx, st);
          cfg = ctx.cfg;
        }
      }
      this.mSid = sid;
      this.mSsid = ssid;
      this.mGen = cache.generation;
      this.mSt = st;
      this.mCtx = ctx;
      this.mCfg = cfg;
    }
    // STE attribute overrides of the incoming privilege / instruction attributes.
    if ((st.privcfg | st.instcfg) >= 2) access = this.attrOverride(st, access);
    // a stream whose untagged traffic skips stage 1 (S1DSS) and that has no stage 2 bypasses both
    if (iova >= this.oasLimit && !cfg.s1Enabled && !cfg.s2Enabled)
      return this.translationFault(out, st, ctx, sid, ssid, iova, access, this.beyondOas());
    const res = this.res;
    if (this.san !== null) this.san.txCfgSeq = this.cfgSeq.get(ctx ?? st) ?? Number.POSITIVE_INFINITY;
    this.engine.translate(cfg, iova, access, res);
    if (res.fault === 0) {
      return portTranslated(out, this.stats, res);
    }
    return this.translationFault(out, st, ctx, sid, ssid, iova, access, res);
  }

  /**
   * The fault of a transaction that bypasses both stages with an input address beyond the
   * output address size: a stage-1 Address Size fault of the input (IHI 0070 §3.4).
   */
  private beyondOas(): TranslationResult {
    const res = this.res;
    res.fault = F_ADDR_SIZE;
    res.faultClass = CLASS_IN;
    res.s2 = false;
    res.ipa = 0;
    res.fetchAddr = 0;
    res.level = 0;
    return res;
  }

  /** Re-translate a held transaction as though it had just arrived (CMD_RESUME Retry, §4.7.1). */
  retry(t: StalledTxn, out: PortResult): number {
    const prev = this.retrying;
    this.retrying = t;
    try {
      return this.translate(t.sid, t.ssid, t.iova, t.access, out);
    } finally {
      this.retrying = prev;
    }
  }

  /**
   * The STE of `sid` as the configuration cache holds it (fetching it if needed), or null with
   * `configError` describing why (C_BAD_STREAMID, F_STE_FETCH, C_BAD_STE). For the ATS and PRI
   * paths, which consult the STE without translating. Records nothing.
   */
  streamFor(sid: number): StreamConfig | null {
    return this.smmu.cache.lookupSte(sid) ?? this.fillSte(sid);
  }

  /** Why the last streamFor() / configuration fetch failed. */
  get configError(): ConfigError {
    return this.err;
  }

  /** STE.PRIVCFG / INSTCFG applied to the incoming attributes (INSTCFG affects reads only). */
  private attrOverride(st: StreamConfig, access: number): number {
    if (st.privcfg >= 2) access = st.privcfg === 3 ? access | ACCESS_PRIV : access & ~ACCESS_PRIV;
    if (st.instcfg >= 2 && (access & ACCESS_WRITE) === 0) {
      access = st.instcfg === 3 ? access | ACCESS_EXEC : access & ~ACCESS_EXEC;
    }
    return access;
  }

  /** DMA read of `len` bytes at `iova` into dst[off..]. Returns the bytes transferred (< len: see `last`). */
  dmaRead(
    sid: number,
    ssid: number,
    iova: number,
    dst: Uint8Array,
    off: number,
    len: number,
    access = 0,
  ): number {
    return portDma(
      this,
      this.smmu.machine,
      this.last,
      sid,
      ssid,
      iova,
      dst,
      off,
      len,
      access & ~ACCESS_WRITE,
      false,
    );
  }

  /** DMA write of src[off..off+len) to `iova`. Returns the bytes transferred (< len: see `last`). */
  dmaWrite(
    sid: number,
    ssid: number,
    iova: number,
    src: Uint8Array,
    off: number,
    len: number,
    access = 0,
  ): number {
    const a = (access | ACCESS_WRITE) & ~ACCESS_EXEC;
    return portDma(this, this.smmu.machine, this.last, sid, ssid, iova, src, off, len, a, true);
  }

  // ------------------------------------------------------------------------------ internals

  private done(out: PortResult, status: number): number {
    return portDone(out, this.stats, status);
  }

  private fillSte(sid: number): StreamConfig | null {
    const smmu = this.smmu;
    const err = this.err;
    const addr = locateSte(
      smmu.machine.mem,
      this.f,
      smmu.strtabBaseLo,
      smmu.strtabBaseHi,
      smmu.strtabBaseCfg,
      sid,
      err,
    );
    if (addr < 0) return null;
    if (!fetchSte(smmu.machine.mem, addr, this.steDw, err)) return null;
    const st = decodeSte(this.steDw, sid, addr, this.f, (smmu.cr2 & 1) !== 0, err);
    const cont = st === null ? 0 : getField(this.steDw, STE.CONT);
    if (cont > 0) {
      const other = smmu.cache.contConflict(sid, cont, this.steDw);
      if (other >= 0) {
        const why = `STE.CONT: the STEs of StreamIDs 0x${other.toString(16)} and 0x${sid.toString(16)} are in one ${2 ** cont}-entry span but differ`;
        this.san?.reportConflict(
          smmu.name,
          sid,
          -1,
          -1,
          `${why}; the SMMU may hold either for the span`,
          true,
        );
        return err.set(EVT_ID.F_CFG_CONFLICT, why);
      }
    }
    if (st !== null) {
      smmu.cache.insertSte(st);
      if (this.san !== null) this.cfgSeq.set(st, this.san.seq);
    }
    return st;
  }

  private fillCd(st: StreamConfig, index: number): ContextConfig | null {
    const smmu = this.smmu;
    const err = this.err;
    this.structCfg = st.s2 ? st.direct : null;
    const pa = locateCd(smmu.machine.mem, st, index, this.toPa, err);
    if (pa < 0) return null;
    if (!fetchCd(smmu.machine.mem, pa, this.cdDw, err)) return null;
    const ctx = decodeCd(this.cdDw, st, index, pa, this.f, err);
    if (ctx !== null) {
      smmu.cache.insertCd(ctx);
      if (this.san !== null) this.cfgSeq.set(ctx, this.san.seq);
    }
    return ctx;
  }

  private structToPa(addr: number, err: ConfigError): number {
    const cfg = this.structCfg;
    if (cfg === null) return addr;
    const r = this.structRes;
    const pa = this.engine.translateStructIpa(cfg, addr, r);
    if (pa >= 0) return pa;
    err.set(r.fault, `stage-2 fault translating configuration IPA 0x${addr.toString(16)}`, r.fetchAddr);
    err.s2 = true;
    err.ipa = r.ipa || addr;
    err.faultClass = CLASS_CD;
    return -1;
  }

  /** A CD cached through an older copy of the STE: bind it to the current one. */
  private relink(ctx: ContextConfig, st: StreamConfig): void {
    ctx.stream = st;
    // a new object: a config is not changed once used (the engine may hold what it derived)
    ctx.cfg = { ...ctx.cfg, s2Enabled: st.s2, s2: st.s2cfg, world: st.world, vmid: st.vmid };
  }

  /** Record the event for a configuration error in `this.err` and terminate. */
  private configFault(out: PortResult, sid: number, ssid: number, iova: number, access: number): number {
    const e = this.err;
    out.fault = e.code;
    const q = this.smmu.evtq;
    if (this.atsMode) {
      // ATS Translation Request: answered CA (or R = W = 0) by the caller; no event (§3.9.1.2,
      // SMMU_CR2.REC_CFG_ATS not implemented).
    } else if (e.s2) {
      // Stage-2 fault while fetching a CD / L1CD (nested): a translation-related record with Class CD.
      out.recorded = q.record({
        type: e.code,
        streamId: sid,
        ssv: ssid >= 0,
        substreamId: Math.max(ssid, 0),
        read: (access & ACCESS_WRITE) === 0,
        instruction: (access & (ACCESS_EXEC | ACCESS_WRITE)) === ACCESS_EXEC,
        privileged: (access & ACCESS_PRIV) !== 0,
        s2: true,
        class: CLASS_CD,
        inputAddr: iova,
        ipa: e.ipa,
        fetchAddr: e.fetchAddr,
      });
    } else {
      out.recorded = q.record({
        type: e.code,
        streamId: sid,
        ssv: ssid >= 0,
        substreamId: Math.max(ssid, 0),
        fetchAddr: e.fetchAddr,
      });
    }
    this.traceFault(sid, ssid, iova, e.code, e.reason);
    return this.done(out, PORT_FAULT);
  }

  private translationFault(
    out: PortResult,
    st: StreamConfig,
    ctx: ContextConfig | null,
    sid: number,
    ssid: number,
    iova: number,
    access: number,
    res: TranslationResult,
  ): number {
    const code = res.fault;
    out.fault = code;
    const trf = code === F_TRANSLATION || code === F_ADDR_SIZE || code === F_ACCESS || code === F_PERMISSION;
    if (this.atsMode) return this.done(out, PORT_FAULT);
    const ev: EventArgs = {
      type: code,
      streamId: sid,
      ssv: ssid >= 0,
      substreamId: Math.max(ssid, 0),
      read: (access & ACCESS_WRITE) === 0,
      instruction: (access & (ACCESS_EXEC | ACCESS_WRITE)) === ACCESS_EXEC,
      privileged: (access & ACCESS_PRIV) !== 0,
      s2: res.s2,
      // IHI 0070 §7.3.12: an external abort on a stage-1 descriptor access is S2 = 0, CLASS = TT
      // (the walker still reports CLASS_IN for it; drop this once walk.ts reports TT itself)
      class: code === F_WALK_EABT && !res.s2 ? CLASS_TT : res.faultClass,
      inputAddr: iova,
      ipa: res.s2 ? res.ipa : 0,
      fetchAddr: res.fetchAddr,
    };
    let record = true;
    let razwi = false;
    if (trf) {
      // Stall model: CD.S for stage-1 faults, STE.S2S for stage-2 faults (§5.5). A stalling
      // fault is always recorded (effective R = 1).
      const stall = res.s2 ? st.s2s : ctx?.s === true;
      if (stall) {
        const t = this.smmu.stall.hold(sid, ssid, iova, this.inAccess, ev, this.retrying);
        if (t !== null) {
          out.stag = t.stag;
          out.recorded = !t.pendingRecord;
          if (this.smmu.machine.trace.enabled)
            this.traceFault(sid, ssid, iova, code, `stalled, STAG ${t.stag}`);
          return this.done(out, PORT_STALLED);
        }
        ev.stall = false; // no STAG free: terminate instead (IMPLEMENTATION DEFINED choice)
      }
      if (res.s2) record = st.s2r;
      else if (ctx !== null) {
        record = ctx.r;
        razwi = !ctx.a;
      }
    }
    if (record) out.recorded = this.smmu.evtq.record(ev);
    else this.stats.suppressed++;
    if (this.smmu.machine.trace.enabled)
      this.traceFault(sid, ssid, iova, code, record ? '' : 'record suppressed');
    return this.done(out, razwi ? PORT_RAZWI : PORT_FAULT);
  }

  private traceFault(sid: number, ssid: number, iova: number, code: number, why: string): void {
    const t = this.smmu.machine.trace;
    if (!t.enabled) return;
    t.emit(
      this.smmu.name,
      'fault',
      `sid 0x${sid.toString(16)}${ssid >= 0 ? ` ssid 0x${ssid.toString(16)}` : ''} iova 0x${iova.toString(16)}: event 0x${code.toString(16)}${why ? ` (${why})` : ''}`,
      { sid, ssid, iova: `0x${iova.toString(16)}`, event: code, why },
      'debug',
    );
  }
}
