// A tiny SMMUv3 "driver" for the device tests: it reaches the SMMU only the way software can —
// MMIO register accesses on the bus, structures written as bytes into simulated memory,
// commands placed in the Command queue followed by a CMDQ_PROD write — and lets virtual time
// run for the hardware to react.

import { dwordsToWords } from '../../../src/arch/smmuv3/bits.ts';
import { CD_DWORDS, type CdDwordValues, encodeCdInto } from '../../../src/arch/smmuv3/cd.ts';
import { type CommandName, encodeCommandInto } from '../../../src/arch/smmuv3/cmd.ts';
import { type DecodedEvent, decodeEvent, EVT_DWORDS } from '../../../src/arch/smmuv3/event.ts';
import {
  CR0,
  GBPA,
  IRQ_CTRL,
  Q_PTR,
  SMMU_REG,
  STRTAB_BASE_CFG,
  STRTAB_FMT,
} from '../../../src/arch/smmuv3/regs.ts';
import { encodeSteInto, STE_DWORDS, type SteDwordValues } from '../../../src/arch/smmuv3/ste.ts';
import { SmmuV3, type SmmuV3Config } from '../../../src/hw/smmuv3/smmu.ts';
import { Machine } from '../../../src/platform/machine.ts';

export const SMMU_BASE = 0x0900_0000;

export interface DriverInit {
  /** Stream table format. Default linear. */
  strtab?: 'linear' | '2lvl';
  /** STRTAB_BASE_CFG.LOG2SIZE. Default 8 (256 streams). */
  strtabLog2?: number;
  /** 2-level SPLIT. Default 6. */
  split?: number;
  cmdqLog2?: number;
  evtqLog2?: number;
  /** Program MSIs for GERROR and EVTQ (doorbell = GIC ITS). Default false (wired/none). */
  msi?: boolean;
  /** Enable EVTQ and the SMMU. Default true. */
  enable?: boolean;
}

export class SmmuDriver {
  readonly m: Machine;
  readonly smmu: SmmuV3;
  strtab = 0;
  strtabLog2 = 8;
  split = 6;
  twoLevel = false;
  cmdq = 0;
  cmdqLog2 = 6;
  evtq = 0;
  evtqLog2 = 6;
  /** Software copy of CMDQ_PROD. */
  prod = 0;
  /** L2 stream tables allocated per L1 index. */
  private l2 = new Map<number, number>();
  evtqIrq = -1;
  gerrorIrq = -1;
  evtqIrqs = 0;
  gerrorIrqs = 0;

  constructor(opts: SmmuV3Config = {}, m = new Machine()) {
    this.m = m;
    this.smmu = new SmmuV3(m, { base: SMMU_BASE, ...opts });
  }

  // ------------------------------------------------------------------ MMIO

  r32(off: number): number {
    return this.m.mem.read32(SMMU_BASE + off) >>> 0;
  }

  w32(off: number, v: number): void {
    this.m.mem.write32(SMMU_BASE + off, v >>> 0);
  }

  w64(off: number, v: number): void {
    this.m.mem.write64n(SMMU_BASE + off, v);
  }

  run(): void {
    this.m.sched.runUntilIdleSync(1_000_000);
  }

  /** Write a register and poll its ACK register (in virtual time) like arm_smmu_write_reg_sync. */
  writeSync(off: number, ackOff: number, v: number): boolean {
    this.w32(off, v);
    for (let i = 0; i < 100; i++) {
      if (this.r32(ackOff) === v) return true;
      this.m.sched.runForSync(100);
    }
    return false;
  }

  // ------------------------------------------------------------------ init

  alloc(bytes: number, owner = 'smmu-test'): number {
    let order = 0;
    while (4096 * 2 ** order < bytes) order++;
    const pa = this.m.pages.alloc(order, owner);
    if (pa < 0) throw new Error('out of memory');
    return pa;
  }

  init(o: DriverInit = {}): this {
    this.twoLevel = o.strtab === '2lvl';
    this.strtabLog2 = o.strtabLog2 ?? 8;
    this.split = o.split ?? 6;
    this.cmdqLog2 = o.cmdqLog2 ?? 6;
    this.evtqLog2 = o.evtqLog2 ?? 6;
    // reset-ish state: everything off
    this.writeSync(SMMU_REG.CR0, SMMU_REG.CR0ACK, 0);
    this.cmdq = this.alloc(16 << this.cmdqLog2);
    this.evtq = this.alloc(32 << this.evtqLog2);
    const l1Entries = this.twoLevel ? 2 ** Math.max(0, this.strtabLog2 - this.split) : 0;
    this.strtab = this.alloc(this.twoLevel ? Math.max(64, l1Entries * 8) : 64 << this.strtabLog2);
    this.w64(SMMU_REG.CMDQ_BASE, this.cmdq | this.cmdqLog2);
    this.w32(SMMU_REG.CMDQ_PROD, 0);
    this.w32(SMMU_REG.CMDQ_CONS, 0);
    this.prod = 0;
    this.w64(SMMU_REG.EVTQ_BASE, this.evtq | this.evtqLog2);
    this.w32(SMMU_REG.EVTQ_PROD_P1, 0);
    this.w32(SMMU_REG.EVTQ_CONS_P1, 0);
    this.w64(SMMU_REG.STRTAB_BASE, this.strtab);
    this.w32(
      SMMU_REG.STRTAB_BASE_CFG,
      ((this.twoLevel ? STRTAB_FMT.TWO_LEVEL : STRTAB_FMT.LINEAR) << STRTAB_BASE_CFG.FMT_SHIFT) |
        (this.split << STRTAB_BASE_CFG.SPLIT_SHIFT) |
        this.strtabLog2,
    );
    if (o.msi) {
      const [ev, ge] = this.m.irq.allocMsi(2);
      this.evtqIrq = ev!.irq;
      this.gerrorIrq = ge!.irq;
      this.m.irq.requestIrq(ev!.irq, 'smmu-evtq', () => {
        this.evtqIrqs++;
        return 1;
      });
      this.m.irq.requestIrq(ge!.irq, 'smmu-gerror', () => {
        this.gerrorIrqs++;
        return 1;
      });
      this.w64(SMMU_REG.EVTQ_IRQ_CFG0, ev!.address);
      this.w32(SMMU_REG.EVTQ_IRQ_CFG1, ev!.data);
      this.w64(SMMU_REG.GERROR_IRQ_CFG0, ge!.address);
      this.w32(SMMU_REG.GERROR_IRQ_CFG1, ge!.data);
      this.writeSync(SMMU_REG.IRQ_CTRL, SMMU_REG.IRQ_CTRLACK, IRQ_CTRL.EVTQ_IRQEN | IRQ_CTRL.GERROR_IRQEN);
    }
    // command queue first, then invalidate everything, as Linux's arm_smmu_device_reset does
    this.writeSync(SMMU_REG.CR0, SMMU_REG.CR0ACK, CR0.CMDQEN);
    this.cmd('CFGI_ALL');
    this.cmd('TLBI_NSNH_ALL');
    this.sync();
    if (o.enable ?? true) {
      this.writeSync(SMMU_REG.CR0, SMMU_REG.CR0ACK, CR0.CMDQEN | CR0.EVTQEN);
      this.writeSync(SMMU_REG.CR0, SMMU_REG.CR0ACK, CR0.CMDQEN | CR0.EVTQEN | CR0.SMMUEN);
    }
    return this;
  }

  /** GBPA update with the UPDATE handshake. */
  setGbpa(abort: boolean): boolean {
    const v = (this.r32(SMMU_REG.GBPA) & ~(GBPA.ABORT | GBPA.UPDATE)) | (abort ? GBPA.ABORT : 0);
    this.w32(SMMU_REG.GBPA, (v | GBPA.UPDATE) >>> 0);
    for (let i = 0; i < 100; i++) {
      if ((this.r32(SMMU_REG.GBPA) & GBPA.UPDATE) === 0) return true;
      this.m.sched.runForSync(100);
    }
    return false;
  }

  // ------------------------------------------------------------------ structures

  /** Address of the STE for `sid` (allocating the 2-level L2 table, Span = SPLIT + 1, if needed). */
  steAddr(sid: number): number {
    if (!this.twoLevel) return this.strtab + sid * 64;
    const l1 = Math.floor(sid / 2 ** this.split);
    let l2 = this.l2.get(l1);
    if (l2 === undefined) {
      l2 = this.alloc(64 << this.split);
      this.l2.set(l1, l2);
      this.m.mem.write64n(this.strtab + l1 * 8, l2 | (this.split + 1));
    }
    return l2 + (sid % 2 ** this.split) * 64;
  }

  writeWords(addr: number, dw: Uint32Array): void {
    for (let i = 0; i < dw.length / 2; i++) this.m.mem.write64(addr + 8 * i, dw[2 * i]!, dw[2 * i + 1]!);
  }

  writeSte(sid: number, v: SteDwordValues): number {
    const dw = new Uint32Array(STE_DWORDS);
    encodeSteInto(dw, v);
    const a = this.steAddr(sid);
    this.writeWords(a, dw);
    return a;
  }

  writeCd(addr: number, v: CdDwordValues): void {
    const dw = new Uint32Array(CD_DWORDS);
    encodeCdInto(dw, v);
    this.writeWords(addr, dw);
  }

  /** A valid stage-1 CD for a 48-bit, 4K-granule table at ttb0 (EPD1, R, A, AA64). */
  s1Cd(ttb0: number, asid: number, extra: CdDwordValues = {}): CdDwordValues {
    return {
      V: 1,
      T0SZ: 16,
      TG0: 0,
      IR0: 1,
      OR0: 1,
      SH0: 3,
      EPD1: 1,
      IPS: 5,
      AA64: 1,
      R: 1,
      A: 1,
      ASET: 0,
      ASID: asid,
      TTB0: ttb0,
      MAIR0: 0x0004ff44,
      ...extra,
    };
  }

  // ------------------------------------------------------------------ commands

  /** Place one command at PROD and publish it. */
  cmd(name: CommandName, v: Partial<Record<string, number | boolean>> = {}, publish = true): number {
    const dw = new Uint32Array(4);
    encodeCommandInto(dw, name, v);
    return this.rawCmd(dw, publish);
  }

  rawCmd(dw: Uint32Array, publish = true): number {
    const mask = (1 << this.cmdqLog2) - 1;
    const idx = this.prod & mask;
    const a = this.cmdq + idx * 16;
    this.writeWords(a, dw);
    this.prod = (this.prod + 1) & ((2 << this.cmdqLog2) - 1);
    if (publish) this.w32(SMMU_REG.CMDQ_PROD, this.prod);
    return a;
  }

  /** CMD_SYNC (CS = none) and run until the hardware has consumed everything. */
  sync(): void {
    this.cmd('SYNC', { CS: 0 });
    this.run();
  }

  get cons(): number {
    return this.r32(SMMU_REG.CMDQ_CONS);
  }

  // ------------------------------------------------------------------ events

  /** Decoded records between EVTQ_CONS and EVTQ_PROD; consumes them (acknowledging overflow). */
  events(): DecodedEvent[] {
    const out: DecodedEvent[] = [];
    const mask = (2 << this.evtqLog2) - 1;
    const prod = this.r32(SMMU_REG.EVTQ_PROD_P1);
    let cons = this.r32(SMMU_REG.EVTQ_CONS_P1);
    const dw = new Uint32Array(EVT_DWORDS);
    while ((prod & mask) !== (cons & mask)) {
      const idx = cons & ((1 << this.evtqLog2) - 1);
      for (let i = 0; i < 4; i++) {
        this.m.mem.read64(this.evtq + idx * 32 + 8 * i);
        dw[2 * i] = this.m.mem.r64[0]!;
        dw[2 * i + 1] = this.m.mem.r64[1]!;
      }
      out.push(decodeEvent(dwordsToWords(dw, 4)));
      cons = (cons & Q_PTR.OVFLG) | (((cons & mask) + 1) & mask);
    }
    // acknowledge overflow as Linux does: copy OVFLG into OVACKFLG
    cons = ((prod & Q_PTR.OVFLG) | (cons & mask)) >>> 0;
    this.w32(SMMU_REG.EVTQ_CONS_P1, cons);
    return out;
  }

  /** Raw 4 words of the next record (without consuming), as bigint. */
  peekEventWords(index: number): bigint[] {
    const dw = new Uint32Array(EVT_DWORDS);
    for (let i = 0; i < 4; i++) {
      this.m.mem.read64(this.evtq + index * 32 + 8 * i);
      dw[2 * i] = this.m.mem.r64[0]!;
      dw[2 * i + 1] = this.m.mem.r64[1]!;
    }
    return dwordsToWords(dw, 4);
  }
}

// ------------------------------------------------------------------ page tables (VMSAv8-64, 4K granule)

export const PTE_VALID = 1n;
export const PTE_TABLE = 2n;
export const PTE_AF = 1n << 10n;
export const PTE_NG = 1n << 11n;

/** Stage-1 leaf attributes: AttrIndx 0, inner shareable, AF, AP as given. */
export function s1Leaf(
  pa: number,
  opts: { ro?: boolean; user?: boolean; af?: boolean; xn?: boolean; ng?: boolean } = {},
): bigint {
  let d = BigInt(pa) | 3n | (3n << 8n);
  if (opts.af ?? true) d |= PTE_AF;
  if (opts.user ?? true) d |= 1n << 6n; // AP[1]: EL0 (unprivileged device) access, as Linux maps
  if (opts.ro) d |= 1n << 7n;
  if (opts.xn) d |= (1n << 54n) | (1n << 53n);
  if (opts.ng ?? true) d |= PTE_NG;
  return d;
}

/** Stage-2 leaf: MemAttr normal WB, S2AP as given (default RW), AF. */
export function s2Leaf(pa: number, opts: { r?: boolean; w?: boolean; af?: boolean } = {}): bigint {
  let d = BigInt(pa) | 3n | (0xfn << 2n) | (3n << 8n);
  if (opts.af ?? true) d |= PTE_AF;
  if (opts.r ?? true) d |= 1n << 6n;
  if (opts.w ?? true) d |= 1n << 7n;
  return d;
}

/** Builds 4K-granule tables in simulated memory, allocating tables from the page allocator. */
export class PageTable {
  readonly root: number;
  constructor(
    private readonly d: SmmuDriver,
    /** Input address bits (64 - TxSZ). */
    readonly ia = 48,
    /** Start level (for stage 2 with concatenation pass it explicitly). */
    readonly startLevel = 4 - Math.ceil((ia - 12) / 9),
    rootPages = 1,
  ) {
    this.root = d.alloc(4096 * rootPages);
  }

  private read(pa: number): bigint {
    this.d.m.mem.read64(pa);
    return (BigInt(this.d.m.mem.r64[1]! >>> 0) << 32n) | BigInt(this.d.m.mem.r64[0]! >>> 0);
  }

  private write(pa: number, v: bigint): void {
    this.d.m.mem.write64(pa, Number(v & 0xffffffffn) | 0, Number(v >> 32n) | 0);
  }

  /** Index of `va` at `level` (the start level may be concatenated: wider index). */
  private idx(va: number, level: number): number {
    const shift = 12 + (3 - level) * 9;
    const bits = level === this.startLevel ? this.ia - shift : 9;
    return Math.floor(va / 2 ** shift) % 2 ** bits;
  }

  /** Address of the level-`level` descriptor for va, creating tables down to it. */
  slot(va: number, level = 3): number {
    let table = this.root;
    for (let l = this.startLevel; l < level; l++) {
      const a = table + this.idx(va, l) * 8;
      const d = this.read(a);
      if ((d & 3n) !== 3n) {
        const t = this.d.alloc(4096);
        this.write(a, BigInt(t) | 3n);
        table = t;
      } else table = Number(d & 0x0000fffffffff000n);
    }
    return table + this.idx(va, level) * 8;
  }

  map(va: number, desc: bigint, level = 3): number {
    const a = this.slot(va, level);
    this.write(a, level === 3 ? desc : desc & ~2n);
    return a;
  }

  /** Raw descriptor write at the slot for va. */
  set(va: number, desc: bigint, level = 3): void {
    this.write(this.slot(va, level), desc);
  }
}
