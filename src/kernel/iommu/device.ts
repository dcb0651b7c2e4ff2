/**
 * What the IOMMU core and the DMA API need to know about a device (a subset of struct device).
 * The driver model's Device (src/kernel/base/device.ts) satisfies it structurally; tests may pass
 * plain objects. The core keeps its own per-device state (dev->iommu) in a side table.
 */

export interface IommuDevice {
  readonly name: string;
  /** 'platform', 'pci', ... */
  readonly busName: string;
  /** PCI identity (requester ID = bus[15:8] | dev[7:3] | fn[2:0]), or null for non-PCI devices. */
  readonly pci: { readonly rid: number } | null;
  /** The DMA side: masks as bigint (u64), coherency. */
  dma: { mask: bigint; coherentMask: bigint; coherent: boolean; busLimit?: bigint };
  /** The fwspec: StreamIDs (or other IDs) the IOMMU knows the device by. */
  iommu: { readonly ids: readonly number[] } | null;
}

/** Optional extras a device may carry (not in the driver model's Device yet). */
export interface IommuDeviceExtras {
  /** Other requester IDs the device's DMA may carry (pci_for_each_dma_alias: bridges, quirks). */
  pciDmaAliases?: readonly number[];
  /** Width of the PASID capability, 0/absent = no PASID support. */
  pasidBits?: number;
  /** pci_dev->untrusted (external-facing port): forces a DMA domain. */
  untrusted?: boolean;
}

export function devIsPci(dev: IommuDevice): boolean {
  return dev.busName === 'pci' && dev.pci !== null;
}

export function devExtras(dev: IommuDevice): IommuDeviceExtras {
  return dev as IommuDeviceExtras;
}

/** Largest address a mask allows, as a Number (capped at 2^53 - 1). */
export function maskToLimit(mask: bigint): number {
  return mask >= 0x1f_ffff_ffff_ffffn ? Number.MAX_SAFE_INTEGER : Number(mask);
}

export function dmaBitMask(bits: number): bigint {
  return bits >= 64 ? 0xffff_ffff_ffff_ffffn : (1n << BigInt(bits)) - 1n;
}
