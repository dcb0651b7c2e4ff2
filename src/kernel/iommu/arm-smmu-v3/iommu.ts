/**
 * The arm-smmu-v3 driver's iommu_ops: masters (per-device state), domains (stage-1 and
 * stage-2 paging domains on io-pgtable, identity and blocked), attach with the Linux ordering
 * rules for ATS, PASID attachments, and TLB/ATC invalidation.
 *
 * Ordering rules (arm_smmu_attach_prepare/commit):
 *  - ATS is disabled at the endpoint before the STE stops allowing it, and enabled only after
 *    the STE allows it, with the whole ATC invalidated first;
 *  - after every change of translation (domain change, unmap, PASID removal) the TLB is
 *    invalidated first, then the ATC, so an ATS request cannot refill the ATC from a stale TLB.
 */

import type { CommandName } from '../../../arch/smmuv3/cmd.ts';
import type { Machine } from '../../../platform/machine.ts';
import type { IommuDevice, IommuDeviceExtras } from '../device.ts';
import {
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_DOMAIN_UNMANAGED,
  IommuDomain,
} from '../domain.ts';
import { EBUSY, EINVAL, ENODEV, ENOMEM, ERANGE } from '../errno.ts';
import { ArmLpaeIoPgtable } from '../io-pgtable/arm-lpae.ts';
import { type IoPgtableCfg, machinePgtableEnv } from '../io-pgtable/io-pgtable.ts';
import { type IommuIotlbGather, iotlbGatherAddPage } from '../iotlb-gather.ts';
import type { IommuCap, IommuDomainOps, IommuOps } from '../ops.ts';
import { type IommuResvRegion, swMsiRegion } from '../resv-regions.ts';
import { atcInvSkipped } from './inject.ts';
import {
  makeAbortSte,
  makeBypassSte,
  makeCdtableSte,
  makeS1Cd,
  makeS2DomainSte,
  type S1Config,
  S1DSS,
  type S2Config,
} from './make-entry.ts';
import { allocNestedDomain } from './nested.ts';
import type { ArmSmmuDevice, CdTable } from './smmu.ts';

/** What the driver learns about a master at probe time (PCI capabilities, DT properties). */
export interface MasterCaps {
  /** The endpoint and the root complex support ATS. */
  ats: boolean;
  /** The endpoint supports PRI. */
  pri: boolean;
  /** PRI responses must carry a PASID (PRG Response PASID Required). */
  priPasidRequired: boolean;
  /** PASID capability width (PCI) or pasid-num-bits (platform). */
  pasidBits: number;
  /** `dma-can-stall` (platform devices). */
  canStall: boolean;
  /** Enable/disable ATS at the endpoint (pci_enable_ats / pci_disable_ats). */
  enableAts?(): void;
  disableAts?(): void;
  /** Enable/disable the endpoint's PASID capability (pci_enable_pasid / pci_disable_pasid). */
  enablePasid?(): void;
  disablePasid?(): void;
}

/** Per-device driver state (struct arm_smmu_master). */
export class ArmSmmuMaster {
  /** StreamIDs of the device. */
  readonly sids: number[];
  cdTable: CdTable | null = null;
  /** log2 of the SSIDs this master may use (min of SMMU and device). */
  readonly ssidBits: number;
  readonly stallEnabled: boolean;
  readonly atsSupported: boolean;
  atsEnabled = false;
  /** The domain attached to the RID (no PASID). */
  domain: IommuDomain | null = null;
  /** PASID → domain. */
  readonly pasids = new Map<number, IommuDomain>();

  constructor(
    readonly dev: IommuDevice,
    readonly smmu: ArmSmmuDevice,
    readonly caps: MasterCaps,
  ) {
    this.sids = [...(dev.iommu?.ids ?? [])];
    this.ssidBits = Math.min(smmu.features.ssidBits, caps.pasidBits);
    // arm_smmu_probe_device: dma-can-stall on an SMMU that can stall, or every master when stall is forced
    this.stallEnabled = (caps.canStall && smmu.features.stalls) || smmu.features.stallForce;
    this.atsSupported = caps.ats && smmu.features.ats;
  }
}

/** The SSID of the RID's attachment (IOMMU_NO_PASID). */
const NO_PASID = 0;

/**
 * One attachment of a master to a domain (struct arm_smmu_master_domain): the domain, and the
 * SSID it is attached on (NO_PASID for the RID). A paging domain keeps one per attachment, of
 * every master whether or not it uses ATS, so that invalidation reaches each (master, SSID) the
 * domain translates for — a master may use one domain on its RID and on PASIDs at once.
 */
export interface MasterDomain {
  readonly master: ArmSmmuMaster;
  /** The domain attached (for a nested domain, the nested domain; the entry sits on its parent). */
  readonly domain: IommuDomain;
  readonly ssid: number;
  /** A nested domain with ATS: a change of the stage-2 parent flushes the master's whole ATC. */
  readonly nestedAtsFlush: boolean;
}

/** Driver state of a paging domain (struct arm_smmu_domain). */
export interface SmmuDomain {
  readonly smmu: ArmSmmuDevice;
  readonly stage: 1 | 2;
  readonly asid: number;
  readonly vmid: number;
  readonly pgt: ArmLpaeIoPgtable;
  readonly s1: S1Config | null;
  readonly s2: S2Config | null;
  /** Set by the first attach: every master of a stage-1 domain must agree on stall. */
  stallEnabled: boolean | null;
  /**
   * smmu_domain->devices: every attachment to this domain (and, for a stage-2 parent, to its
   * nested domains). An attachment is added before the STE/CD points at the domain and removed
   * only after the next configuration took over, so both domains invalidate meanwhile; the same
   * domain attached twice at one SSID (a re-attach) has two entries while it is switched.
   */
  readonly devices: MasterDomain[];
  /** Leaf granule of the domain (smallest page size). */
  readonly granule: number;
  /** io-pgtable asked for a flush of everything: done at the next sync. */
  pendingAll: boolean;
}

export interface ArmSmmuIommuOptions {
  /** Linux's domain stage preference: stage 1 when the SMMU has it (default), else stage 2. */
  preferStage?: 1 | 2;
}

export class ArmSmmuV3Iommu implements IommuOps {
  readonly name = 'arm-smmu-v3';
  readonly pgsizeBitmap: number;
  readonly identityDomain: IommuDomain;
  readonly blockedDomain: IommuDomain;
  private readonly masters = new Map<IommuDevice, ArmSmmuMaster>();
  private readonly asids = new Set<number>();
  private readonly vmids = new Set<number>();
  private nextAsid = 1;
  private nextVmid = 1;
  /** Attach-path counters for demos and tests. */
  readonly stats = { attaches: 0, atsEnables: 0, atsDisables: 0, atcInvs: 0, tlbSyncs: 0 };

  constructor(
    readonly m: Machine,
    readonly smmu: ArmSmmuDevice,
    /** Which device's fwspec belongs to this SMMU, and what the device can do. */
    readonly discover: (dev: IommuDevice) => MasterCaps | null,
    readonly opts: ArmSmmuIommuOptions = {},
  ) {
    const f = smmu.features;
    // io-pgtable uses the 4K granule when the SMMU has it (PAGE_SIZE on Linux), with its blocks
    this.pgsizeBitmap = f.granules.g4k
      ? 0x1000 + 0x200000 + 0x40000000
      : f.granules.g16k
        ? 0x4000 + 0x2000000
        : 0x10000 + 0x20000000;
    const staticOps = (kind: 'bypass' | 'abort'): IommuDomainOps => ({
      attachDev: (d, dev) => this.attachStatic(d, dev, kind),
      setDevPasid: (_d, dev, pasid) => (kind === 'abort' ? this.removePasid(dev, pasid) : -EINVAL),
    });
    this.identityDomain = new IommuDomain(IOMMU_DOMAIN_IDENTITY, staticOps('bypass'), { owner: this });
    this.blockedDomain = new IommuDomain(IOMMU_DOMAIN_BLOCKED, staticOps('abort'), { owner: this });
  }

  masterOf(dev: IommuDevice): ArmSmmuMaster | undefined {
    return this.masters.get(dev);
  }

  /** arm_smmu_find_master: the master that owns a StreamID (for events and page requests). */
  masterBySid(sid: number): ArmSmmuMaster | undefined {
    for (const m of this.masters.values()) if (m.sids.includes(sid)) return m;
    return undefined;
  }

  /** All probed masters. */
  allMasters(): ArmSmmuMaster[] {
    return [...this.masters.values()];
  }

  /** domain_alloc_nested: a stage-1 configuration owned elsewhere (a guest's vSTE) over a stage-2 parent. */
  domainAllocNested(dev: IommuDevice, parent: IommuDomain, data: unknown): IommuDomain | number {
    return allocNestedDomain(this, dev, parent, data);
  }

  // ------------------------------------------------------------------ probe / release

  /** arm_smmu_probe_device. */
  probeDevice(dev: IommuDevice): number {
    if (this.masters.has(dev)) return 0;
    const caps = this.discover(dev);
    if (caps === null || dev.iommu === null || dev.iommu.ids.length === 0) return -ENODEV;
    for (const sid of dev.iommu.ids) {
      if (sid >= 2 ** this.smmu.strtabLog2) {
        this.smmu.err(`StreamID 0x${sid.toString(16)} out of range for ${dev.name}`);
        return -ERANGE;
      }
      const pa = this.smmu.steAddr(sid); // allocates a level-2 stream table if needed
      if (pa < 0) return pa;
      // arm_smmu_insert_master: a StreamID already in the tree from another device is refused
      // (the same ID twice in one fwspec - bridged PCI aliases - is fine)
      const owner = this.masterBySid(sid);
      if (owner !== undefined) {
        this.m.trace.emit(
          `${dev.busName} ${dev.name}`,
          'log',
          `stream ${sid} already in tree from dev ${owner.dev.name}`,
          {},
          'warn',
        );
        return -EINVAL;
      }
    }
    const master = new ArmSmmuMaster(dev, this.smmu, caps);
    this.masters.set(dev, master);
    // arm_smmu_enable_pasid: PASID is enabled at probe, before ATS ever is (PCIe: PASID must be
    // enabled before, and disabled after, ATS)
    if (master.ssidBits > 0) caps.enablePasid?.();
    // what dev_iommu_get_max_pasids() reads: the PCI PASID capability width, or pasid-num-bits
    (dev as IommuDeviceExtras).pasidBits = caps.pasidBits;
    for (const sid of master.sids) this.smmu.sidNames.set(sid, dev.name);
    return 0;
  }

  /** arm_smmu_release_device: block the streams, disable ATS, free the CD table. */
  async releaseDevice(dev: IommuDevice): Promise<void> {
    const master = this.masters.get(dev);
    if (master === undefined) return;
    if (master.atsEnabled) this.disableAts(master);
    const ste =
      this.smmu.opts.disableBypass === false ? makeBypassSte(this.smmu.writeFeatures) : makeAbortSte();
    for (const sid of master.sids) await this.smmu.writeSte(sid, ste);
    if (master.atsEnabled) await this.atcInvMaster(master, null);
    master.atsEnabled = false;
    this.removeMasterDomain(master, master.domain, NO_PASID);
    for (const [pasid, d] of master.pasids) this.removeMasterDomain(master, d, pasid);
    master.pasids.clear();
    if (master.cdTable) this.smmu.freeCdTable(master.cdTable);
    master.cdTable = null;
    if (master.ssidBits > 0) master.caps.disablePasid?.();
    for (const sid of master.sids) this.smmu.sidNames.delete(sid);
    this.masters.delete(dev);
  }

  maxPasids(dev: IommuDevice): number {
    const m = this.masters.get(dev);
    const bits = m ? m.ssidBits : this.smmu.features.ssidBits;
    return bits > 0 ? 2 ** bits : 0;
  }

  capable(_dev: IommuDevice, cap: IommuCap): boolean {
    if (cap === 'cache-coherency' || cap === 'enforce-cache-coherency') return this.smmu.features.coherent;
    if (cap === 'deferred-flush') return true;
    if (cap === 'dirty-tracking') return this.smmu.features.httuHd;
    return false;
  }

  getResvRegions(): IommuResvRegion[] {
    return [swMsiRegion()];
  }

  // ------------------------------------------------------------------ domains

  /** arm_smmu_domain_alloc_paging: a stage-1 domain (stage 2 if the SMMU has no stage 1). */
  domainAllocPaging(_dev: IommuDevice, flags: { nestParent?: boolean } = {}): IommuDomain | number {
    const f = this.smmu.features;
    // IOMMU_HWPT_ALLOC_NEST_PARENT asks for a stage-2 domain (a parent for nested domains)
    const stage: 1 | 2 = flags.nestParent || (this.opts.preferStage === 2 && f.s2) || !f.s1 ? 2 : 1;
    if (stage === 2 && !f.s2) return -EINVAL;
    let asid = 0;
    let vmid = 0;
    if (stage === 1) {
      asid = this.allocId(this.asids, 'nextAsid', 2 ** f.asidBits);
      if (asid < 0) return -ENOMEM; // -ENOSPC in Linux's xarray; the effect is the same
    } else {
      vmid = this.allocId(this.vmids, 'nextVmid', 2 ** f.vmidBits);
      if (vmid < 0) return -ENOMEM;
    }
    let domain!: IommuDomain;
    const priv: Partial<SmmuDomain> = {
      smmu: this.smmu,
      stage,
      asid,
      vmid,
      stallEnabled: null,
      devices: [],
      pendingAll: false,
    };
    const ias = stage === 1 ? 48 : Math.min(f.oas, 48);
    const cfg: IoPgtableCfg = {
      quirks: 0,
      pgsizeBitmap: this.pgsizeBitmap,
      ias,
      oas: f.oas,
      coherentWalk: f.coherent,
      tlb: {
        tlbFlushAll: () => {
          priv.pendingAll = true;
        },
        tlbFlushWalk: (iova, size, granule) => this.tlbInvWalk(priv as SmmuDomain, iova, size, granule),
        tlbAddPage: (gather, iova, granule) => iotlbGatherAddPage(domain, gather, iova, granule),
      },
    };
    const pgt = ArmLpaeIoPgtable.alloc(
      stage === 1 ? 'arm-64-lpae-s1' : 'arm-64-lpae-s2',
      cfg,
      null,
      machinePgtableEnv(this.m),
    );
    if (pgt === null) {
      if (stage === 1) this.asids.delete(asid);
      else this.vmids.delete(vmid);
      return -ENOMEM;
    }
    const granule = 2 ** Math.log2(this.pgsizeBitmap & -this.pgsizeBitmap);
    let s1: S1Config | null = null;
    let s2: S2Config | null = null;
    if (stage === 1) {
      const c = cfg.armLpaeS1Cfg!;
      s1 = {
        asid,
        ttbr: BigInt(c.ttbr),
        tsz: c.tcr.tsz,
        tg: c.tcr.tg,
        irgn: c.tcr.irgn,
        orgn: c.tcr.orgn,
        sh: c.tcr.sh,
        ips: c.tcr.ips,
        mair: BigInt(c.mair),
      };
    } else {
      const c = cfg.armLpaeS2Cfg!;
      s2 = { vmid, vttbr: BigInt(c.vttbr), ...c.vtcr };
    }
    Object.assign(priv, { pgt, s1, s2, granule });
    const ops: IommuDomainOps = {
      attachDev: (d, dev) => this.attachPaging(d, dev),
      setDevPasid: (d, dev, pasid) => this.setDevPasid(d, dev, pasid),
      mapPages: (_d, iova, paddr, pgsize, pgcount, prot) => pgt.mapPages(iova, paddr, pgsize, pgcount, prot),
      unmapPages: (_d, iova, pgsize, pgcount, gather) => {
        // for the DMA-isolation sanitizer's reports: which unmap a stale translation outlived
        this.m.mem.sanitizer?.noteUnmap(
          iova,
          pgsize * pgcount,
          stage === 1 ? asid : -1,
          stage === 2 ? vmid : -1,
        );
        return pgt.unmapPages(iova, pgsize, pgcount, gather);
      },
      iovaToPhys: (_d, iova) => pgt.iovaToPhys(iova),
      iotlbSync: (d, gather) => this.iotlbSync(d, gather),
      flushIotlbAll: (d) => this.flushIotlbAll(d),
      free: (d) => this.freeDomain(d),
    };
    domain = new IommuDomain(IOMMU_DOMAIN_UNMANAGED, ops, {
      pgsizeBitmap: this.pgsizeBitmap,
      owner: this,
      geometry: { apertureStart: 0, apertureEnd: 2 ** ias - 1, forceAperture: true },
    });
    domain.priv = priv as SmmuDomain;
    return domain;
  }

  private allocId(set: Set<number>, cursor: 'nextAsid' | 'nextVmid', limit: number): number {
    for (let n = 1; n < limit; n++) {
      const id = this[cursor];
      this[cursor] = id + 1 >= limit ? 1 : id + 1;
      if (!set.has(id)) {
        set.add(id);
        return id;
      }
    }
    return -1;
  }

  private async freeDomain(d: IommuDomain): Promise<void> {
    const p = d.priv as SmmuDomain;
    // the TLB may still hold the domain's entries: invalidate before the tag is reused
    if (p.stage === 1) {
      await this.smmu.tlbiAsid(p.asid);
      this.asids.delete(p.asid);
    } else {
      await this.smmu.tlbiVmid(p.vmid);
      this.vmids.delete(p.vmid);
    }
    p.pgt.free();
  }

  // ------------------------------------------------------------------ attach

  private master(dev: IommuDevice): ArmSmmuMaster | number {
    return this.masters.get(dev) ?? -ENODEV;
  }

  private ensureCdTable(master: ArmSmmuMaster): number {
    if (master.cdTable) return 0;
    const t = this.smmu.allocCdTable(Math.max(0, master.ssidBits));
    if (typeof t === 'number') return t;
    master.cdTable = t;
    return 0;
  }

  /** to_smmu_domain_devices: the domain whose list tracks attachments of `d` (a nested domain's parent). */
  private devicesDomain(d: IommuDomain | null): SmmuDomain | null {
    if (d === null) return null;
    if (d.isPaging) return d.priv as SmmuDomain;
    if (d.parent?.isPaging && d.parent.owner === this) return d.parent.priv as SmmuDomain;
    return null;
  }

  /** arm_smmu_attach_prepare: track the new attachment before the hardware uses it. */
  private addMasterDomain(master: ArmSmmuMaster, d: IommuDomain, ssid: number, ats: boolean): void {
    const p = this.devicesDomain(d);
    if (p === null) return;
    p.devices.push({ master, domain: d, ssid, nestedAtsFlush: !d.isPaging && ats });
  }

  /** arm_smmu_remove_master_domain: forget one attachment of `master` to `d` at `ssid`. */
  private removeMasterDomain(master: ArmSmmuMaster, d: IommuDomain | null, ssid: number): void {
    const p = this.devicesDomain(d);
    if (p === null) return;
    const i = p.devices.findIndex((e) => e.master === master && e.domain === d && e.ssid === ssid);
    if (i >= 0) p.devices.splice(i, 1);
  }

  /** Mutation drop-pasid-atc-users: forget every PASID attachment of `master` to `d` (the old bug). */
  private dropPasidUsers(master: ArmSmmuMaster, d: IommuDomain | null): void {
    const p = this.devicesDomain(d);
    if (p === null) return;
    for (let i = p.devices.length - 1; i >= 0; i--) {
      const e = p.devices[i]!;
      if (e.master === master && e.domain === d) p.devices.splice(i, 1);
    }
  }

  private disableAts(master: ArmSmmuMaster): void {
    master.caps.disableAts?.();
    this.stats.atsDisables++;
  }

  /** Attach a paging domain to the RID (arm_smmu_attach_dev). */
  private async attachPaging(d: IommuDomain, dev: IommuDevice): Promise<number> {
    const master = this.master(dev);
    if (typeof master === 'number') return master;
    const p = d.priv as SmmuDomain;
    if (p.smmu !== this.smmu) return -EINVAL;
    if (p.stage === 1 && p.stallEnabled !== null && p.stallEnabled !== master.stallEnabled) {
      this.smmu.err(`cannot attach to stall-${p.stallEnabled ? 'enabled' : 'disabled'} domain`);
      return -EINVAL;
    }
    if (p.stage === 2 && master.pasids.size > 0) return -EBUSY;
    // everything that can fail happens before the first write to hardware
    if (p.stage === 1) {
      const r = this.ensureCdTable(master);
      if (r < 0) return r;
      if (this.smmu.cdAddr(master.cdTable!, 0, true) < 0) return -ENOMEM;
    }
    const ats = master.atsSupported;
    let target: bigint[];
    if (p.stage === 1) {
      p.stallEnabled = master.stallEnabled;
      const cd = makeS1Cd({ stallEnabled: master.stallEnabled }, p.s1!);
      const w = await this.smmu.writeCd(master.sids, master.cdTable!, 0, cd);
      if (w.ret) return w.ret;
      target = makeCdtableSte(this.smmu.writeFeatures, master, this.cdRef(master), ats, S1DSS.SSID0);
    } else {
      target = makeS2DomainSte(this.smmu.writeFeatures, master, p.s2!, ats);
    }
    return this.installSte(master, d, target, ats, 0);
  }

  private cdRef(master: ArmSmmuMaster) {
    const t = master.cdTable!;
    return { cdtabDma: t.base, s1fmt: t.s1fmt, s1cdmax: t.s1cdmax };
  }

  /** Identity (bypass) or blocked (abort) RID attachment. */
  private async attachStatic(d: IommuDomain, dev: IommuDevice, kind: 'bypass' | 'abort'): Promise<number> {
    const master = this.master(dev);
    if (typeof master === 'number') return master;
    let target: bigint[];
    if (master.pasids.size > 0) {
      // PASIDs stay translated through the CD table; untagged traffic bypasses or terminates
      if (master.cdTable)
        await this.smmu.writeCd(master.sids, master.cdTable, 0, new Array<bigint>(8).fill(0n));
      target = makeCdtableSte(
        this.smmu.writeFeatures,
        master,
        this.cdRef(master),
        master.atsSupported,
        kind === 'bypass' ? S1DSS.BYPASS : S1DSS.TERMINATE,
      );
      return this.installSte(master, d, target, master.atsSupported, 0);
    }
    target = kind === 'bypass' ? makeBypassSte(this.smmu.writeFeatures) : makeAbortSte();
    return this.installSte(master, d, target, false, 0);
  }

  /**
   * Write the master's STEs with the ATS ordering rules, then record the new RID domain.
   * `ats`: whether the new configuration has EATS set.
   */
  async installSte(
    master: ArmSmmuMaster,
    d: IommuDomain,
    target: bigint[],
    ats: boolean,
    _ssid: number,
  ): Promise<number> {
    this.stats.attaches++;
    // prepare: the new domain invalidates for this master from now on; the endpoint stops using
    // ATS before the STE stops allowing it
    this.addMasterDomain(master, d, NO_PASID, ats);
    if (master.atsEnabled && !ats) this.disableAts(master);
    for (const sid of master.sids) {
      const w = await this.smmu.writeSte(sid, target);
      if (w.ret) {
        this.removeMasterDomain(master, d, NO_PASID);
        return w.ret;
      }
    }
    // commit
    if (ats && !master.atsEnabled) {
      // flush whatever a previous user left in the ATC, then enable
      await this.atcInvMaster(master, null);
      master.caps.enableAts?.();
      this.stats.atsEnables++;
    } else if (ats && master.atsEnabled) {
      await this.atcInvMaster(master, null); // translation changed under an enabled ATC
    } else if (!ats && master.atsEnabled) {
      await this.atcInvMaster(master, null);
    }
    // the old domain's attachment at the RID only: its PASID attachments stay
    this.removeMasterDomain(master, master.domain, NO_PASID);
    if (this.smmu.inject.dropPasidAtcUsers) this.dropPasidUsers(master, master.domain);
    master.atsEnabled = ats;
    master.domain = d;
    return 0;
  }

  /** set_dev_pasid: install a stage-1 domain's CD at `pasid`. */
  private async setDevPasid(d: IommuDomain, dev: IommuDevice, pasid: number): Promise<number> {
    const master = this.master(dev);
    if (typeof master === 'number') return master;
    const p = d.priv as SmmuDomain;
    if (p.stage !== 1 || p.smmu !== this.smmu) return -EINVAL;
    if (pasid <= 0 || pasid >= 2 ** master.ssidBits) return -EINVAL;
    const rid = master.domain;
    if (rid?.isPaging && (rid.priv as SmmuDomain).stage === 2) return -EINVAL;
    if (p.stallEnabled !== null && p.stallEnabled !== master.stallEnabled) return -EINVAL;
    const r = this.ensureCdTable(master);
    if (r < 0) return r;
    if (this.smmu.cdAddr(master.cdTable!, pasid, true) < 0) return -ENOMEM;
    p.stallEnabled = master.stallEnabled;
    const old = master.pasids.get(pasid);
    this.addMasterDomain(master, d, pasid, master.atsSupported);
    const w = await this.smmu.writeCd(master.sids, master.cdTable!, pasid, makeS1Cd(master, p.s1!));
    if (w.ret) {
      this.removeMasterDomain(master, d, pasid);
      return w.ret;
    }
    // the STE must point at the CD table; keep the RID behaviour (S1DSS) as it was
    const cur = this.smmu.readSte(master.sids[0]!);
    const cfg = Number((cur[0]! >> 1n) & 7n);
    if (cfg !== 5) {
      const s1dss = rid === this.identityDomain ? S1DSS.BYPASS : S1DSS.TERMINATE;
      const ste = makeCdtableSte(
        this.smmu.writeFeatures,
        master,
        this.cdRef(master),
        master.atsSupported,
        s1dss,
      );
      for (const sid of master.sids) {
        const wr = await this.smmu.writeSte(sid, ste);
        if (wr.ret) {
          this.removeMasterDomain(master, d, pasid);
          return wr.ret;
        }
      }
      if (master.atsSupported && !master.atsEnabled) {
        await this.atcInvMaster(master, null);
        master.caps.enableAts?.();
        master.atsEnabled = true;
        this.stats.atsEnables++;
      }
    }
    if (old) {
      if (master.atsEnabled) await this.atcInvMaster(master, pasid);
      this.removeMasterDomain(master, old, pasid);
    }
    master.pasids.set(pasid, d);
    return 0;
  }

  /** remove_dev_pasid: clear the CD, invalidate the ATC for the PASID, revert the STE if it was the last. */
  private async removePasid(dev: IommuDevice, pasid: number): Promise<number> {
    const master = this.master(dev);
    if (typeof master === 'number') return master;
    const d = master.pasids.get(pasid);
    if (d === undefined || master.cdTable === null) return 0;
    await this.smmu.writeCd(master.sids, master.cdTable, pasid, new Array<bigint>(8).fill(0n));
    if (master.atsEnabled) await this.atcInvMaster(master, pasid);
    this.removeMasterDomain(master, d, pasid);
    master.pasids.delete(pasid);
    // the CD no longer exists, so no new TLB entries for it; old ones go with the ASID
    const p = d.priv as SmmuDomain;
    await this.smmu.tlbiAsid(p.asid);
    if (
      master.pasids.size === 0 &&
      (master.domain === this.identityDomain ||
        master.domain === this.blockedDomain ||
        master.domain === null)
    ) {
      const kind = master.domain === this.identityDomain ? 'bypass' : 'abort';
      const ste = kind === 'bypass' ? makeBypassSte(this.smmu.writeFeatures) : makeAbortSte();
      if (master.atsEnabled) this.disableAts(master);
      for (const sid of master.sids) await this.smmu.writeSte(sid, ste);
      if (master.atsEnabled) await this.atcInvMaster(master, null);
      master.atsEnabled = false;
    }
    return 0;
  }

  // ------------------------------------------------------------------ invalidation

  private async atcInvMaster(master: ArmSmmuMaster, ssid: number | null, iova = 0, size = 0): Promise<void> {
    this.stats.atcInvs++;
    await this.smmu.atcInv(master.sids, ssid, iova, size);
  }

  /**
   * io-pgtable's tlb_flush_walk (arm_smmu_tlb_inv_walk): a table is being removed — by map_pages
   * (a block replaces it) or unmap_pages — and is freed as soon as this returns, so the TLBI of
   * its range at every level, the ATC invalidation and their CMD_SYNCs complete first. The
   * callers are synchronous, so the CPU spins on the CMD_SYNC (as Linux's does): iommu_map
   * returns with the old translations gone.
   */
  private tlbInvWalk(p: SmmuDomain, iova: number, size: number, granule: number): void {
    const smmu = this.smmu;
    // the table's translations are gone from memory: the sanitizer names this as the unmap
    this.m.mem.sanitizer?.noteUnmap(iova, size, p.stage === 1 ? p.asid : -1, p.stage === 2 ? p.vmid : -1);
    if (smmu.inject.skipWalkFlush) return; // mutation: the table is freed with no TLBI at all
    if (smmu.inject.lateWalkFlush) {
      p.pendingAll = true; // mutation: flushed at the next iotlb_sync, after the table's free
      return;
    }
    this.stats.tlbSyncs++;
    const early = smmu.inject.atcInvBeforeTlbi; // mutation: ATC_INV + CMD_SYNC first
    if (early) for (const cmds of this.atcCmdsDomain(p, iova, size)) smmu.issueAtomic(cmds);
    if (!smmu.inject.skipTlbi) smmu.issueAtomic(this.tlbiCmds(p, iova, size, granule, false));
    if (!early) for (const cmds of this.atcCmdsDomain(p, iova, size)) smmu.issueAtomic(cmds);
  }

  /** TLBI of [iova, iova+size) in the domain's context (and, for stage 2, what stage 1 cached under it). */
  private tlbiCmds(p: SmmuDomain, iova: number, size: number, granule: number, leaf: boolean) {
    const cmds = this.smmu.buildTlbiRange(this.tlbiOp(p), this.tlbiIds(p), iova, size, granule, leaf);
    if (p.stage === 2) cmds.push(['TLBI_S12_VMALL', { VMID: p.vmid }]);
    return cmds;
  }

  /**
   * arm_smmu_atc_inv_domain's commands, one batch per attachment whose master has ATS enabled
   * now: the range (size 0: everything) tagged with the SSID it is attached on, or the whole ATC
   * for a nested attachment. None with inject.skipAtcInv.
   */
  private atcCmdsDomain(p: SmmuDomain, iova: number, size: number) {
    const out: Array<Array<[CommandName, Record<string, number>]>> = [];
    for (const e of p.devices) {
      if (!e.master.atsEnabled) continue;
      this.stats.atcInvs++;
      if (this.smmu.inject.skipAtcInv) continue;
      if (!e.nestedAtsFlush && atcInvSkipped(this.smmu.inject, e.ssid === NO_PASID ? null : e.ssid)) continue;
      if (e.nestedAtsFlush) out.push(this.smmu.atcInvCmds(e.master.sids, null, 0, 0));
      else out.push(this.smmu.atcInvCmds(e.master.sids, e.ssid === NO_PASID ? null : e.ssid, iova, size));
    }
    return out;
  }

  private tlbiOp(p: SmmuDomain): 'TLBI_NH_VA' | 'TLBI_EL2_VA' | 'TLBI_S2_IPA' {
    return p.stage === 2 ? 'TLBI_S2_IPA' : this.smmu.features.e2h ? 'TLBI_EL2_VA' : 'TLBI_NH_VA';
  }

  private tlbiIds(p: SmmuDomain): { asid?: number; vmid?: number } {
    return p.stage === 1 ? { asid: p.asid } : { vmid: p.vmid };
  }

  /**
   * iotlb_sync: TLBI for the gathered range, one CMD_SYNC, then the ATCs — only once the TLBI has
   * completed, or an endpoint's translation request in between would refill its ATC from the
   * stale TLB entry (with the atc-inv-before-tlbi mutation the ATCs go first).
   */
  private async iotlbSync(d: IommuDomain, gather: IommuIotlbGather): Promise<void> {
    const p = d.priv as SmmuDomain;
    this.stats.tlbSyncs++;
    if (p.pendingAll) {
      await this.flushIotlbAll(d);
      return;
    }
    if (gather.empty) return;
    // everything is built from the gather before the first await: the core reuses it meanwhile
    const size = gather.end - gather.start + 1;
    const cmds = this.tlbiCmds(p, gather.start, size, gather.pgsize || p.granule, true);
    const atcs = this.atcCmdsDomain(p, gather.start, size);
    const early = this.smmu.inject.atcInvBeforeTlbi; // mutation: ATC_INV + CMD_SYNC first
    if (early) for (const atc of atcs) await this.smmu.issue(atc, true);
    if (!this.smmu.inject.skipTlbi) await this.smmu.issue(cmds, true);
    if (!early) for (const atc of atcs) await this.smmu.issue(atc, true);
  }

  /** flush_iotlb_all: TLBI by ASID (stage 1) or VMID (stage 2), sync, then the ATCs. */
  private async flushIotlbAll(d: IommuDomain): Promise<void> {
    const p = d.priv as SmmuDomain;
    p.pendingAll = false;
    const early = this.smmu.inject.atcInvBeforeTlbi; // mutation: ATC_INV + CMD_SYNC first
    if (early) for (const atc of this.atcCmdsDomain(p, 0, 0)) await this.smmu.issue(atc, true);
    if (p.stage === 1) await this.smmu.tlbiAsid(p.asid);
    else await this.smmu.tlbiVmid(p.vmid);
    if (!early) for (const atc of this.atcCmdsDomain(p, 0, 0)) await this.smmu.issue(atc, true);
  }
}
