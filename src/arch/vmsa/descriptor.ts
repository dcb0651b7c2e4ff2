// VMSAv8-64 translation table descriptor layout (Arm ARM D8.3), as bit masks over the two
// int32 halves of a 64-bit descriptor (lo = bits 31:0, hi = bits 63:32), so hot code can test
// fields without BigInt. Pure: constants and small functions, no state.
//
// Output addresses: 4K/16K granules take OA[47:g] from bits [47:g]; bits [49:48] are RES0
// without FEAT_LPA2 and are read as OA[49:48] here, so a descriptor that sets them is caught by
// the output-size check rather than silently truncated. The 64K granule takes OA[51:48] from
// bits [15:12] (FEAT_LPA). FEAT_LPA2 (52-bit OA with 4K/16K) is not modelled.

import { TWO32 } from '../../platform/u64.ts';

// ---- bits in lo (descriptor bits 31:0)
export const D_VALID = 1 << 0;
/** bit 1: table (levels 0-2) or page (level 3); 0 = block. */
export const D_TABLE = 1 << 1;
export const D_TYPE_MASK = 3;
/** Stage 1 AttrIndx[2:0], bits 4:2. */
export const D_ATTRINDX_SHIFT = 2;
/** Stage 2 MemAttr[3:0], bits 5:2. */
export const D_MEMATTR_SHIFT = 2;
export const D_NS = 1 << 5;
/** Stage 1 AP[2:1] at bits 7:6: bit 6 = AP[1] (EL0 access), bit 7 = AP[2] (read-only). */
export const D_AP_SHIFT = 6;
export const D_AP1 = 1 << 6;
export const D_AP2 = 1 << 7;
/** Stage 2 S2AP[1:0] at bits 7:6: bit 6 = read, bit 7 = write. */
export const D_S2AP_R = 1 << 6;
export const D_S2AP_W = 1 << 7;
export const D_SH_SHIFT = 8;
export const D_AF = 1 << 10;
export const D_NG = 1 << 11;

// ---- bits in hi (descriptor bits 63:32), as masks on hi
/** DBM, bit 51. */
export const DH_DBM = 1 << (51 - 32);
/** Contiguous hint, bit 52. */
export const DH_CONTIG = 1 << (52 - 32);
/** Stage 1 PXN (bit 53); stage 2 XN[0] with FEAT_XNX. */
export const DH_PXN = 1 << (53 - 32);
/** Stage 1 UXN / XN (bit 54); stage 2 XN[1]. */
export const DH_UXN = 1 << (54 - 32);
export const DH_S2XN0 = DH_PXN;
export const DH_S2XN1 = DH_UXN;
// table descriptor hierarchical controls (stage 1)
export const DH_PXNTABLE = 1 << (59 - 32);
export const DH_UXNTABLE = 1 << (60 - 32);
/** APTable[0] (bit 61): no EL0 access at lower levels. */
export const DH_APTABLE0 = 1 << (61 - 32);
/** APTable[1] (bit 62): no write access at lower levels. */
export const DH_APTABLE1 = 1 << (62 - 32);
export const DH_NSTABLE = (1 << (63 - 32)) | 0;

/** Descriptor kinds as classified at a level. */
export const DK_INVALID = 0;
export const DK_TABLE = 1;
export const DK_BLOCK = 2;
export const DK_PAGE = 3;
export const DK_RESERVED = 4;

/**
 * Output (or next-level table) address held in a descriptor, for granule shift g, with the bits
 * below `shift` cleared (shift >= g: g for tables and pages, the block size for blocks).
 */
export function descAddress(lo: number, hi: number, g: number, shift: number): number {
  let aLo: number;
  let aHi: number;
  if (g === 16) {
    aLo = lo & 0xffff0000;
    aHi = (hi & 0xffff) | (((lo >>> 12) & 0xf) << 16);
  } else {
    aLo = lo & ~((1 << g) - 1);
    aHi = hi & 0x3ffff;
  }
  if (shift >= 32) {
    aLo = 0;
    aHi &= ~((1 << (shift - 32)) - 1);
  } else aLo &= ~((1 << shift) - 1);
  return aHi * TWO32 + (aLo >>> 0);
}

/** Encode an address into descriptor halves for granule g (inverse of descAddress): [lo, hi]. */
export function addressBits(pa: number, g: number): [lo: number, hi: number] {
  const lo = pa >>> 0;
  const hi = Math.floor(pa / TWO32);
  if (g === 16) return [(lo & 0xffff0000) | (((hi >>> 16) & 0xf) << 12), hi & 0xffff];
  return [lo & ~((1 << g) - 1), hi & 0x3ffff];
}

// ---- stage-1 access permissions (AP[2:1] as the 2-bit value at bits 7:6)
export const AP_PRIV_RW = 0; // EL1 RW, EL0 none
export const AP_RW = 1; // EL1 RW, EL0 RW
export const AP_PRIV_RO = 2; // EL1 RO, EL0 none
export const AP_RO = 3; // EL1 RO, EL0 RO

// ---- stage-2 access permissions (S2AP[1:0])
export const S2AP_NONE = 0;
export const S2AP_RO = 1;
export const S2AP_WO = 2;
export const S2AP_RW = 3;

/** Stage-2 MemAttr[3:2] == 0 means Device memory (without FEAT_S2FWB). */
export function s2MemAttrIsDevice(memAttr: number): boolean {
  return (memAttr & 0xc) === 0;
}
