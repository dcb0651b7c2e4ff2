// The interface between an SMMUv3 and the devices upstream of it (client devices, PCIe
// endpoints behind a root complex). This is the contract device models are written against;
// keep it stable.
//
// 1. Untranslated transactions (every device)
//    `smmu.port.translate(sid, ssid | -1, iova, access, out)` returns, in the same call,
//      PORT_OK / PORT_BYPASS  -> out.oa is the output address,
//      PORT_ABORT / PORT_FAULT / PORT_RAZWI -> terminated (see port.ts),
//      PORT_STALLED -> the transaction faulted and is *held* by the SMMU (stall model: CD.S = 1,
//                      or STE.S2S = 1 for a stage-2 fault). out.stag is its STAG and out.fault
//                      the fault. The device must not consider it finished: it later receives
//                      exactly one `UpstreamMaster.stallCompleted(sid, stag, status, result)`:
//                        - CMD_RESUME Ac=Retry, re-translation succeeds: status PORT_OK and
//                          `result` holds the new translation (oa, pageShift, perm, attr);
//                        - CMD_RESUME Ac=Retry that faults again with stall still in effect:
//                          no callback; the transaction stays stalled (same STAG, new event);
//                        - CMD_RESUME Ac=Abort, CMD_STALL_TERM, SMMUEN -> 0, CFGI of its STE, a
//                          retry that ends in a terminating fault: status PORT_FAULT (or
//                          PORT_RAZWI when CD.A == 0 and Ab == 0 asks for RAZ/WI) and
//                          result.fault says why.
//                      The callback runs in scheduler context (the SMMU's command processing).
//    `smmu.port.dmaRead/dmaWrite` stop at a stalled page (returning the bytes moved, with
//    `port.last.status === PORT_STALLED`); a device that wants to wait resumes the transfer
//    itself from stallCompleted.
//    Querying: `smmu.upstream.stalledCount(sid)` is the number of transactions of that
//    StreamID currently held; `stalledTransactions(sid)` lists them (a GPU driver's fault
//    handler checks this before it snapshots state).
//
// 2. PRI (PCIe Page Request Interface; needs SMMU_IDR0.PRI)
//    `smmu.upstream.priRequest(sid, ssid | -1, address, prgIndex, last, read, write, exec,
//    priv)` is a Page Request message from an endpoint. It returns PRI_QUEUED (written to the
//    PRI queue as an architected entry, PRIQ interrupt/MSI raised), PRI_DISCARDED (queue full:
//    PRIQ_PROD.OVFLG set; if `last`, the SMMU answers automatically), or PRI_IGNORED (no PRI,
//    or CR0.PRIQEN == 0: the SMMU answers a last request automatically, see pri.ts).
//    The answer comes back as `UpstreamMaster.priResponse(sid, ssid | -1, prgIndex, code)`
//    with code PRI_RESP_SUCCESS / PRI_RESP_INVALID / PRI_RESP_FAILURE (PCIe PRG Response
//    codes), either from CMD_PRI_RESP or automatically. Stop markers (last, !read, !write) are
//    queued like any request and never answered by the SMMU.
//
// 3. ATS (PCIe Address Translation Services; needs SMMU_IDR0.ATS)
//    `smmu.upstream.atsTranslate(sid, ssid | -1, iova, access, out: AtsCompletion)` is a
//    Translation Request and its Completion, synchronous: out.status is ATS_OK (out.pa,
//    out.size, out.read/write/exec/priv; read = write = false means "no access": the endpoint
//    may issue a page request), ATS_UR (Unsupported Request: EATS does not allow ATS, SMMU
//    disabled, bypass stream, ...; F_BAD_ATS_TREQ is recorded where the architecture says) or
//    ATS_CA (Completer Abort: configuration error).
//    `smmu.upstream.translated(sid, pa, len, access, out: PortResult)` is a Translated
//    transaction (AT = translated): checked against CR0.ATSCHK / STE.EATS (F_TRANSL_FORBIDDEN)
//    and, for split-stage ATS (EATS = 0b10), translated through stage 2; returns PORT_OK with
//    out.oa, or PORT_FAULT.
//    Invalidation: CMD_ATC_INV calls `UpstreamMaster.atcInvalidate(sid, ssid | -1, address,
//    size, global, done)`; the endpoint invalidates its ATC and calls done() once (possibly
//    later in virtual time). A CMD_SYNC does not complete until every ATC_INV before it has
//    been acknowledged. A master without atcInvalidate acknowledges at once.
//
// 4. BTM (broadcast TLB maintenance; honoured only when SMMU_IDR0.BTM and !SMMU_CR2.PTM)
//    `smmu.upstream.broadcastTlbi(op)` delivers a CPU TLBI ...IS operation (see BroadcastTlbi).
//    Returns true if the SMMU took part.
//
// Registration: `smmu.upstream.attach(sid, master)` for each StreamID the device uses (a PCIe
// endpoint: its RID mapped through the host bridge's iommu-map). One master per StreamID.

import { CR2 } from '../../arch/smmuv3/regs.ts';
import type { StallListener } from '../smmu-common/port.ts';
import type { PortResult } from './port.ts';
import type { SmmuV3 } from './smmu.ts';

/** PRG Response codes as the endpoint receives them (PCIe Page Request Group Response). */
export const PRI_RESP_SUCCESS = 0;
export const PRI_RESP_INVALID = 1;
export const PRI_RESP_FAILURE = 0xf;
export type PriResponseCode = typeof PRI_RESP_SUCCESS | typeof PRI_RESP_INVALID | typeof PRI_RESP_FAILURE;

/** priRequest() outcomes. */
export const PRI_QUEUED = 0;
export const PRI_DISCARDED = 1;
export const PRI_IGNORED = 2;

/** ATS completion status. */
export const ATS_OK = 0;
/** Unsupported Request. */
export const ATS_UR = 1;
/** Completer Abort. */
export const ATS_CA = 2;

/** An ATS Translation Completion; allocate once per endpoint and reuse. */
export class AtsCompletion {
  status = ATS_OK;
  /** Translated (output) address of the start of the translated range. */
  pa = 0;
  /** log2 of the translated range size (>= 12). */
  sizeShift = 12;
  read = false;
  write = false;
  exec = false;
  priv = false;
  /** Event number behind a failure (0 when none). */
  fault = 0;
  /**
   * With the DMA-isolation sanitizer on: the sanitizer sequence number and TLB context of the
   * SMMU translation behind the completion (the ATC entry is as old as it). Infinity: unknown.
   */
  fillSeq = Number.POSITIVE_INFINITY;
  ctx = -1;
}

/** A broadcast TLB invalidation from the CPUs (TLBI ...IS), as the SMMU sees it (BTM). */
export interface BroadcastTlbi {
  /** 'all' VMALLE1IS (vmid), 'asid' ASIDE1IS, 'va' VAE1IS / VALE1IS, 'vaa' VAAE1IS, 's2' IPAS2E1IS, 'vmall' VMALLS12E1IS, 'nsnh' ALLE1IS. */
  kind: 'all' | 'asid' | 'va' | 'vaa' | 's2' | 'vmall' | 'nsnh';
  vmid?: number;
  asid?: number;
  /** VA / IPA (page aligned). */
  addr?: number;
  /** Range length in bytes (default one page). */
  len?: number;
  leaf?: boolean;
}

/** What a device implements to hear back from the SMMU. Every method is optional. */
export interface UpstreamMaster extends StallListener {
  /** A PRG Response for (sid, ssid, prgIndex). ssid is -1 when the response carries no PASID. */
  priResponse?(sid: number, ssid: number, prgIndex: number, code: PriResponseCode): void;
  /**
   * ATC invalidation request. size is in bytes (a power of two, address aligned to it);
   * `global` with ssid -1 means all PASIDs. Call done() exactly once when complete.
   */
  atcInvalidate?(
    sid: number,
    ssid: number,
    address: number,
    size: number,
    global: boolean,
    done: () => void,
  ): void;
}

/** One held transaction, as the inspection API shows it. */
export interface StalledTransaction {
  readonly sid: number;
  readonly ssid: number;
  readonly stag: number;
  readonly iova: number;
  readonly access: number;
  /** Fault that stalled it (latest, after retries). */
  readonly fault: number;
  /** Virtual time it first stalled. */
  readonly since: number;
  /** Retries so far. */
  readonly retries: number;
}

/** The upstream face of an SMMU (implemented by SmmuUpstream in smmu.ts's `upstream`). */
export interface SmmuUpstreamPort {
  attach(sid: number, master: UpstreamMaster): void;
  detach(sid: number): void;
  stalledCount(sid: number): number;
  stalledTransactions(sid?: number): StalledTransaction[];
  priRequest(
    sid: number,
    ssid: number,
    address: number,
    prgIndex: number,
    last: boolean,
    read: boolean,
    write: boolean,
    exec: boolean,
    priv: boolean,
  ): number;
  atsTranslate(sid: number, ssid: number, iova: number, access: number, out: AtsCompletion): number;
  translated(sid: number, pa: number, len: number, access: number, out: PortResult): number;
  broadcastTlbi(op: BroadcastTlbi): boolean;
}

/** The SMMU's implementation of the upstream interface (`smmu.upstream`). */
export class SmmuUpstream implements SmmuUpstreamPort {
  private readonly masters = new Map<number, UpstreamMaster>();

  constructor(private readonly smmu: SmmuV3) {}

  attach(sid: number, master: UpstreamMaster): void {
    this.masters.set(sid >>> 0, master);
  }

  detach(sid: number): void {
    this.masters.delete(sid >>> 0);
  }

  /** The master registered for `sid`. */
  master(sid: number): UpstreamMaster | undefined {
    return this.masters.get(sid);
  }

  stalledCount(sid: number): number {
    return this.smmu.stall.countFor(sid);
  }

  stalledTransactions(sid?: number): StalledTransaction[] {
    return this.smmu.stall.list(sid);
  }

  priRequest(
    sid: number,
    ssid: number,
    address: number,
    prgIndex: number,
    last: boolean,
    read: boolean,
    write: boolean,
    exec: boolean,
    priv: boolean,
  ): number {
    if (!this.smmu.features.pri) return PRI_IGNORED; // no PRI: the message goes nowhere
    return this.smmu.priq.request(sid, ssid, address, prgIndex, last, read, write, exec, priv);
  }

  atsTranslate(sid: number, ssid: number, iova: number, access: number, out: AtsCompletion): number {
    return this.smmu.ats.translationRequest(sid, ssid, iova, access, out);
  }

  translated(sid: number, pa: number, len: number, access: number, out: PortResult): number {
    return this.smmu.ats.translated(sid, pa, len, access, out);
  }

  /**
   * A TLBI ...IS broadcast from the CPUs. Honoured when SMMU_IDR0.BTM == 1 and SMMU_CR2.PTM == 0
   * (private TLB maintenance off), also while SMMUEN == 0 (§6.3.9.6: caches are still
   * invalidated "by maintenance commands or broadcast operations"). CD.ASET is not tracked by the TLB, so
   * shared and non-shared ASID sets are both invalidated: over-invalidation, which the
   * architecture always permits.
   */
  broadcastTlbi(op: BroadcastTlbi): boolean {
    const smmu = this.smmu;
    if (!smmu.features.btm || (smmu.cr2 & CR2.PTM) !== 0) return false;
    const e = smmu.engine;
    const vmid = smmu.features.s2 ? (op.vmid ?? 0) : 0;
    const addr = op.addr ?? 0;
    const len = op.len ?? 1;
    const leaf = op.leaf ?? false;
    switch (op.kind) {
      case 'all':
        e.tlbiNhAll(vmid);
        break;
      case 'asid':
        e.tlbiNhAsid(vmid, op.asid ?? 0);
        break;
      case 'va':
        e.tlbiNhVa(vmid, op.asid ?? 0, addr, len, leaf, 0, 0);
        break;
      case 'vaa':
        e.tlbiNhVa(vmid, -1, addr, len, leaf, 0, 0);
        break;
      case 's2':
        e.tlbiS2Ipa(vmid, addr, len, leaf, 0, 0);
        break;
      case 'vmall':
        e.tlbiS12Vmall(vmid);
        break;
      case 'nsnh':
        e.tlbiNsnhAll();
        break;
    }
    smmu.counters.broadcastTlbis++;
    return true;
  }
}
