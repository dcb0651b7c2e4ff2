// IOMMU mapping permissions and attributes (include/linux/iommu.h: IOMMU_READ ... IOMMU_PRIV).

export const IOMMU_READ = 1 << 0;
export const IOMMU_WRITE = 1 << 1;
/** DMA cache coherency: the mapping is cacheable and shareable with the CPUs. */
export const IOMMU_CACHE = 1 << 2;
export const IOMMU_NOEXEC = 1 << 3;
/** Device memory (MMIO), e.g. an MSI doorbell. */
export const IOMMU_MMIO = 1 << 4;
/** Privileged: accessible only to privileged transactions. */
export const IOMMU_PRIV = 1 << 5;

export function protString(prot: number): string {
  const f: string[] = [];
  if (prot & IOMMU_READ) f.push('R');
  if (prot & IOMMU_WRITE) f.push('W');
  if (prot & IOMMU_CACHE) f.push('CACHE');
  if (prot & IOMMU_NOEXEC) f.push('NOEXEC');
  if (prot & IOMMU_MMIO) f.push('MMIO');
  if (prot & IOMMU_PRIV) f.push('PRIV');
  return f.join('|') || '-';
}
