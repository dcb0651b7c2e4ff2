// Arm SMMUv1/v2 hardware model (MMU-400/401/500 and the Qualcomm, NVIDIA and Marvell
// integrations): the device, its DMA port, its context banks, and the variants by compatible.

export * from './context.ts';
export * from './features.ts';
export * from './group.ts';
export * from './irq-lines.ts';
export * from './port.ts';
export * from './smmu.ts';
