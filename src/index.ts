/**
 * iommu-lab: an executable, architecture-faithful model of the IOMMU stack — a simulated
 * machine, an Arm SMMUv3, and a model of Linux's IOMMU subsystem — as a library. This is the
 * package's entry point, `import … from 'iommu-lab'`.
 *
 * @packageDocumentation
 */
export * from './api/index.ts';
