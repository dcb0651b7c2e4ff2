/**
 * Page tables a scenario builds itself: the kernel model's io-pgtable (Arm LPAE, stage 1 or 2)
 * in the lab's memory, for the cases where the scenario plays a role the kernel model does not -
 * a guest kernel owning the stage-1 tables of a nested domain, or a driver of its own. The tables
 * are ordinary bytes in memory; the SMMU walks them like any other.
 */

import { makeS1Cd } from '../kernel/iommu/arm-smmu-v3/make-entry.ts';
import { iommuPgsize } from '../kernel/iommu/domain.ts';
import { ArmLpaeIoPgtable } from '../kernel/iommu/io-pgtable/arm-lpae.ts';
import {
  type IoPgtableCfg,
  type ArmLpaeTcr as KArmLpaeTcr,
  type ArmLpaeVtcr as KArmLpaeVtcr,
  type IoPgtableFmt as KIoPgtableFmt,
  machinePgtableEnv,
} from '../kernel/iommu/io-pgtable/io-pgtable.ts';
import { LabError } from './errors.ts';
import type { Lab } from './lab.ts';

/** The TCR fields of stage-1 tables (T0SZ, TG0, IPS, SH, IRGN, ORGN). */
export type ArmLpaeTcr = KArmLpaeTcr;
/** The VTCR fields of stage-2 tables. */
export type ArmLpaeVtcr = KArmLpaeVtcr;
/** "arm-64-lpae-s1", "arm-64-lpae-s2", or the AArch32 long-descriptor "arm-32-lpae-s1" / "arm-32-lpae-s2" (SMMUv1 banks: 4K granule, stage-1 input 32 bits, output 40). */
export type IoPgtableFmt = KIoPgtableFmt;

/** Geometry of page tables made with allocIoPgtable. */
export interface IoPgtableOptions {
  /** Input address bits. Default 48. */
  ias?: number;
  /** Output address bits. Default 48. */
  oas?: number;
  /** Translation granule. Default 4096 (with 2 MiB and 1 GiB blocks). */
  granule?: 4096 | 16384 | 65536;
}

/** Page tables in the lab's memory (see allocIoPgtable). */
export class IoPgtable {
  private readonly buf = new Float64Array(1);

  /** @internal */
  constructor(
    /** Its format. */
    readonly format: IoPgtableFmt,
    private readonly pgt: ArmLpaeIoPgtable,
    private readonly cfg: IoPgtableCfg,
  ) {}

  /** Map [iova, iova+size) to `pa` with IOMMU_READ / IOMMU_WRITE / ... `prot`: 0 or -errno. */
  map(iova: number, pa: number, size: number, prot: number): number {
    let done = 0;
    while (done < size) {
      const pg = iommuPgsize(this.cfg.pgsizeBitmap, iova + done, pa + done, size - done, this.buf);
      if (pg === 0) return -22;
      const r = this.pgt.mapPages(iova + done, pa + done, pg, this.buf[0]!, prot);
      if (r <= 0) return r < 0 ? r : -22;
      done += r;
    }
    return 0;
  }

  /** Unmap [iova, iova+size): the bytes unmapped. (No TLB is told: that is the caller's job.) */
  unmap(iova: number, size: number): number {
    let done = 0;
    while (done < size) {
      const pg = iommuPgsize(this.cfg.pgsizeBitmap, iova + done, iova + done, size - done, this.buf);
      if (pg === 0) break;
      const r = this.pgt.unmapPages(iova + done, pg, this.buf[0]!, null);
      if (r <= 0) break;
      done += r;
    }
    return done;
  }

  /** The PA `iova` maps to, or 0. */
  iovaToPhys(iova: number): number {
    return this.pgt.iovaToPhys(iova);
  }

  /** Stage 1: the TTBR, TCR fields and MAIR a context descriptor needs (null for stage 2). */
  get s1(): { ttbr: number; tcr: ArmLpaeTcr; mair: number } | null {
    return this.cfg.armLpaeS1Cfg ?? null;
  }

  /** Stage 2: VTTBR and VTCR fields (null for stage 1). */
  get s2(): { vttbr: number; vtcr: ArmLpaeVtcr } | null {
    return this.cfg.armLpaeS2Cfg ?? null;
  }

  /**
   * The SMMUv3 context descriptor (8 64-bit words) for these stage-1 tables, as Linux's
   * arm_smmu_make_s1_cd builds it: `asid`, and CD.S when `stall`.
   */
  contextDescriptor(opts: { asid: number; stall?: boolean }): bigint[] {
    const c = this.cfg.armLpaeS1Cfg;
    if (c === undefined) throw new LabError('contextDescriptor: these are stage-2 tables');
    return makeS1Cd(
      { stallEnabled: opts.stall === true },
      { asid: opts.asid, ttbr: BigInt(c.ttbr), ...c.tcr, mair: BigInt(c.mair) },
    );
  }
}

/** Allocate empty page tables of `format` in the lab's memory. */
export function allocIoPgtable(lab: Lab, format: IoPgtableFmt, opts: IoPgtableOptions = {}): IoPgtable {
  const formats: readonly string[] = ['arm-64-lpae-s1', 'arm-64-lpae-s2', 'arm-32-lpae-s1', 'arm-32-lpae-s2'];
  if (!formats.includes(format)) {
    throw new LabError(`allocIoPgtable: format must be one of ${formats.join(', ')} (got ${String(format)})`);
  }
  const g = opts.granule ?? 4096;
  const bitmap =
    g === 4096
      ? 0x1000 | 0x20_0000 | 0x4000_0000
      : g === 16384
        ? 0x4000 | 0x200_0000
        : g === 65536
          ? 0x1_0000 | 0x2000_0000
          : 0;
  if (bitmap === 0)
    throw new LabError(`allocIoPgtable: granule must be 4096, 16384 or 65536 (got ${String(g)})`);
  const cfg: IoPgtableCfg = {
    quirks: 0,
    pgsizeBitmap: bitmap,
    ias: opts.ias ?? 48,
    oas: opts.oas ?? 48,
    coherentWalk: true,
    tlb: null,
  };
  const p = ArmLpaeIoPgtable.alloc(format, cfg, null, machinePgtableEnv(lab.machine));
  if (p === null)
    throw new LabError(
      `allocIoPgtable: cannot allocate ${format} tables with ias ${cfg.ias}, oas ${cfg.oas}`,
    );
  return new IoPgtable(format, p, cfg);
}
