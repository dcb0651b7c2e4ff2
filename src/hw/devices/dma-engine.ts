/**
 * The DMA copy engine (`iommu-lab,dma-engine`). Software programs SRC/DST/LEN and sets
 * CTRL.START; the engine copies in bursts, one burst every `burstNs` of virtual time, and at
 * the end sets STATUS.DONE (or STATUS.ERROR on a bus error) and writes its MSI.
 *
 * It masters the bus through a `DmaBus`: the physical address space directly, or later an
 * IOMMU's DMA port.
 */

import {
  DMA_CTRL_IRQ_EN,
  DMA_CTRL_START,
  DMA_ENGINE_ID_VALUE,
  DMA_STATUS_BUSY,
  DMA_STATUS_DONE,
  DMA_STATUS_ERROR,
  DmaEngineReg as R,
} from '../../arch/devices/dma-engine.ts';
import type { Machine } from '../../platform/machine.ts';
import type { MmioDevice } from '../../platform/mmio.ts';
import { hi32, join64, lo32 } from '../../platform/u64.ts';

/** How a bus master reaches memory: returns 0 or a negative error (bus error / fault). */
export interface DmaBus {
  read(addr: number, dst: Uint8Array, off: number, len: number): number;
  write(addr: number, src: Uint8Array, off: number, len: number): number;
}

/**
 * Direct physical access, for masters with no IOMMU in front of them. With the DMA-isolation
 * sanitizer on, every access is checked as bypass DMA by `name`.
 */
export function physicalBus(m: Machine, name = 'bus master'): DmaBus {
  return {
    read: (a, d, o, l) => {
      m.mem.sanitizer?.checkBypass(name, a, l, false);
      return m.mem.readBytes(a, d, o, l);
    },
    write: (a, s, o, l) => {
      m.mem.sanitizer?.checkBypass(name, a, l, true);
      return m.mem.writeBytes(a, s, o, l);
    },
  };
}

export interface DmaEngineOptions {
  name?: string;
  /** Bytes moved per burst (default 4096). */
  burstBytes?: number;
  /** Virtual ns per burst (default 1024: 4 GB/s). */
  burstNs?: number;
}

export class DmaEngine implements MmioDevice {
  readonly name: string;
  private src = 0;
  private dst = 0;
  private len = 0;
  private ctrl = 0;
  private status = 0;
  private msiAddr = 0;
  private msiData = 0;
  private done = 0;
  private errAddr = 0;
  private readonly buf: Uint8Array;
  private readonly burstNs: number;
  /** Completed transfers and bytes moved, for statistics. */
  transfers = 0;
  bytes = 0;

  constructor(
    private readonly m: Machine,
    private readonly bus: DmaBus,
    opts: DmaEngineOptions = {},
  ) {
    this.name = opts.name ?? 'dma-engine';
    this.buf = new Uint8Array(opts.burstBytes ?? 4096);
    this.burstNs = opts.burstNs ?? 1024;
  }

  read32(off: number): number {
    switch (off) {
      case R.ID:
        return DMA_ENGINE_ID_VALUE;
      case R.SRC:
        return lo32(this.src);
      case R.SRC + 4:
        return hi32(this.src);
      case R.DST:
        return lo32(this.dst);
      case R.DST + 4:
        return hi32(this.dst);
      case R.LEN:
        return this.len;
      case R.CTRL:
        return this.ctrl;
      case R.STATUS:
        return this.status;
      case R.MSI_ADDR:
        return lo32(this.msiAddr);
      case R.MSI_ADDR + 4:
        return hi32(this.msiAddr);
      case R.MSI_DATA:
        return this.msiData;
      case R.BYTES_DONE:
        return this.done;
      case R.ERR_ADDR:
        return lo32(this.errAddr);
      case R.ERR_ADDR + 4:
        return hi32(this.errAddr);
      default:
        return 0; // RAZ/WI
    }
  }

  write32(off: number, v: number): void {
    const busy = (this.status & DMA_STATUS_BUSY) !== 0;
    switch (off) {
      case R.SRC:
        if (!busy) this.src = join64(v, hi32(this.src));
        break;
      case R.SRC + 4:
        if (!busy) this.src = join64(lo32(this.src), v & 0xfffff);
        break;
      case R.DST:
        if (!busy) this.dst = join64(v, hi32(this.dst));
        break;
      case R.DST + 4:
        if (!busy) this.dst = join64(lo32(this.dst), v & 0xfffff);
        break;
      case R.LEN:
        if (!busy) this.len = v >>> 0;
        break;
      case R.CTRL:
        this.ctrl = v & DMA_CTRL_IRQ_EN;
        if (v & DMA_CTRL_START && !busy) this.start();
        break;
      case R.STATUS:
        this.status &= ~(v & (DMA_STATUS_DONE | DMA_STATUS_ERROR));
        break;
      case R.MSI_ADDR:
        this.msiAddr = join64(v, hi32(this.msiAddr));
        break;
      case R.MSI_ADDR + 4:
        this.msiAddr = join64(lo32(this.msiAddr), v & 0xfffff);
        break;
      case R.MSI_DATA:
        this.msiData = v >>> 0;
        break;
    }
  }

  private start(): void {
    this.status = DMA_STATUS_BUSY;
    this.done = 0;
    this.m.trace.emit(
      this.name,
      'dma.start',
      `copy ${this.len} bytes 0x${this.src.toString(16)} -> 0x${this.dst.toString(16)}`,
      {
        src: `0x${this.src.toString(16)}`,
        dst: `0x${this.dst.toString(16)}`,
        len: this.len,
      },
    );
    this.m.sched.schedule(this.burstNs, () => this.burst(), `${this.name} burst`);
  }

  private burst(): void {
    const n = Math.min(this.buf.length, this.len - this.done);
    if (n > 0) {
      const s = this.src + this.done;
      const d = this.dst + this.done;
      if (this.bus.read(s, this.buf, 0, n) !== 0) {
        this.finish(s);
        return;
      }
      if (this.bus.write(d, this.buf, 0, n) !== 0) {
        this.finish(d);
        return;
      }
      this.done += n;
      this.bytes += n;
    }
    if (this.done < this.len) this.m.sched.schedule(this.burstNs, () => this.burst(), `${this.name} burst`);
    else this.finish(-1);
  }

  private finish(errAddr: number): void {
    const ok = errAddr < 0;
    this.status = ok ? DMA_STATUS_DONE : DMA_STATUS_ERROR;
    if (!ok) this.errAddr = errAddr;
    this.transfers++;
    this.m.trace.emit(
      this.name,
      ok ? 'dma.done' : 'dma.error',
      ok
        ? `transfer done, ${this.done} bytes`
        : `bus error at 0x${errAddr.toString(16)} after ${this.done} bytes`,
      { bytes: this.done, error: !ok },
      ok ? 'info' : 'err',
    );
    if (this.ctrl & DMA_CTRL_IRQ_EN) {
      this.m.mem.sanitizer?.checkMsi(this.name, -1, this.msiAddr, 4);
      this.m.mem.write32(this.msiAddr, this.msiData);
    }
  }
}
