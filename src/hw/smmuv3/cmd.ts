// The Command queue (IHI 0070 §3.5, §4): software is the producer, the SMMU the consumer.
//
// A write to CMDQ_PROD schedules consumption: each command takes `cmdLatencyNs` of virtual
// time to fetch and execute, after which CMDQ_CONS moves past it, so software polling CONS
// sees progress as on hardware. A command that is illegal (unknown opcode, RES0 bits set,
// feature not advertised) stops the queue with CERROR_ILL; one that cannot be fetched stops
// it with CERROR_ABT. CONS then points at the failing command, CMDQ_CONS.ERR holds the code,
// GERROR.CMDQ_ERR is activated and nothing more is consumed until software acknowledges by
// making GERRORN.CMDQ_ERR equal again — after, typically, overwriting the bad command with a
// CMD_SYNC in place, as Linux's arm_smmu_cmdq_skip_err() does. Consumption then resumes at CONS.

import { getField } from '../../arch/smmuv3/bits.ts';
import {
  CMD,
  CMD_DWORDS,
  CMD_OP,
  type CommandFeatures,
  checkCommand,
  commandName,
  validateCommand,
} from '../../arch/smmuv3/cmd.ts';
import { CERROR, CERROR_NAMES, CMDQ_ENT_BYTES, GERROR, Q_PTR } from '../../arch/smmuv3/regs.ts';
import type { PhysicalMemory } from '../../platform/memory.ts';
import type { Scheduler } from '../../platform/scheduler.ts';
import { hex64 } from '../../platform/u64.ts';
import { qBaseAddr, qEmpty, qIdx, qInc, qLog2, qPtrMask } from './queues.ts';

/** What the command processor needs from the device around it. */
export interface CommandHost {
  readonly mem: PhysicalMemory;
  readonly sched: Scheduler;
  readonly features: CommandFeatures;
  readonly cmdLatencyNs: number;
  /** CR0ACK.CMDQEN. */
  cmdqActive(): boolean;
  /** GERROR.CMDQ_ERR is active (not yet acknowledged in GERRORN). */
  cmdqErrorActive(): boolean;
  raiseGerror(bit: number, why: string): void;
  /** Executes a validated command; returns false if it needs CERROR_ILL after all. */
  execute(dw: Uint32Array, op: number): boolean;
  traceCommand(dw: Uint32Array, index: number, error: number, why: string): void;
  /**
   * A CMD_SYNC may complete: every earlier CMD_ATC_INV has been acknowledged by its endpoint
   * (IHI 0070 §4.7.3). While false the SYNC stays at CONS and consumption waits; the host calls
   * kick() when it changes. Default: always ready.
   */
  syncReady?(): boolean;
  /** Virtual ns a CMD_SYNC may wait for ATS invalidations before CERROR_ATC_INV_SYNC (default: forever). */
  readonly syncWaitTimeoutNs?: number;
  /** The wait timed out: the host abandons the outstanding invalidations (they failed). */
  syncTimedOut?(): void;
}

export interface CommandQueueStats {
  /** Commands executed, by opcode name. */
  executed: Record<string, number>;
  total: number;
  errors: number;
  /** CMD_SYNC completions, by kind. */
  syncNone: number;
  syncIrq: number;
  syncSev: number;
}

export class CommandQueue {
  baseLo = 0;
  baseHi = 0;
  /** CMDQ_PROD as written by software (pointer bits only). */
  prod = 0;
  /** CMDQ_CONS: pointer | ERR << 24. */
  cons = 0;
  readonly stats: CommandQueueStats = {
    executed: {},
    total: 0,
    errors: 0,
    syncNone: 0,
    syncIrq: 0,
    syncSev: 0,
  };
  /** Last error's human-readable cause. */
  lastError = '';
  private scheduled = false;
  /** A CMD_SYNC at CONS is waiting for ATS invalidation completions. */
  waitingSync = false;
  private syncTimer = -1;
  private readonly dw = new Uint32Array(CMD_DWORDS);
  private readonly step = () => this.consumeOne();

  constructor(
    private readonly host: CommandHost,
    private readonly maxLog2: number,
  ) {}

  get log2(): number {
    return qLog2(this.baseLo, this.maxLog2);
  }

  get baseAddr(): number {
    return qBaseAddr(this.baseLo, this.baseHi, this.log2, CMDQ_ENT_BYTES);
  }

  /** The error code in CMDQ_CONS.ERR. */
  get err(): number {
    return (this.cons & Q_PTR.ERR_MASK) >>> Q_PTR.ERR_SHIFT;
  }

  writeProd(v: number): void {
    this.prod = (v & qPtrMask(this.log2)) >>> 0;
    this.kick();
  }

  /** Software write of CMDQ_CONS (honoured only while the queue is disabled). */
  writeCons(v: number): void {
    this.cons = ((this.cons & Q_PTR.ERR_MASK) | (v & qPtrMask(this.log2))) >>> 0;
  }

  /** Start consuming if there is work and nothing stops the queue (no-op while a consumer is due). */
  kick(): void {
    if (this.scheduled) return;
    const h = this.host;
    if (!h.cmdqActive() || h.cmdqErrorActive()) return;
    if (qEmpty(this.prod, this.cons, this.log2)) return;
    this.scheduled = true;
    h.sched.schedule(h.cmdLatencyNs, this.step, 'smmu cmdq');
  }

  /**
   * Consume the command at CONS. `scheduled` stays set while it executes, so a kick() from
   * inside it (an endpoint acknowledging CMD_ATC_INV at once) cannot start a second consumer:
   * one command per cmdLatencyNs, always.
   */
  private consumeOne(): void {
    if (this.consume()) this.host.sched.schedule(this.host.cmdLatencyNs, this.step, 'smmu cmdq');
    else this.scheduled = false;
  }

  /** Execute the command at CONS; true if the queue goes on (more commands, nothing stops it). */
  private consume(): boolean {
    const h = this.host;
    if (!h.cmdqActive() || h.cmdqErrorActive()) return false;
    const log2 = this.log2;
    if (qEmpty(this.prod, this.cons, log2)) return false;
    const idx = qIdx(this.cons, log2);
    const addr = this.baseAddr + idx * CMDQ_ENT_BYTES;
    const dw = this.dw;
    const mem = h.mem;
    let ok = mem.read64(addr) === 0;
    if (ok) {
      dw[0] = mem.r64[0]!;
      dw[1] = mem.r64[1]!;
      ok = mem.read64(addr + 8) === 0;
    }
    if (!ok) {
      this.fail(CERROR.ABT, `command fetch at 0x${addr.toString(16)} aborted`, idx);
      return false;
    }
    dw[2] = mem.r64[0]!;
    dw[3] = mem.r64[1]!;
    const op = checkCommand(dw, h.features);
    if (op < 0) {
      this.fail(CERROR.ILL, validateCommand(dw, h.features).problems.join('; '), idx);
      return false;
    }
    if (op === CMD_OP.SYNC && h.syncReady !== undefined && !h.syncReady()) {
      // CMD_SYNC completes only after every earlier CMD_ATC_INV completed (§3.9.1.4, §4.7.3);
      // the host kicks the queue when that changes
      if (!this.waitingSync) {
        this.waitingSync = true;
        const t = h.syncWaitTimeoutNs ?? Number.POSITIVE_INFINITY;
        if (Number.isFinite(t))
          this.syncTimer = h.sched.schedule(t, () => this.syncTimeout(idx), 'smmu sync timeout');
      }
      return false;
    }
    if (this.waitingSync) this.endSyncWait();
    const name = commandName(dw) ?? `0x${op.toString(16)}`;
    if (!h.execute(dw, op)) {
      this.fail(CERROR.ILL, this.lastError || `CMD_${name} not supported by this SMMU`, idx);
      return false;
    }
    this.stats.executed[name] = (this.stats.executed[name] ?? 0) + 1;
    this.stats.total++;
    h.traceCommand(dw, idx, CERROR.NONE, '');
    this.cons = ((this.cons & Q_PTR.ERR_MASK) | qInc(this.cons, log2)) >>> 0;
    return !qEmpty(this.prod, this.cons, log2);
  }

  private endSyncWait(): void {
    this.waitingSync = false;
    if (this.syncTimer >= 0) this.host.sched.cancel(this.syncTimer);
    this.syncTimer = -1;
  }

  private syncTimeout(idx: number): void {
    this.syncTimer = -1;
    if (!this.waitingSync) return;
    this.waitingSync = false;
    this.host.syncTimedOut?.();
    this.fail(CERROR.ATC_INV_SYNC, 'ATS invalidation not completed by the endpoint (timeout)', idx);
  }

  private fail(code: number, why: string, idx: number): void {
    this.stats.errors++;
    this.lastError = why;
    this.cons = (((code << Q_PTR.ERR_SHIFT) & Q_PTR.ERR_MASK) | (this.cons & qPtrMask(this.log2))) >>> 0;
    this.host.traceCommand(this.dw, idx, code, why);
    this.host.raiseGerror(GERROR.CMDQ_ERR, `${CERROR_NAMES[code]}: ${why}`);
  }
}

/** Field readers used by the executor (no allocation). */
export const cmdSid = (dw: Uint32Array): number => dw[1]! >>> 0;
export const cmdSsid = (dw: Uint32Array): number => getField(dw, CMD.SubstreamID);
export const cmdVmid = (dw: Uint32Array): number => dw[1]! & 0xffff;
export const cmdAsid = (dw: Uint32Array): number => dw[1]! >>> 16;
export const cmdLeaf = (dw: Uint32Array): boolean => (dw[2]! & 1) !== 0;
export const cmdRange = (dw: Uint32Array): number => dw[2]! & 0x1f;
export const cmdNum = (dw: Uint32Array): number => (dw[0]! >>> 12) & 0x1f;
export const cmdScale = (dw: Uint32Array): number => (dw[0]! >>> 20) & 0x1f;
export const cmdTtl = (dw: Uint32Array): number => (dw[2]! >>> 8) & 3;
export const cmdTg = (dw: Uint32Array): number => (dw[2]! >>> 10) & 3;
/** TLBI VA/IPA field: address bits [63:12] of word 1 (exact below 2^53). */
export const cmdAddr = (dw: Uint32Array): number =>
  (dw[3]! >>> 0) * 4294967296 + ((dw[2]! & 0xfffff000) >>> 0);
export const cmdSyncCs = (dw: Uint32Array): number => (dw[0]! >>> 12) & 3;
export const cmdSyncMsiData = (dw: Uint32Array): number => dw[1]! >>> 0;
/** CMD_SYNC MSIAddress [51:2]. */
export const cmdSyncMsiAddr = (dw: Uint32Array): number =>
  (dw[3]! & 0xfffff) * 4294967296 + ((dw[2]! & 0xfffffffc) >>> 0);

/** The two words of a command as Linux prints them (0x%016llx). */
export function formatCommand(dw: Uint32Array): string {
  return `${hex64(dw[0]!, dw[1]!)} ${hex64(dw[2]!, dw[3]!)}`;
}

export { CMD_OP };
