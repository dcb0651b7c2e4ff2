// Test fixtures for the SMMUv2 model: a machine with the device mapped, register access over
// the MMIO bus (as a driver has it), and the programming steps Linux's arm-smmu driver takes
// (arm_smmu_write_context_bank, arm_smmu_write_sme), with page tables built in simulated memory
// by the kernel model's io-pgtable.

import {
  CB,
  CBAR_TYPE_S1_TRANS_S2_BYPASS,
  CBAR_TYPE_S1_TRANS_S2_TRANS,
  CBAR_TYPE_S2_TRANS,
  GR0,
  GR0_S2CR,
  GR0_SMR,
  GR1_CBA2R,
  GR1_CBAR,
  S2CR_TYPE_TRANS,
} from '../../../src/arch/smmuv2/regs.ts';
import { WiredOr } from '../../../src/hw/smmuv2/irq-lines.ts';
import { SmmuV2, type SmmuV2Config } from '../../../src/hw/smmuv2/smmu.ts';
import { type ArmLpaeIoPgtable, allocIoPgtableOps } from '../../../src/kernel/iommu/io-pgtable/arm-lpae.ts';
import {
  IO_PGTABLE_QUIRK_NO_WARN,
  type IoPgtableCfg,
  type IoPgtableFmt,
  machinePgtableEnv,
} from '../../../src/kernel/iommu/io-pgtable/io-pgtable.ts';
import { IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE } from '../../../src/kernel/iommu/prot.ts';
import { Machine } from '../../../src/platform/machine.ts';

export const SMMU_BASE = 0x1000_0000;
export const GLOBAL_IRQ = 40;
export const CTX_IRQ_BASE = 64;
export const RW = IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE;

// sCR0 bits (Linux arm_smmu_device_reset)
export const SCR0_GFRE = 1 << 1;
export const SCR0_GFIE = 1 << 2;
export const SCR0_GCFGFRE = 1 << 4;
export const SCR0_GCFGFIE = 1 << 5;
export const SCR0_USFCFG = 1 << 10;
export const SCR0_SMCFCFG = 1 << 21;
export const SCR0_VMID16EN = (1 << 31) | 0;
// SCTLR
export const SCTLR_M = 1 << 0;
export const SCTLR_TRE = 1 << 1;
export const SCTLR_AFE = 1 << 2;
export const SCTLR_CFRE = 1 << 5;
export const SCTLR_CFIE = 1 << 6;
export const SCTLR_CFCFG = 1 << 7;
export const SCTLR_HUPCF = 1 << 8;
export const SCTLR_ASIDPNE = 1 << 12;
/** What Linux writes for a stage-1 bank (plus CFCFG / HUPCF for a stalling Adreno bank). */
export const SCTLR_LINUX_S1 = SCTLR_CFIE | SCTLR_CFRE | SCTLR_AFE | SCTLR_TRE | SCTLR_M | SCTLR_ASIDPNE;
export const SCTLR_LINUX_S2 = SCTLR_CFIE | SCTLR_CFRE | SCTLR_AFE | SCTLR_TRE | SCTLR_M;

export interface Fixture {
  m: Machine;
  smmu: SmmuV2;
  r: Regs;
}

export function fixture(cfg: SmmuV2Config = {}, seed = 1): Fixture {
  const m = new Machine({ seed });
  const numCb = cfg.numContextBanks ?? 16;
  const smmu = new SmmuV2(m, {
    base: SMMU_BASE,
    globalIrqs: [GLOBAL_IRQ],
    contextIrqs: Array.from({ length: numCb }, (_, i) => CTX_IRQ_BASE + i),
    numContextBanks: numCb,
    ...cfg,
  });
  return { m, smmu, r: new Regs(m, smmu) };
}

/** Register access through the MMIO bus, the way a driver reaches the device. */
export class Regs {
  private readonly out = new Int32Array(2);
  readonly cbBase: number;
  constructor(
    readonly m: Machine,
    readonly smmu: SmmuV2,
    readonly base = smmu.base,
  ) {
    const f = smmu.features;
    this.cbBase = base + f.numPage * 2 ** f.pgshift;
  }
  gr0(off: number): number {
    return this.m.mmio.read32(this.base + off) >>> 0;
  }
  setGr0(off: number, v: number): void {
    this.m.mmio.write32(this.base + off, v >>> 0);
  }
  gr1(off: number): number {
    return this.m.mmio.read32(this.base + 2 ** this.smmu.features.pgshift + off) >>> 0;
  }
  setGr1(off: number, v: number): void {
    this.m.mmio.write32(this.base + 2 ** this.smmu.features.pgshift + off, v >>> 0);
  }
  cbAddr(n: number, off: number): number {
    return this.cbBase + n * 2 ** this.smmu.features.pgshift + off;
  }
  cb(n: number, off: number): number {
    return this.m.mmio.read32(this.cbAddr(n, off)) >>> 0;
  }
  setCb(n: number, off: number, v: number): void {
    this.m.mmio.write32(this.cbAddr(n, off), v >>> 0);
  }
  cb64(n: number, off: number): number {
    this.m.mmio.read64(this.cbAddr(n, off), this.out);
    return (this.out[1]! >>> 0) * 2 ** 32 + (this.out[0]! >>> 0);
  }
  /** writeq: `value` below 2^53, or (lo, hi) halves. */
  setCb64(n: number, off: number, value: number, hi?: number): void {
    const lo = hi === undefined ? value >>> 0 : value;
    const h = hi === undefined ? Math.floor(value / 2 ** 32) : hi;
    this.m.mmio.write64(this.cbAddr(n, off), lo | 0, h | 0);
  }
}

/** arm_smmu_device_reset's final sCR0, with USFCFG per `disableBypass`. */
export function enable(r: Regs, disableBypass = true, extra = 0): void {
  r.setGr0(GR0.sGFSR, r.gr0(GR0.sGFSR));
  r.setGr0(GR0.TLBIALLNSNH, 0);
  r.setGr0(GR0.TLBIALLH, 0);
  r.setGr0(GR0.sTLBGSYNC, -1);
  while (r.gr0(GR0.sTLBGSTATUS) & 1) {}
  let v = SCR0_GFRE | SCR0_GFIE | SCR0_GCFGFRE | SCR0_GCFGFIE | SCR0_SMCFCFG | (1 << 11) | (1 << 12) | extra;
  if (disableBypass) v |= SCR0_USFCFG;
  r.setGr0(GR0.sCR0, v);
}

/** arm_smmu_write_sme: S2CR first, then SMR (VALID | MASK | ID). */
export function streamToBank(
  r: Regs,
  idx: number,
  id: number,
  mask: number,
  cb: number,
  s2crExtra = 0,
): void {
  r.setGr0(GR0_S2CR(idx), (S2CR_TYPE_TRANS << 16) | cb | s2crExtra);
  r.setGr0(GR0_SMR(idx), ((1 << 31) | (mask << 16) | id) >>> 0);
}

export function s2crOnly(r: Regs, idx: number, type: number, id: number, mask = 0): void {
  r.setGr0(GR0_S2CR(idx), type << 16);
  r.setGr0(GR0_SMR(idx), ((1 << 31) | (mask << 16) | id) >>> 0);
}

export interface Table {
  ops: ArmLpaeIoPgtable;
  cfg: IoPgtableCfg;
}

/** An io-pgtable as Linux allocates it for a bank (ARM_32_LPAE_* is the 64-bit format with ias <= 32/40, oas <= 40). */
export function table(
  m: Machine,
  fmt: IoPgtableFmt,
  ias: number,
  oas: number,
  pgsize = 0x1000 + 0x200000 + 0x40000000,
): Table {
  const cfg: IoPgtableCfg = {
    quirks: IO_PGTABLE_QUIRK_NO_WARN,
    pgsizeBitmap: pgsize,
    ias,
    oas,
    coherentWalk: true,
    tlb: null,
  };
  const ops = allocIoPgtableOps(fmt, cfg, { name: 'smmuv2-test' }, machinePgtableEnv(m));
  if (ops === null) throw new Error(`io-pgtable ${fmt} ${ias}/${oas} not allocated`);
  return { ops, cfg };
}

export interface BankOpts {
  asid?: number;
  vmid?: number;
  /** SCTLR bits beyond Linux's (CFCFG, HUPCF), or a whole SCTLR. */
  sctlrExtra?: number;
  sctlr?: number;
  /** AArch64 formats (CBA2R.VA64). Default true. */
  va64?: boolean;
}

/** arm_smmu_write_context_bank for a stage-1 bank (CBAR S1_TRANS_S2_BYPASS, or nested over `s2cb`). */
export function s1Bank(r: Regs, n: number, t: Table, o: BankOpts & { s2cb?: number } = {}): void {
  const f = r.smmu.features;
  const c = t.cfg.armLpaeS1Cfg!;
  const asid = o.asid ?? n;
  const va64 = o.va64 ?? true;
  if (f.hasCba2r) r.setGr1(GR1_CBA2R(n), va64 ? 1 : 0);
  const type = o.s2cb === undefined ? CBAR_TYPE_S1_TRANS_S2_BYPASS : CBAR_TYPE_S1_TRANS_S2_TRANS;
  const cbarLow = o.s2cb === undefined ? (3 << 8) | (0xf << 12) | (o.vmid ?? 0) : o.s2cb << 8;
  r.setGr1(GR1_CBAR(n), (type << 16) | cbarLow);
  let tcr =
    (c.tcr.tg << 14) | (c.tcr.sh << 12) | (c.tcr.orgn << 10) | (c.tcr.irgn << 8) | c.tcr.tsz | (1 << 23);
  if (va64) {
    if (f.hasCba2r) r.setCb(n, CB.TCR2, c.tcr.ips | (7 << 15) | (1 << 4));
  } else tcr |= (1 << 31) | 0; // EAE
  r.setCb(n, CB.TCR, tcr);
  r.setCb64(n, CB.TTBR0, c.ttbr, Math.floor(c.ttbr / 2 ** 32) | (asid << 16));
  r.setCb64(n, CB.TTBR1, 0, asid << 16);
  r.setCb(n, CB.MAIR0, c.mair);
  r.setCb(n, CB.MAIR1, Math.floor(c.mair / 2 ** 32));
  r.setCb(n, CB.SCTLR, o.sctlr ?? SCTLR_LINUX_S1 | (o.sctlrExtra ?? 0));
}

/** arm_smmu_write_context_bank for a stage-2 bank (CBAR S2_TRANS, VTCR, VTTBR). */
export function s2Bank(r: Regs, n: number, t: Table, o: BankOpts = {}): void {
  const f = r.smmu.features;
  const c = t.cfg.armLpaeS2Cfg!;
  const vmid = o.vmid ?? n + 1;
  const va64 = o.va64 ?? true;
  if (f.hasCba2r) r.setGr1(GR1_CBA2R(n), va64 ? 1 : 0);
  r.setGr1(GR1_CBAR(n), (CBAR_TYPE_S2_TRANS << 16) | (vmid & 0xff));
  const v = c.vtcr;
  r.setCb(
    n,
    CB.TCR,
    (1 << 31) |
      (v.ps << 16) |
      (v.tg << 14) |
      (v.sh << 12) |
      (v.orgn << 10) |
      (v.irgn << 8) |
      (v.sl << 6) |
      v.tsz,
  );
  r.setCb64(n, CB.TTBR0, c.vttbr);
  r.setCb(n, CB.SCTLR, o.sctlr ?? SCTLR_LINUX_S2 | (o.sctlrExtra ?? 0));
}

/** Data pages for DMA. */
export const DATA = 0xa000_0000;

/** The wired line is asserted (what the interrupt controller sees). */
export function lineHigh(m: Machine, line: number): boolean {
  return WiredOr.of(m.irq).isHigh(line);
}
