// The Arm SMMUv3 device (IHI 0070): register file, enable handshakes, global errors and
// interrupts, the Command, Event and PRI queues, the configuration cache, the DMA port devices
// translate through, and the recoverable-fault machinery: the stall model (stall.ts), PRI
// (pri.ts), ATS (ats.ts) and the upstream interface devices use (upstream.ts). Software
// reaches it only through MMIO, memory and interrupts.
//
// Register behaviour modelled:
//  - CR0 → CR0ACK, IRQ_CTRL → IRQ_CTRLACK and GBPA.UPDATE complete `regAckLatencyNs` after
//    the write (drivers poll, as on hardware);
//  - STRTAB_BASE(_CFG), CR1, CR2 are read-only while SMMUEN is set; queue BASE registers while
//    their queue is enabled; CMDQ_CONS / EVTQ_PROD / PRIQ_PROD are software-writable only while
//    their queue is disabled; *_IRQ_CFGn only while the interrupt is disabled;
//  - GERROR bits toggle to become active; an error is active while GERROR != GERRORN;
//  - 64-bit registers take 64-bit or 32-bit accesses; page 1 holds the EVTQ/PRIQ PROD/CONS
//    aliases (page 0 offsets 0xA8.. also answer, for PAGE0_REGS_ONLY-style drivers).

import { getField } from '../../arch/smmuv3/bits.ts';
import { CMD, CMD_OP, type CommandFeatures, PRI_RESP_CODE } from '../../arch/smmuv3/cmd.ts';
import { eventName } from '../../arch/smmuv3/event.ts';
import {
  CERROR_NAMES,
  CR0,
  CR0_ACK_MASK,
  CR1_MASK,
  CR2,
  CR2_MASK,
  GBPA,
  GBPA_FIELDS_MASK,
  GBPA_RESET,
  GERROR,
  GERROR_ERR_MASK,
  IRQ_CFG2_MASK,
  IRQ_CTRL,
  IRQ_CTRL_MASK,
  MSI_ADDR_MASK_HI,
  MSI_ADDR_MASK_LO,
  Q_BASE,
  SMMU_PAGE_SIZE,
  SMMU_REG,
  SMMU_WINDOW_SIZE,
  STALL_MODEL,
  STRTAB_BASE_ADDR_MASK_HI,
  STRTAB_BASE_ADDR_MASK_LO,
  STRTAB_BASE_CFG_MASK,
  STRTAB_BASE_RA_HI,
} from '../../arch/smmuv3/regs.ts';
import type { Machine } from '../../platform/machine.ts';
import type { MmioDevice } from '../../platform/mmio.ts';
import type { DmaSanitizer } from '../../platform/sanitizer.ts';
import { TWO32 } from '../../platform/u64.ts';
import { tlbiRangeLength } from '../smmu-common/translate.ts';
import { AtsUnit } from './ats.ts';
import {
  CommandQueue,
  cmdAddr,
  cmdAsid,
  cmdLeaf,
  cmdNum,
  cmdRange,
  cmdScale,
  cmdSid,
  cmdSsid,
  cmdSyncCs,
  cmdSyncMsiAddr,
  cmdSyncMsiData,
  cmdTg,
  cmdTtl,
  cmdVmid,
  formatCommand,
} from './cmd.ts';
import { ConfigCache } from './config.ts';
import { describeRecord, EventQueue } from './events.ts';
import { EngineBackend, SmmuPort, type TranslationBackend } from './port.ts';
import { PriQueue } from './pri.ts';
import {
  encodeIdRegs,
  type IdRegs,
  resolveFeatures,
  type SmmuFeatures,
  type SmmuV3Options,
} from './regs-idr.ts';
import { StallUnit } from './stall.ts';
import { PRI_RESP_FAILURE, PRI_RESP_INVALID, PRI_RESP_SUCCESS, SmmuUpstream } from './upstream.ts';

/** Options for building an SmmuV3 on a machine. */
/** Command names by opcode (the sanitizer's notes). */
const CMD_OP_NAMES = new Map<number, string>(Object.entries(CMD_OP).map(([k, v]) => [v as number, k]));

export interface SmmuV3Config extends SmmuV3Options {
  /** Map the register window at this physical address (0x20000 bytes). */
  base?: number;
  /** GBPA.ABORT at reset (IMPLEMENTATION DEFINED). Default false: bypass while disabled. */
  gbpaAbortAtReset?: boolean;
  /** The translation engine (walker + TLB). Default: built by the device from the options. */
  engine?: TranslationBackend;
}

/** Counters for the CLI and demos. */
export interface SmmuCounters {
  /** CMD_SYNC with CS=SEV: SEV events signalled. */
  sev: number;
  /** MSIs written (any source). */
  msiWrites: number;
  /** Wired interrupt pulses (any source). */
  wiredIrqs: number;
  /** GERROR activations. */
  gerrors: number;
  /** Recoverable-fault commands executed: ATC_INV / PRI_RESP / RESUME / STALL_TERM. */
  deferredCommands: number;
  /** Broadcast TLB invalidations honoured (BTM). */
  broadcastTlbis: number;
}

type IrqSource = 'gerror' | 'evtq' | 'priq';

export class SmmuV3 implements MmioDevice {
  readonly name: string;
  readonly features: SmmuFeatures;
  readonly idRegs: IdRegs;
  readonly machine: Machine;
  readonly cache: ConfigCache;
  readonly cmdq: CommandQueue;
  readonly evtq: EventQueue;
  readonly port: SmmuPort;
  readonly engine: TranslationBackend;
  /** Held (stalled) transactions. */
  readonly stall: StallUnit;
  /** The PRI queue. */
  readonly priq: PriQueue;
  /** ATS: Translation Requests, Translated transactions, ATC invalidation. */
  readonly ats: AtsUnit;
  /** What devices upstream of the SMMU call (stall completion, PRI, ATS, BTM). */
  readonly upstream: SmmuUpstream;
  readonly counters: SmmuCounters = {
    sev: 0,
    msiWrites: 0,
    wiredIrqs: 0,
    gerrors: 0,
    deferredCommands: 0,
    broadcastTlbis: 0,
  };
  /** Base of the register window once mapped, else -1. */
  base = -1;

  // ---- register state
  cr0 = 0;
  cr0ack = 0;
  cr1 = 0;
  cr2 = 0;
  gbpa: number;
  irqCtrl = 0;
  irqCtrlAck = 0;
  gerror = 0;
  gerrorn = 0;
  strtabBaseLo = 0;
  strtabBaseHi = 0;
  strtabBaseCfg = 0;
  /** *_IRQ_CFG0 (lo, hi), CFG1, CFG2 for gerror / evtq / priq. */
  readonly irqCfg = {
    gerror: new Uint32Array(4),
    evtq: new Uint32Array(4),
    priq: new Uint32Array(4),
  };

  /** Translations are live (CR0ACK.SMMUEN). Hot-path copy. */
  enabled = false;
  /** CR0ACK.EVTQEN (with SMMUEN): records can be written. */
  private evtqOn = false;

  /** The configuration it was built with (a shadow model for verification copies it). */
  readonly config: Readonly<SmmuV3Config>;

  constructor(machine: Machine, cfg: SmmuV3Config = {}) {
    this.config = cfg;
    this.machine = machine;
    this.features = resolveFeatures(cfg);
    this.name = this.features.name;
    this.idRegs = encodeIdRegs(this.features);
    this.gbpa = GBPA_RESET | (cfg.gbpaAbortAtReset ? GBPA.ABORT : 0);
    this.cache = new ConfigCache(this.features.steCacheSize, this.features.cdCacheSize);
    const f = this.features;
    const cmdFeatures: CommandFeatures = {
      ril: f.ril,
      stall: f.stallModel !== STALL_MODEL.TERMINATE,
      pri: f.pri,
      ats: f.ats,
      s1: f.s1,
      s2: f.s2,
      hyp: f.hyp,
      secure: false,
      msi: f.msi,
    };
    this.cmdq = new CommandQueue(
      {
        mem: machine.mem,
        sched: machine.sched,
        features: cmdFeatures,
        cmdLatencyNs: f.cmdLatencyNs,
        cmdqActive: () => (this.cr0ack & CR0.CMDQEN) !== 0,
        syncReady: () => this.ats.outstanding === 0,
        syncWaitTimeoutNs: f.atcInvTimeoutNs,
        syncTimedOut: () => this.ats.abandon(),
        cmdqErrorActive: () => ((this.gerror ^ this.gerrorn) & GERROR.CMDQ_ERR) !== 0,
        raiseGerror: (bit, why) => this.raiseGerror(bit, why),
        execute: (dw, op) => this.execute(dw, op),
        traceCommand: (dw, idx, err, why) => this.traceCommand(dw, idx, err, why),
      },
      f.cmdqMaxLog2,
    );
    this.evtq = new EventQueue(
      {
        mem: machine.mem,
        evtqActive: () => this.evtqOn,
        evtqEnabled: () => (this.cr0ack & CR0.EVTQEN) !== 0,
        abortActive: () => ((this.gerror ^ this.gerrorn) & GERROR.EVTQ_ABT_ERR) !== 0,
        evtqIrq: () => this.signal('evtq'),
        raiseGerror: (bit, why) => this.raiseGerror(bit, why),
        traceRecord: (rec, addr) => {
          if (this.machine.trace.enabled) {
            this.machine.trace.emit(
              this.name,
              'evtq.record',
              describeRecord(rec),
              {
                event: eventName(rec[0]! & 0xff),
                code: rec[0]! & 0xff,
                sid: rec[1]! >>> 0,
                addr: `0x${addr.toString(16)}`,
              },
              'debug',
            );
          }
        },
      },
      f.evtqMaxLog2,
    );
    this.engine = cfg.engine ?? SmmuPort.defaultEngine(machine, f);
    this.upstream = new SmmuUpstream(this);
    this.stall = new StallUnit({
      now: () => machine.sched.now,
      stallMax: f.stallMax,
      termModel: f.termModel,
      tryRecord: (ev) => this.evtq.writable() && this.evtq.record(ev),
      retry: (t, out) => this.port.retry(t, out),
      master: (sid) => this.upstream.master(sid),
      trace: (what, t, detail) => {
        const tr = this.machine.trace;
        if (!tr.enabled) return;
        tr.emit(
          this.name,
          `stall.${what}`,
          `${what} sid 0x${t.sid.toString(16)} STAG ${t.stag} iova 0x${t.iova.toString(16)}${detail ? `: ${detail}` : ''}`,
          { sid: t.sid, ssid: t.ssid, stag: t.stag, iova: `0x${t.iova.toString(16)}` },
          'debug',
        );
      },
    });
    this.priq = new PriQueue(
      {
        mem: machine.mem,
        sched: machine.sched,
        pps: f.pps,
        respLatencyNs: f.cmdLatencyNs,
        priqActive: () => this.enabled && (this.cr0ack & CR0.PRIQEN) !== 0,
        abortActive: () => ((this.gerror ^ this.gerrorn) & GERROR.PRIQ_ABT_ERR) !== 0,
        raiseGerror: (bit, why) => this.raiseGerror(bit, why),
        priqIrq: () => this.signal('priq'),
        stream: (sid) => (this.enabled ? this.port.streamFor(sid) : null),
        master: (sid) => this.upstream.master(sid),
        trace: (what, detail, fields) => {
          if (this.machine.trace.enabled) this.machine.trace.emit(this.name, what, detail, fields, 'debug');
        },
      },
      f.priqMaxLog2,
    );
    this.ats = new AtsUnit(this);
    this.port = new SmmuPort(this, this.engine);
    if (cfg.base !== undefined) this.map(cfg.base);
  }

  /** Map the register window (pages 0 and 1) at `base`. */
  map(base: number): void {
    this.machine.mmio.map(base, SMMU_WINDOW_SIZE, this);
    this.base = base;
  }

  // ------------------------------------------------------------------------------ MMIO

  read32(offset: number): number {
    if (offset >= SMMU_PAGE_SIZE) {
      switch (offset) {
        case SMMU_REG.EVTQ_PROD_P1:
          return this.evtq.prod >>> 0;
        case SMMU_REG.EVTQ_CONS_P1:
          return this.evtq.cons >>> 0;
        case SMMU_REG.PRIQ_PROD_P1:
          return this.priq.prod >>> 0;
        case SMMU_REG.PRIQ_CONS_P1:
          return this.priq.cons >>> 0;
        default:
          return 0;
      }
    }
    const id = this.idRegs;
    switch (offset) {
      case SMMU_REG.IDR0:
        return id.idr0;
      case SMMU_REG.IDR1:
        return id.idr1;
      case SMMU_REG.IDR2:
        return id.idr2;
      case SMMU_REG.IDR3:
        return id.idr3;
      case SMMU_REG.IDR4:
        return id.idr4;
      case SMMU_REG.IDR5:
        return id.idr5;
      case SMMU_REG.IIDR:
        return id.iidr;
      case SMMU_REG.AIDR:
        return id.aidr;
      case SMMU_REG.CR0:
        return this.cr0;
      case SMMU_REG.CR0ACK:
        return this.cr0ack;
      case SMMU_REG.CR1:
        return this.cr1;
      case SMMU_REG.CR2:
        return this.cr2;
      case SMMU_REG.STATUSR:
        return 0;
      case SMMU_REG.GBPA:
        return this.gbpa >>> 0;
      case SMMU_REG.AGBPA:
        return 0;
      case SMMU_REG.IRQ_CTRL:
        return this.irqCtrl;
      case SMMU_REG.IRQ_CTRLACK:
        return this.irqCtrlAck;
      case SMMU_REG.GERROR:
        return this.gerror;
      case SMMU_REG.GERRORN:
        return this.gerrorn;
      case SMMU_REG.GERROR_IRQ_CFG0:
        return this.irqCfg.gerror[0]!;
      case SMMU_REG.GERROR_IRQ_CFG0 + 4:
        return this.irqCfg.gerror[1]!;
      case SMMU_REG.GERROR_IRQ_CFG1:
        return this.irqCfg.gerror[2]!;
      case SMMU_REG.GERROR_IRQ_CFG2:
        return this.irqCfg.gerror[3]!;
      case SMMU_REG.STRTAB_BASE:
        return this.strtabBaseLo >>> 0;
      case SMMU_REG.STRTAB_BASE + 4:
        return this.strtabBaseHi >>> 0;
      case SMMU_REG.STRTAB_BASE_CFG:
        return this.strtabBaseCfg;
      case SMMU_REG.CMDQ_BASE:
        return this.cmdq.baseLo >>> 0;
      case SMMU_REG.CMDQ_BASE + 4:
        return this.cmdq.baseHi >>> 0;
      case SMMU_REG.CMDQ_PROD:
        return this.cmdq.prod >>> 0;
      case SMMU_REG.CMDQ_CONS:
        return this.cmdq.cons >>> 0;
      case SMMU_REG.EVTQ_BASE:
        return this.evtq.baseLo >>> 0;
      case SMMU_REG.EVTQ_BASE + 4:
        return this.evtq.baseHi >>> 0;
      case SMMU_REG.EVTQ_PROD:
        return this.evtq.prod >>> 0;
      case SMMU_REG.EVTQ_CONS:
        return this.evtq.cons >>> 0;
      case SMMU_REG.EVTQ_IRQ_CFG0:
        return this.irqCfg.evtq[0]!;
      case SMMU_REG.EVTQ_IRQ_CFG0 + 4:
        return this.irqCfg.evtq[1]!;
      case SMMU_REG.EVTQ_IRQ_CFG1:
        return this.irqCfg.evtq[2]!;
      case SMMU_REG.EVTQ_IRQ_CFG2:
        return this.irqCfg.evtq[3]!;
      case SMMU_REG.PRIQ_BASE:
        return this.priq.baseLo >>> 0;
      case SMMU_REG.PRIQ_BASE + 4:
        return this.priq.baseHi >>> 0;
      case SMMU_REG.PRIQ_PROD:
        return this.priq.prod >>> 0;
      case SMMU_REG.PRIQ_CONS:
        return this.priq.cons >>> 0;
      case SMMU_REG.PRIQ_IRQ_CFG0:
        return this.irqCfg.priq[0]!;
      case SMMU_REG.PRIQ_IRQ_CFG0 + 4:
        return this.irqCfg.priq[1]!;
      case SMMU_REG.PRIQ_IRQ_CFG1:
        return this.irqCfg.priq[2]!;
      case SMMU_REG.PRIQ_IRQ_CFG2:
        return this.irqCfg.priq[3]!;
      default:
        return 0; // RAZ/WI: reserved and unimplemented registers
    }
  }

  read64(offset: number, out: Int32Array): void {
    out[0] = this.read32(offset) | 0;
    out[1] = this.read32(offset + 4) | 0;
  }

  write64(offset: number, lo: number, hi: number): void {
    // Single-copy atomic for the 64-bit registers: both halves land before any side effect.
    this.write32(offset, lo >>> 0);
    this.write32(offset + 4, hi >>> 0);
  }

  write32(offset: number, v: number): void {
    v >>>= 0;
    const f = this.features;
    const smmuEnOn = ((this.cr0 | this.cr0ack) & CR0.SMMUEN) !== 0;
    if (offset >= SMMU_PAGE_SIZE) {
      switch (offset) {
        case SMMU_REG.EVTQ_PROD_P1:
          this.writeEvtqProd(v);
          return;
        case SMMU_REG.EVTQ_CONS_P1:
          this.writeEvtqCons(v);
          return;
        case SMMU_REG.PRIQ_PROD_P1:
          this.writePriqProd(v);
          return;
        case SMMU_REG.PRIQ_CONS_P1:
          if (f.pri) this.priq.writeCons(v);
          return;
        default:
          return;
      }
    }
    switch (offset) {
      case SMMU_REG.CR0:
        this.writeCr0(v);
        return;
      case SMMU_REG.CR1:
        if (!smmuEnOn) this.cr1 = v & CR1_MASK;
        return;
      case SMMU_REG.CR2:
        if (!smmuEnOn) this.cr2 = v & CR2_MASK & (f.hyp ? CR2_MASK : ~CR2.E2H);
        return;
      case SMMU_REG.GBPA:
        this.writeGbpa(v);
        return;
      case SMMU_REG.IRQ_CTRL:
        this.writeIrqCtrl(v);
        return;
      case SMMU_REG.GERRORN:
        this.writeGerrorn(v);
        return;
      case SMMU_REG.GERROR_IRQ_CFG0:
      case SMMU_REG.GERROR_IRQ_CFG0 + 4:
      case SMMU_REG.GERROR_IRQ_CFG1:
      case SMMU_REG.GERROR_IRQ_CFG2:
        this.writeIrqCfg('gerror', offset - SMMU_REG.GERROR_IRQ_CFG0, v);
        return;
      case SMMU_REG.EVTQ_IRQ_CFG0:
      case SMMU_REG.EVTQ_IRQ_CFG0 + 4:
      case SMMU_REG.EVTQ_IRQ_CFG1:
      case SMMU_REG.EVTQ_IRQ_CFG2:
        this.writeIrqCfg('evtq', offset - SMMU_REG.EVTQ_IRQ_CFG0, v);
        return;
      case SMMU_REG.PRIQ_IRQ_CFG0:
      case SMMU_REG.PRIQ_IRQ_CFG0 + 4:
      case SMMU_REG.PRIQ_IRQ_CFG1:
      case SMMU_REG.PRIQ_IRQ_CFG2:
        if (f.pri) this.writeIrqCfg('priq', offset - SMMU_REG.PRIQ_IRQ_CFG0, v);
        return;
      case SMMU_REG.STRTAB_BASE:
        if (!smmuEnOn) this.strtabBaseLo = v & STRTAB_BASE_ADDR_MASK_LO;
        return;
      case SMMU_REG.STRTAB_BASE + 4:
        if (!smmuEnOn) this.strtabBaseHi = v & (STRTAB_BASE_ADDR_MASK_HI | STRTAB_BASE_RA_HI);
        return;
      case SMMU_REG.STRTAB_BASE_CFG:
        if (!smmuEnOn) this.strtabBaseCfg = v & STRTAB_BASE_CFG_MASK;
        return;
      case SMMU_REG.CMDQ_BASE:
        if (!this.queueOn(CR0.CMDQEN)) this.cmdq.baseLo = v & (Q_BASE.ADDR_MASK_LO | Q_BASE.LOG2SIZE_MASK);
        return;
      case SMMU_REG.CMDQ_BASE + 4:
        if (!this.queueOn(CR0.CMDQEN)) this.cmdq.baseHi = v & (Q_BASE.ADDR_MASK_HI | Q_BASE.RWA_HI);
        return;
      case SMMU_REG.CMDQ_PROD:
        this.cmdq.writeProd(v);
        return;
      case SMMU_REG.CMDQ_CONS:
        if (!this.queueOn(CR0.CMDQEN)) this.cmdq.writeCons(v);
        return;
      case SMMU_REG.EVTQ_BASE:
        if (!this.queueOn(CR0.EVTQEN)) this.evtq.baseLo = v & (Q_BASE.ADDR_MASK_LO | Q_BASE.LOG2SIZE_MASK);
        return;
      case SMMU_REG.EVTQ_BASE + 4:
        if (!this.queueOn(CR0.EVTQEN)) this.evtq.baseHi = v & (Q_BASE.ADDR_MASK_HI | Q_BASE.RWA_HI);
        return;
      case SMMU_REG.EVTQ_PROD:
        this.writeEvtqProd(v);
        return;
      case SMMU_REG.EVTQ_CONS:
        this.writeEvtqCons(v);
        return;
      case SMMU_REG.PRIQ_BASE:
        if (f.pri && !this.queueOn(CR0.PRIQEN))
          this.priq.baseLo = v & (Q_BASE.ADDR_MASK_LO | Q_BASE.LOG2SIZE_MASK);
        return;
      case SMMU_REG.PRIQ_BASE + 4:
        if (f.pri && !this.queueOn(CR0.PRIQEN)) this.priq.baseHi = v & (Q_BASE.ADDR_MASK_HI | Q_BASE.RWA_HI);
        return;
      case SMMU_REG.PRIQ_PROD:
        this.writePriqProd(v);
        return;
      case SMMU_REG.PRIQ_CONS:
        if (f.pri) this.priq.writeCons(v);
        return;
      default:
        return; // read-only, reserved or unimplemented: WI
    }
  }

  private queueOn(bit: number): boolean {
    return ((this.cr0 | this.cr0ack) & bit) !== 0;
  }

  private writeEvtqProd(v: number): void {
    if (!this.queueOn(CR0.EVTQEN)) this.evtq.writeProd(v);
  }

  private writePriqProd(v: number): void {
    if (this.features.pri && !this.queueOn(CR0.PRIQEN)) this.priq.writeProd(v);
  }

  private writeEvtqCons(v: number): void {
    this.evtq.writeCons(v);
    this.kickStallRecords();
  }

  /**
   * The Event queue may have become writable: stalled transactions whose records are waiting
   * are retried a moment later (stall.ts, IHI 0070 §7.2.1).
   */
  private kickStallRecords(): void {
    if (this.stall.pendingRecords === 0 || this.stallFlushScheduled) return;
    this.stallFlushScheduled = true;
    this.machine.sched.schedule(
      this.features.cmdLatencyNs,
      () => {
        this.stallFlushScheduled = false;
        this.stall.flushPending(() => this.evtq.writable());
      },
      'smmu stall records',
    );
  }

  private stallFlushScheduled = false;

  private writeCr0(v: number): void {
    const f = this.features;
    let mask = CR0_ACK_MASK;
    if (!f.pri) mask &= ~CR0.PRIQEN;
    if (!f.ats) mask &= ~CR0.ATSCHK;
    this.cr0 = v & mask;
    this.machine.sched.schedule(f.regAckLatencyNs, () => this.ackCr0(), 'smmu cr0ack');
  }

  private ackCr0(): void {
    const old = this.cr0ack;
    const now = this.cr0;
    if (old === now) return;
    this.cr0ack = now;
    this.enabled = (now & CR0.SMMUEN) !== 0;
    this.evtqOn = this.enabled && (now & CR0.EVTQEN) !== 0;
    // §6.3.9.6: completion of SMMUEN 1 -> 0 marks every stalled transaction for termination.
    if ((old & CR0.SMMUEN) !== 0 && !this.enabled) this.stall.terminateAll('SMMUEN cleared');
    if (this.evtqOn) this.kickStallRecords();
    const t = this.machine.trace;
    if (t.enabled) {
      const names = ['SMMUEN', 'PRIQEN', 'EVTQEN', 'CMDQEN', 'ATSCHK'];
      const on = names.filter((_, i) => (now >>> i) & 1).join('|') || '0';
      t.emit(this.name, 'cr0', `CR0ACK 0x${old.toString(16)} -> 0x${now.toString(16)} (${on})`, {
        old,
        now,
      });
    }
    if ((now & CR0.CMDQEN) !== 0) this.cmdq.kick();
  }

  private writeGbpa(v: number): void {
    // Writes take effect only with UPDATE set; UPDATE reads 1 until the SMMU has applied them.
    if ((v & GBPA.UPDATE) === 0 || (this.gbpa & GBPA.UPDATE) !== 0) return;
    this.gbpa = ((v & GBPA_FIELDS_MASK) | GBPA.UPDATE) >>> 0;
    this.machine.sched.schedule(
      this.features.regAckLatencyNs,
      () => {
        this.gbpa = (this.gbpa & ~GBPA.UPDATE) >>> 0;
        const t = this.machine.trace;
        if (t.enabled) {
          t.emit(this.name, 'gbpa', `GBPA updated: ${(this.gbpa & GBPA.ABORT) !== 0 ? 'abort' : 'bypass'}`, {
            gbpa: this.gbpa,
          });
        }
      },
      'smmu gbpa',
    );
  }

  private writeIrqCtrl(v: number): void {
    let mask = IRQ_CTRL_MASK;
    if (!this.features.pri) mask &= ~IRQ_CTRL.PRIQ_IRQEN;
    this.irqCtrl = v & mask;
    this.machine.sched.schedule(
      this.features.regAckLatencyNs,
      () => {
        this.irqCtrlAck = this.irqCtrl;
      },
      'smmu irq_ctrlack',
    );
  }

  private writeIrqCfg(src: IrqSource, off: number, v: number): void {
    const en =
      src === 'gerror' ? IRQ_CTRL.GERROR_IRQEN : src === 'evtq' ? IRQ_CTRL.EVTQ_IRQEN : IRQ_CTRL.PRIQ_IRQEN;
    if (!this.features.msi) return; // no MSI: the IRQ_CFG registers are RES0
    if (((this.irqCtrl | this.irqCtrlAck) & en) !== 0) return;
    const r = this.irqCfg[src];
    if (off === 0) r[0] = v & MSI_ADDR_MASK_LO;
    else if (off === 4) r[1] = v & MSI_ADDR_MASK_HI;
    else if (off === 8) r[2] = v;
    else r[3] = v & IRQ_CFG2_MASK;
  }

  private writeGerrorn(v: number): void {
    const was = (this.gerror ^ this.gerrorn) & GERROR.CMDQ_ERR;
    this.gerrorn = v & GERROR_ERR_MASK;
    const now = (this.gerror ^ this.gerrorn) & GERROR.CMDQ_ERR;
    if (was !== 0 && now === 0) {
      // Acknowledged: consumption restarts at CMDQ_CONS (software has fixed or replaced the command).
      this.cmdq.kick();
    }
    this.kickStallRecords(); // an acknowledged EVTQ_ABT_ERR makes the Event queue writable again
  }

  // ------------------------------------------------------------------------------ errors and interrupts

  /** Activate a GERROR condition (no effect if it is already active) and signal the GERROR interrupt. */
  raiseGerror(bit: number, why: string): void {
    if (((this.gerror ^ this.gerrorn) & bit) !== 0) return;
    this.gerror = (this.gerror ^ bit) & GERROR_ERR_MASK;
    this.counters.gerrors++;
    const t = this.machine.trace;
    if (t.enabled) {
      const name = Object.entries(GERROR).find(([, b]) => b === bit)?.[0] ?? `0x${bit.toString(16)}`;
      t.emit(
        this.name,
        'gerror',
        `GERROR.${name}: ${why}`,
        { bit, gerror: this.gerror, gerrorn: this.gerrorn },
        'err',
      );
    }
    if (bit !== GERROR.MSI_GERROR_ABT_ERR) this.signal('gerror');
  }

  /** Signal an interrupt source: MSI when advertised and programmed, else the wired line. */
  signal(src: IrqSource): void {
    const en =
      src === 'gerror' ? IRQ_CTRL.GERROR_IRQEN : src === 'evtq' ? IRQ_CTRL.EVTQ_IRQEN : IRQ_CTRL.PRIQ_IRQEN;
    if ((this.irqCtrlAck & en) === 0) return;
    const r = this.irqCfg[src];
    const addr = (r[1]! & MSI_ADDR_MASK_HI) * TWO32 + ((r[0]! & MSI_ADDR_MASK_LO) >>> 0);
    if (this.features.msi && addr !== 0) {
      this.counters.msiWrites++;
      this.machine.mem.sanitizer?.checkMsi(this.name, -1, addr, 4);
      if (this.machine.mem.write32(addr, r[2]!) !== 0) {
        const abt =
          src === 'gerror'
            ? GERROR.MSI_GERROR_ABT_ERR
            : src === 'evtq'
              ? GERROR.MSI_EVTQ_ABT_ERR
              : GERROR.MSI_PRIQ_ABT_ERR;
        this.raiseGerror(abt, `${src} MSI write to 0x${addr.toString(16)} aborted`);
      }
      return;
    }
    const line = this.features.irqs[src === 'evtq' ? 'eventq' : src];
    if (line !== undefined) {
      this.counters.wiredIrqs++;
      this.machine.irq.pulse(line);
    }
  }

  // ------------------------------------------------------------------------------ command execution

  private execute(dw: Uint32Array, op: number): boolean {
    const san = this.machine.mem.sanitizer;
    if (san !== null) this.sanNote(san, dw, op);
    const f = this.features;
    const cache = this.cache;
    const e = this.engine;
    switch (op) {
      case CMD_OP.PREFETCH_CONFIG:
      case CMD_OP.PREFETCH_ADDR:
        return true; // hints: permitted to do nothing
      case CMD_OP.CFGI_STE:
        cache.invalidateSte(cmdSid(dw));
        return true;
      case CMD_OP.CFGI_STE_RANGE: {
        const range = cmdRange(dw);
        if (range === 31) cache.invalidateAll();
        else {
          const n = 2 ** (range + 1);
          const sid = cmdSid(dw);
          cache.invalidateSteRange(sid - (sid % n), n);
        }
        return true;
      }
      case CMD_OP.CFGI_CD:
        if (!f.s1) return this.ill('CMD_CFGI_CD needs stage 1');
        cache.invalidateCd(cmdSid(dw), cmdSsid(dw));
        if (!cmdLeaf(dw)) {
          // Leaf == 0 also drops cached L1CDs: this model does not cache them.
        }
        return true;
      case CMD_OP.CFGI_CD_ALL:
        if (!f.s1) return this.ill('CMD_CFGI_CD_ALL needs stage 1');
        cache.invalidateCdAll(cmdSid(dw));
        return true;
      case CMD_OP.CFGI_VMS_PIDM:
        return this.ill('CMD_CFGI_VMS_PIDM needs MPAM (SMMU_IDR3.MPAM == 0)');
      case CMD_OP.TLBI_NH_ALL:
        if (!f.s1) return this.ill('CMD_TLBI_NH_ALL needs stage 1');
        e.tlbiNhAll(f.s2 ? cmdVmid(dw) : 0);
        return true;
      case CMD_OP.TLBI_NH_ASID:
        if (!f.s1) return this.ill('CMD_TLBI_NH_ASID needs stage 1');
        e.tlbiNhAsid(f.s2 ? cmdVmid(dw) : 0, cmdAsid(dw));
        return true;
      case CMD_OP.TLBI_NH_VA:
      case CMD_OP.TLBI_NH_VAA:
      case CMD_OP.TLBI_EL2_VA:
      case CMD_OP.TLBI_EL2_VAA:
      case CMD_OP.TLBI_S2_IPA: {
        const s2 = op === CMD_OP.TLBI_S2_IPA;
        const el2 = op === CMD_OP.TLBI_EL2_VA || op === CMD_OP.TLBI_EL2_VAA;
        if (!s2 && !f.s1) return this.ill('stage-1 TLB invalidation needs stage 1');
        const range = this.tlbiRange(dw);
        if (range === null) return false;
        const addr = s2 ? cmdAddr(dw) % 2 ** 56 : cmdAddr(dw);
        const ttl = cmdTtl(dw);
        const tgEnc = cmdTg(dw);
        const tg = tgEnc === 0 ? 0 : 10 + 2 * tgEnc;
        const leaf = cmdLeaf(dw);
        const vmid = f.s2 ? cmdVmid(dw) : 0;
        if (s2) e.tlbiS2Ipa(vmid, addr, range, leaf, ttl, tg);
        else if (el2) e.tlbiEl2Va(op === CMD_OP.TLBI_EL2_VA ? cmdAsid(dw) : -1, addr, range, leaf, ttl, tg);
        else e.tlbiNhVa(vmid, op === CMD_OP.TLBI_NH_VA ? cmdAsid(dw) : -1, addr, range, leaf, ttl, tg);
        return true;
      }
      case CMD_OP.TLBI_EL2_ALL:
        e.tlbiEl2All();
        return true;
      case CMD_OP.TLBI_EL2_ASID:
        e.tlbiEl2Asid(cmdAsid(dw));
        return true;
      case CMD_OP.TLBI_S12_VMALL:
        e.tlbiS12Vmall(cmdVmid(dw));
        return true;
      case CMD_OP.TLBI_NSNH_ALL:
        e.tlbiNsnhAll();
        return true;
      case CMD_OP.ATC_INV: {
        this.counters.deferredCommands++;
        // Size: log2 of the range in 4KB pages; Address aligned down to it (IHI 0070 §4.5.1).
        const size = 4096 * 2 ** getField(dw, CMD.ATCSize);
        const a = getField(dw, CMD.ATCAddress);
        const ssv = getField(dw, CMD.SSV) !== 0;
        this.ats.atcInv(
          cmdSid(dw),
          ssv ? cmdSsid(dw) : -1,
          a - (a % size),
          size,
          getField(dw, CMD.Global) !== 0,
        );
        return true;
      }
      case CMD_OP.PRI_RESP: {
        this.counters.deferredCommands++;
        if (!this.enabled) return true; // §6.3.9.6: ignored while SMMUEN == 0
        const resp = getField(dw, CMD.Resp);
        const code =
          resp === PRI_RESP_CODE.SUCC
            ? PRI_RESP_SUCCESS
            : resp === PRI_RESP_CODE.DENY
              ? PRI_RESP_INVALID
              : PRI_RESP_FAILURE;
        const ssv = getField(dw, CMD.SSV) !== 0;
        this.priq.respond(cmdSid(dw), ssv ? cmdSsid(dw) : -1, getField(dw, CMD.PRIGroupID), code);
        return true;
      }
      case CMD_OP.RESUME:
        this.counters.deferredCommands++;
        this.stall.resume(
          cmdSid(dw),
          getField(dw, CMD.STAG),
          getField(dw, CMD.Ac) !== 0,
          getField(dw, CMD.Ab) !== 0,
        );
        return true;
      case CMD_OP.STALL_TERM:
        this.counters.deferredCommands++;
        this.stall.stallTerm(cmdSid(dw));
        return true;
      case CMD_OP.SYNC:
        this.completeSync(dw);
        return true;
      default:
        return this.ill(`opcode 0x${op.toString(16)} not implemented`);
    }
  }

  private ill(why: string): boolean {
    this.cmdq.lastError = why;
    return false;
  }

  /**
   * Byte length of a TLBI VA/IPA command's range (IHI 0070 §4.4.1): TG == 0 is a non-range
   * command for the single address (any entry containing it); otherwise (NUM+1) × 2^SCALE
   * pages of the TG granule (NUM and SCALE are RES0, so 0, without IDR3.RIL).
   */
  private tlbiRange(dw: Uint32Array): number | null {
    const tg = cmdTg(dw);
    if (tg === 0) return 1;
    return tlbiRangeLength(10 + 2 * tg, cmdScale(dw), cmdNum(dw));
  }

  /** Tell the DMA-isolation sanitizer which invalidation ran (it names missing ones in reports). */
  private sanNote(san: DmaSanitizer, dw: Uint32Array, op: number): void {
    const name = CMD_OP_NAMES.get(op) ?? `op 0x${op.toString(16)}`;
    const s2 = this.features.s2;
    switch (op) {
      case CMD_OP.CFGI_STE:
      case CMD_OP.CFGI_CD:
      case CMD_OP.CFGI_CD_ALL:
        san.noteInval(
          'cfgi',
          -1,
          -1,
          cmdSid(dw),
          op === CMD_OP.CFGI_CD ? cmdSsid(dw) : -1,
          0,
          0,
          `CMD_${name}`,
        );
        return;
      case CMD_OP.CFGI_STE_RANGE:
        san.noteInval('cfgi', -1, -1, cmdRange(dw) === 31 ? -1 : cmdSid(dw), -1, 0, 0, `CMD_${name}`);
        return;
      case CMD_OP.TLBI_NH_ALL:
      case CMD_OP.TLBI_EL2_ALL:
      case CMD_OP.TLBI_S12_VMALL:
      case CMD_OP.TLBI_NSNH_ALL:
        san.noteInval(
          'tlbi',
          -1,
          s2 && op !== CMD_OP.TLBI_NSNH_ALL ? cmdVmid(dw) : -1,
          -1,
          -1,
          0,
          0,
          `CMD_${name}`,
        );
        return;
      case CMD_OP.TLBI_NH_ASID:
      case CMD_OP.TLBI_EL2_ASID:
        san.noteInval('tlbi', cmdAsid(dw), -1, -1, -1, 0, 0, `CMD_${name}`);
        return;
      case CMD_OP.TLBI_NH_VA:
      case CMD_OP.TLBI_NH_VAA:
      case CMD_OP.TLBI_EL2_VA:
      case CMD_OP.TLBI_EL2_VAA:
      case CMD_OP.TLBI_S2_IPA: {
        const withAsid = op === CMD_OP.TLBI_NH_VA || op === CMD_OP.TLBI_EL2_VA;
        const len = this.tlbiRange(dw) ?? 4096;
        san.noteInval(
          'tlbi',
          withAsid ? cmdAsid(dw) : -1,
          s2 ? cmdVmid(dw) : -1,
          -1,
          -1,
          cmdAddr(dw) % 2 ** 56,
          Math.max(len, 4096),
          `CMD_${name}`,
        );
        return;
      }
      case CMD_OP.ATC_INV: {
        const size = 4096 * 2 ** getField(dw, CMD.ATCSize);
        const a = getField(dw, CMD.ATCAddress);
        const ssv = getField(dw, CMD.SSV) !== 0;
        san.noteInval(
          'atc-inv',
          -1,
          -1,
          cmdSid(dw),
          ssv ? cmdSsid(dw) : -1,
          a - (a % size),
          size,
          'CMD_ATC_INV',
        );
        return;
      }
    }
  }

  private completeSync(dw: Uint32Array): void {
    const cs = cmdSyncCs(dw);
    const st = this.cmdq.stats;
    if (cs === 1) {
      st.syncIrq++;
      const addr = cmdSyncMsiAddr(dw);
      if (this.features.msi && addr !== 0) {
        this.counters.msiWrites++;
        this.machine.mem.sanitizer?.checkMsi(this.name, -1, addr, 4);
        if (this.machine.mem.write32(addr, cmdSyncMsiData(dw)) !== 0) {
          this.raiseGerror(GERROR.MSI_CMDQ_ABT_ERR, `CMD_SYNC MSI write to 0x${addr.toString(16)} aborted`);
        }
      } else if (this.features.irqs.cmdqSync !== undefined) {
        this.counters.wiredIrqs++;
        this.machine.irq.pulse(this.features.irqs.cmdqSync);
      }
    } else if (cs === 2) {
      st.syncSev++;
      this.counters.sev++;
    } else {
      st.syncNone++;
    }
  }

  private traceCommand(dw: Uint32Array, idx: number, err: number, why: string): void {
    const t = this.machine.trace;
    if (!t.enabled) return;
    const op = dw[0]! & 0xff;
    const name = Object.entries(CMD_OP).find(([, v]) => v === op)?.[0] ?? `0x${op.toString(16)}`;
    if (err === 0) {
      t.emit(
        this.name,
        'cmdq.exec',
        `CMD_${name} [${idx}] ${formatCommand(dw)}`,
        { op, index: idx },
        'debug',
      );
    } else {
      t.emit(
        this.name,
        'cmdq.error',
        `CMDQ error ${CERROR_NAMES[err]} at [${idx}] CMD_${name} ${formatCommand(dw)}: ${why}`,
        { op, index: idx, err },
        'err',
      );
    }
  }

  // ------------------------------------------------------------------------------ inspection

  /** All counters in one plain object (for the CLI, demos and the web inspector). */
  stats(): Record<string, Record<string, number>> {
    const tlb = this.engine instanceof EngineBackend ? this.engine.engine.tlb?.counters : undefined;
    return {
      device: { ...this.counters },
      port: { ...this.port.stats },
      configCache: { ...this.cache.stats, steEntries: this.cache.steCount, cdEntries: this.cache.cdCount },
      cmdq: {
        total: this.cmdq.stats.total,
        errors: this.cmdq.stats.errors,
        syncNone: this.cmdq.stats.syncNone,
        syncIrq: this.cmdq.stats.syncIrq,
        syncSev: this.cmdq.stats.syncSev,
        ...Object.fromEntries(Object.entries(this.cmdq.stats.executed).map(([k, v]) => [`CMD_${k}`, v])),
      },
      evtq: { ...this.evtq.stats },
      stall: { ...this.stall.stats, held: this.stall.count },
      priq: { ...this.priq.stats },
      ats: { ...this.ats.stats },
      tlb: tlb ? { ...tlb } : {},
    };
  }

  /** GBPA.ABORT is in effect (transactions abort while SMMUEN == 0). */
  get gbpaAbort(): boolean {
    return (this.gbpa & GBPA.ABORT) !== 0;
  }

  /** Errors currently active (GERROR ^ GERRORN). */
  get activeErrors(): number {
    return (this.gerror ^ this.gerrorn) & GERROR_ERR_MASK;
  }
}
