// The Event queue (IHI 0070 §7.2-7.4): the SMMU is the producer, software the consumer.
//
// A record is written at PROD and PROD advances; the queue interrupt (wired edge or MSI) tells
// software there is something to read. When the queue is full the record is lost and the
// overflow condition is signalled by toggling EVTQ_PROD.OVFLG so that it differs from
// EVTQ_CONS.OVACKFLG (not by an abort error: EVTQ_ABT_ERR is for a write that the memory
// system aborted). Records are dropped while SMMUEN or EVTQEN is off.
//
// Which events this model generates, for the four whose encoders exist but whose cause is rare:
//  - F_TLB_CONFLICT: generated when SmmuV3Options.tlbConflictAbort is set and a walk fills a TLB
//    entry that overlaps one of another size in the same context (a block replaced a table, or
//    the reverse, without the TLBI between: smmu-common/translate.ts onConflict).
//  - F_CFG_CONFLICT: generated when an STE with STE.CONT is fetched while an STE of another
//    StreamID of the same contiguous span is cached and the two differ (config.ts contConflict):
//    the SMMU would hold two configurations for one span. CDs have no contiguous hint: each is
//    cached by (StreamID, SubstreamID), so no two cached CDs match one transaction.
//  - F_UUT (§7.3.2) cannot arise: the upstream interface carries only reads and writes with
//    PnU/InD attributes, all supported; the transaction types it reports (atomics, cache
//    maintenance and DVM operations, unsupported ATS forms) are not modelled on the DMA port.
//  - E_PAGE_REQUEST (§7.3.26) is an IMPLEMENTATION DEFINED speculative hint that an SMMU may
//    send; this one never does (recoverable faults go through the stall model or PRI instead).

import { EVT_DWORDS, type EventArgs, encodeEventInto, eventName } from '../../arch/smmuv3/event.ts';
import { EVTQ_ENT_BYTES, GERROR, Q_PTR } from '../../arch/smmuv3/regs.ts';
import type { PhysicalMemory } from '../../platform/memory.ts';
import { hex64 } from '../../platform/u64.ts';
import { qBaseAddr, qFull, qIdx, qInc, qLog2, qPtrMask } from './queues.ts';

/** What the event queue needs from the device around it. */
export interface EventQueueHost {
  readonly mem: PhysicalMemory;
  /** SMMUEN and EVTQEN as acknowledged in CR0ACK. */
  evtqActive(): boolean;
  /** EVTQEN alone (for the few events recorded while SMMUEN == 0, IHI 0070 §7.2). Default evtqActive. */
  evtqEnabled?(): boolean;
  /** GERROR.EVTQ_ABT_ERR is active (the queue is not writable, §7.2.1). Default false. */
  abortActive?(): boolean;
  /** Signal the Event queue interrupt (edge / MSI), if enabled. */
  evtqIrq(): void;
  /** Activate a GERROR condition. */
  raiseGerror(bit: number, why: string): void;
  traceRecord(dw: Uint32Array, addr: number): void;
}

export interface EventQueueStats {
  /** Records written to memory. */
  written: number;
  /** Records lost because the queue was full. */
  overflowed: number;
  /** Records dropped because SMMUEN or EVTQEN was off. */
  dropped: number;
  /** Records whose write the memory system aborted (EVTQ_ABT_ERR). */
  aborted: number;
}

export class EventQueue {
  /** EVTQ_BASE as written (lo/hi). */
  baseLo = 0;
  baseHi = 0;
  /** EVTQ_PROD: pointer | OVFLG. Written by the SMMU; by software only while the queue is off. */
  prod = 0;
  /** EVTQ_CONS: pointer | OVACKFLG. */
  cons = 0;
  readonly stats: EventQueueStats = { written: 0, overflowed: 0, dropped: 0, aborted: 0 };
  /** Scratch record, reused. */
  readonly rec = new Uint32Array(EVT_DWORDS);

  constructor(
    private readonly host: EventQueueHost,
    private readonly maxLog2: number,
  ) {}

  get log2(): number {
    return qLog2(this.baseLo, this.maxLog2);
  }

  get baseAddr(): number {
    return qBaseAddr(this.baseLo, this.baseHi, this.log2, EVTQ_ENT_BYTES);
  }

  /** Software write of EVTQ_PROD (only honoured while the queue is disabled). */
  writeProd(v: number): void {
    this.prod = (v & (qPtrMask(this.log2) | Q_PTR.OVFLG)) >>> 0;
  }

  /** Software write of EVTQ_CONS: consumption pointer and OVACKFLG. */
  writeCons(v: number): void {
    this.cons = (v & (qPtrMask(this.log2) | Q_PTR.OVFLG)) >>> 0;
  }

  /**
   * Encode and record an event. Returns true if it reached the queue. `whenDisabled`: an event
   * the architecture records even while SMMUEN == 0 (F_BAD_ATS_TREQ, F_TRANSL_FORBIDDEN).
   */
  record(a: EventArgs, whenDisabled = false): boolean {
    encodeEventInto(this.rec, a);
    return this.write(this.rec, whenDisabled);
  }

  /**
   * The queue is writable (IHI 0070 §7.2.1): enabled, not full, no EVTQ_ABT_ERR. A record
   * written now is not lost.
   */
  writable(): boolean {
    const h = this.host;
    return h.evtqActive() && !(h.abortActive?.() ?? false) && !qFull(this.prod, this.cons, this.log2);
  }

  /** Record a prepared 8-dword event record. */
  write(rec: Uint32Array, whenDisabled = false): boolean {
    const h = this.host;
    const on = whenDisabled && h.evtqEnabled ? h.evtqEnabled() : h.evtqActive();
    if (!on || (h.abortActive?.() ?? false)) {
      this.stats.dropped++;
      return false;
    }
    const log2 = this.log2;
    if (qFull(this.prod, this.cons, log2)) {
      this.stats.overflowed++;
      // Only a new overflow toggles the flag: while the previous one is unacknowledged
      // (OVFLG != OVACKFLG) further losses leave it alone.
      if ((this.prod & Q_PTR.OVFLG) === (this.cons & Q_PTR.OVFLG)) {
        this.prod = (this.prod ^ Q_PTR.OVFLG) >>> 0;
        h.evtqIrq();
      }
      return false;
    }
    const addr = this.baseAddr + qIdx(this.prod, log2) * EVTQ_ENT_BYTES;
    const mem = h.mem;
    for (let i = 0; i < 4; i++) {
      if (mem.write64(addr + 8 * i, rec[2 * i]!, rec[2 * i + 1]!) !== 0) {
        this.stats.aborted++;
        h.raiseGerror(GERROR.EVTQ_ABT_ERR, `event queue write to 0x${(addr + 8 * i).toString(16)} aborted`);
        return false;
      }
    }
    this.prod = ((this.prod & Q_PTR.OVFLG) | qInc(this.prod, log2)) >>> 0;
    this.stats.written++;
    h.traceRecord(rec, addr);
    h.evtqIrq();
    return true;
  }
}

/** One-line description of a record (trace text), e.g. "F_TRANSLATION sid 0x3 ... ". */
export function describeRecord(rec: Uint32Array): string {
  const code = rec[0]! & 0xff;
  const words: string[] = [];
  for (let i = 0; i < 4; i++) words.push(hex64(rec[2 * i]!, rec[2 * i + 1]!));
  return `event 0x${code.toString(16).padStart(2, '0')} (${eventName(code)}) sid 0x${(rec[1]! >>> 0).toString(16)}: ${words.join(' ')}`;
}
