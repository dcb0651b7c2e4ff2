// The PRI queue (IHI 0070 §3.9, §8): PCIe Page Requests from endpoints, written by the SMMU
// as architected 16-byte entries for software, and the PRG Responses going back.
//
// Rules modelled (section numbers of IHI 0070):
//  - A Page Request (PPR) is written to the queue when PRIQEN is effectively 1 (SMMUEN and
//    PRIQEN), the queue is not in an overflow condition and no PRIQ_ABT_ERR is active; the PRI
//    queue interrupt (wired or MSI) is signalled.
//  - §8.1 overflow: a PPR arriving while the queue is full toggles PRIQ_PROD.OVFLG (if no
//    overflow is already active); while OVFLG != PRIQ_CONS.OVACKFLG no entry is written. Lost
//    PPRs with Last == 1 get an automatic PRG Response: no PASID -> Success without PASID;
//    with PASID -> IDR3.PPS ? Success with PASID : (STE valid ? Success, PASID iff STE.PPAR
//    : Response Failure without PASID). Lost PPRs with Last == 0 are silently ignored.
//  - Stop Markers (SSV == 1, Last == 1, R == W == 0) are queued like PPRs, discarded silently in
//    overflow, and never answered by the SMMU (§8, §8.1).
//  - §8.2: PRIQEN == 0 (including SMMUEN == 0), or PRIQ_ABT_ERR active: PPRs are discarded and
//    answered with Response Failure, no PASID. (This model answers the PPR that closes a group,
//    Last == 1: a PRG Response answers a group.) A write of the queue that aborts raises
//    PRIQ_ABT_ERR and answers that PPR with Response Failure (synchronous abort).
//  - CMD_PRI_RESP (§4.5.2) routes Success / Invalid Request (Resp = Denied) / Response Failure to
//    the endpoint, with the PASID when SSV == 1; ignored while SMMUEN == 0 (§6.3.9.6).
// Automatic responses reach the endpoint `respLatencyNs` later in virtual time (a PCIe message),
// never inside the priRequest() call.

import { encodePriInto, PRI_DWORDS } from '../../arch/smmuv3/pri.ts';
import { GERROR, PRIQ_ENT_BYTES, Q_PTR } from '../../arch/smmuv3/regs.ts';
import type { PhysicalMemory } from '../../platform/memory.ts';
import type { Scheduler } from '../../platform/scheduler.ts';
import type { FieldValue } from '../../platform/trace.ts';
import type { StreamConfig } from './config.ts';
import { qBaseAddr, qFull, qIdx, qInc, qLog2 } from './queues.ts';
import {
  PRI_DISCARDED,
  PRI_IGNORED,
  PRI_QUEUED,
  PRI_RESP_FAILURE,
  PRI_RESP_SUCCESS,
  type PriResponseCode,
  type UpstreamMaster,
} from './upstream.ts';

/** What the PRI queue needs from the SMMU around it. */
export interface PriHost {
  readonly mem: PhysicalMemory;
  readonly sched: Scheduler;
  /** SMMU_IDR3.PPS. */
  readonly pps: boolean;
  readonly respLatencyNs: number;
  /** Effective PRIQEN: CR0ACK.SMMUEN and CR0ACK.PRIQEN. */
  priqActive(): boolean;
  /** GERROR.PRIQ_ABT_ERR is active. */
  abortActive(): boolean;
  raiseGerror(bit: number, why: string): void;
  /** Signal the PRI queue interrupt. */
  priqIrq(): void;
  /** The STE of `sid` (for STE.PPAR), or null when it is inaccessible or invalid. */
  stream(sid: number): StreamConfig | null;
  master(sid: number): UpstreamMaster | undefined;
  trace(what: string, detail: string, fields: Readonly<Record<string, FieldValue>>): void;
}

export interface PriStats {
  /** Entries written to the queue. */
  queued: number;
  /** PPRs lost to an overflow condition. */
  overflowed: number;
  /** PPRs discarded because PRIQEN was 0 or PRIQ_ABT_ERR active. */
  discarded: number;
  /** Automatic PRG Responses sent. */
  autoResponses: number;
  /** CMD_PRI_RESP responses delivered. */
  responses: number;
  stopMarkers: number;
}

export class PriQueue {
  baseLo = 0;
  baseHi = 0;
  /** PRIQ_PROD: pointer | OVFLG. */
  prod = 0;
  /** PRIQ_CONS: pointer | OVACKFLG. */
  cons = 0;
  readonly stats: PriStats = {
    queued: 0,
    overflowed: 0,
    discarded: 0,
    autoResponses: 0,
    responses: 0,
    stopMarkers: 0,
  };
  private readonly ent = new Uint32Array(PRI_DWORDS);

  constructor(
    private readonly host: PriHost,
    private readonly maxLog2: number,
  ) {}

  get log2(): number {
    return qLog2(this.baseLo, this.maxLog2);
  }

  get baseAddr(): number {
    return qBaseAddr(this.baseLo, this.baseHi, this.log2, PRIQ_ENT_BYTES);
  }

  /** An overflow condition is active (OVFLG != OVACKFLG). */
  get overflowActive(): boolean {
    return ((this.prod ^ this.cons) & Q_PTR.OVFLG) !== 0;
  }

  /** Software write of PRIQ_PROD (honoured by the caller only while the queue is disabled). */
  writeProd(v: number): void {
    this.prod = (v & (Q_PTR.OVFLG | 0xfffff)) >>> 0;
  }

  /** Software write of PRIQ_CONS: read pointer and OVACKFLG. */
  writeCons(v: number): void {
    this.cons = (v & (Q_PTR.OVFLG | 0xfffff)) >>> 0;
  }

  /** A Page Request message from an endpoint. Returns PRI_QUEUED / PRI_DISCARDED / PRI_IGNORED. */
  request(
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
    const h = this.host;
    const ssv = ssid >= 0;
    const stop = ssv && last && !read && !write;
    if (stop) this.stats.stopMarkers++;
    prgIndex &= 0x1ff;
    if (!h.priqActive() || h.abortActive()) {
      this.stats.discarded++;
      if (last && !stop) this.autoRespond(sid, -1, prgIndex, PRI_RESP_FAILURE, 'PRIQEN == 0 or PRIQ_ABT_ERR');
      return PRI_IGNORED;
    }
    const log2 = this.log2;
    if (!this.overflowActive && qFull(this.prod, this.cons, log2)) {
      this.prod = (this.prod ^ Q_PTR.OVFLG) >>> 0;
      h.trace('priq.overflow', 'PRI queue overflow: PRIQ_PROD.OVFLG toggled', { sid, prgIndex });
      h.priqIrq();
    }
    if (this.overflowActive) {
      this.stats.overflowed++;
      if (last && !stop) this.overflowResponse(sid, ssid, prgIndex);
      return PRI_DISCARDED;
    }
    const e = this.ent;
    encodePriInto(e, {
      streamId: sid,
      ssv,
      substreamId: ssv ? ssid : 0,
      // §8: "When SSV == 0, the X and Priv bits are both 0"
      privileged: ssv && priv,
      exec: ssv && exec,
      read,
      write,
      last,
      prgIndex,
      address: address - (address % 4096),
    });
    const addr = this.baseAddr + qIdx(this.prod, log2) * PRIQ_ENT_BYTES;
    if (h.mem.write64(addr, e[0]!, e[1]!) !== 0 || h.mem.write64(addr + 8, e[2]!, e[3]!) !== 0) {
      // Synchronous external abort: the entry is not made visible and the PPR is answered.
      h.raiseGerror(GERROR.PRIQ_ABT_ERR, `PRI queue write to 0x${addr.toString(16)} aborted`);
      this.stats.discarded++;
      if (last && !stop) this.autoRespond(sid, -1, prgIndex, PRI_RESP_FAILURE, 'PRI queue write aborted');
      return PRI_IGNORED;
    }
    this.prod = ((this.prod & Q_PTR.OVFLG) | qInc(this.prod, log2)) >>> 0;
    this.stats.queued++;
    h.trace(
      'priq.request',
      `PRI sid 0x${sid.toString(16)}${ssv ? ` pasid 0x${ssid.toString(16)}` : ''} page 0x${address.toString(16)} prgi ${prgIndex}${last ? ' L' : ''}${read ? ' R' : ''}${write ? ' W' : ''}${stop ? ' (stop marker)' : ''}`,
      { sid, ssid, prgIndex, last, stop },
    );
    h.priqIrq();
    return PRI_QUEUED;
  }

  /** CMD_PRI_RESP: deliver the PRG Response (the caller has checked SMMUEN). */
  respond(sid: number, ssid: number, prgIndex: number, code: PriResponseCode): void {
    this.stats.responses++;
    this.host.master(sid)?.priResponse?.(sid, ssid, prgIndex, code);
  }

  /** §8.1: the automatic response to a Last == 1 PPR lost to overflow. */
  private overflowResponse(sid: number, ssid: number, prgIndex: number): void {
    if (ssid < 0) {
      this.autoRespond(sid, -1, prgIndex, PRI_RESP_SUCCESS, 'overflow');
      return;
    }
    if (this.host.pps) {
      this.autoRespond(sid, ssid, prgIndex, PRI_RESP_SUCCESS, 'overflow (PPS)');
      return;
    }
    const st = this.host.stream(sid);
    if (st === null) this.autoRespond(sid, -1, prgIndex, PRI_RESP_FAILURE, 'overflow, STE invalid');
    else this.autoRespond(sid, st.ppar ? ssid : -1, prgIndex, PRI_RESP_SUCCESS, 'overflow (STE.PPAR)');
  }

  private autoRespond(sid: number, ssid: number, prgIndex: number, code: PriResponseCode, why: string): void {
    const h = this.host;
    this.stats.autoResponses++;
    h.trace(
      'priq.autoresp',
      `automatic PRG Response ${code === 0 ? 'Success' : 'Response Failure'}: ${why}`,
      {
        sid,
        ssid,
        prgIndex,
        code,
      },
    );
    h.sched.schedule(
      h.respLatencyNs,
      () => h.master(sid)?.priResponse?.(sid, ssid, prgIndex, code),
      'smmu pri autoresp',
    );
  }
}
