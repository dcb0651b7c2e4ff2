/**
 * The arm-smmu driver's iommu_ops: masters (struct arm_smmu_master_cfg: the stream-map entries
 * of a device), paging domains finalised on their first attach (arm_smmu_init_domain_context:
 * stage, format, context bank, ASID / VMID, io-pgtable, context-bank programming), identity and
 * blocked domains (S2CR BYPASS / FAULT), map/unmap through io-pgtable with the TLB maintenance
 * of arm-smmu.c's flush ops, and iova_to_phys by the hardware's address translation operation.
 */

import { ATSR_ACTIVE, CB, GR0, PAR_F } from '../../../arch/smmuv2/regs.ts';
import type { Machine } from '../../../platform/machine.ts';
import { pollTimeoutAtomic } from '../../lib/io.ts';
import type { IommuDevice } from '../device.ts';
import {
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_DOMAIN_UNMANAGED,
  IommuDomain,
} from '../domain.ts';
import { EINVAL, ENODEV, ENOMEM } from '../errno.ts';
import { ArmLpaeIoPgtable } from '../io-pgtable/arm-lpae.ts';
import {
  IO_PGTABLE_QUIRK_ARM_TTBR1,
  type IoPgtableCfg,
  type IoPgtableFmt,
  machinePgtableEnv,
} from '../io-pgtable/io-pgtable.ts';
import { type IommuIotlbGather, iotlbGatherAddPage } from '../iotlb-gather.ts';
import type { IommuCap, IommuDomainOps, IommuOps } from '../ops.ts';
import { type IommuResvRegion, swMsiRegion } from '../resv-regions.ts';
import { isQcom } from './qcom.ts';
import {
  ARM_SMMU_V2,
  type ArmSmmuCfg,
  type ArmSmmuContextOwner,
  type ArmSmmuDevice,
  cbarForStage,
  chooseContextFmt,
  FEAT_COHERENT_WALK,
  FEAT_TRANS_OPS,
  FEAT_TRANS_S1,
  FEAT_TRANS_S2,
  INVALID_SMENDX,
  S2CR_TYPE_BYPASS,
  S2CR_TYPE_FAULT,
  S2CR_TYPE_TRANS,
} from './smmu.ts';

/** struct arm_smmu_master_cfg. */
export interface ArmSmmuMasterCfg {
  readonly dev: IommuDevice;
  readonly smmu: ArmSmmuDevice;
  /** fwspec IDs: SMR.ID in 15:0, SMR.MASK in 31:16. */
  readonly ids: readonly number[];
  /** Stream-map entry of each ID. */
  readonly smendx: number[];
  /** The domain attached now. */
  domain: IommuDomain | null;
}

/** struct arm_smmu_domain. */
export class ArmSmmuDomain implements ArmSmmuContextOwner {
  /** Set by the first attach (the domain is then bound to that SMMU). */
  smmu: ArmSmmuDevice | null = null;
  /** Requested stage (1 unless the caller asked for a nesting parent). */
  stage: 1 | 2;
  cfg: ArmSmmuCfg | null = null;
  pgt: ArmLpaeIoPgtable | null = null;
  /** Use TLBIASID for walk flushes (the Qualcomm implementation sets it). */
  flushWalkPreferTlbiasid = false;
  /** io-pgtable quirks to add at finalise (set_pgtable_quirks). */
  pgtblQuirks = 0;
  domain!: IommuDomain;
  /** The io-pgtable configuration (TTBR/TCR/MAIR), once finalised. */
  pgtblCfg: IoPgtableCfg | null = null;

  constructor(stage: 1 | 2) {
    this.stage = stage;
  }
}

export interface ArmSmmuIommuStats {
  attaches: number;
  finalised: number;
  tlbiRange: number;
  tlbiContext: number;
}

export class ArmSmmuV2Iommu implements IommuOps {
  readonly name = 'arm-smmu';
  readonly pgsizeBitmap: number;
  readonly identityDomain: IommuDomain;
  readonly blockedDomain: IommuDomain;
  private readonly masters = new Map<IommuDevice, ArmSmmuMasterCfg>();
  readonly stats: ArmSmmuIommuStats = { attaches: 0, finalised: 0, tlbiRange: 0, tlbiContext: 0 };

  constructor(
    readonly m: Machine,
    readonly smmu: ArmSmmuDevice,
    /** Whether `dev`'s fwspec names this SMMU. */
    readonly owns: (dev: IommuDevice) => boolean,
  ) {
    this.pgsizeBitmap = smmu.pgsizeBitmap;
    const staticOps = (type: number): IommuDomainOps => ({
      attachDev: (_d, dev) => this.attachStatic(dev, type),
    });
    this.identityDomain = new IommuDomain(IOMMU_DOMAIN_IDENTITY, staticOps(S2CR_TYPE_BYPASS), {
      owner: this,
    });
    this.blockedDomain = new IommuDomain(IOMMU_DOMAIN_BLOCKED, staticOps(S2CR_TYPE_FAULT), { owner: this });
  }

  masterOf(dev: IommuDevice): ArmSmmuMasterCfg | undefined {
    return this.masters.get(dev);
  }

  allMasters(): ArmSmmuMasterCfg[] {
    return [...this.masters.values()];
  }

  /**
   * The master whose stream-map entries match StreamID `sid` (what CBFRSYNRA reports), or the
   * first master whose IDs match it under their masks.
   */
  masterBySid(sid: number): ArmSmmuMasterCfg | undefined {
    for (const m of this.masters.values()) {
      for (const id of m.ids) {
        const mask = id >>> 16;
        if ((id & 0xffff & ~mask) === (sid & ~mask)) return m;
      }
    }
    return undefined;
  }

  // ------------------------------------------------------------------ probe / release

  /** arm_smmu_probe_device: check each ID against the implemented bits, allocate its entries. */
  /**
   * Two fwspec IDs (SMR id in bits 15:0, mask in 31:16) can match a common stream when their ids
   * agree outside both masks. Linux groups masters by the stream-map entry they share
   * (arm_smmu_device_group: s2crs[idx].group); an entry is shared when one SMR covers the other,
   * and a partial overlap is refused at probe (arm_smmu_find_sme), so overlap is that test here.
   */
  idsOverlap(a: number, b: number): boolean {
    return ((a ^ b) & ~((a >>> 16) | (b >>> 16)) & 0xffff) === 0;
  }

  probeDevice(dev: IommuDevice): number {
    if (this.masters.has(dev)) return 0;
    if (!this.owns(dev) || dev.iommu === null || dev.iommu.ids.length === 0) return -ENODEV;
    const smmu = this.smmu;
    const ids = [...dev.iommu.ids];
    for (const id of ids) {
      const sid = id & 0xffff;
      const mask = id >>> 16;
      if (sid & ~smmu.streamidMask) {
        smmu.err(
          `${dev.name}: stream ID 0x${sid.toString(16)} out of range for SMMU (0x${smmu.streamidMask.toString(16)})`,
        );
        return -EINVAL;
      }
      if (mask & ~smmu.smrMaskMask) {
        smmu.err(
          `${dev.name}: SMR mask 0x${mask.toString(16)} out of range for SMMU (0x${smmu.smrMaskMask.toString(16)})`,
        );
        return -EINVAL;
      }
    }
    const cfg: ArmSmmuMasterCfg = { dev, smmu, ids, smendx: ids.map(() => INVALID_SMENDX), domain: null };
    const r = smmu.masterAllocSmes(ids, cfg.smendx);
    if (r < 0) return r;
    this.masters.set(dev, cfg);
    return 0;
  }

  /** arm_smmu_release_device: free the stream-map entries. */
  releaseDevice(dev: IommuDevice): void {
    const cfg = this.masters.get(dev);
    if (cfg === undefined) return;
    this.smmu.masterFreeSmes(cfg.smendx);
    this.masters.delete(dev);
  }

  capable(_dev: IommuDevice, cap: IommuCap): boolean {
    if (cap === 'cache-coherency') return this.smmu.has(FEAT_COHERENT_WALK);
    return cap === 'deferred-flush';
  }

  defDomainType(dev: IommuDevice): number {
    return this.smmu.impl?.defDomainType?.(dev) ?? 0;
  }

  getResvRegions(): IommuResvRegion[] {
    return [swMsiRegion()];
  }

  // ------------------------------------------------------------------ domains

  /**
   * arm_smmu_domain_alloc_paging: an unfinalised domain with the SMMU's page sizes; it gets its
   * stage, context bank and tables on the first attach. `nestParent` asks for stage 2 (what
   * Linux's NESTED domains got).
   */
  domainAllocPaging(_dev: IommuDevice, flags: { nestParent?: boolean } = {}): IommuDomain | number {
    const sd = new ArmSmmuDomain(flags.nestParent ? 2 : 1);
    const ops: IommuDomainOps = {
      attachDev: (d, dev) => this.attachDev(sd, d, dev),
      mapPages: (_d, iova, paddr, pgsize, pgcount, prot) =>
        sd.pgt === null ? -ENODEV : sd.pgt.mapPages(iova, paddr, pgsize, pgcount, prot),
      unmapPages: (_d, iova, pgsize, pgcount, gather) =>
        sd.pgt === null ? 0 : sd.pgt.unmapPages(iova, pgsize, pgcount, gather),
      iovaToPhys: (_d, iova) => this.iovaToPhys(sd, iova),
      iotlbSync: () => this.iotlbSync(sd),
      flushIotlbAll: () => this.tlbFlushAll(sd),
      free: () => this.destroyDomainContext(sd),
    };
    const domain = new IommuDomain(IOMMU_DOMAIN_UNMANAGED, ops, {
      pgsizeBitmap: this.smmu.pgsizeBitmap,
      owner: this,
    });
    domain.priv = sd;
    sd.domain = domain;
    return domain;
  }

  /** The driver state of a domain this driver allocated, or null. */
  static domainOf(d: IommuDomain | null): ArmSmmuDomain | null {
    return d !== null && d.priv instanceof ArmSmmuDomain ? d.priv : null;
  }

  /** arm_smmu_init_domain_context: 0, or -errno with nothing allocated. */
  initDomainContext(sd: ArmSmmuDomain, dev: IommuDevice): number {
    const smmu = this.smmu;
    if (sd.smmu !== null) return 0;
    let stage = sd.stage;
    if (!smmu.has(FEAT_TRANS_S1)) stage = 2;
    if (!smmu.has(FEAT_TRANS_S2)) stage = 1;
    const fmt = chooseContextFmt(smmu.features);
    if (fmt === null) return -EINVAL;
    let ias: number;
    let oas: number;
    let pfmt: IoPgtableFmt;
    let start: number;
    if (stage === 1) {
      start = smmu.numS2ContextBanks;
      ias = smmu.vaSize;
      oas = smmu.ipaSize;
      if (fmt === 'aarch64') pfmt = 'arm-64-lpae-s1';
      else {
        pfmt = 'arm-32-lpae-s1';
        ias = Math.min(ias, 32);
        oas = Math.min(oas, 40);
      }
    } else {
      start = 0;
      ias = smmu.ipaSize;
      oas = smmu.paSize;
      if (fmt === 'aarch64') pfmt = 'arm-64-lpae-s2';
      else {
        pfmt = 'arm-32-lpae-s2';
        ias = Math.min(ias, 40);
        oas = Math.min(oas, 40);
      }
    }
    const cbndx = smmu.impl?.allocContextBank
      ? smmu.impl.allocContextBank(smmu, stage, dev, start)
      : smmu.allocContextBankBitmap(start, smmu.numContextBanks);
    if (cbndx < 0) return cbndx;
    const cfg: ArmSmmuCfg = {
      cbndx,
      irptndx: smmu.nextIrptndx(cbndx),
      asid: stage === 1 ? cbndx : 0,
      vmid: stage === 2 ? cbndx + 1 : 0,
      cbar: cbarForStage(stage),
      fmt,
      ttbr1: false,
    };
    sd.stage = stage;
    sd.flushWalkPreferTlbiasid = isQcom(smmu);
    const domain = sd.domain;
    const pgtbl: IoPgtableCfg = {
      quirks: 0,
      pgsizeBitmap: smmu.pgsizeBitmap,
      ias,
      oas,
      coherentWalk: smmu.has(FEAT_COHERENT_WALK),
      tlb: {
        tlbFlushAll: () => this.tlbFlushAll(sd),
        tlbFlushWalk: (iova, size, granule) => this.tlbFlushWalk(sd, iova, size, granule),
        tlbAddPage: (gather, iova, granule) => this.tlbAddPage(sd, gather, iova, granule),
      },
    };
    if (smmu.impl?.initContext) {
      const r = smmu.impl.initContext(smmu, cfg, pgtbl, dev);
      if (r) {
        smmu.freeContextBank(cbndx);
        return r;
      }
    }
    pgtbl.quirks |= sd.pgtblQuirks;
    const pgt = ArmLpaeIoPgtable.alloc(pfmt, pgtbl, sd, machinePgtableEnv(this.m));
    if (pgt === null) {
      smmu.freeContextBank(cbndx);
      return -ENOMEM;
    }
    sd.smmu = smmu;
    sd.cfg = cfg;
    sd.pgtblCfg = pgtbl;
    // the domain's page sizes are the format's
    domain.pgsizeBitmap = pgtbl.pgsizeBitmap;
    // the TTBR1 half: the sign-extended addresses, as negative Numbers (~0UL << ias .. ~0UL)
    domain.geometry =
      pgtbl.quirks & IO_PGTABLE_QUIRK_ARM_TTBR1
        ? { apertureStart: -(2 ** pgtbl.ias), apertureEnd: -1, forceAperture: true }
        : { apertureStart: 0, apertureEnd: 2 ** pgtbl.ias - 1, forceAperture: true };
    smmu.initContextBank(cfg, pgtbl, sd);
    smmu.writeContextBank(cbndx);
    // publish the page tables last: map/unmap see a finished context
    sd.pgt = pgt;
    this.stats.finalised++;
    return 0;
  }

  /** arm_smmu_destroy_domain_context + free. */
  private destroyDomainContext(sd: ArmSmmuDomain): void {
    const smmu = sd.smmu;
    const cfg = sd.cfg;
    if (smmu !== null && cfg !== null) {
      smmu.clearContextBank(cfg.cbndx);
      smmu.writeContextBank(cfg.cbndx);
      smmu.freeContextBank(cfg.cbndx);
    }
    sd.pgt?.free();
    sd.pgt = null;
  }

  /** arm_smmu_attach_dev. */
  private attachDev(sd: ArmSmmuDomain, _d: IommuDomain, dev: IommuDevice): number {
    const cfg = this.masters.get(dev);
    if (cfg === undefined) return -ENODEV;
    const r = this.initDomainContext(sd, dev);
    if (r < 0) return r;
    // domains do not span SMMUs
    if (sd.smmu !== this.smmu) return -EINVAL;
    this.smmu.installS2crs(cfg.smendx, S2CR_TYPE_TRANS, sd.cfg!.cbndx);
    cfg.domain = sd.domain;
    this.stats.attaches++;
    return 0;
  }

  /** Identity (S2CR BYPASS) or blocked (S2CR FAULT). */
  private attachStatic(dev: IommuDevice, type: number): number {
    const cfg = this.masters.get(dev);
    if (cfg === undefined) return -ENODEV;
    this.smmu.installS2crs(cfg.smendx, type, 0);
    cfg.domain = type === S2CR_TYPE_BYPASS ? this.identityDomain : this.blockedDomain;
    this.stats.attaches++;
    return 0;
  }

  // ------------------------------------------------------------------ TLB maintenance (flush ops)

  /** tlb_flush_all: arm_smmu_tlb_inv_context_s1 / _s2. */
  private tlbFlushAll(sd: ArmSmmuDomain): void {
    const smmu = sd.smmu;
    const cfg = sd.cfg;
    if (smmu === null || cfg === null) return;
    this.stats.tlbiContext++;
    if (sd.stage === 1) smmu.tlbInvContextS1(cfg);
    else smmu.tlbInvContextS2(cfg);
  }

  /** tlb_flush_walk: a table is going away; invalidate its range now and sync. */
  private tlbFlushWalk(sd: ArmSmmuDomain, iova: number, size: number, granule: number): void {
    const smmu = sd.smmu;
    const cfg = sd.cfg;
    if (smmu === null || cfg === null) return;
    this.stats.tlbiRange++;
    if (sd.stage === 1) {
      if (sd.flushWalkPreferTlbiasid) smmu.tlbInvContextS1(cfg);
      else {
        smmu.tlbInvRangeS1(cfg, iova, size, granule, CB.TLBIVA);
        smmu.tlbSyncContext(cfg.cbndx);
      }
    } else if (smmu.version === ARM_SMMU_V2) {
      smmu.tlbInvRangeS2(cfg, iova, size, granule, CB.TLBIIPAS2);
      smmu.tlbSyncContext(cfg.cbndx);
    } else smmu.tlbInvContextS2(cfg);
  }

  /** tlb_add_page: the leaf's TLBI goes out now; iotlb_sync waits for it. */
  private tlbAddPage(sd: ArmSmmuDomain, gather: IommuIotlbGather, iova: number, granule: number): void {
    const smmu = sd.smmu;
    const cfg = sd.cfg;
    if (smmu === null || cfg === null) return;
    this.stats.tlbiRange++;
    if (sd.stage === 1) smmu.tlbInvRangeS1(cfg, iova, granule, granule, CB.TLBIVAL);
    else if (smmu.version === ARM_SMMU_V2) smmu.tlbInvRangeS2(cfg, iova, granule, granule, CB.TLBIIPAS2L);
    else smmu.gr0Write(GR0.TLBIVMID, cfg.vmid);
    iotlbGatherAddPage(sd.domain, gather, iova, granule);
  }

  /** arm_smmu_iotlb_sync: a context sync (SMMUv2 or stage 1), else a global one. */
  private iotlbSync(sd: ArmSmmuDomain): void {
    const smmu = sd.smmu;
    const cfg = sd.cfg;
    if (smmu === null || cfg === null) return;
    if (smmu.version === ARM_SMMU_V2 || sd.stage === 1) smmu.tlbSyncContext(cfg.cbndx);
    else smmu.tlbSyncGlobal();
  }

  // ------------------------------------------------------------------ iova_to_phys

  /** arm_smmu_iova_to_phys: the hardware walk (ATS1PR) for stage 1 with FEAT_TRANS_OPS, else software. */
  private iovaToPhys(sd: ArmSmmuDomain, iova: number): number {
    const smmu = sd.smmu;
    const cfg = sd.cfg;
    if (sd.pgt === null) return 0;
    if (smmu === null || cfg === null || sd.stage !== 1 || !smmu.has(FEAT_TRANS_OPS))
      return sd.pgt.iovaToPhys(iova);
    const idx = cfg.cbndx;
    const va = Math.floor(iova / 4096) * 4096; // a negative (upper-half) IOVA writes its 64-bit form
    if (cfg.fmt === 'aarch64') smmu.cbWriteq(idx, CB.ATS1PR, va);
    else smmu.cbWrite(idx, CB.ATS1PR, va >>> 0);
    const r = pollTimeoutAtomic(
      this.m.exec,
      () => smmu.cbRead(idx, CB.ATSR),
      (v) => (v & ATSR_ACTIVE) === 0,
      50_000,
      5_000,
    );
    if (!r.ok) {
      smmu.err(`iova to phys timed out on 0x${iova.toString(16)}. Falling back to software table walk.`);
      return sd.pgt.iovaToPhys(iova);
    }
    const par = smmu.cbReadq(idx, CB.PAR);
    if (par % 2 === PAR_F) {
      smmu.err(`translation fault!`);
      smmu.err(`PAR = 0x${par.toString(16)}`);
      return 0;
    }
    // PAR[39:12] | iova[11:0]
    return (Math.floor(par / 4096) % 2 ** 28) * 4096 + (iova - va);
  }
}
