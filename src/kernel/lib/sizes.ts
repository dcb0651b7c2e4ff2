/** linux/sizes.h: the sizes the IOMMU drivers and io-pgtable name. */
export const SZ_4K = 0x1000;
export const SZ_16K = 0x4000;
export const SZ_64K = 0x10000;
export const SZ_2M = 0x200000;
export const SZ_32M = 0x2000000;
export const SZ_512M = 0x20000000;
export const SZ_1G = 0x40000000;
export const SZ_4T = 2 ** 42;
