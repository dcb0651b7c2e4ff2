/**
 * Reserved IOVA regions (struct iommu_resv_region): windows a device's IOVA space must not
 * hand out (the MSI doorbell window, firmware-reserved memory) or must map 1:1.
 */

import { IOMMU_MMIO, IOMMU_NOEXEC, IOMMU_WRITE } from './prot.ts';

export type IommuResvType =
  /** Memory identity-mapped into every domain (RMRR/IORT RMR style). */
  | 'direct'
  /** Like direct, but may be relaxed for device assignment. */
  | 'direct-relaxable'
  /** Arbitrary "reserved": never allocated as IOVA. */
  | 'reserved'
  /** Hardware MSI window that bypasses translation. */
  | 'msi'
  /** Software-managed MSI window: the core maps the MSI doorbell into it. */
  | 'sw-msi';

export interface IommuResvRegion {
  start: number;
  length: number;
  prot: number;
  type: IommuResvType;
}

/** The software MSI window Arm SMMU drivers report (MSI_IOVA_BASE / MSI_IOVA_LENGTH). */
export const MSI_IOVA_BASE = 0x800_0000;
export const MSI_IOVA_LENGTH = 0x10_0000;

export function swMsiRegion(): IommuResvRegion {
  return {
    start: MSI_IOVA_BASE,
    length: MSI_IOVA_LENGTH,
    prot: IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_MMIO,
    type: 'sw-msi',
  };
}
