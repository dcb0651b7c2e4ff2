// SMMUv3 programming interface (IHI 0070 §6): register offsets, field positions and the
// encodings of the ID registers. Pure data and pure functions; no state.
//
// Offsets are from the base of the SMMU's register window. Page 0 holds everything;
// page 1 (at 0x10000) holds the Event and PRI queue PROD/CONS registers, the ones
// software polls from a less-privileged mapping.

/** Size of one register page. */
export const SMMU_PAGE_SIZE = 0x10000;
/** Size of the whole register window (pages 0 and 1). */
export const SMMU_WINDOW_SIZE = 0x20000;

export const SMMU_REG = {
  IDR0: 0x0,
  IDR1: 0x4,
  IDR2: 0x8,
  IDR3: 0xc,
  IDR4: 0x10,
  IDR5: 0x14,
  IIDR: 0x18,
  AIDR: 0x1c,
  CR0: 0x20,
  CR0ACK: 0x24,
  CR1: 0x28,
  CR2: 0x2c,
  STATUSR: 0x40,
  GBPA: 0x44,
  AGBPA: 0x48,
  IRQ_CTRL: 0x50,
  IRQ_CTRLACK: 0x54,
  GERROR: 0x60,
  GERRORN: 0x64,
  /** 64-bit. */
  GERROR_IRQ_CFG0: 0x68,
  GERROR_IRQ_CFG1: 0x70,
  GERROR_IRQ_CFG2: 0x74,
  /** 64-bit. */
  STRTAB_BASE: 0x80,
  STRTAB_BASE_CFG: 0x88,
  /** 64-bit. */
  CMDQ_BASE: 0x90,
  CMDQ_PROD: 0x98,
  CMDQ_CONS: 0x9c,
  /** 64-bit. */
  EVTQ_BASE: 0xa0,
  /** Page 0 alias of the page 1 register (ARM_SMMU_OPT_PAGE0_REGS_ONLY implementations). */
  EVTQ_PROD: 0xa8,
  EVTQ_CONS: 0xac,
  /** 64-bit. */
  EVTQ_IRQ_CFG0: 0xb0,
  EVTQ_IRQ_CFG1: 0xb8,
  EVTQ_IRQ_CFG2: 0xbc,
  /** 64-bit. */
  PRIQ_BASE: 0xc0,
  PRIQ_PROD: 0xc8,
  PRIQ_CONS: 0xcc,
  /** 64-bit. */
  PRIQ_IRQ_CFG0: 0xd0,
  PRIQ_IRQ_CFG1: 0xd8,
  PRIQ_IRQ_CFG2: 0xdc,
  /** Page 1 locations of the Event/PRI queue pointers (the architected ones). */
  EVTQ_PROD_P1: 0x100a8,
  EVTQ_CONS_P1: 0x100ac,
  PRIQ_PROD_P1: 0x100c8,
  PRIQ_CONS_P1: 0x100cc,
} as const;

export type SmmuRegName = keyof typeof SMMU_REG;

/** Registers that are 64 bits wide (also accessible as two 32-bit halves, low word first). */
export const SMMU_REG64: ReadonlySet<number> = new Set([
  SMMU_REG.GERROR_IRQ_CFG0,
  SMMU_REG.STRTAB_BASE,
  SMMU_REG.CMDQ_BASE,
  SMMU_REG.EVTQ_BASE,
  SMMU_REG.EVTQ_IRQ_CFG0,
  SMMU_REG.PRIQ_BASE,
  SMMU_REG.PRIQ_IRQ_CFG0,
]);

// ------------------------------------------------------------------------------ IDR0

export const IDR0 = {
  S2P: 1 << 0,
  S1P: 1 << 1,
  TTF_SHIFT: 2, // [3:2]
  COHACC: 1 << 4,
  BTM: 1 << 5,
  HTTU_SHIFT: 6, // [7:6]
  DORMHINT: 1 << 8,
  HYP: 1 << 9,
  ATS: 1 << 10,
  NS1ATS: 1 << 11,
  ASID16: 1 << 12,
  MSI: 1 << 13,
  SEV: 1 << 14,
  ATOS: 1 << 15,
  PRI: 1 << 16,
  VMW: 1 << 17,
  VMID16: 1 << 18,
  CD2L: 1 << 19,
  VATOS: 1 << 20,
  TTENDIAN_SHIFT: 21, // [22:21]
  ATSRECERR: 1 << 23,
  STALL_MODEL_SHIFT: 24, // [25:24]
  TERM_MODEL: 1 << 26,
  ST_LEVEL_SHIFT: 27, // [28:27]
} as const;

/** IDR0.TTF: translation table formats. */
export const TTF = { AARCH32: 1, AARCH64: 2, BOTH: 3 } as const;
/** IDR0.HTTU. */
export const HTTU = { NONE: 0, ACCESS: 1, ACCESS_DIRTY: 2 } as const;
/** IDR0.TTENDIAN. */
export const TTENDIAN = { MIXED: 0, LE: 2, BE: 3 } as const;
/** IDR0.STALL_MODEL: 0b00 stall and terminate, 0b01 terminate only, 0b10 stall forced. */
export const STALL_MODEL = { STALL: 0, TERMINATE: 1, FORCE: 2 } as const;
/** IDR0.ST_LEVEL. */
export const ST_LEVEL = { LINEAR: 0, TWO_LEVEL: 1 } as const;

// ------------------------------------------------------------------------------ IDR1..IDR5

export const IDR1 = {
  SIDSIZE_SHIFT: 0, // [5:0]
  SSIDSIZE_SHIFT: 6, // [10:6]
  PRIQS_SHIFT: 11, // [15:11]
  EVENTQS_SHIFT: 16, // [20:16]
  CMDQS_SHIFT: 21, // [25:21]
  ATTR_PERMS_OVR: 1 << 26,
  ATTR_TYPES_OVR: 1 << 27,
  REL: 1 << 28,
  QUEUES_PRESET: 1 << 29,
  TABLES_PRESET: 1 << 30,
} as const;

export const IDR3 = {
  HAD: 1 << 2,
  PBHA: 1 << 3,
  XNX: 1 << 4,
  PPS: 1 << 5,
  MPAM: 1 << 7,
  FWB: 1 << 8,
  STT: 1 << 9,
  RIL: 1 << 10,
  BBML_SHIFT: 11, // [12:11]
  E0PD: 1 << 13,
} as const;

export const IDR5 = {
  OAS_SHIFT: 0, // [2:0]
  GRAN4K: 1 << 4,
  GRAN16K: 1 << 5,
  GRAN64K: 1 << 6,
  VAX_SHIFT: 10, // [11:10]
  STALL_MAX_SHIFT: 16, // [31:16]
} as const;

/** IDR5.OAS / CD.IPS / STE.S2PS encoding → address bits. */
export const PA_BITS: readonly number[] = [32, 36, 40, 42, 44, 48, 52, 56];

/** Address bits → OAS encoding (the smallest encoding covering `bits`). */
export function oasEncoding(bits: number): number {
  for (let i = 0; i < PA_BITS.length; i++) if (PA_BITS[i]! >= bits) return i;
  return PA_BITS.length - 1;
}

export const IIDR = {
  IMPLEMENTER_SHIFT: 0, // [11:0]
  REVISION_SHIFT: 12, // [15:12]
  VARIANT_SHIFT: 16, // [19:16]
  PRODUCTID_SHIFT: 20, // [31:20]
} as const;

/** JEP106 code of Arm as it appears in IIDR.Implementer. */
export const IIDR_IMPLEMENTER_ARM = 0x43b;

// ------------------------------------------------------------------------------ control

export const CR0 = {
  SMMUEN: 1 << 0,
  PRIQEN: 1 << 1,
  EVTQEN: 1 << 2,
  CMDQEN: 1 << 3,
  ATSCHK: 1 << 4,
  VMW_SHIFT: 6, // [8:6]
} as const;
/** CR0 bits that CR0ACK reflects. */
export const CR0_ACK_MASK = 0x1df;

export const CR1 = {
  QUEUE_IC_SHIFT: 0,
  QUEUE_OC_SHIFT: 2,
  QUEUE_SH_SHIFT: 4,
  TABLE_IC_SHIFT: 6,
  TABLE_OC_SHIFT: 8,
  TABLE_SH_SHIFT: 10,
} as const;
export const CR1_MASK = 0xfff;

export const CR2 = { E2H: 1 << 0, RECINVSID: 1 << 1, PTM: 1 << 2 } as const;
export const CR2_MASK = 0x7;

export const GBPA = {
  MEMATTR_SHIFT: 0, // [3:0]
  MTCFG: 1 << 4,
  ALLOCCFG_SHIFT: 8, // [11:8]
  SHCFG_SHIFT: 12, // [13:12]
  NSCFG_SHIFT: 14, // [15:14]
  PRIVCFG_SHIFT: 16, // [17:16]
  INSTCFG_SHIFT: 18, // [19:18]
  ABORT: 1 << 20,
  UPDATE: 1 << 31,
} as const;
/** Writable GBPA fields (everything but UPDATE). */
export const GBPA_FIELDS_MASK = 0x001fff1f;
/** Architected reset value of the attribute fields: SHCFG = 0b01 (use incoming). */
export const GBPA_RESET = 1 << GBPA.SHCFG_SHIFT;

export const IRQ_CTRL = { GERROR_IRQEN: 1 << 0, PRIQ_IRQEN: 1 << 1, EVTQ_IRQEN: 1 << 2 } as const;
export const IRQ_CTRL_MASK = 0x7;

export const GERROR = {
  CMDQ_ERR: 1 << 0,
  EVTQ_ABT_ERR: 1 << 2,
  PRIQ_ABT_ERR: 1 << 3,
  MSI_CMDQ_ABT_ERR: 1 << 4,
  MSI_EVTQ_ABT_ERR: 1 << 5,
  MSI_PRIQ_ABT_ERR: 1 << 6,
  MSI_GERROR_ABT_ERR: 1 << 7,
  SFM_ERR: 1 << 8,
  CMDQP_ERR: 1 << 9,
} as const;
export type GerrorName = keyof typeof GERROR;
/** Bits of GERROR/GERRORN that carry errors. */
export const GERROR_ERR_MASK = 0x3fd;

/** *_IRQ_CFG0: MSI address [51:2]. */
export const MSI_ADDR_MASK_LO = 0xfffffffc;
export const MSI_ADDR_MASK_HI = 0x000fffff;
/** *_IRQ_CFG2: MemAttr [3:0], SH [5:4]. */
export const IRQ_CFG2_MASK = 0x3f;

// ------------------------------------------------------------------------------ tables and queues

/** STRTAB_BASE: ADDR [51:6], RA bit 62. */
export const STRTAB_BASE_ADDR_MASK_LO = 0xffffffc0;
export const STRTAB_BASE_ADDR_MASK_HI = 0x000fffff;
export const STRTAB_BASE_RA_HI = 1 << 30;

export const STRTAB_BASE_CFG = {
  LOG2SIZE_SHIFT: 0, // [5:0]
  SPLIT_SHIFT: 6, // [10:6]
  FMT_SHIFT: 16, // [17:16]
} as const;
export const STRTAB_BASE_CFG_MASK = 0x307ff;
export const STRTAB_FMT = { LINEAR: 0, TWO_LEVEL: 1 } as const;

/** Level-1 stream table descriptor: Span [4:0], L2Ptr [51:6]. */
export const L1STD = { SPAN_MASK: 0x1f, L2PTR_MASK_LO: 0xffffffc0, L2PTR_MASK_HI: 0x000fffff } as const;
/** Level-1 CD table descriptor: V bit 0, L2Ptr [51:12]. */
export const L1CD = { V: 1, L2PTR_MASK_LO: 0xfffff000, L2PTR_MASK_HI: 0x000fffff } as const;

/** Queue BASE registers: LOG2SIZE [4:0], ADDR [51:5], RA/WA bit 62. */
export const Q_BASE = {
  LOG2SIZE_MASK: 0x1f,
  ADDR_MASK_LO: 0xffffffe0,
  ADDR_MASK_HI: 0x000fffff,
  RWA_HI: 1 << 30,
} as const;

/** Queue PROD/CONS: index and wrap in the low bits (wrap at bit LOG2SIZE), flags above. */
export const Q_PTR = {
  /** EVTQ_PROD.OVFLG / PRIQ_PROD.OVFLG; EVTQ_CONS.OVACKFLG / PRIQ_CONS.OVACKFLG. */
  OVFLG: 1 << 31,
  /** CMDQ_CONS.ERR [30:24]. */
  ERR_SHIFT: 24,
  ERR_MASK: 0x7f << 24,
} as const;

/** CMDQ_CONS.ERR codes. */
export const CERROR = { NONE: 0, ILL: 1, ABT: 2, ATC_INV_SYNC: 3 } as const;
export const CERROR_NAMES: Readonly<Record<number, string>> = {
  0: 'CERROR_NONE',
  1: 'CERROR_ILL',
  2: 'CERROR_ABT',
  3: 'CERROR_ATC_INV_SYNC',
};

/** Entry sizes, bytes. */
export const CMDQ_ENT_BYTES = 16;
export const EVTQ_ENT_BYTES = 32;
export const PRIQ_ENT_BYTES = 16;
export const STE_SIZE = 64;
export const CD_SIZE = 64;
