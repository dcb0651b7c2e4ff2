/**
 * The arm-smmu-v3 driver's per-SMMU state and everything it does with the hardware:
 * probe and reset, the stream table, CD tables, the command queue (with CMD_SYNC completion
 * and CMDQ error recovery), invalidation, and the event / GERROR / PRI interrupt handlers.
 *
 * It reaches the SMMU only through MMIO registers, structures in memory and interrupts
 * (../shared/DESIGN.md). Names follow drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c.
 */

import {
  CMD_OP,
  type CommandName,
  commandField,
  encodeCommandInto,
  putCommandField,
} from '../../../arch/smmuv3/cmd.ts';
import { decodeEvent } from '../../../arch/smmuv3/event.ts';
import { decodePri } from '../../../arch/smmuv3/pri.ts';
import {
  CERROR,
  CMDQ_ENT_BYTES,
  CR0,
  EVTQ_ENT_BYTES,
  GBPA,
  GERROR,
  GERROR_ERR_MASK,
  IRQ_CTRL,
  PRIQ_ENT_BYTES,
  Q_PTR,
  SMMU_REG,
  STRTAB_BASE_CFG,
  STRTAB_FMT,
} from '../../../arch/smmuv3/regs.ts';
import { IRQ_HANDLED, IRQ_NONE, IRQ_WAKE_THREAD, type IrqReturn } from '../../../platform/irq.ts';
import type { Machine } from '../../../platform/machine.ts';
import { type MmioRegion, pollTimeout, pollTimeoutAtomic, waitForWrite } from '../../lib/io.ts';
import { RateLimit } from '../../lib/ratelimit.ts';
import {
  cdOps,
  type Entry,
  NUM_ENTRY_QWORDS,
  planWriteEntry,
  steOps,
  type WritePath,
} from './entry-writer.ts';
import { decodedEventLines, rawEventLines } from './event-log.ts';
import { probeFeatures, type SmmuFeatures } from './features.ts';
import { atcInvSkipped, type DriverMutations, NO_MUTATION } from './inject.ts';
import { makeAbortSte, makeBypassSte, S1FMT, type SmmuWriteFeatures } from './make-entry.ts';
import { SmmuQueue } from './queue.ts';

const ENOMEM = -12;
const ENODEV = -19;
const EINVAL = -22;
const ETIMEDOUT = -110;

/** STRTAB_SPLIT: SID bits resolved by a level-2 stream table. */
export const STRTAB_SPLIT = 8;
/** CTXDESC_SPLIT: SSID bits resolved by a level-2 CD table (1024 CDs of 64 bytes = 64 KiB). */
export const CTXDESC_SPLIT = 10;
const CTXDESC_L2_ENTRIES = 1 << CTXDESC_SPLIT;
/** ARM_SMMU_POLL_TIMEOUT_US. */
const POLL_TIMEOUT_NS = 1_000_000_000;
const RESOLVED_0: Promise<number> = Promise.resolve(0);
const F_NH_ASID = commandField('TLBI_NH_ASID', 'ASID');
const F_NH_VMID = commandField('TLBI_NH_ASID', 'VMID');
const F_EL2_ASID = commandField('TLBI_EL2_ASID', 'ASID');

/**
 * Steps the driver forgets on purpose (fault injection). skipTlbi / skipCfgi / skipAtcInv: no
 * TLB invalidation, no CFGI after an STE/CD rewrite, no ATC_INV; skipCmdSync: commands are
 * published but no CMD_SYNC is issued or waited for, so callers return before the SMMU consumed
 * them; delayCompletionNs: page responses (CMD_RESUME, CMD_PRI_RESP) go out this much later.
 */
export interface SmmuInjectFlags extends DriverMutations {
  skipTlbi: boolean;
  skipCfgi: boolean;
  skipAtcInv: boolean;
  skipCmdSync: boolean;
  delayCompletionNs: number;
}

/** Every injection off. */
export const NO_INJECTION: Readonly<SmmuInjectFlags> = {
  ...NO_MUTATION,
  skipTlbi: false,
  skipCfgi: false,
  skipAtcInv: false,
  skipCmdSync: false,
  delayCompletionNs: 0,
};

export interface ArmSmmuOptions {
  /** Device name used in log lines (Linux dev_name), e.g. "9000000.iommu". */
  name: string;
  /** Physical base of the register window. */
  base: number;
  /** Wired interrupt numbers, used when the SMMU has no MSI support. */
  irqs?: { eventq?: number; gerror?: number; priq?: number };
  /** Linux arm-smmu-v3.disable_bypass (default true: unattached streams abort). */
  disableBypass?: boolean;
  /** Fault injection: forget steps the driver must take (see SmmuInjectFlags). */
  inject?: Partial<SmmuInjectFlags>;
  /** Poll interval for busy-waits on the command queue, ns. */
  pollNs?: number;
}

export interface CdTable {
  /** Address written to STE.S1ContextPtr. */
  base: number;
  s1fmt: number;
  /** log2 of the number of CDs (STE.S1CDMax). */
  s1cdmax: number;
  /** 2-level: L2 table addresses by L1 index (0 = not allocated). */
  l2: number[];
  /** Bytes allocated for the L1 (or linear) table, for freeing. */
  order: number;
}

export interface SmmuStats {
  commands: number;
  syncs: number;
  steWrites: number;
  cdWrites: number;
  events: number;
  eventsLogged: number;
  priRequests: number;
  gerrors: number;
  cmdqErrors: number;
  byOpcode: Record<string, number>;
}

/**
 * An event record handed to the fault layer as its 8 dwords (low half of each 64-bit word first;
 * only valid during the call); return 0 if handled, else it is logged.
 */
export type EventHandler = (dw: Uint32Array) => number;
/** A PRI queue entry as its 4 dwords (only valid during the call). */
export type PriHandler = (dw: Uint32Array) => void;

export class ArmSmmuDevice {
  readonly name: string;
  readonly component: string;
  features!: SmmuFeatures;
  writeFeatures!: SmmuWriteFeatures;
  cmdq!: SmmuQueue;
  evtq!: SmmuQueue;
  priq: SmmuQueue | null = null;
  strtabBase = 0;
  strtabFmt: number = STRTAB_FMT.LINEAR;
  /** 2-level stream table: L2 table addresses by L1 index. */
  private l2Strtab: number[] = [];
  readonly stats: SmmuStats = {
    commands: 0,
    syncs: 0,
    steWrites: 0,
    cdWrites: 0,
    events: 0,
    eventsLogged: 0,
    priRequests: 0,
    gerrors: 0,
    cmdqErrors: 0,
    byOpcode: {},
  };
  /** Fault layer hooks (io-pgfault); null: every event is logged, every PRI request denied. */
  handleEvent: EventHandler | null = null;
  handlePri: PriHandler | null = null;
  /** StreamID → master device name, for the "client:" field of event logs. */
  readonly sidNames = new Map<number, string>();
  readonly inject: SmmuInjectFlags;
  private readonly evtRatelimit = new RateLimit();
  private readonly disableBypass: boolean;
  private readonly pollNs: number;
  private readonly cmdBuf = new Uint32Array(4);
  private stage = new Uint32Array(4 * 8);
  /** The entry the event / PRI thread is handling (each thread handles one at a time). */
  private readonly evtDw = new Uint32Array(8);
  private readonly priDw = new Uint32Array(4);
  private syncDw: Uint32Array | null = null;
  private irqNums: number[] = [];
  enabled = false;

  constructor(
    readonly m: Machine,
    readonly regs: MmioRegion,
    readonly opts: ArmSmmuOptions,
  ) {
    this.name = opts.name;
    this.component = `arm-smmu-v3 ${opts.name}`;
    this.disableBypass = opts.disableBypass ?? true;
    this.pollNs = opts.pollNs ?? 50;
    this.inject = { ...NO_INJECTION, ...opts.inject };
  }

  // ------------------------------------------------------------------ logging

  info(msg: string): void {
    this.m.trace.emit(this.component, 'log', msg);
  }

  warn(msg: string): void {
    this.m.trace.emit(this.component, 'log', msg, {}, 'warn');
  }

  err(msg: string): void {
    this.m.trace.emit(this.component, 'log', msg, {}, 'err');
  }

  // ------------------------------------------------------------------ probe

  /** arm_smmu_device_probe(): features, structures, reset. Returns 0 or -errno; cleans up on failure. */
  async probe(): Promise<number> {
    const f = probeFeatures(this.regs);
    if (typeof f === 'string') {
      this.err(f);
      return ENODEV;
    }
    this.features = f;
    this.writeFeatures = {
      stalls: f.stalls,
      stallForce: f.stallForce,
      attrTypesOvr: f.attrTypesOvr,
      e2h: f.e2h,
      s2fwb: false,
    };
    this.info(
      `ias ${f.oas}-bit, oas ${f.oas}-bit (features 0x${this.featureWord().toString(16).padStart(8, '0')})`,
    );
    const allocated: number[] = [];
    const alloc = (bytes: number, owner: string): number => {
      const order = Math.max(0, Math.ceil(Math.log2(Math.max(bytes, 4096) / 4096)));
      const pa = this.m.pages.alloc(order, `${this.name} ${owner}`);
      if (pa >= 0) allocated.push(pa);
      return pa;
    };
    const fail = (ret: number, what: string) => {
      this.err(`failed to allocate ${what}`);
      for (const pa of allocated) this.m.pages.freePages(pa);
      return ret;
    };
    // queues
    const cmdqBase = alloc(CMDQ_ENT_BYTES << f.cmdqShift, 'cmdq');
    if (cmdqBase < 0) return fail(ENOMEM, 'cmdq');
    this.cmdq = new SmmuQueue(
      this.m.mem,
      'cmdq',
      cmdqBase,
      f.cmdqShift,
      CMDQ_ENT_BYTES,
      SMMU_REG.CMDQ_PROD,
      SMMU_REG.CMDQ_CONS,
    );
    const evtqBase = alloc(EVTQ_ENT_BYTES << f.evtqShift, 'evtq');
    if (evtqBase < 0) return fail(ENOMEM, 'evtq');
    this.evtq = new SmmuQueue(
      this.m.mem,
      'evtq',
      evtqBase,
      f.evtqShift,
      EVTQ_ENT_BYTES,
      SMMU_REG.EVTQ_PROD_P1,
      SMMU_REG.EVTQ_CONS_P1,
    );
    if (f.pri) {
      const priqBase = alloc(PRIQ_ENT_BYTES << f.priqShift, 'priq');
      if (priqBase < 0) return fail(ENOMEM, 'priq');
      this.priq = new SmmuQueue(
        this.m.mem,
        'priq',
        priqBase,
        f.priqShift,
        PRIQ_ENT_BYTES,
        SMMU_REG.PRIQ_PROD_P1,
        SMMU_REG.PRIQ_CONS_P1,
      );
    }
    // stream table: 2-level when the SMMU supports it and the SID space exceeds one L2 table
    if (f.twoLvlStrtab) {
      const l1Bits = Math.min(f.sidBits - STRTAB_SPLIT, 20);
      const base = alloc(8 << l1Bits, 'strtab-l1');
      if (base < 0) return fail(ENOMEM, 'l1 stream table');
      this.strtabBase = base;
      this.strtabFmt = STRTAB_FMT.TWO_LEVEL;
      this.strtabLog2 = l1Bits + STRTAB_SPLIT;
      this.l2Strtab = new Array<number>(1 << l1Bits).fill(0);
    } else {
      const bits = Math.min(f.sidBits, 16);
      const base = alloc(64 << bits, 'strtab');
      if (base < 0) return fail(ENOMEM, 'linear stream table');
      this.strtabBase = base;
      this.strtabFmt = STRTAB_FMT.LINEAR;
      this.strtabLog2 = bits;
      this.initInitialStes(base, 1 << bits);
    }
    const ret = await this.reset();
    if (ret !== 0) {
      this.freeIrqs();
      for (const pa of allocated) this.m.pages.freePages(pa);
      return ret;
    }
    return 0;
  }

  /** log2 of the number of STEs the stream table covers. */
  strtabLog2 = 0;

  private featureWord(): number {
    const f = this.features;
    const bits = [
      f.twoLvlStrtab,
      f.twoLvlCdtab,
      false,
      false,
      f.coherent,
      f.ats,
      f.pri,
      false,
      false,
      f.msi,
      false,
      f.hyp,
      f.stalls,
      f.stallForce,
      f.s1,
      f.s2,
      false,
      false,
      f.e2h,
      f.btm,
    ];
    return bits.reduce((acc, b, i) => (b ? acc | (1 << i) : acc), 0) >>> 0;
  }

  /** Unattached streams: abort (disable_bypass) or bypass. */
  private initInitialStes(base: number, n: number): void {
    const ste = this.disableBypass ? makeAbortSte() : makeBypassSte(this.writeFeatures);
    for (let i = 0; i < n; i++) this.writeEntryWords(base + i * 64, ste);
  }

  private writeEntryWords(pa: number, e: readonly bigint[]): void {
    for (let i = 0; i < NUM_ENTRY_QWORDS; i++) {
      const w = e[i]!;
      this.m.mem.write64(pa + i * 8, Number(w & 0xffffffffn) | 0, Number(w >> 32n) | 0);
    }
  }

  private readEntryWords(pa: number): Entry {
    const e: Entry = [];
    for (let i = 0; i < NUM_ENTRY_QWORDS; i++) {
      this.m.mem.read64(pa + i * 8);
      e.push((BigInt(this.m.mem.r64[1]! >>> 0) << 32n) | BigInt(this.m.mem.r64[0]! >>> 0));
    }
    return e;
  }

  /** Write CR0 and wait for CR0ACK to match (arm_smmu_write_reg_sync). */
  private async writeRegSync(reg: number, ack: number, v: number): Promise<number> {
    this.regs.writel(reg, v);
    const r = await pollTimeout(
      this.m.exec,
      () => this.regs.readl(ack),
      (x) => x === v,
      POLL_TIMEOUT_NS,
      1000,
    );
    return r.ok ? 0 : ETIMEDOUT;
  }

  /** GBPA update handshake (arm_smmu_update_gbpa). */
  private async updateGbpa(set: number, clr: number): Promise<number> {
    const wait = () =>
      pollTimeout(
        this.m.exec,
        () => this.regs.readl(SMMU_REG.GBPA),
        (x) => (x & GBPA.UPDATE) === 0,
        POLL_TIMEOUT_NS,
        1000,
      );
    let r = await wait();
    if (!r.ok) return ETIMEDOUT;
    const v = ((r.value & ~clr) | set) >>> 0;
    this.regs.writel(SMMU_REG.GBPA, (v | GBPA.UPDATE) >>> 0);
    r = await wait();
    if (!r.ok) {
      this.err('GBPA not responding to update');
      return ETIMEDOUT;
    }
    return 0;
  }

  /** arm_smmu_device_reset(): the architected enable sequence. */
  async reset(): Promise<number> {
    const f = this.features;
    if (this.regs.readl(SMMU_REG.CR0) & CR0.SMMUEN) {
      this.warn('SMMU currently enabled! Resetting...');
      await this.updateGbpa(GBPA.ABORT, 0);
    }
    if ((await this.writeRegSync(SMMU_REG.CR0, SMMU_REG.CR0ACK, 0)) !== 0) {
      this.err('failed to clear cr0');
      return ETIMEDOUT;
    }
    // table and queue attributes: inner-shareable, write-back read/write-allocate
    const wbrwa = 1;
    const ish = 3;
    this.regs.writel(
      SMMU_REG.CR1,
      (ish << 10) | (wbrwa << 8) | (wbrwa << 6) | (ish << 4) | (wbrwa << 2) | wbrwa,
    );
    this.regs.writel(SMMU_REG.CR2, (1 << 2) | (1 << 1)); // PTM | RECINVSID
    this.regs.writeq(SMMU_REG.STRTAB_BASE, this.strtabBase, 1 << 30);
    const cfg =
      (this.strtabFmt << STRTAB_BASE_CFG.FMT_SHIFT) |
      (this.strtabLog2 << STRTAB_BASE_CFG.LOG2SIZE_SHIFT) |
      (this.strtabFmt === STRTAB_FMT.TWO_LEVEL ? STRTAB_SPLIT << STRTAB_BASE_CFG.SPLIT_SHIFT : 0);
    this.regs.writel(SMMU_REG.STRTAB_BASE_CFG, cfg);
    // command queue
    this.regs.writeq(SMMU_REG.CMDQ_BASE, this.cmdq.baseReg(), 1 << 30);
    this.cmdq.prod = 0;
    this.cmdq.cons = 0;
    this.regs.writel(SMMU_REG.CMDQ_PROD, 0);
    this.regs.writel(SMMU_REG.CMDQ_CONS, 0);
    let enables = CR0.CMDQEN;
    if ((await this.writeRegSync(SMMU_REG.CR0, SMMU_REG.CR0ACK, enables)) !== 0) {
      this.err('failed to enable command queue');
      return ETIMEDOUT;
    }
    // invalidate any cached configuration and TLB entries
    let r = await this.issue([['CFGI_ALL', {}]], true);
    if (r === 0) {
      const cmds: Array<[CommandName, Record<string, number>]> = [];
      if (f.hyp) cmds.push(['TLBI_EL2_ALL', {}]);
      cmds.push(['TLBI_NSNH_ALL', {}]);
      r = await this.issue(cmds, true);
    }
    if (r !== 0) {
      this.err('command queue not responding');
      return r;
    }
    // event queue
    this.regs.writeq(SMMU_REG.EVTQ_BASE, this.evtq.baseReg(), 1 << 30);
    this.regs.writel(SMMU_REG.EVTQ_PROD_P1, 0);
    this.regs.writel(SMMU_REG.EVTQ_CONS_P1, 0);
    enables |= CR0.EVTQEN;
    if ((await this.writeRegSync(SMMU_REG.CR0, SMMU_REG.CR0ACK, enables)) !== 0) {
      this.err('failed to enable event queue');
      return ETIMEDOUT;
    }
    if (this.priq) {
      this.regs.writeq(SMMU_REG.PRIQ_BASE, this.priq.baseReg(), 1 << 30);
      this.regs.writel(SMMU_REG.PRIQ_PROD_P1, 0);
      this.regs.writel(SMMU_REG.PRIQ_CONS_P1, 0);
      enables |= CR0.PRIQEN;
      if ((await this.writeRegSync(SMMU_REG.CR0, SMMU_REG.CR0ACK, enables)) !== 0) {
        this.err('failed to enable PRI queue');
        return ETIMEDOUT;
      }
    }
    if (f.ats) {
      enables |= CR0.ATSCHK;
      if ((await this.writeRegSync(SMMU_REG.CR0, SMMU_REG.CR0ACK, enables)) !== 0) {
        this.err('failed to enable ATS check');
        return ETIMEDOUT;
      }
    }
    const irqRet = await this.setupIrqs();
    if (irqRet !== 0) return irqRet;
    // unattached streams abort via their STEs; GBPA governs only while SMMUEN=0
    if (!this.disableBypass) await this.updateGbpa(0, GBPA.ABORT);
    enables |= CR0.SMMUEN;
    if ((await this.writeRegSync(SMMU_REG.CR0, SMMU_REG.CR0ACK, enables)) !== 0) {
      this.err('failed to enable SMMU interface');
      return ETIMEDOUT;
    }
    this.enabled = true;
    return 0;
  }

  /** arm_smmu_device_disable(). */
  async disable(): Promise<number> {
    this.enabled = false;
    const r = await this.writeRegSync(SMMU_REG.CR0, SMMU_REG.CR0ACK, 0);
    if (r) this.err('failed to clear cr0');
    return r;
  }

  // ------------------------------------------------------------------ interrupts

  private async setupIrqs(): Promise<number> {
    if ((await this.writeRegSync(SMMU_REG.IRQ_CTRL, SMMU_REG.IRQ_CTRLACK, 0)) !== 0) {
      this.err('failed to disable irqs');
      return ETIMEDOUT;
    }
    const irq = this.m.irq;
    let evtIrq: number | undefined;
    let gerrIrq: number | undefined;
    let priIrq: number | undefined;
    if (this.features.msi) {
      // arm_smmu_setup_msis(): one MSI each, programmed into *_IRQ_CFG0/1/2
      const n = this.priq ? 3 : 2;
      const msis = irq.allocMsi(n);
      const cfg: Array<[number, number, number]> = [
        [SMMU_REG.EVTQ_IRQ_CFG0, SMMU_REG.EVTQ_IRQ_CFG1, SMMU_REG.EVTQ_IRQ_CFG2],
        [SMMU_REG.GERROR_IRQ_CFG0, SMMU_REG.GERROR_IRQ_CFG1, SMMU_REG.GERROR_IRQ_CFG2],
        [SMMU_REG.PRIQ_IRQ_CFG0, SMMU_REG.PRIQ_IRQ_CFG1, SMMU_REG.PRIQ_IRQ_CFG2],
      ];
      msis.forEach((msi, i) => {
        const [c0, c1, c2] = cfg[i]!;
        this.regs.writeq(c0, msi.address);
        this.regs.writel(c1, msi.data);
        this.regs.writel(c2, 1); // Device-nGnRE
      });
      evtIrq = msis[0]!.irq;
      gerrIrq = msis[1]!.irq;
      priIrq = msis[2]?.irq;
    } else {
      evtIrq = this.opts.irqs?.eventq;
      gerrIrq = this.opts.irqs?.gerror;
      priIrq = this.opts.irqs?.priq;
    }
    let enables = 0;
    if (evtIrq !== undefined) {
      if (
        irq.requestThreadedIrq(
          evtIrq,
          `arm-smmu-v3-evtq`,
          () => IRQ_WAKE_THREAD,
          () => this.evtqThread(),
        ) === 0
      ) {
        this.irqNums.push(evtIrq);
        enables |= IRQ_CTRL.EVTQ_IRQEN;
      }
    } else this.warn('no evtq irq - events will not be reported!');
    if (gerrIrq !== undefined) {
      if (irq.requestIrq(gerrIrq, 'arm-smmu-v3-gerror', () => this.gerrorHandler()) === 0) {
        this.irqNums.push(gerrIrq);
        enables |= IRQ_CTRL.GERROR_IRQEN;
      }
    } else this.warn('no gerr irq - errors will not be reported!');
    if (this.priq) {
      if (priIrq !== undefined) {
        if (
          irq.requestThreadedIrq(
            priIrq,
            'arm-smmu-v3-priq',
            () => IRQ_WAKE_THREAD,
            () => this.priqThread(),
          ) === 0
        ) {
          this.irqNums.push(priIrq);
          enables |= IRQ_CTRL.PRIQ_IRQEN;
        }
      } else this.warn('no priq irq - PRI will be broken');
    }
    if ((await this.writeRegSync(SMMU_REG.IRQ_CTRL, SMMU_REG.IRQ_CTRLACK, enables)) !== 0) {
      this.warn('failed to enable irqs');
    }
    return 0;
  }

  private freeIrqs(): void {
    for (const n of this.irqNums) this.m.irq.freeIrq(n);
    this.irqNums = [];
  }

  /** arm_smmu_gerror_handler (hard IRQ). */
  gerrorHandler(): IrqReturn {
    const gerror = this.regs.readl(SMMU_REG.GERROR);
    const gerrorn = this.regs.readl(SMMU_REG.GERRORN);
    const active = (gerror ^ gerrorn) & GERROR_ERR_MASK;
    if (!active) return IRQ_NONE;
    this.stats.gerrors++;
    this.warn(
      `unexpected global error reported (0x${active.toString(16).padStart(8, '0')}), this could be serious`,
    );
    if (active & GERROR.SFM_ERR) this.err('device has entered Service Failure Mode!');
    if (active & GERROR.MSI_GERROR_ABT_ERR) this.warn('GERROR MSI write aborted');
    if (active & GERROR.MSI_PRIQ_ABT_ERR) this.warn('PRIQ MSI write aborted');
    if (active & GERROR.MSI_EVTQ_ABT_ERR) this.warn('EVTQ MSI write aborted');
    if (active & GERROR.MSI_CMDQ_ABT_ERR) this.warn('CMDQ MSI write aborted');
    if (active & GERROR.PRIQ_ABT_ERR) this.err('PRIQ write aborted -- events may have been lost');
    if (active & GERROR.EVTQ_ABT_ERR) this.err('EVTQ write aborted -- events may have been lost');
    if (active & GERROR.CMDQ_ERR) this.cmdqSkipErr();
    this.regs.writel(SMMU_REG.GERRORN, gerror);
    return IRQ_HANDLED;
  }

  /** arm_smmu_cmdq_skip_err(): log the bad command and replace it with a CMD_SYNC. */
  private cmdqSkipErr(): void {
    const cons = this.regs.readl(SMMU_REG.CMDQ_CONS);
    const idx = (cons & Q_PTR.ERR_MASK) >>> Q_PTR.ERR_SHIFT;
    const names = ['No error', 'Illegal command', 'Abort on command fetch', 'ATC invalidate timeout'];
    this.stats.cmdqErrors++;
    this.err(`CMDQ error (cons 0x${cons.toString(16).padStart(8, '0')}): ${names[idx] ?? 'Unknown'}`);
    if (idx === CERROR.ABT) {
      this.err('retrying command fetch');
      return;
    }
    if (idx === CERROR.NONE || idx === CERROR.ATC_INV_SYNC) return;
    const slot = this.cmdq.slotAddr(cons);
    const words: bigint[] = [];
    for (let i = 0; i < 2; i++) {
      this.m.mem.read64(slot + i * 8);
      words.push((BigInt(this.m.mem.r64[1]! >>> 0) << 32n) | BigInt(this.m.mem.r64[0]! >>> 0));
    }
    this.err('skipping command in error state:');
    for (const w of words) this.err(`\t0x${w.toString(16).padStart(16, '0')}`);
    encodeCommandInto(this.cmdBuf, 'SYNC', {});
    for (let i = 0; i < 4; i++) this.m.mem.write32(slot + i * 4, this.cmdBuf[i]!);
  }

  /** arm_smmu_evtq_thread. */
  private async evtqThread(): Promise<void> {
    const q = this.evtq;
    const ent = this.evtDw;
    do {
      while (!q.empty()) {
        readDwords(this.m.mem, q.slotAddr(q.cons), ent, 8);
        q.cons = q.inc(q.cons);
        this.regs.writel(q.consReg, q.cons);
        this.stats.events++;
        const handled = this.handleEvent ? this.handleEvent(ent) : -95;
        if (handled !== 0) {
          this.dumpEvent(dwordsToBigWords(ent, 4));
          // a stalled transaction nobody will answer: abort it (Linux: "Nobody cared, abort the access")
          if (ent[2]! & 0x80000000) await this.resume(ent[1]! >>> 0, ent[2]! & 0xffff, false);
        }
      }
      const prod = this.regs.readl(q.prodReg);
      if (q.ovf(prod) !== q.ovf(q.prod)) this.err('EVTQ overflow detected -- events lost');
      q.prod = prod;
    } while (!q.empty());
    // acknowledge the overflow: cons takes prod's overflow flag
    q.cons = (q.ovf(q.prod) | q.wrp(q.cons) | q.idx(q.cons)) >>> 0;
    this.regs.writel(q.consReg, q.cons);
  }

  private dumpEvent(words: readonly bigint[]): void {
    if (
      !this.evtRatelimit.allow(this.m.sched.now, (n) =>
        this.warn(`arm_smmu_evtq_thread: ${n} callbacks suppressed`),
      )
    ) {
      return;
    }
    this.stats.eventsLogged++;
    for (const l of rawEventLines(words)) this.info(l);
    const e = decodeEvent(words);
    const client = this.sidNames.get(e.streamId) ?? '(unassigned sid)';
    for (const l of decodedEventLines(e, client)) this.err(l);
  }

  /** arm_smmu_priq_thread. */
  private async priqThread(): Promise<void> {
    const q = this.priq!;
    const ent = this.priDw;
    do {
      while (!q.empty()) {
        readDwords(this.m.mem, q.slotAddr(q.cons), ent, 4);
        q.cons = q.inc(q.cons);
        this.regs.writel(q.consReg, q.cons);
        this.stats.priRequests++;
        if (this.handlePri) this.handlePri(ent);
        else await this.handlePprDeny(dwordsToBigWords(ent, 2));
      }
      const prod = this.regs.readl(q.prodReg);
      if (q.ovf(prod) !== q.ovf(q.prod)) this.err('PRIQ overflow detected -- requests lost');
      q.prod = prod;
    } while (!q.empty());
    q.cons = (q.ovf(q.prod) | q.wrp(q.cons) | q.idx(q.cons)) >>> 0;
    this.regs.writel(q.consReg, q.cons);
  }

  /** Linux today: log the request and deny the last one of the group. */
  private async handlePprDeny(ent: bigint[]): Promise<void> {
    const p = decodePri(ent);
    if (p.stopMarker) return;
    this.info('unexpected PRI request received:');
    this.info(
      `\tsid 0x${p.streamId.toString(16).padStart(8, '0')}.0x${(p.substreamId ?? 0).toString(16).padStart(5, '0')}: [${p.prgIndex}${p.last ? 'L' : ''}] ${p.privileged ? '' : 'un'}privileged ${p.read ? 'R' : ''}${p.write ? 'W' : ''}${p.exec ? 'X' : ''} 0x${p.address.toString(16).padStart(16, '0')}`,
    );
    if (p.last) {
      await this.issue(
        [
          [
            'PRI_RESP',
            {
              StreamID: p.streamId,
              SSV: p.substreamId !== null ? 1 : 0,
              SubstreamID: p.substreamId ?? 0,
              PRIGroupID: p.prgIndex,
              Resp: 0,
            },
          ],
        ],
        false,
      );
    }
  }

  // ------------------------------------------------------------------ command queue

  /**
   * Insert commands (and, with `sync`, a CMD_SYNC) and wait for the sync to complete.
   * Returns 0, or -ETIMEDOUT if the SMMU did not complete it in time.
   */
  issue(
    cmds: ReadonlyArray<readonly [CommandName, Readonly<Record<string, number>>]>,
    sync: boolean,
  ): Promise<number> {
    const n = cmds.length;
    const buf = this.staged(n);
    for (let i = 0; i < n; i++) {
      const [name, vals] = cmds[i]!;
      encodeCommandInto(buf, name, vals, 4 * i);
      this.stats.byOpcode[name] = (this.stats.byOpcode[name] ?? 0) + 1;
    }
    return this.submit(buf, n, sync);
  }

  /** One command (and with `sync` a CMD_SYNC): issue() without the list. */
  issue1(name: CommandName, vals: Readonly<Record<string, number>>, sync: boolean): Promise<number> {
    const buf = this.stage;
    encodeCommandInto(buf, name, vals);
    this.stats.byOpcode[name] = (this.stats.byOpcode[name] ?? 0) + 1;
    return this.submit(buf, 1, sync);
  }

  /**
   * issue() with a CMD_SYNC, for synchronous callers (io-pgtable's tlb_flush_walk inside
   * map_pages/unmap_pages): spins until the SMMU completed the sync, as Linux's CPU does (WFE
   * cannot be waited in from synchronous code: it polls CMDQ_CONS and the sync word).
   */
  issueAtomic(cmds: ReadonlyArray<readonly [CommandName, Readonly<Record<string, number>>]>): number {
    const q = this.cmdq;
    const n = cmds.length;
    const buf = this.staged(n);
    for (let i = 0; i < n; i++) {
      const [name, vals] = cmds[i]!;
      encodeCommandInto(buf, name, vals, 4 * i);
      this.stats.byOpcode[name] = (this.stats.byOpcode[name] ?? 0) + 1;
    }
    const mask = (1 << (q.shift + 1)) - 1;
    const cons = () => this.regs.readl(SMMU_REG.CMDQ_CONS);
    const skipSync = this.inject.skipCmdSync;
    let syncSlot = -1;
    for (let i = 0; i < (skipSync ? n : n + 1); i++) {
      if (q.space(q.cons) <= 1) {
        const r = pollTimeoutAtomic(
          this.m.exec,
          cons,
          (c) => q.space(c & ~Q_PTR.ERR_MASK & 0x7fffffff) > 1,
          POLL_TIMEOUT_NS,
          this.pollNs,
        );
        if (!r.ok) {
          this.err('CMDQ timeout');
          return ETIMEDOUT;
        }
        q.cons = r.value & mask;
      }
      if (i < n) this.putCmd(buf, 4 * i);
      else {
        syncSlot = q.prod;
        this.putSync();
      }
    }
    this.regs.writel(SMMU_REG.CMDQ_PROD, q.prod);
    if (skipSync) return 0;
    const addr = q.slotAddr(syncSlot);
    const msi = this.msiSync;
    const r = pollTimeoutAtomic(
      this.m.exec,
      cons,
      (c) => (msi && this.m.mem.read32(addr) === 0) || q.consumed(syncSlot, c & mask),
      POLL_TIMEOUT_NS,
      this.pollNs,
    );
    if (!r.ok) return this.syncTimeout(syncSlot, r.value);
    if (!q.consumed(syncSlot, q.cons)) q.cons = q.inc(syncSlot) & mask;
    return 0;
  }

  /** The staging buffer, room for `n` commands (every submit copies out of it before waiting). */
  private staged(n: number): Uint32Array {
    if (this.stage.length < 4 * n) this.stage = new Uint32Array(4 * n);
    return this.stage;
  }

  /**
   * arm_smmu_cmdq_issue_cmdlist(): write `n` encoded commands from `buf` (and a CMD_SYNC) into
   * the queue, publish them with one CMDQ_PROD write, and with `sync` wait for the CMD_SYNC.
   * When the queue has room (the common case) the commands go in now, synchronously; else
   * each waits for room, polling CMDQ_CONS.
   */
  private submit(buf: Uint32Array, n: number, sync: boolean): Promise<number> {
    const r = this.submitNow(buf, n, sync && !this.inject.skipCmdSync);
    return typeof r === 'number' ? RESOLVED_0 : r;
  }

  /** submit(), with a plain 0 when the commands went in at once and there is no sync to wait for. */
  private submitNow(buf: Uint32Array, n: number, sync: boolean): number | Promise<number> {
    const q = this.cmdq;
    const total = n + (sync ? 1 : 0);
    if (q.space(q.cons) <= total) return this.submitSlow(buf.slice(0, 4 * n), n, sync);
    for (let i = 0; i < n; i++) this.putCmd(buf, 4 * i);
    let syncSlot = -1;
    if (sync) {
      syncSlot = q.prod;
      this.putSync();
    }
    this.regs.writel(SMMU_REG.CMDQ_PROD, q.prod);
    return sync ? this.waitSync(syncSlot) : 0;
  }

  private async submitSlow(buf: Uint32Array, n: number, sync: boolean): Promise<number> {
    const q = this.cmdq;
    const total = n + (sync ? 1 : 0);
    let syncSlot = -1;
    for (let i = 0; i < total; i++) {
      if ((await this.waitForSpace()) !== 0) return ETIMEDOUT;
      if (i < n) this.putCmd(buf, 4 * i);
      else {
        syncSlot = q.prod;
        this.putSync();
      }
    }
    this.regs.writel(SMMU_REG.CMDQ_PROD, q.prod);
    if (!sync) return 0;
    return this.waitSync(syncSlot);
  }

  /** Write one encoded command (4 dwords of `buf` at `off`) at the shadow PROD. */
  private putCmd(buf: Uint32Array, off: number): void {
    const q = this.cmdq;
    const a = q.slotAddr(q.prod);
    this.m.mem.write64(a, buf[off]!, buf[off + 1]!);
    this.m.mem.write64(a + 8, buf[off + 2]!, buf[off + 3]!);
    q.prod = q.inc(q.prod);
    this.stats.commands++;
  }

  /**
   * A CMD_SYNC at the shadow PROD. With MSIs on a coherent SMMU it completes by an MSI write of 0
   * over its own first word (arm_smmu_cmdq_build_sync_cmd); else CS=SEV or none.
   */
  private putSync(): void {
    const q = this.cmdq;
    const a = q.slotAddr(q.prod);
    const t = this.syncTemplate;
    if (this.msiSync) {
      this.m.mem.write64(a, t[0]!, t[1]!);
      // MSIAddress[51:2] in place in word 1
      this.m.mem.write64(a + 8, (a & 0xfffffffc) >>> 0, Math.floor(a / 4294967296) & 0xfffff);
    } else {
      this.m.mem.write64(a, t[0]!, t[1]!);
      this.m.mem.write64(a + 8, t[2]!, t[3]!);
    }
    q.prod = q.inc(q.prod);
    this.stats.commands++;
    this.stats.syncs++;
  }

  /** CMD_SYNC completes by MSI to its own first word (MSI-capable, coherent SMMU). */
  private get msiSync(): boolean {
    return this.features.msi && this.features.coherent;
  }

  /** The CMD_SYNC this SMMU gets (MSIAddress patched per slot when it completes by MSI). */
  private get syncTemplate(): Uint32Array {
    if (this.syncDw === null) {
      this.syncDw = new Uint32Array(4);
      if (this.msiSync) encodeCommandInto(this.syncDw, 'SYNC', { CS: 1, MSH: 3, MSIAttr: 0xf, MSIData: 0 });
      else encodeCommandInto(this.syncDw, 'SYNC', { CS: this.features.sev ? 2 : 0 });
    }
    return this.syncDw;
  }

  private async waitForSpace(): Promise<number> {
    const q = this.cmdq;
    if (q.space(q.cons) > 1) return 0;
    const r = await pollTimeout(
      this.m.exec,
      () => this.regs.readl(SMMU_REG.CMDQ_CONS),
      (c) => q.space(c & ~Q_PTR.ERR_MASK & 0x7fffffff) > 1,
      POLL_TIMEOUT_NS,
      this.pollNs,
    );
    if (!r.ok) {
      this.err('CMDQ timeout');
      return ETIMEDOUT;
    }
    q.cons = r.value & ((1 << (q.shift + 1)) - 1);
    return 0;
  }

  /**
   * Wait for the CMD_SYNC at `slot`. By MSI (arm_smmu_cmdq_poll_until_msi): the CPU waits in
   * WFE on the sync's first word and the SMMU's MSI write of 0 there wakes it, no polling; then
   * everything up to the sync has been consumed. Otherwise poll CMDQ_CONS until it passes the
   * sync (arm_smmu_cmdq_poll_until_consumed).
   */
  private waitSync(slot: number): Promise<number> {
    if (!this.msiSync) return this.pollSync(slot);
    const q = this.cmdq;
    const addr = q.slotAddr(slot);
    const mem = this.m.mem;
    return waitForWrite(
      this.m.exec,
      mem,
      addr,
      4,
      () => mem.read32(addr) === 0,
      POLL_TIMEOUT_NS,
      (ok) => {
        if (!ok) return this.syncTimeout(slot, this.regs.readl(SMMU_REG.CMDQ_CONS));
        if (!q.consumed(slot, q.cons)) q.cons = q.inc(slot) & ((1 << (q.shift + 1)) - 1);
        return 0;
      },
    );
  }

  private async pollSync(slot: number): Promise<number> {
    const q = this.cmdq;
    const mask = (1 << (q.shift + 1)) - 1;
    const r = await pollTimeout(
      this.m.exec,
      () => this.regs.readl(SMMU_REG.CMDQ_CONS),
      (cons) => q.consumed(slot, cons & mask),
      POLL_TIMEOUT_NS,
      this.pollNs,
    );
    if (!r.ok) return this.syncTimeout(slot, r.value);
    q.cons = r.value & mask;
    return 0;
  }

  private syncTimeout(slot: number, hwcons: number): number {
    const q = this.cmdq;
    this.err(
      `CMD_SYNC timeout at 0x${slot.toString(16).padStart(8, '0')} [hwprod 0x${q.prod.toString(16).padStart(8, '0')}, hwcons 0x${hwcons.toString(16).padStart(8, '0')}]`,
    );
    return ETIMEDOUT;
  }

  // ------------------------------------------------------------------ stream table

  /** Address of the STE for `sid`, allocating its level-2 table if needed; negative errno on failure. */
  steAddr(sid: number): number {
    if (sid < 0 || sid >= 2 ** this.strtabLog2) return EINVAL;
    if (this.strtabFmt === STRTAB_FMT.LINEAR) return this.strtabBase + sid * 64;
    const l1 = Math.floor(sid / (1 << STRTAB_SPLIT));
    let l2 = this.l2Strtab[l1]!;
    if (l2 === 0) {
      const pa = this.m.pages.alloc(4, `${this.name} strtab-l2`); // 256 STEs = 16 KiB
      if (pa < 0) {
        this.err(`failed to allocate l2 stream table for SID ${sid}`);
        return ENOMEM;
      }
      this.initInitialStes(pa, 1 << STRTAB_SPLIT);
      // L1 descriptor: Span = SPLIT + 1, L2Ptr
      this.m.mem.write64(this.strtabBase + l1 * 8, (pa | (STRTAB_SPLIT + 1)) >>> 0, Math.floor(pa / 2 ** 32));
      this.l2Strtab[l1] = pa;
      l2 = pa;
    }
    return l2 + (sid & ((1 << STRTAB_SPLIT) - 1)) * 64;
  }

  /** Current contents of a STE. */
  readSte(sid: number): Entry {
    return this.readEntryWords(this.steAddr(sid));
  }

  /**
   * arm_smmu_write_ste(): update the live STE with the entry writer; each step is followed by
   * CFGI_STE + CMD_SYNC; then PREFETCH_CONFIG. Returns the path taken and the number of syncs.
   */
  async writeSte(sid: number, target: Entry): Promise<{ path: WritePath; syncs: number; ret: number }> {
    this.m.mem.sanitizer?.noteSte(sid, 'STE');
    const pa = this.steAddr(sid);
    if (pa < 0) return { path: 'none', syncs: 0, ret: pa };
    const plan = planWriteEntry(steOps, this.readEntryWords(pa), target);
    this.stats.steWrites++;
    let syncs = 0;
    for (const step of plan.steps) {
      for (const [i, v] of step.writes)
        this.m.mem.write64(pa + i * 8, Number(v & 0xffffffffn) | 0, Number(v >> 32n) | 0);
      const ret = this.inject.skipCfgi
        ? 0
        : await this.issue([['CFGI_STE', { StreamID: sid, Leaf: 1 }]], true);
      syncs++;
      if (ret !== 0) return { path: plan.path, syncs, ret };
    }
    await this.issue([['PREFETCH_CONFIG', { StreamID: sid }]], false);
    return { path: plan.path, syncs, ret: 0 };
  }

  // ------------------------------------------------------------------ CD tables

  /** arm_smmu_alloc_cd_tables(): linear when small or 2-level unsupported, else 2-level (64K leaves). */
  allocCdTable(ssidBits: number): CdTable | number {
    const max = 2 ** ssidBits;
    if (!this.features.twoLvlCdtab || max <= CTXDESC_L2_ENTRIES) {
      const order = Math.max(0, Math.ceil(Math.log2((max * 64) / 4096)));
      const pa = this.m.pages.alloc(order, `${this.name} cdtab`);
      if (pa < 0) return ENOMEM;
      return { base: pa, s1fmt: S1FMT.LINEAR, s1cdmax: ssidBits, l2: [], order };
    }
    const l1Ents = Math.ceil(max / CTXDESC_L2_ENTRIES);
    const order = Math.max(0, Math.ceil(Math.log2((l1Ents * 8) / 4096)));
    const pa = this.m.pages.alloc(order, `${this.name} cdtab-l1`);
    if (pa < 0) return ENOMEM;
    return { base: pa, s1fmt: S1FMT.L2_64K, s1cdmax: ssidBits, l2: new Array<number>(l1Ents).fill(0), order };
  }

  freeCdTable(t: CdTable): void {
    for (const l2 of t.l2) if (l2) this.m.pages.freePages(l2);
    this.m.pages.freePages(t.base);
  }

  /** Address of the CD for `ssid`, allocating the L2 table if asked; negative errno otherwise. */
  cdAddr(t: CdTable, ssid: number, alloc: boolean): number {
    if (ssid < 0 || ssid >= 2 ** t.s1cdmax) return EINVAL;
    if (t.s1fmt === S1FMT.LINEAR) return t.base + ssid * 64;
    const i = ssid >>> CTXDESC_SPLIT;
    if (!t.l2[i]) {
      if (!alloc) return ENODEV;
      const pa = this.m.pages.alloc(4, `${this.name} cdtab-l2`); // 1024 CDs = 64 KiB
      if (pa < 0) return ENOMEM;
      t.l2[i] = pa;
      // L1CD: V | L2Ptr (the L2 table is visible before the descriptor that points to it)
      this.m.mem.write64(t.base + i * 8, (pa | 1) >>> 0, Math.floor(pa / 2 ** 32));
    }
    return t.l2[i]! + (ssid & (CTXDESC_L2_ENTRIES - 1)) * 64;
  }

  readCd(t: CdTable, ssid: number): Entry {
    const pa = this.cdAddr(t, ssid, false);
    return pa < 0 ? new Array<bigint>(8).fill(0n) : this.readEntryWords(pa);
  }

  /** arm_smmu_write_cd_entry(): entry writer with CFGI_CD for every SID of the master, then one sync. */
  async writeCd(
    sids: readonly number[],
    t: CdTable,
    ssid: number,
    target: Entry,
  ): Promise<{ path: WritePath; syncs: number; ret: number }> {
    const pa = this.cdAddr(t, ssid, true);
    if (pa < 0) return { path: 'none', syncs: 0, ret: pa };
    const san = this.m.mem.sanitizer;
    if (san !== null) for (const sid of sids) san.noteSte(sid, `CD ${ssid}`);
    const plan = planWriteEntry(cdOps, this.readEntryWords(pa), target);
    this.stats.cdWrites++;
    let syncs = 0;
    for (const step of plan.steps) {
      for (const [i, v] of step.writes)
        this.m.mem.write64(pa + i * 8, Number(v & 0xffffffffn) | 0, Number(v >> 32n) | 0);
      const cmds = this.inject.skipCfgi
        ? []
        : sids.map((sid) => ['CFGI_CD', { StreamID: sid, SubstreamID: ssid, Leaf: 1 }] as const);
      const ret = await this.issue(cmds, !this.inject.skipCfgi);
      syncs++;
      if (ret !== 0) return { path: plan.path, syncs, ret };
    }
    return { path: plan.path, syncs, ret: 0 };
  }

  // ------------------------------------------------------------------ invalidation

  /** TLBI by ASID (stage 1) + sync. */
  tlbiAsid(asid: number, vmid = 0): Promise<number> {
    if (this.inject.skipTlbi) return RESOLVED_0;
    // the hottest invalidation: encoded field by field (TLBI_EL2_ASID has no VMID)
    const buf = this.stage;
    const el2 = this.features.e2h;
    buf[0] = el2 ? CMD_OP.TLBI_EL2_ASID : CMD_OP.TLBI_NH_ASID;
    buf[1] = buf[2] = buf[3] = 0;
    putCommandField(buf, el2 ? F_EL2_ASID : F_NH_ASID, asid);
    if (!el2) putCommandField(buf, F_NH_VMID, vmid);
    const name = el2 ? 'TLBI_EL2_ASID' : 'TLBI_NH_ASID';
    this.stats.byOpcode[name] = (this.stats.byOpcode[name] ?? 0) + 1;
    return this.submit(buf, 1, true);
  }

  /** TLBI all of a VMID (stage 2 and stage 1 under it) + sync. */
  tlbiVmid(vmid: number): Promise<number> {
    if (this.inject.skipTlbi) return RESOLVED_0;
    return this.issue1('TLBI_S12_VMALL', { VMID: vmid }, true);
  }

  /**
   * Range invalidation, as arm_smmu_tlb_inv_range_cmd(): with RIL, each command covers the
   * next 5 significant bits of the remaining page count (NUM/SCALE, TG = the domain's page
   * size, TTL from the leaf granule); without RIL, one command per `granule`.
   */
  buildTlbiRange(
    op: 'TLBI_NH_VA' | 'TLBI_EL2_VA' | 'TLBI_S2_IPA',
    ids: { asid?: number; vmid?: number },
    iova: number,
    size: number,
    granule: number,
    leaf: boolean,
    pageShift = 12,
  ): Array<[CommandName, Record<string, number>]> {
    const cmds: Array<[CommandName, Record<string, number>]> = [];
    // every record has one shape; a field left undefined is not encoded (encodeCommandInto)
    const Leaf = leaf ? 1 : 0;
    const ASID = op !== 'TLBI_S2_IPA' ? ids.asid : undefined;
    const VMID = op !== 'TLBI_EL2_VA' ? ids.vmid : undefined;
    const end = iova + size;
    if (!this.features.ril) {
      for (let a = iova; a < end; a += granule) {
        cmds.push([
          op,
          tlbiRec({
            Leaf,
            ASID,
            VMID,
            TG: undefined,
            TTL: undefined,
            SCALE: undefined,
            NUM: undefined,
            Address: a,
          }),
        ]);
      }
      return cmds;
    }
    let numPages = Math.floor(size / 2 ** pageShift);
    const TG = (pageShift - 10) / 2;
    let TTL: number | undefined;
    if (leaf) TTL = 4 - Math.floor((Math.log2(granule) - 3) / (pageShift - 3));
    else if ((numPages & 31) === 1) numPages++; // avoid SCALE = NUM = 0 for non-leaf
    let a = iova;
    while (a < end && numPages > 0) {
      const scale = ctz(numPages);
      const num = Math.floor(numPages / 2 ** scale) % 32;
      cmds.push([op, tlbiRec({ Leaf, ASID, VMID, TG, TTL, SCALE: scale, NUM: num - 1, Address: a })]);
      a += num * 2 ** (scale + pageShift);
      numPages -= num * 2 ** scale;
    }
    return cmds;
  }

  tlbiRange(
    stage: 1 | 2,
    ids: { asid?: number; vmid?: number },
    iova: number,
    size: number,
    granule: number,
    leaf: boolean,
  ): Promise<number> {
    if (this.inject.skipTlbi) return RESOLVED_0;
    const op = stage === 2 ? 'TLBI_S2_IPA' : this.features.e2h ? 'TLBI_EL2_VA' : 'TLBI_NH_VA';
    const cmds = this.buildTlbiRange(op, ids, iova, size, granule, leaf);
    if (stage === 2) cmds.push(['TLBI_S12_VMALL', { VMID: ids.vmid ?? 0 }]); // S1 under S2 may cache combined entries
    return this.issue(cmds, true);
  }

  /** ATC invalidation of [iova, iova+size) for a PCIe master's StreamIDs (+ sync). size 0 = everything. */
  atcInv(sids: readonly number[], ssid: number | null, iova: number, size: number): Promise<number> {
    if (this.inject.skipAtcInv || atcInvSkipped(this.inject, ssid)) return RESOLVED_0;
    return this.issue(this.atcInvCmds(sids, ssid, iova, size), true);
  }

  /** The ATC_INV commands of atcInv (arm_smmu_atc_inv_to_cmd), one per StreamID. */
  atcInvCmds(
    sids: readonly number[],
    ssid: number | null,
    iova: number,
    size: number,
  ): Array<[CommandName, Record<string, number>]> {
    let log2 = 52;
    let addr = 0;
    if (size !== 0) {
      // smallest naturally aligned power-of-two span of 4K pages covering the range
      const first = Math.floor(iova / 4096);
      const last = Math.floor((iova + size - 1) / 4096);
      log2 = 0;
      while (Math.floor(first / 2 ** log2) !== Math.floor(last / 2 ** log2)) log2++;
      addr = Math.floor(first / 2 ** log2) * 2 ** log2 * 4096;
    }
    return sids.map((sid) => [
      'ATC_INV',
      {
        StreamID: sid,
        SSV: ssid === null ? 0 : 1,
        SubstreamID: ssid ?? 0,
        Global: 0,
        Size: log2,
        Address: addr,
      },
    ]);
  }

  /**
   * CMD_RESUME for a stalled transaction (no sync, as Linux): 0 once it is in the queue (at
   * once when there is room), a promise of that when it had to wait for room.
   */
  resume(sid: number, stag: number, retry: boolean): number | Promise<number> {
    return this.issueNow('RESUME', { StreamID: sid, STAG: stag, Ac: retry ? 1 : 0, Ab: retry ? 0 : 1 });
  }

  /** CMD_PRI_RESP (no sync), like resume(). */
  priResp(sid: number, ssid: number | null, grpid: number, resp: number): number | Promise<number> {
    return this.issueNow('PRI_RESP', {
      StreamID: sid,
      SSV: ssid === null ? 0 : 1,
      SubstreamID: ssid ?? 0,
      PRIGroupID: grpid,
      Resp: resp,
    });
  }

  /** One command without a sync: 0 once queued (a plain value when there was room). */
  private issueNow(name: CommandName, vals: Readonly<Record<string, number>>): number | Promise<number> {
    const buf = this.stage;
    encodeCommandInto(buf, name, vals);
    this.stats.byOpcode[name] = (this.stats.byOpcode[name] ?? 0) + 1;
    return this.submitNow(buf, 1, false);
  }

  /** Release the SMMU: disable, free IRQs and tables. */
  async remove(): Promise<void> {
    await this.disable();
    this.freeIrqs();
  }
}

/** Read `n` dwords at `pa` into `out` (64-bit loads, low half first). */
function readDwords(mem: Machine['mem'], pa: number, out: Uint32Array, n: number): void {
  for (let i = 0; i < n; i += 2) {
    mem.read64(pa + i * 4);
    out[i] = mem.r64[0]!;
    out[i + 1] = mem.r64[1]!;
  }
}

/** The first `words` 64-bit words of `dw` as BigInts (for the log and the decoders). */
function dwordsToBigWords(dw: Uint32Array, words: number): bigint[] {
  const out: bigint[] = [];
  for (let i = 0; i < words; i++) out.push((BigInt(dw[2 * i + 1]! >>> 0) << 32n) | BigInt(dw[2 * i]! >>> 0));
  return out;
}

/** A TLBI command's fields, one object shape for all (undefined fields are not encoded). */
function tlbiRec(f: Record<string, number | undefined>): Record<string, number> {
  return f as Record<string, number>;
}

function ctz(x: number): number {
  if (x > 0 && x < 2 ** 31) return 31 - Math.clz32(x & -x);
  let n = 0;
  while (x > 0 && x % 2 === 0) {
    x /= 2;
    n++;
  }
  return n;
}
