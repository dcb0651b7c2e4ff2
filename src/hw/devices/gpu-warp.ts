/**
 * A GPU execution unit ("warp"): it works through its share of a command's pages, one
 * transaction every `txNs` of virtual time, all through the GPU's StreamID. Warps run in
 * parallel, so one bad pointer makes every warp fault on its own part of the same bad
 * region — the fault storm real GPUs produce.
 *
 * A faulting read yields zeros and the warp carries on (a terminated transaction does not
 * stop a shader), unless the GPU kills the job on the first fault (CTRL.HALT_ON_FAULT). A
 * stalled transaction makes the warp wait until the SMMU completes it.
 */

import { GpuOp } from '../../arch/devices/gpu.ts';
import { ACCESS_WRITE, PORT_ABORT, PORT_FAULT, PORT_STALLED } from '../smmu-common/port.ts';
import type { StallWaiter, StreamMaster } from './platform-master.ts';

const PAGE = 4096;

/** What a warp needs from the GPU that owns it. */
export interface WarpHost {
  readonly sm: StreamMaster;
  readonly txBytes: number;
  readonly txNs: number;
  /** Reset generation: completions carrying an older token are ignored. */
  readonly epoch: number;
  /** The job was killed (HALT_ON_FAULT after a fault): stop issuing. */
  readonly killed: boolean;
  /** Access attributes added to every transaction (privileged). */
  readonly accessBase: number;
  /** A transaction of warp `unit` faulted (terminated or stalled). */
  noteFault(unit: number, iova: number, write: boolean, portStatus: number): void;
  /** Warp `unit` has no more work for the current command. */
  warpFinished(unit: number): void;
  schedule(delayNs: number, fn: () => void, label: string): number;
}

/** The command a warp executes (set by the command processor). */
export interface WarpJob {
  op: number;
  /** COPY/SHADER source, FILL/FENCE destination (4-byte aligned). */
  a: number;
  /** COPY/SHADER destination. */
  b: number;
  /** FILL pattern / FENCE value. */
  value: number;
  /** SHADER addend. */
  k: number;
  /** Bytes (multiple of 4). */
  len: number;
  /** Number of items (chunks of txBytes) and of warps taking part. */
  items: number;
  warps: number;
}

export class Warp implements StallWaiter {
  /** Timer of the next step, or 0. */
  timer = 0;
  /** Waiting for a stalled transaction. */
  waiting = false;
  /** Transactions issued by this warp since reset. */
  transactions = 0;
  private readonly buf = new Uint8Array(PAGE);
  private readonly dv = new DataView(this.buf.buffer);
  private job: WarpJob | null = null;
  private item = 0;
  /** Offset (bytes from the start of the command's buffers) of the next transaction. */
  private off = 0;
  private itemEnd = 0;
  /** COPY/SHADER: the current chunk has been read and must be written. */
  private haveData = false;
  private n = 0;
  private readonly label: string;
  private readonly stepFn = () => this.step();

  constructor(
    private readonly host: WarpHost,
    readonly unit: number,
  ) {
    this.label = `gpu warp ${unit}`;
  }

  /** Start on `job` (its items unit, unit + warps, ...). */
  start(job: WarpJob): void {
    this.job = job;
    this.item = this.unit;
    this.haveData = false;
    this.waiting = false;
    if (job.op === GpuOp.FILL) {
      const v = job.value >>> 0;
      for (let i = 0; i < PAGE; i += 4) this.dv.setUint32(i, v, true);
    }
    this.beginItem();
    this.next();
  }

  /** Abandon the current job (reset): the step timer is cancelled by the GPU. */
  stop(): void {
    this.job = null;
    this.timer = 0;
    this.waiting = false;
  }

  private beginItem(): void {
    const j = this.job!;
    const tx = this.host.txBytes;
    this.off = this.item * tx;
    this.itemEnd = Math.min(j.len, this.off + tx);
  }

  private next(): void {
    this.timer = this.host.schedule(this.host.txNs, this.stepFn, this.label);
  }

  private step(): void {
    this.timer = 0;
    const j = this.job;
    if (j === null) return;
    const h = this.host;
    if (h.killed || this.item >= j.items) {
      this.finish();
      return;
    }
    const sm = h.sm;
    const base = h.accessBase;
    let st: number;
    let write: boolean;
    let iova: number;
    if (j.op === GpuOp.FENCE) {
      iova = j.a;
      write = true;
      if (iova === 0) {
        this.finish();
        return;
      }
      this.dv.setUint32(0, j.value >>> 0, true);
      this.n = 4;
      st = sm.access(this, h.epoch, iova, base | ACCESS_WRITE, this.buf, 0, 4);
    } else if (j.op === GpuOp.FILL) {
      iova = j.a + this.off;
      write = true;
      this.n = Math.min(this.itemEnd - this.off, PAGE - (iova % PAGE));
      st = sm.access(this, h.epoch, iova, base | ACCESS_WRITE, this.buf, 0, this.n);
    } else if (!this.haveData) {
      // COPY / SHADER read phase: clip to page boundaries of both buffers
      iova = j.a + this.off;
      write = false;
      const d = j.b + this.off;
      this.n = Math.min(this.itemEnd - this.off, PAGE - (iova % PAGE), PAGE - (d % PAGE));
      st = sm.access(this, h.epoch, iova, base, this.buf, 0, this.n);
    } else {
      iova = j.b + this.off;
      write = true;
      st = sm.access(this, h.epoch, iova, base | ACCESS_WRITE, this.buf, 0, this.n);
    }
    this.transactions++;
    if (st === PORT_STALLED) {
      this.waiting = true;
      h.noteFault(this.unit, iova, write, st);
      return;
    }
    if (st === PORT_FAULT || st === PORT_ABORT) h.noteFault(this.unit, iova, write, st);
    this.advance();
  }

  /** StallWaiter: the SMMU completed our stalled transaction. */
  stallDone(_status: number, token: number, _fault: number): void {
    if (token !== this.host.epoch || this.job === null) return; // abandoned by a reset
    this.waiting = false;
    // A terminated stall was counted as a fault when it stalled; a failed read left zeros.
    this.advance();
  }

  private advance(): void {
    const j = this.job!;
    if (j.op === GpuOp.FENCE) {
      this.finish();
      return;
    }
    if ((j.op === GpuOp.COPY || j.op === GpuOp.SHADER) && !this.haveData) {
      this.haveData = true;
      if (j.op === GpuOp.SHADER) {
        const k = j.k | 0;
        const dv = this.dv;
        for (let i = 0; i < this.n; i += 4) dv.setUint32(i, (dv.getUint32(i, true) + k) >>> 0, true);
      }
    } else {
      this.haveData = false;
      this.off += this.n;
      if (this.off >= this.itemEnd) {
        this.item += j.warps;
        if (this.item < j.items) this.beginItem();
      }
    }
    this.next();
  }

  private finish(): void {
    this.job = null;
    this.host.warpFinished(this.unit);
  }
}
