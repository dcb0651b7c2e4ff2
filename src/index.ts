/**
 * iommu-lab: an executable model of the IOMMU stack (a simulated machine, an Arm SMMUv3 hardware
 * model and a model of Linux's IOMMU subsystem). This is the package's entry point,
 * `import … from 'iommu-lab'`.
 *
 * @packageDocumentation
 */

/** The version of iommu-lab, as in its package.json. */
export { VERSION as version } from './version.ts';
