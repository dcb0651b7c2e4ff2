/**
 * The iommu-lab GPU (`iommu-lab,gpu`): a command processor that fetches 32-byte commands from
 * a ring in memory, and `warps` execution units that run them in parallel, page by page, all
 * as DMA through one StreamID behind an SMMU, v3 or v2 (the ring fetches too).
 *
 * The driver writes commands into the ring and publishes them by writing RING_TAIL; the GPU
 * fetches the slot at RING_HEAD, executes it, advances RING_HEAD and goes on while
 * HEAD != TAIL. Commands with the IRQ flag raise INT_DONE when they complete.
 *
 * Faults. Every faulting transaction (terminated or stalled) counts in FAULT_COUNT; the first
 * one since software cleared FAULT_STATUS is described by FAULT_STATUS / FAULT_ADDR, and
 * raises INT_FAULT. A stalled transaction makes its warp (or the fetcher) wait; while any is
 * held STATUS.STALLED is set and STALL_COUNT says how many — what a GPU driver's fault
 * handler checks before it snapshots the GPU and decides to retry or abort. A fault on a
 * ring fetch halts the command processor (STATUS.HALTED, INT_HALT); with CTRL.HALT_ON_FAULT
 * a fault in a command kills the job and halts after it.
 *
 * Interrupts are signalled by a DMA write of MSI_DATA to MSI_ADDR (through the SMMU, as any
 * device MSI) when an INT_STATUS bit enabled in INT_MASK goes from 0 to 1 and CTRL.IRQ_EN.
 */

import {
  GPU_CMD_BYTES,
  GPU_CMD_FLAG_IRQ,
  GPU_CTRL_ENABLE,
  GPU_CTRL_HALT_ON_FAULT,
  GPU_CTRL_IRQ_EN,
  GPU_CTRL_RESET,
  GPU_FAULT_MULTI,
  GPU_FAULT_OPCODE_SHIFT,
  GPU_FAULT_PORT_SHIFT,
  GPU_FAULT_STALL,
  GPU_FAULT_UNIT_FETCH,
  GPU_FAULT_UNIT_MSI,
  GPU_FAULT_UNIT_SHIFT,
  GPU_FAULT_VALID,
  GPU_FAULT_WRITE,
  GPU_ID_VALUE,
  GPU_INT_DONE,
  GPU_INT_FAULT,
  GPU_INT_HALT,
  GPU_INT_STALL,
  GPU_OP_NAMES,
  GPU_STATUS_BUSY,
  GPU_STATUS_FAULTED,
  GPU_STATUS_HALTED,
  GPU_STATUS_STALLED,
  GPU_WINDOW,
  GpuOp,
  GpuReg as R,
} from '../../arch/devices/gpu.ts';
import type { Machine } from '../../platform/machine.ts';
import type { MmioDevice } from '../../platform/mmio.ts';
import { hi32, join64, lo32 } from '../../platform/u64.ts';
import {
  ACCESS_PRIV,
  ACCESS_WRITE,
  type DmaIommu,
  PORT_ABORT,
  PORT_FAULT,
  PORT_STALLED,
} from '../smmu-common/port.ts';
import { Warp, type WarpHost, type WarpJob } from './gpu-warp.ts';
import { type StallWaiter, StreamMaster } from './platform-master.ts';

export interface GpuOptions {
  name?: string;
  /** SubstreamID (PASID) of every transaction, or -1 (default). */
  ssid?: number;
  /** Parallel execution units, 1..64. Default 8. */
  warps?: number;
  /** The GPU waits on stalled transactions (`dma-can-stall`). Default true. */
  canStall?: boolean;
  /** Without canStall: completion timeout of a stalled transaction. Default 100 µs. */
  completionTimeoutNs?: number;
  /** Bytes per warp transaction (power of two, 64..4096). Default 4096. */
  txBytes?: number;
  /** Virtual ns per warp transaction. Default 200. */
  txNs?: number;
  /** Virtual ns from doorbell / previous command to a ring fetch. Default 100. */
  fetchNs?: number;
  /** Transactions are privileged. Default false (user-mode GPU contexts). */
  privileged?: boolean;
}

const PHASE_IDLE = 0;
const PHASE_FETCH = 1;
const PHASE_EXEC = 2;

const PAGE = 4096;
const U32_MAX = 0xffffffff;

export interface GpuStats {
  commands: number;
  msis: number;
  fetches: number;
}

export class Gpu implements MmioDevice, WarpHost {
  readonly name: string;
  readonly sm: StreamMaster;
  readonly txBytes: number;
  readonly txNs: number;
  readonly fetchNs: number;
  readonly accessBase: number;
  readonly warps: Warp[] = [];
  readonly stats: GpuStats = { commands: 0, msis: 0, fetches: 0 };
  epoch = 0;
  killed = false;

  // ---- registers
  private ringBase = 0;
  private ringLog2 = 4;
  private head = 0;
  private tail = 0;
  private ctrl = 0;
  private halted = false;
  private intStatus = 0;
  private intMask = 0;
  private msiAddr = 0;
  private msiData = 0;
  private faultStatus = 0;
  private faultAddr = 0;
  private faultCount = 0;
  private fence = 0;
  private cmdDone = 0;
  private cmdSlot = 0;

  // ---- command processor
  private phase = PHASE_IDLE;
  private fetchTimer = 0;
  private readonly fetchBuf = new Uint8Array(GPU_CMD_BYTES);
  private readonly fetchDv = new DataView(this.fetchBuf.buffer);
  private readonly job: WarpJob = { op: 0, a: 0, b: 0, value: 0, k: 0, len: 0, items: 0, warps: 0 };
  private jobFlags = 0;
  private activeWarps = 0;
  private jobFaulted = false;
  private readonly fetcher: StallWaiter;
  private readonly msiWriter: StallWaiter;
  private readonly msiBuf = new Uint8Array(4);
  private readonly fetchFn = () => this.fetch();

  constructor(
    private readonly smmu: DmaIommu,
    sid: number,
    opts: GpuOptions = {},
  ) {
    this.name = opts.name ?? 'gpu';
    const nw = opts.warps ?? 8;
    if (!(Number.isInteger(nw) && nw >= 1 && nw <= 64))
      throw new RangeError(`${this.name}: warps must be 1..64`);
    const tx = opts.txBytes ?? PAGE;
    if (!(tx >= 64 && tx <= PAGE && (tx & (tx - 1)) === 0)) {
      throw new RangeError(`${this.name}: txBytes ${tx} must be a power of two in 64..4096`);
    }
    this.txBytes = tx;
    this.txNs = opts.txNs ?? 200;
    this.fetchNs = opts.fetchNs ?? 100;
    this.accessBase = opts.privileged ? ACCESS_PRIV : 0;
    this.sm = new StreamMaster(smmu, sid, {
      name: this.name,
      ssid: opts.ssid ?? -1,
      canStall: opts.canStall ?? true,
      completionTimeoutNs: opts.completionTimeoutNs,
    });
    this.sm.onStallCountChange = (n) => {
      if (n > 0) this.raise(GPU_INT_STALL);
    };
    for (let i = 0; i < nw; i++) this.warps.push(new Warp(this, i));
    this.fetcher = { stallDone: (st, token) => this.fetchDone(st, token) };
    this.msiWriter = { stallDone: (st, token) => this.msiDone(st, token) };
  }

  get machine(): Machine {
    return this.smmu.machine;
  }

  get sid(): number {
    return this.sm.sid;
  }

  /** STATUS.STALLED: a transaction of this GPU is held in the IOMMU. */
  get isStalled(): boolean {
    return this.sm.stalledCount > 0;
  }

  /** Map the register window at `base`. */
  map(base: number): this {
    this.machine.mmio.map(base, GPU_WINDOW, this);
    return this;
  }

  // ------------------------------------------------------------------------------ MMIO

  read32(off: number): number {
    switch (off) {
      case R.ID:
        return GPU_ID_VALUE;
      case R.FEATURES:
        return (this.warps.length | (this.sm.canStall ? 1 << 8 : 0)) >>> 0;
      case R.RING_BASE:
        return lo32(this.ringBase);
      case R.RING_BASE + 4:
        return hi32(this.ringBase);
      case R.RING_LOG2:
        return this.ringLog2;
      case R.RING_HEAD:
        return this.head;
      case R.RING_TAIL:
        return this.tail;
      case R.CTRL:
        return this.ctrl;
      case R.STATUS:
        return this.status();
      case R.INT_STATUS:
        return this.intStatus;
      case R.INT_MASK:
        return this.intMask;
      case R.MSI_ADDR:
        return lo32(this.msiAddr);
      case R.MSI_ADDR + 4:
        return hi32(this.msiAddr);
      case R.MSI_DATA:
        return this.msiData;
      case R.FAULT_STATUS:
        return this.faultStatus >>> 0;
      case R.FAULT_ADDR:
        return lo32(this.faultAddr);
      case R.FAULT_ADDR + 4:
        return hi32(this.faultAddr);
      case R.FAULT_COUNT:
        return this.faultCount >>> 0;
      case R.STALL_COUNT:
        return this.sm.stalledCount;
      case R.FENCE:
        return this.fence >>> 0;
      case R.CMD_DONE:
        return this.cmdDone >>> 0;
      case R.CMD_SLOT:
        return this.cmdSlot;
      default:
        return 0; // RAZ/WI
    }
  }

  write32(off: number, v: number): void {
    const enabled = (this.ctrl & GPU_CTRL_ENABLE) !== 0;
    switch (off) {
      case R.RING_BASE:
        if (!enabled) this.ringBase = join64(v & ~(GPU_CMD_BYTES - 1), hi32(this.ringBase));
        break;
      case R.RING_BASE + 4:
        if (!enabled) this.ringBase = join64(lo32(this.ringBase), v & 0xfffff);
        break;
      case R.RING_LOG2:
        if (!enabled) this.ringLog2 = Math.min(16, Math.max(1, v & 0x1f));
        break;
      case R.RING_TAIL:
        this.tail = v & ((1 << this.ringLog2) - 1);
        this.kick();
        break;
      case R.CTRL:
        if (v & GPU_CTRL_RESET) this.reset();
        this.ctrl = v & (GPU_CTRL_ENABLE | GPU_CTRL_IRQ_EN | GPU_CTRL_HALT_ON_FAULT);
        this.kick();
        break;
      case R.INT_STATUS:
        this.intStatus &= ~v;
        break;
      case R.INT_MASK:
        this.intMask = v & (GPU_INT_DONE | GPU_INT_FAULT | GPU_INT_STALL | GPU_INT_HALT);
        break;
      case R.MSI_ADDR:
        this.msiAddr = join64(v & ~3, hi32(this.msiAddr));
        break;
      case R.MSI_ADDR + 4:
        this.msiAddr = join64(lo32(this.msiAddr), v & 0xfffff);
        break;
      case R.MSI_DATA:
        this.msiData = v >>> 0;
        break;
      case R.FAULT_STATUS:
        if (v & GPU_FAULT_VALID) {
          this.faultStatus = 0;
          this.faultAddr = 0;
        }
        break;
      case R.FAULT_COUNT:
        if (v === 0) this.faultCount = 0;
        break;
    }
  }

  private status(): number {
    let s = 0;
    if (this.phase !== PHASE_IDLE) s |= GPU_STATUS_BUSY;
    if (this.sm.stalledCount > 0) s |= GPU_STATUS_STALLED;
    if (this.halted) s |= GPU_STATUS_HALTED;
    if (this.faultStatus & GPU_FAULT_VALID) s |= GPU_STATUS_FAULTED;
    return s;
  }

  // ------------------------------------------------------------------------------ WarpHost

  schedule(delayNs: number, fn: () => void, label: string): number {
    return this.machine.sched.schedule(delayNs, fn, label);
  }

  noteFault(unit: number, iova: number, write: boolean, portStatus: number): void {
    if (this.faultCount < U32_MAX) this.faultCount++;
    if (unit < this.warps.length) {
      this.jobFaulted = true;
      if (this.ctrl & GPU_CTRL_HALT_ON_FAULT) this.killed = true;
    }
    if (this.faultStatus & GPU_FAULT_VALID) {
      this.faultStatus |= GPU_FAULT_MULTI;
      return;
    }
    this.faultStatus =
      (GPU_FAULT_VALID |
        (write ? GPU_FAULT_WRITE : 0) |
        (portStatus === PORT_STALLED ? GPU_FAULT_STALL : 0) |
        ((unit & 0xff) << GPU_FAULT_UNIT_SHIFT) |
        ((this.job.op & 0xff) << GPU_FAULT_OPCODE_SHIFT) |
        ((portStatus & 0xff) << GPU_FAULT_PORT_SHIFT)) >>>
      0;
    this.faultAddr = iova;
    const t = this.machine.trace;
    if (t.enabled) {
      t.emit(
        this.name,
        'gpu.fault',
        `unit ${unit} ${write ? 'write' : 'read'} at 0x${iova.toString(16)} ${portStatus === PORT_STALLED ? 'stalled' : 'terminated'}`,
        { unit, iova: `0x${iova.toString(16)}`, write, stalled: portStatus === PORT_STALLED },
        'debug',
      );
    }
    this.raise(GPU_INT_FAULT);
  }

  warpFinished(_unit: number): void {
    if (--this.activeWarps === 0) this.complete();
  }

  // ------------------------------------------------------------------------------ command processor

  private kick(): void {
    if (this.phase !== PHASE_IDLE || this.halted) return;
    if ((this.ctrl & GPU_CTRL_ENABLE) === 0 || this.head === this.tail) return;
    this.phase = PHASE_FETCH;
    this.fetchTimer = this.schedule(this.fetchNs, this.fetchFn, `${this.name} fetch`);
  }

  private fetch(): void {
    this.fetchTimer = 0;
    this.cmdSlot = this.head;
    this.stats.fetches++;
    const addr = this.ringBase + this.head * GPU_CMD_BYTES;
    const st = this.sm.access(
      this.fetcher,
      this.epoch,
      addr,
      this.accessBase,
      this.fetchBuf,
      0,
      GPU_CMD_BYTES,
    );
    if (st === PORT_STALLED) {
      this.noteFault(GPU_FAULT_UNIT_FETCH, addr, false, st);
      return;
    }
    if (st === PORT_FAULT || st === PORT_ABORT) {
      this.noteFault(GPU_FAULT_UNIT_FETCH, addr, false, st);
      this.halt('ring fetch faulted');
      return;
    }
    this.execute();
  }

  private fetchDone(status: number, token: number): void {
    if (token !== this.epoch || this.phase !== PHASE_FETCH) return;
    if (status === PORT_FAULT || status === PORT_ABORT) {
      this.halt('ring fetch terminated');
      return;
    }
    this.execute();
  }

  private execute(): void {
    const dv = this.fetchDv;
    const w0 = dv.getUint32(0, true);
    const op = w0 & 0xff;
    const j = this.job;
    j.op = op;
    j.a = join64(dv.getUint32(4, true) & ~3, dv.getUint32(8, true) & 0xfffff);
    const fillLike = op === GpuOp.FILL || op === GpuOp.FENCE;
    j.b = fillLike ? 0 : join64(dv.getUint32(12, true) & ~3, dv.getUint32(16, true) & 0xfffff);
    j.value = fillLike ? dv.getUint32(12, true) : 0;
    j.len = dv.getUint32(20, true) & ~3;
    j.k = dv.getUint32(24, true);
    this.jobFlags = w0 & 0xff00;
    this.jobFaulted = false;
    this.killed = false;
    this.phase = PHASE_EXEC;
    const t = this.machine.trace;
    if (t.enabled) {
      t.emit(
        this.name,
        'gpu.cmd',
        `slot ${this.head}: ${GPU_OP_NAMES[op] ?? `op 0x${op.toString(16)}`} a=0x${j.a.toString(16)} b=0x${j.b.toString(16)} len=${j.len}`,
        { slot: this.head, op, a: `0x${j.a.toString(16)}`, b: `0x${j.b.toString(16)}`, len: j.len },
        'debug',
      );
    }
    let items = 0;
    if (op === GpuOp.FENCE) items = 1;
    else if (op === GpuOp.COPY || op === GpuOp.FILL || op === GpuOp.SHADER)
      items = Math.ceil(j.len / this.txBytes);
    // NOP and unknown opcodes complete at once
    j.items = items;
    j.warps = Math.min(items, this.warps.length);
    this.activeWarps = j.warps;
    if (items === 0) {
      this.complete();
      return;
    }
    for (let i = 0; i < j.warps; i++) this.warps[i]!.start(j);
  }

  private complete(): void {
    const j = this.job;
    if (j.op === GpuOp.FENCE && !this.killed) this.fence = j.value;
    this.cmdDone = (this.cmdDone + 1) >>> 0;
    this.stats.commands++;
    this.head = (this.head + 1) & ((1 << this.ringLog2) - 1);
    this.phase = PHASE_IDLE;
    if (this.jobFlags & GPU_CMD_FLAG_IRQ) this.raise(GPU_INT_DONE);
    if (this.jobFaulted && this.ctrl & GPU_CTRL_HALT_ON_FAULT) {
      this.halt('command faulted');
      return;
    }
    this.kick();
  }

  private halt(why: string): void {
    this.halted = true;
    this.phase = PHASE_IDLE;
    const t = this.machine.trace;
    if (t.enabled)
      t.emit(this.name, 'gpu.halt', `halted at slot ${this.head}: ${why}`, { slot: this.head }, 'err');
    this.raise(GPU_INT_HALT);
  }

  /**
   * CTRL.RESET: abandon all work and clear the execution and fault state; configuration
   * (ring base and size, MSI, INT_MASK) is kept. Transactions held in the IOMMU stay held —
   * only the IOMMU can complete them — and their completions are ignored.
   */
  private reset(): void {
    this.epoch++;
    const sched = this.machine.sched;
    if (this.fetchTimer !== 0) sched.cancel(this.fetchTimer);
    this.fetchTimer = 0;
    for (const w of this.warps) {
      if (w.timer !== 0) sched.cancel(w.timer);
      w.stop();
    }
    this.phase = PHASE_IDLE;
    this.head = 0;
    this.tail = 0;
    this.halted = false;
    this.killed = false;
    this.intStatus = 0;
    this.faultStatus = 0;
    this.faultAddr = 0;
    this.faultCount = 0;
    this.fence = 0;
    this.cmdDone = 0;
    this.cmdSlot = 0;
    this.activeWarps = 0;
  }

  // ------------------------------------------------------------------------------ interrupts

  private raise(bits: number): void {
    const newly = bits & ~this.intStatus;
    this.intStatus |= bits;
    if (newly & this.intMask && this.ctrl & GPU_CTRL_IRQ_EN) {
      const d = this.msiData;
      const b = this.msiBuf;
      b[0] = d & 0xff;
      b[1] = (d >>> 8) & 0xff;
      b[2] = (d >>> 16) & 0xff;
      b[3] = d >>> 24;
      this.stats.msis++;
      const st = this.sm.access(
        this.msiWriter,
        this.epoch,
        this.msiAddr,
        this.accessBase | ACCESS_WRITE,
        b,
        0,
        4,
      );
      if (st === PORT_FAULT || st === PORT_ABORT || st === PORT_STALLED) {
        this.noteFault(GPU_FAULT_UNIT_MSI, this.msiAddr, true, st);
      }
    }
  }

  private msiDone(_status: number, _token: number): void {
    // A stalled MSI write was completed (written on retry, lost on abort): nothing to do.
  }
}
