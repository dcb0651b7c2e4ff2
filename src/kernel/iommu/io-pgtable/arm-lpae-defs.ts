/**
 * VMSAv8-64 long-descriptor (LPAE) format constants as Linux's io-pgtable-arm.c writes them
 * (ARM_LPAE_PTE_*, ARM_LPAE_MAIR_*). Descriptors travel as int32 halves: `*_LO` constants apply to
 * bits 31:0, `*_HI` constants to bits 63:32 (so XN, bits 54:53, is `3 << 21` in the high half).
 */

export const ARM_LPAE_MAX_LEVELS = 4;
/** Concatenated stage-2 start tables: at most 16 (Arm DDI0487, and Linux's ARM_LPAE_S2_MAX_CONCAT_PAGES). */
export const ARM_LPAE_S2_MAX_CONCAT_PAGES = 16;

// bits 1:0
export const PTE_TYPE_MASK = 0x3;
export const PTE_TYPE_BLOCK = 1;
export const PTE_TYPE_TABLE = 3;
export const PTE_TYPE_PAGE = 3;
export const PTE_VALID = 1;

// low half
export const PTE_NS_LO = 1 << 5;
export const PTE_AF_LO = 1 << 10;
export const PTE_SH_NS_LO = 0 << 8;
export const PTE_SH_OS_LO = 2 << 8;
export const PTE_SH_IS_LO = 3 << 8;
/** Stage 1: AP[1] = 1, EL0 (unprivileged) access. */
export const PTE_AP_UNPRIV_LO = 1 << 6;
/** Stage 1: AP[2] = 1, read-only. */
export const PTE_AP_RDONLY_LO = 2 << 6;
export const PTE_ATTRINDX_SHIFT = 2;
export const PTE_NG_LO = 1 << 11;
/** Stage 2: S2AP. */
export const PTE_HAP_FAULT_LO = 0 << 6;
export const PTE_HAP_READ_LO = 1 << 6;
export const PTE_HAP_WRITE_LO = 2 << 6;
/** Stage 2: MemAttr[3:0] at bits 5:2. */
export const PTE_MEMATTR_OIWB_LO = 0xf << 2;
export const PTE_MEMATTR_NC_LO = 0x5 << 2;
export const PTE_MEMATTR_DEV_LO = 0x1 << 2;
export const PTE_MEMATTR_FWB_WB_LO = 0x6 << 2;

// high half (bit n of the descriptor is bit n-32 of the high half)
/** DBM, bit 51. */
export const PTE_DBM_HI = 1 << 19;
/** XN/UXN+PXN, bits 54:53 = 0b11. */
export const PTE_XN_HI = 3 << 21;
/** Software bit 55 (SW_SYNC in Linux; unused with coherent walks). */
export const PTE_SW_SYNC_HI = 1 << 23;
/** NSTable, bit 63, on table descriptors. */
export const PTE_NSTABLE_HI = 1 << 31;

/** Output address bits 47:12 (the high half keeps bits 47:32). */
export const PTE_ADDR_LO_MASK = 0xfffff000 | 0;
export const PTE_ADDR_HI_MASK = 0xffff;

// MAIR attribute indices Linux uses (stage 1)
export const MAIR_ATTR_IDX_NC = 0;
export const MAIR_ATTR_IDX_CACHE = 1;
export const MAIR_ATTR_IDX_DEV = 2;
export const MAIR_ATTR_IDX_INC_OCACHE = 3;
export const MAIR_ATTR_NC = 0x44;
export const MAIR_ATTR_WBRWA = 0xff;
export const MAIR_ATTR_DEVICE = 0x04;
export const MAIR_ATTR_INC_OWBRWA = 0xf4;
/** The MAIR value Linux programs: idx0 NC, idx1 WBRWA, idx2 DEVICE, idx3 INC_OWBRWA (fits 32 bits). */
export const ARM_LPAE_MAIR =
  (MAIR_ATTR_NC |
    (MAIR_ATTR_WBRWA << 8) |
    (MAIR_ATTR_DEVICE << 16) |
    ((MAIR_ATTR_INC_OWBRWA << 24) >>> 0)) >>>
  0;

// TCR / VTCR field encodings
export const TCR_TG0_4K = 0;
export const TCR_TG0_64K = 1;
export const TCR_TG0_16K = 2;
/** TG1 encodings (ARM_LPAE_TCR_TG1_*): a TTBR1 table's granule. */
export const TCR_TG1_16K = 1;
export const TCR_TG1_4K = 2;
export const TCR_TG1_64K = 3;
export const TCR_SH_NS = 0;
export const TCR_SH_OS = 2;
export const TCR_SH_IS = 3;
export const TCR_RGN_NC = 0;
export const TCR_RGN_WBWA = 1;
export const TCR_RGN_WT = 2;
export const TCR_RGN_WB = 3;

/** IPS/PS encoding of an output size, or -1 if the size has none. */
export function tcrPsForOas(oas: number): number {
  switch (oas) {
    case 32:
      return 0;
    case 36:
      return 1;
    case 40:
      return 2;
    case 42:
      return 3;
    case 44:
      return 4;
    case 48:
      return 5;
    case 52:
      return 6;
    default:
      return -1;
  }
}
