/**
 * 64-bit values without BigInt on hot paths.
 *
 * Representation chosen for iommu-lab:
 *  - Physical and I/O virtual addresses are JS Numbers. The architecture caps PAs at 52 bits
 *    and IOVAs at 52 (+TBI byte, which is stripped before use), so every address is an exact
 *    integer below 2^53.
 *  - Full 64-bit words (descriptors, STE/CD qwords, commands, register values) travel as two
 *    32-bit halves `lo`/`hi` (int32 bit patterns, as stored in an Int32Array). Hot code never
 *    recombines them into one Number unless it knows the value is an address (< 2^53).
 *  - BigInt is used only at the edges: decoders, CLI, tests.
 */

export const TWO32 = 4294967296;
export const MAX_PA_BITS = 52;
export const PA_LIMIT = 2 ** MAX_PA_BITS;

/** Low 32 bits of an integer Number (< 2^53) as uint32. */
export function lo32(x: number): number {
  return x >>> 0;
}

/** High bits (above bit 31) of an integer Number (< 2^53) as uint32. */
export function hi32(x: number): number {
  return Math.floor(x / TWO32) >>> 0;
}

/** Join halves into a Number. Exact only when the value is below 2^53 (hi < 2^21). */
export function join64(lo: number, hi: number): number {
  return (hi >>> 0) * TWO32 + (lo >>> 0);
}

/** `0x` + 16 lowercase hex digits, as Linux prints `%016llx`. */
export function hex64(lo: number, hi: number): string {
  return `0x${(hi >>> 0).toString(16).padStart(8, '0')}${(lo >>> 0).toString(16).padStart(8, '0')}`;
}

/**
 * A 64-bit address held as a Number in hex: shortest form with 0x, and a negative Number (the
 * kernel model's sign-extended upper-half IOVA, e.g. -2^32) as its 64-bit two's complement
 * (0xffffffff00000000).
 */
export function hexAddr(v: number): string {
  if (!(v < 0) || !Number.isInteger(v)) return `0x${v.toString(16)}`;
  return hex64(v >>> 0, hi32(v));
}

/** Shortest lowercase hex with 0x for a Number or BigInt. */
export function hex(v: number | bigint): string {
  if (typeof v === 'bigint') return `0x${BigInt.asUintN(64, v).toString(16)}`;
  return `0x${v.toString(16)}`;
}
