/**
 * MMIO bus: devices map register windows into the physical address space.
 *
 * Registers are accessed 32 or 64 bits wide, naturally aligned, as on Arm system buses.
 * A device that has no native 64-bit access sees two 32-bit accesses, low word first.
 * An access that hits no device, or is not 32/64-bit aligned, is reported and answers
 * BUS_ERROR; it never throws.
 */

export const BUS_ERROR = -1;

export interface MmioDevice {
  readonly name: string;
  /** Read the 32-bit register at `offset` (bytes from the window base); returns a uint32. */
  read32(offset: number): number;
  write32(offset: number, value: number): void;
  /** Optional single-copy-atomic 64-bit access; result halves go to out[0] (lo) and out[1] (hi). */
  read64?(offset: number, out: Int32Array): void;
  write64?(offset: number, lo: number, hi: number): void;
}

export interface MmioWindow {
  readonly base: number;
  readonly size: number;
  readonly device: MmioDevice;
}

export type BusErrorListener = (info: { pa: number; width: number; write: boolean; reason: string }) => void;

export class MmioBus {
  private windows: MmioWindow[] = [];
  /** Number of accesses that hit no device or had an illegal width/alignment. */
  errors = 0;
  onError: BusErrorListener | null = null;

  /** Map `device` at [base, base+size). Overlapping windows are a configuration error. */
  map(base: number, size: number, device: MmioDevice): MmioWindow {
    if (!Number.isInteger(base) || !Number.isInteger(size) || size <= 0 || base < 0) {
      throw new RangeError(`mmio: bad window for ${device.name}: base=${base} size=${size}`);
    }
    for (const w of this.windows) {
      if (base < w.base + w.size && w.base < base + size) {
        throw new RangeError(
          `mmio: window 0x${base.toString(16)}+0x${size.toString(16)} for ${device.name} overlaps ${w.device.name} at 0x${w.base.toString(16)}`,
        );
      }
    }
    const win = { base, size, device };
    this.windows.push(win);
    this.windows.sort((a, b) => a.base - b.base);
    return win;
  }

  unmap(device: MmioDevice): void {
    this.windows = this.windows.filter((w) => w.device !== device);
  }

  list(): readonly MmioWindow[] {
    return this.windows;
  }

  find(pa: number): MmioWindow | undefined {
    const ws = this.windows;
    let lo = 0;
    let hi = ws.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const w = ws[mid]!;
      if (pa < w.base) hi = mid - 1;
      else if (pa >= w.base + w.size) lo = mid + 1;
      else return w;
    }
    return undefined;
  }

  /** True if [pa, pa+len) lies in one window. */
  covers(pa: number, len: number): boolean {
    const w = this.find(pa);
    return w !== undefined && pa + len <= w.base + w.size;
  }

  read32(pa: number): number {
    const w = this.check(pa, 4, false);
    if (w === undefined) return BUS_ERROR;
    return w.device.read32(pa - w.base) >>> 0;
  }

  write32(pa: number, value: number): number {
    const w = this.check(pa, 4, true);
    if (w === undefined) return BUS_ERROR;
    w.device.write32(pa - w.base, value >>> 0);
    return 0;
  }

  /** 64-bit read; halves go to out[0]/out[1]. Returns 0 or BUS_ERROR. */
  read64(pa: number, out: Int32Array): number {
    const w = this.check(pa, 8, false);
    if (w === undefined) return BUS_ERROR;
    const off = pa - w.base;
    if (w.device.read64) w.device.read64(off, out);
    else {
      out[0] = w.device.read32(off);
      out[1] = w.device.read32(off + 4);
    }
    return 0;
  }

  write64(pa: number, lo: number, hi: number): number {
    const w = this.check(pa, 8, true);
    if (w === undefined) return BUS_ERROR;
    const off = pa - w.base;
    if (w.device.write64) w.device.write64(off, lo | 0, hi | 0);
    else {
      w.device.write32(off, lo >>> 0);
      w.device.write32(off + 4, hi >>> 0);
    }
    return 0;
  }

  /** Report an access the bus cannot perform (wrong width, no device). */
  fail(pa: number, width: number, write: boolean, reason: string): number {
    this.errors++;
    this.onError?.({ pa, width, write, reason });
    return BUS_ERROR;
  }

  private check(pa: number, width: number, write: boolean): MmioWindow | undefined {
    const w = this.find(pa);
    if (w === undefined) {
      this.fail(pa, width, write, 'no device');
      return undefined;
    }
    if (pa % width !== 0 || pa + width > w.base + w.size) {
      this.fail(pa, width, write, `unaligned or out-of-window ${width * 8}-bit access to ${w.device.name}`);
      return undefined;
    }
    return w;
  }
}
