/**
 * arm_smmu_device_hw_probe(): what the SMMU can do, read from its ID registers.
 */

import {
  HTTU,
  IDR0,
  IDR1,
  IDR3,
  IDR5,
  PA_BITS,
  SMMU_REG,
  ST_LEVEL,
  STALL_MODEL,
  TTF,
} from '../../../arch/smmuv3/regs.ts';
import type { MmioRegion } from '../../lib/io.ts';

export interface SmmuFeatures {
  s1: boolean;
  s2: boolean;
  twoLvlStrtab: boolean;
  twoLvlCdtab: boolean;
  coherent: boolean;
  btm: boolean;
  httuHa: boolean;
  httuHd: boolean;
  hyp: boolean;
  e2h: boolean;
  ats: boolean;
  pri: boolean;
  msi: boolean;
  sev: boolean;
  /** Stalls supported and may be disabled per stream (STALL_MODEL 0b00). */
  stalls: boolean;
  /** Stall forced (STALL_MODEL 0b10). */
  stallForce: boolean;
  ril: boolean;
  attrTypesOvr: boolean;
  asidBits: number;
  vmidBits: number;
  sidBits: number;
  ssidBits: number;
  cmdqShift: number;
  evtqShift: number;
  priqShift: number;
  /** Output address size, bits. */
  oas: number;
  /** Supported translation granule page sizes (bitmap of sizes incl. blocks), as Linux's pgsize_bitmap. */
  pgsizeBitmap: number;
  granules: { g4k: boolean; g16k: boolean; g64k: boolean };
  /** The hardware only does AArch64 tables (TTF). */
  aarch64: boolean;
}

/** Largest queue the driver allocates (Linux caps each queue at one max-order allocation). */
export const MAX_QUEUE_SHIFT = 12;

export function probeFeatures(regs: MmioRegion): SmmuFeatures | string {
  const idr0 = regs.readl(SMMU_REG.IDR0);
  const idr1 = regs.readl(SMMU_REG.IDR1);
  const idr3 = regs.readl(SMMU_REG.IDR3);
  const idr5 = regs.readl(SMMU_REG.IDR5);
  const st = (idr0 >>> IDR0.ST_LEVEL_SHIFT) & 3;
  const ttf = (idr0 >>> IDR0.TTF_SHIFT) & 3;
  const httu = (idr0 >>> IDR0.HTTU_SHIFT) & 3;
  const stall = (idr0 >>> IDR0.STALL_MODEL_SHIFT) & 3;
  if (!(ttf & TTF.AARCH64)) return 'AArch64 table format not supported';
  if (!(idr0 & (IDR0.S1P | IDR0.S2P))) return 'no translation support!';
  if (idr1 & (IDR1.TABLES_PRESET | IDR1.QUEUES_PRESET | IDR1.REL))
    return 'embedded implementation not supported';
  const oasEnc = idr5 & 7;
  const sidBits = (idr1 >>> IDR1.SIDSIZE_SHIFT) & 0x3f;
  const f: SmmuFeatures = {
    s1: (idr0 & IDR0.S1P) !== 0,
    s2: (idr0 & IDR0.S2P) !== 0,
    twoLvlStrtab: st === ST_LEVEL.TWO_LEVEL && sidBits > 8,
    twoLvlCdtab: (idr0 & IDR0.CD2L) !== 0,
    coherent: (idr0 & IDR0.COHACC) !== 0,
    btm: (idr0 & IDR0.BTM) !== 0,
    httuHa: httu === HTTU.ACCESS || httu === HTTU.ACCESS_DIRTY,
    httuHd: httu === HTTU.ACCESS_DIRTY,
    hyp: (idr0 & IDR0.HYP) !== 0,
    e2h: false,
    ats: (idr0 & IDR0.ATS) !== 0,
    pri: (idr0 & IDR0.PRI) !== 0,
    msi: (idr0 & IDR0.MSI) !== 0,
    sev: (idr0 & IDR0.SEV) !== 0,
    stalls: stall === STALL_MODEL.STALL,
    stallForce: stall === STALL_MODEL.FORCE,
    ril: (idr3 & IDR3.RIL) !== 0,
    attrTypesOvr: (idr1 & IDR1.ATTR_TYPES_OVR) !== 0,
    asidBits: idr0 & IDR0.ASID16 ? 16 : 8,
    vmidBits: idr0 & IDR0.VMID16 ? 16 : 8,
    sidBits,
    ssidBits: (idr1 >>> IDR1.SSIDSIZE_SHIFT) & 0x1f,
    cmdqShift: Math.min(MAX_QUEUE_SHIFT, (idr1 >>> IDR1.CMDQS_SHIFT) & 0x1f),
    evtqShift: Math.min(MAX_QUEUE_SHIFT, (idr1 >>> IDR1.EVENTQS_SHIFT) & 0x1f),
    priqShift: Math.min(MAX_QUEUE_SHIFT, (idr1 >>> IDR1.PRIQS_SHIFT) & 0x1f),
    oas: PA_BITS[oasEnc] ?? 48,
    pgsizeBitmap: 0,
    granules: {
      g4k: (idr5 & IDR5.GRAN4K) !== 0,
      g16k: (idr5 & IDR5.GRAN16K) !== 0,
      g64k: (idr5 & IDR5.GRAN64K) !== 0,
    },
    aarch64: true,
  };
  if (f.oas > 52) f.oas = 52;
  // page sizes: granule + the blocks it allows (4K: 4K|2M|1G, 16K: 16K|32M, 64K: 64K|512M)
  let bm = 0;
  if (f.granules.g4k) bm += 0x1000 + 0x200000 + 0x40000000;
  if (f.granules.g16k) bm += 0x4000 + 0x2000000;
  if (f.granules.g64k) bm += 0x10000 + 0x20000000;
  f.pgsizeBitmap = bm;
  if (f.cmdqShift < 1) return 'command queue too small';
  return f;
}
