// Arm SMMUv3 hardware model: the device, its DMA port, and the pieces a test or tool may need
// to look inside (configuration cache, queues, feature set).

export * from './ats.ts';
export { decodeCd, fetchCd, locateCd } from './cd.ts';
export * from './cmd.ts';
export * from './config.ts';
export * from './events.ts';
export * from './port.ts';
export * from './pri.ts';
export * from './queues.ts';
export * from './regs-idr.ts';
export * from './smmu.ts';
export * from './stall.ts';
export { ConfigError, decodeSte, fetchSte, granuleSupported, locateSte } from './ste.ts';
export * from './upstream.ts';
