// Pure SMMUv3 architecture layer: field tables, decoders and encoders of the in-memory
// structures (STE, CD, commands, events, PRI entries). Register layouts live in regs.ts.

export * from './bits.ts';
export * from './cd.ts';
export * from './cmd.ts';
export * from './event.ts';
export * from './pri.ts';
export * from './ste.ts';
