// PCIe ATS on the SMMU side (IHI 0070 §3.9.1, §4.5.1, §13.6-13.7): Translation Requests and
// their Completions, Translated transactions, and ATC invalidation with CMD_SYNC ordering.
//
// Translation Requests (§3.9.1.2):
//   SMMUEN == 0, STE.Config == bypass, effective EATS == 0b00 (EATS == 0b10 reads as 0b00 while
//   CR0.ATSCHK == 0)  -> UR and F_BAD_ATS_TREQ;  STE.Config == abort -> UR, no event;
//   configuration errors (C_BAD_STREAMID, F_STE_FETCH, C_BAD_STE, C_BAD_SUBSTREAMID,
//   F_STREAM_DISABLED, F_CD_FETCH, C_BAD_CD, F_WALK_EABT) -> CA, no event (REC_CFG_ATS == 0);
//   F_TRANSLATION / F_ADDR_SIZE / F_ACCESS -> Success with R = W = 0 (size = STU), no event;
//   F_PERMISSION -> Success with the permissions the tables grant. Never stalls. With HTTU the
//   walk sets the Access flag, and dirty state for a write (NW == 0) request (§3.9.1).
// Translated transactions (§3.9.1.3): SMMUEN == 0 -> F_TRANSL_FORBIDDEN, abort; CR0.ATSCHK == 0
//   -> pass through unchecked; ATSCHK == 1: abort STE -> abort, bypass STE or EATS == 0b00 ->
//   F_TRANSL_FORBIDDEN, abort; EATS == 0b01 -> pass; EATS == 0b10 -> stage-2 translation of the
//   address, faults recorded as for ordinary transactions.
// Split-stage (EATS == 0b10) Translation Requests are not modelled: answered CA.
// CMD_ATC_INV (§4.5.1) sends an invalidation to the endpoint (UpstreamMaster.atcInvalidate) and
// counts it outstanding until the endpoint calls done(); a CMD_SYNC waits for zero (cmd.ts),
// and fails with CERROR_ATC_INV_SYNC after `atcInvTimeoutNs` (§3.9.1.4). Ignored while
// SMMUEN == 0 (§6.3.9.6).

import { EVT_ID } from '../../arch/smmuv3/event.ts';
import { CR0 } from '../../arch/smmuv3/regs.ts';
import {
  F_ACCESS,
  F_ADDR_SIZE,
  F_PERMISSION,
  F_TRANSLATION,
  TranslationResult,
} from '../smmu-common/translate-types.ts';
import { STREAM_ABORT, STREAM_BYPASS } from './config.ts';
import { ACCESS_EXEC, ACCESS_PRIV, ACCESS_WRITE, PORT_FAULT, PORT_OK, PortResult } from './port.ts';
import type { SmmuV3 } from './smmu.ts';
import { ATS_CA, ATS_OK, ATS_UR, type AtsCompletion } from './upstream.ts';

export interface AtsStats {
  translationRequests: number;
  completionsOk: number;
  noAccess: number;
  ur: number;
  ca: number;
  translated: number;
  translatedAborted: number;
  atcInvSent: number;
  atcInvAcked: number;
  /** Invalidations abandoned by a CERROR_ATC_INV_SYNC timeout. */
  atcInvFailed: number;
}

export class AtsUnit {
  readonly stats: AtsStats = {
    translationRequests: 0,
    completionsOk: 0,
    noAccess: 0,
    ur: 0,
    ca: 0,
    translated: 0,
    translatedAborted: 0,
    atcInvSent: 0,
    atcInvAcked: 0,
    atcInvFailed: 0,
  };
  /** CMD_ATC_INV sent and not yet acknowledged. */
  outstanding = 0;
  /** Bumped when outstanding invalidations are abandoned: late acknowledgements are ignored. */
  private epoch = 0;
  private readonly res = new TranslationResult();
  private readonly pr = new PortResult();

  constructor(private readonly smmu: SmmuV3) {}

  private get atschk(): boolean {
    return (this.smmu.cr0ack & CR0.ATSCHK) !== 0;
  }

  // ------------------------------------------------------------------------------ Translation Requests

  translationRequest(sid: number, ssid: number, iova: number, access: number, out: AtsCompletion): number {
    const smmu = this.smmu;
    this.stats.translationRequests++;
    out.status = ATS_OK;
    out.pa = 0;
    out.sizeShift = 12;
    out.read = out.write = out.exec = false;
    out.priv = (access & ACCESS_PRIV) !== 0;
    out.fault = 0;
    if (!smmu.features.ats) return this.fail(out, ATS_UR, 0);
    if (!smmu.enabled) return this.badTreq(sid, ssid, iova, out);
    const st = smmu.port.streamFor(sid);
    if (st === null) return this.fail(out, ATS_CA, smmu.port.configError.code);
    if (st.kind === STREAM_ABORT) return this.fail(out, ATS_UR, 0);
    if (st.kind === STREAM_BYPASS) return this.badTreq(sid, ssid, iova, out);
    const eats = st.eats === 2 && !this.atschk ? 0 : st.eats;
    if (eats === 0) return this.badTreq(sid, ssid, iova, out);
    if (eats === 2) return this.fail(out, ATS_CA, 0); // split-stage: not modelled
    const port = smmu.port;
    const r = this.pr;
    port.atsMode = true;
    try {
      // A write-intent (NW == 0) request: try for read-write first, so that HTTU marks the page
      // dirty; fall back to what a read grants.
      let st1 = port.translate(sid, ssid, iova, access, r);
      if (st1 !== PORT_OK && (access & ACCESS_WRITE) !== 0 && r.fault === F_PERMISSION) {
        st1 = port.translate(sid, ssid, iova, access & ~ACCESS_WRITE, r);
      }
      if (st1 === PORT_OK) {
        const k = access & ACCESS_PRIV;
        out.read = ((r.perm >>> k) & 1) !== 0;
        out.write = ((r.perm >>> (k | ACCESS_WRITE)) & 1) !== 0;
        out.exec = ((r.perm >>> (k | ACCESS_EXEC)) & 1) !== 0;
        out.sizeShift = r.pageShift;
        const size = 2 ** r.pageShift;
        out.pa = r.oa - (r.oa % size);
        out.fillSeq = r.fillSeq;
        out.ctx = r.ctx;
        this.stats.completionsOk++;
        return ATS_OK;
      }
      const f = r.fault;
      if (f === F_TRANSLATION || f === F_ADDR_SIZE || f === F_ACCESS || f === F_PERMISSION) {
        out.fault = f;
        this.stats.noAccess++;
        return ATS_OK; // Success, R == W == 0, size = STU (4KB here)
      }
      return this.fail(out, ATS_CA, f);
    } finally {
      port.atsMode = false;
    }
  }

  private badTreq(sid: number, ssid: number, iova: number, out: AtsCompletion): number {
    this.smmu.evtq.record(
      {
        type: EVT_ID.F_BAD_ATS_TREQ,
        streamId: sid,
        ssv: ssid >= 0,
        substreamId: Math.max(ssid, 0),
        inputAddr: iova,
      },
      true,
    );
    return this.fail(out, ATS_UR, EVT_ID.F_BAD_ATS_TREQ);
  }

  private fail(out: AtsCompletion, status: number, fault: number): number {
    out.status = status;
    out.fault = fault;
    if (status === ATS_UR) this.stats.ur++;
    else this.stats.ca++;
    return status;
  }

  // ------------------------------------------------------------------------------ Translated transactions

  translated(sid: number, pa: number, _len: number, access: number, out: PortResult): number {
    const smmu = this.smmu;
    this.stats.translated++;
    out.recorded = false;
    out.fault = 0;
    out.tlbHit = false;
    out.pageShift = 12;
    out.perm = 0xff;
    // §3.9.1.3: PnU = 0, InD = 0 without IDR3.PASIDTT (not implemented)
    const write = (access & ACCESS_WRITE) !== 0;
    if (!smmu.features.ats) return this.abortT(out, 0);
    if (!smmu.enabled) return this.forbidden(sid, pa, write, out);
    if (!this.atschk) {
      out.oa = pa;
      out.status = PORT_OK;
      return PORT_OK;
    }
    const st = smmu.port.streamFor(sid);
    if (st === null) return this.abortT(out, smmu.port.configError.code);
    if (st.kind === STREAM_ABORT) return this.abortT(out, 0);
    if (st.kind === STREAM_BYPASS || st.eats === 0) return this.forbidden(sid, pa, write, out);
    if (st.eats === 1) {
      out.oa = pa;
      out.status = PORT_OK;
      return PORT_OK;
    }
    // Split-stage: the address is an IPA; stage 2 translates it.
    const e = smmu.engine;
    const r = this.res;
    if (e.translateS2 === undefined || !st.s2) return this.abortT(out, 0);
    const f = e.translateS2(st.direct, pa, write ? ACCESS_WRITE : 0, r);
    if (f === 0) {
      out.oa = r.oa;
      out.pageShift = r.pageShift;
      out.perm = r.perm;
      out.attr = r.attr;
      out.status = PORT_OK;
      return PORT_OK;
    }
    if (f === F_TRANSLATION || f === F_ADDR_SIZE || f === F_ACCESS || f === F_PERMISSION ? st.s2r : true) {
      out.recorded = smmu.evtq.record({
        type: f,
        streamId: sid,
        read: !write,
        s2: true,
        class: r.faultClass,
        inputAddr: pa,
        ipa: pa,
        fetchAddr: r.fetchAddr,
      });
    }
    return this.abortT(out, f);
  }

  private forbidden(sid: number, pa: number, write: boolean, out: PortResult): number {
    out.recorded = this.smmu.evtq.record(
      { type: EVT_ID.F_TRANSL_FORBIDDEN, streamId: sid, read: !write, inputAddr: pa },
      true,
    );
    return this.abortT(out, EVT_ID.F_TRANSL_FORBIDDEN);
  }

  private abortT(out: PortResult, fault: number): number {
    this.stats.translatedAborted++;
    out.fault = fault;
    out.status = PORT_FAULT;
    return PORT_FAULT;
  }

  // ------------------------------------------------------------------------------ ATC invalidation

  /** CMD_ATC_INV: forward to the endpoint; outstanding until it calls done(). */
  atcInv(sid: number, ssid: number, address: number, size: number, global: boolean): void {
    const smmu = this.smmu;
    if (!smmu.enabled) return; // §6.3.9.6: ignored while SMMUEN == 0
    const m = smmu.upstream.master(sid);
    this.stats.atcInvSent++;
    if (m?.atcInvalidate === undefined) {
      this.stats.atcInvAcked++;
      return;
    }
    this.outstanding++;
    const epoch = this.epoch;
    let called = false;
    m.atcInvalidate(sid, ssid, address, size, global, () => {
      if (called) return;
      called = true;
      if (epoch !== this.epoch) return; // abandoned by a CERROR_ATC_INV_SYNC
      this.stats.atcInvAcked++;
      this.outstanding--;
      if (this.outstanding === 0) smmu.cmdq.kick();
    });
  }

  /** CERROR_ATC_INV_SYNC: the outstanding invalidations failed; forget them. */
  abandon(): void {
    this.stats.atcInvFailed += this.outstanding;
    this.outstanding = 0;
    this.epoch++;
  }
}
