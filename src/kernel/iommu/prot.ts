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
