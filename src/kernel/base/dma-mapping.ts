// The part of the DMA API the driver model needs now: masks and the dma-direct / SWIOTLB choice.
// (dma-iommu, the IOVA allocator and SWIOTLB bouncing themselves live in kernel/iommu/dma later.)

import type { DriverCore } from './core.ts';
import type { Device } from './device.ts';
import { EIO } from './errno.ts';

export function dmaBitMask(bits: number): bigint {
  return bits >= 64 ? (1n << 64n) - 1n : (1n << BigInt(bits)) - 1n;
}

/**
 * Highest CPU physical address the device can reach with direct DMA: the smaller of its mask and
 * the bus limit, moved into CPU space by the dma-ranges offset.
 */
export function dmaDirectReach(dev: Device): bigint {
  let limit = dev.dma.mask;
  if (dev.dma.coherentMask < limit) limit = dev.dma.coherentMask;
  if (dev.dma.busLimit !== 0n && dev.dma.busLimit < limit) limit = dev.dma.busLimit;
  const r =
    dev.dma.ranges.find((x) => limit >= x.dmaStart && limit < x.dmaStart + x.size) ?? dev.dma.ranges[0];
  return r ? limit - r.dmaStart + r.cpuStart : limit;
}

/**
 * Without an IOMMU, dma-direct serves the device; when its reach stops below the top of RAM,
 * buffers above it must bounce through SWIOTLB (reported as 'swiotlb').
 */
export function updateDirectDmaOps(core: DriverCore, dev: Device): void {
  if (dev.dma.ops === 'iommu' || dev.dma.ops === 'none') return;
  dev.dma.ops = core.ramTop > 0n && dmaDirectReach(dev) < core.ramTop - 1n ? 'swiotlb' : 'direct';
}

/** dma_set_mask_and_coherent(). Returns 0 or -EIO if the mask is unusable (as dma_supported() fails). */
export function dmaSetMaskAndCoherent(core: DriverCore, dev: Device, bits: number): number {
  if (bits < 12 || bits > 64) return -EIO;
  dev.dma.mask = dmaBitMask(bits);
  dev.dma.coherentMask = dmaBitMask(bits);
  updateDirectDmaOps(core, dev);
  return 0;
}
