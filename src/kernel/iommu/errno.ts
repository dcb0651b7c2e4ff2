// The IOMMU code's errno values: one table for the whole kernel model (lib/errno.ts).
export * from '../lib/errno.ts';
