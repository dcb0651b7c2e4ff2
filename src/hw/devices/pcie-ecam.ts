// The ECAM configuration window of a PCIe host bridge (PCI Firmware / PCIe "Enhanced
// Configuration Access Mechanism"), as `pci-host-ecam-generic` describes it: a 256 MB MMIO
// window where offset = bus << 20 | device << 15 | function << 12 | register. The default
// platform places it at 0x4000_0000 (buses 0-255). Functions that are not present read as all
// ones and ignore writes, as a configuration request that gets Unsupported Request does.

import type { MmioDevice } from '../../platform/mmio.ts';
import type { PciConfigSpace } from './pci-config.ts';

export const ECAM_DEFAULT_BASE = 0x4000_0000;
export const ECAM_SIZE = 0x1000_0000;

/** Bus/device/function as a 16-bit Requester ID. */
export function bdf(bus: number, dev: number, fn: number): number {
  return ((bus & 0xff) << 8) | ((dev & 0x1f) << 3) | (fn & 7);
}

export class PcieEcam implements MmioDevice {
  readonly name: string;
  private readonly fns = new Map<number, PciConfigSpace>();

  constructor(name = 'pcie-ecam') {
    this.name = name;
  }

  /** Put a function's configuration space at Requester ID `rid`. */
  attach(rid: number, cfg: PciConfigSpace): void {
    this.fns.set(rid & 0xffff, cfg);
  }

  read32(offset: number): number {
    const f = this.fns.get(offset >>> 12);
    return f === undefined ? 0xffffffff : f.read32(offset & 0xfff);
  }

  write32(offset: number, value: number): void {
    this.fns.get(offset >>> 12)?.write32(offset & 0xfff, value >>> 0);
  }
}
