// Pure SMMUv1/v2 (MMU-400/401/500) architecture layer: the register map and field layouts
// under Linux's names (regs.ts), and register decoders (decode.ts).

export * from './decode.ts';
export * from './regs.ts';
