// The Stall fault model (IHI 0070 §3.12.2, §4.7.1, §4.7.2, §7.2.1): faulting transactions held
// in the SMMU until software resumes or terminates them.
//
// What is modelled, with the architecture's rule for each:
//  - Only the four translation-related faults stall (F_TRANSLATION, F_ADDR_SIZE, F_ACCESS,
//    F_PERMISSION: the events with a Stall field, §7.3); stage-1 faults when CD.S == 1, stage-2
//    faults when STE.S2S == 1 (§5.5, fault configuration "ARS == 0bxx1"). The record is written
//    with Stall = 1 and a STAG whatever CD.R says ("the effective value of R is assumed to be 1").
//    Configuration errors never stall (§7.3: "A configuration error always terminates").
//  - STAGs are unique among outstanding stalls and bounded by IDR5.STALL_MAX. When every STAG is
//    in use this model terminates the new faulting transaction as though it could not stall
//    (Stall = 0 record). IMPLEMENTATION DEFINED; real hardware would more likely back-pressure.
//  - CMD_RESUME(StreamID, STAG, Ac, Ab) (§4.7.1): a STAG that does not match a stall of that
//    StreamID is a no-op. Ac = Retry re-translates "as though the transaction had just arrived":
//    it completes, terminates, or faults and stalls again (same STAG, new record). Ac = Terminate
//    completes it with RAZ/WI (Ab == 0) or abort (Ab == 1; always abort with IDR0.TERM_MODEL).
//  - CMD_STALL_TERM(StreamID) (§4.7.2): every stall of the StreamID terminates with abort.
//  - SMMUEN 1 -> 0 (§6.3.9.6): "all stalled transactions ... marked to be terminated with an abort".
//  - CMD_CFGI_* / TLBI do not touch stalls (§4.3.8: "Stalled transactions are unaffected by
//    structure or TLB invalidation commands").
//  - A stall whose record cannot be written (queue full, disabled, EVTQ_ABT_ERR) is not lost
//    (§7.2.1: "Events caused by stalled transactions are not discarded"): it stays held, and when
//    the queue becomes writable again the transaction is retried (permitted for every stalled
//    transaction, required for those affected by an invalidation): success completes it with no
//    event, a new stall records its event, a terminating fault terminates it.
// A device learns the outcome through UpstreamMaster.stallCompleted, exactly once per stall.

import type { EventArgs } from '../../arch/smmuv3/event.ts';
import { PORT_FAULT, PORT_RAZWI, PORT_STALLED, PortResult } from './port.ts';
import type { StalledTransaction, UpstreamMaster } from './upstream.ts';

/** One held transaction. */
export class StalledTxn implements StalledTransaction {
  retries = 0;
  /** The stall record has not been written yet (queue unwritable). */
  pendingRecord = false;
  /** Completed (resumed, terminated): no longer in the unit. */
  done = false;
  fault = 0;

  constructor(
    readonly sid: number,
    readonly ssid: number,
    readonly iova: number,
    /** Access as presented by the device (before STE overrides). */
    readonly access: number,
    readonly stag: number,
    readonly since: number,
    /** The event record to (re)write: Stall = 1, STAG set. */
    public event: EventArgs,
  ) {}
}

/** What the stall unit needs from the SMMU around it. */
export interface StallHost {
  now(): number;
  readonly stallMax: number;
  readonly termModel: boolean;
  /** Write a record if the Event queue is writable; false (nothing written) otherwise. */
  tryRecord(ev: EventArgs): boolean;
  /** Re-translate a held transaction as a new arrival (the port; may re-hold it). */
  retry(t: StalledTxn, out: PortResult): number;
  master(sid: number): UpstreamMaster | undefined;
  trace(what: string, t: StalledTxn, detail: string): void;
}

export interface StallStats {
  stalled: number;
  retries: number;
  completedOk: number;
  restalled: number;
  terminated: number;
  /** Faulting transactions that could not stall (no free STAG) and were terminated. */
  noStag: number;
  /** Stall records that had to wait for the Event queue. */
  deferredRecords: number;
}

const STAG_SPACE = 0x10000;

export class StallUnit {
  private readonly bySid = new Map<number, Map<number, StalledTxn>>();
  private readonly byStag = new Map<number, StalledTxn>();
  private readonly pending: StalledTxn[] = [];
  private nextStag = 0;
  private readonly out = new PortResult();
  readonly stats: StallStats = {
    stalled: 0,
    retries: 0,
    completedOk: 0,
    restalled: 0,
    terminated: 0,
    noStag: 0,
    deferredRecords: 0,
  };

  constructor(private readonly host: StallHost) {}

  /** Transactions currently held. */
  get count(): number {
    return this.byStag.size;
  }

  /** Transactions of `sid` currently held. */
  countFor(sid: number): number {
    return this.bySid.get(sid)?.size ?? 0;
  }

  /** Snapshot of the held transactions (all, or of one StreamID), oldest first. */
  list(sid?: number): StalledTxn[] {
    const all = sid === undefined ? [...this.byStag.values()] : [...(this.bySid.get(sid)?.values() ?? [])];
    return all.sort((a, b) => a.since - b.since || a.stag - b.stag);
  }

  /** Records waiting for the Event queue to become writable. */
  get pendingRecords(): number {
    return this.pending.length;
  }

  /**
   * Hold a transaction that took a stalling fault. `again` is the transaction being retried
   * (it keeps its STAG). Returns the held transaction, or null if no STAG is free.
   */
  hold(
    sid: number,
    ssid: number,
    iova: number,
    access: number,
    ev: EventArgs,
    again: StalledTxn | null,
  ): StalledTxn | null {
    let t = again;
    if (t !== null) {
      t.event = ev;
      this.stats.restalled++;
    } else {
      const stag = this.allocStag();
      if (stag < 0) {
        this.stats.noStag++;
        return null;
      }
      t = new StalledTxn(sid, ssid, iova, access, stag, this.host.now(), ev);
      let m = this.bySid.get(sid);
      if (m === undefined) {
        m = new Map();
        this.bySid.set(sid, m);
      }
      m.set(stag, t);
      this.byStag.set(stag, t);
      this.stats.stalled++;
    }
    ev.stall = true;
    ev.stag = t.stag;
    t.fault = ev.type;
    if (this.host.tryRecord(ev)) t.pendingRecord = false;
    else if (!t.pendingRecord) {
      t.pendingRecord = true;
      this.pending.push(t);
      this.stats.deferredRecords++;
    }
    this.host.trace('stall', t, t.pendingRecord ? 'record deferred: event queue not writable' : '');
    return t;
  }

  /** CMD_RESUME. Unknown STAG or StreamID mismatch: no effect (§4.7.1). */
  resume(sid: number, stag: number, retry: boolean, abort: boolean): void {
    const t = this.byStag.get(stag);
    if (t === undefined || t.sid !== sid) return;
    if (retry) this.retryOne(t);
    else this.terminate(t, abort || this.host.termModel ? PORT_FAULT : PORT_RAZWI, 'CMD_RESUME terminate');
  }

  /** CMD_STALL_TERM: every stall of `sid` terminates with abort. */
  stallTerm(sid: number): number {
    const m = this.bySid.get(sid);
    if (m === undefined) return 0;
    const all = [...m.values()];
    for (const t of all) this.terminate(t, PORT_FAULT, 'CMD_STALL_TERM');
    return all.length;
  }

  /** SMMUEN 1 -> 0: every stall terminates with abort. */
  terminateAll(why: string): number {
    const all = this.list();
    for (const t of all) this.terminate(t, PORT_FAULT, why);
    return all.length;
  }

  /**
   * The Event queue may have become writable: retry the stalls whose records are waiting, oldest
   * first, while it stays writable (§7.2.1). `writable` is consulted before each one.
   */
  flushPending(writable: () => boolean): void {
    while (this.pending.length > 0 && writable()) {
      const t = this.pending.shift()!;
      if (t.done || !t.pendingRecord) continue;
      t.pendingRecord = false;
      this.retryOne(t);
    }
  }

  // ------------------------------------------------------------------------------ internals

  private retryOne(t: StalledTxn): void {
    t.retries++;
    this.stats.retries++;
    const out = this.out;
    const st = this.host.retry(t, out);
    if (st === PORT_STALLED) return; // faulted again: still held, new record written (or deferred)
    this.remove(t);
    if (st === PORT_FAULT || st === PORT_RAZWI) this.stats.terminated++;
    else this.stats.completedOk++;
    this.host.trace('resume', t, `retry -> status ${st}`);
    this.host.master(t.sid)?.stallCompleted?.(t.sid, t.stag, st, out);
  }

  private terminate(t: StalledTxn, status: number, why: string): void {
    this.remove(t);
    this.stats.terminated++;
    const out = this.out;
    out.status = status;
    out.fault = t.fault;
    out.oa = 0;
    out.recorded = false;
    out.tlbHit = false;
    this.host.trace('terminate', t, why);
    this.host.master(t.sid)?.stallCompleted?.(t.sid, t.stag, status, out);
  }

  private remove(t: StalledTxn): void {
    t.done = true;
    this.byStag.delete(t.stag);
    const m = this.bySid.get(t.sid);
    if (m !== undefined) {
      m.delete(t.stag);
      if (m.size === 0) this.bySid.delete(t.sid);
    }
    if (t.pendingRecord) {
      t.pendingRecord = false;
      const i = this.pending.indexOf(t);
      if (i >= 0) this.pending.splice(i, 1);
    }
  }

  /** A STAG not in use, or -1 when STALL_MAX transactions are already held. */
  private allocStag(): number {
    if (this.byStag.size >= Math.max(1, this.host.stallMax)) return -1;
    for (let i = 0; i < STAG_SPACE; i++) {
      const s = this.nextStag;
      this.nextStag = (this.nextStag + 1) % STAG_SPACE;
      if (!this.byStag.has(s)) return s;
    }
    return -1;
  }
}
