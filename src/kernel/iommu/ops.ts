/**
 * The contract between the IOMMU core and IOMMU drivers (struct iommu_ops / iommu_domain_ops).
 * Small tables, as in Linux: the core knows no vendor.
 *
 * Waiting for hardware. A callback that must see the IOMMU finish something before it returns
 * (an STE update step acknowledged by CFGI_STE + CMD_SYNC, a TLBI + CMD_SYNC in iotlb_sync) may
 * return a Promise: the core always `await`s it, and the scheduler's async run loops let the
 * hardware model progress in virtual time meanwhile. Plain (synchronous) returns are fine too.
 *
 *  - May return a Promise: attachDev, setDevPasid, iotlbSync, flushIotlbAll, free,
 *    probeDevice, releaseDevice, domainAllocPaging, domainAllocNested.
 *  - Always synchronous (hot paths, no waiting): mapPages, unmapPages (only collects into the
 *    gather), iovaToPhys, iotlbSyncMap, maxPasids, capable, defDomainType, getResvRegions.
 *
 * Context. attach/detach/PASID/probe/release callbacks run with the group mutex held, in
 * sleepable context: they may sleep. iotlbSync and flushIotlbAll may be called from atomic
 * context (dma_unmap with IRQs off, the flush-queue timer): they must only busy-wait
 * (`exec.delay`, polling CMDQ_CONS) or wait without mightSleep, never take a mutex or sleep.
 *
 * iotlbSync: issue the invalidation of what `gather` holds synchronously, before the first
 * await (the core re-initialises the gather as soon as the call returns, and an unmap may call
 * it in the middle of collecting leaves through iotlbGatherAddPage); the returned promise is
 * the wait for completion. A later completed CMD_SYNC covers earlier commands, so the core only
 * guarantees that every returned promise has settled before iommu_unmap returns.
 */

import type { IommuDevice } from './device.ts';
import type { IommuDomain, IommuDomainType } from './domain.ts';
import type { IommuIotlbGather } from './iotlb-gather.ts';
import type { IommuResvRegion } from './resv-regions.ts';

/** A driver callback's result: now, or after waiting for the hardware. */
export type MaybePromise<T> = T | Promise<T>;

export interface IommuDomainOps {
  /**
   * Make `dev` translate through `domain` (`old` is what it used before). 0 or -errno; on error
   * the device must still translate through `old` (the driver undoes any partial update).
   */
  attachDev(domain: IommuDomain, dev: IommuDevice, old: IommuDomain | null): MaybePromise<number>;
  /**
   * Attach `domain` to `pasid` of `dev` (`old` is the domain it replaces, null for a new attach).
   * The driver's blocked domain's setDevPasid removes a PASID (remove_dev_pasid).
   */
  setDevPasid?(
    domain: IommuDomain,
    dev: IommuDevice,
    pasid: number,
    old: IommuDomain | null,
  ): MaybePromise<number>;
  /** Paging domains: map `pgcount` pages of `pgsize`; bytes mapped (> 0) or -errno. Synchronous. */
  mapPages?(
    domain: IommuDomain,
    iova: number,
    paddr: number,
    pgsize: number,
    pgcount: number,
    prot: number,
  ): number;
  /** Paging domains: bytes unmapped (0 on failure). Synchronous: only collects into `gather`. */
  unmapPages?(
    domain: IommuDomain,
    iova: number,
    pgsize: number,
    pgcount: number,
    gather: IommuIotlbGather,
  ): number;
  iovaToPhys?(domain: IommuDomain, iova: number): number;
  /** After map: make new mappings visible (needed by some IOMMUs; SMMUv3 has none). Synchronous. */
  iotlbSyncMap?(domain: IommuDomain, iova: number, size: number): number;
  /** Invalidate what `gather` collected (see the file comment); resolves when the IOMMU is done. */
  iotlbSync?(domain: IommuDomain, gather: IommuIotlbGather): MaybePromise<void>;
  /** Invalidate every TLB entry of the domain; resolves when the IOMMU is done. */
  flushIotlbAll?(domain: IommuDomain): MaybePromise<void>;
  free?(domain: IommuDomain): MaybePromise<void>;
}

/** domain_alloc_paging_flags flags (IOMMU_HWPT_ALLOC_*). */
export interface IommuAllocFlags {
  /** IOMMU_HWPT_ALLOC_NEST_PARENT: a stage-2 domain nested domains can sit on. */
  nestParent?: boolean;
}

export type IommuCap = 'cache-coherency' | 'deferred-flush' | 'enforce-cache-coherency' | 'dirty-tracking';

export interface IommuOps {
  readonly name: string;
  /** Claim `dev` (its fwspec IDs belong to this IOMMU); returns 0 or -errno (-ENODEV: not mine). */
  probeDevice(dev: IommuDevice): MaybePromise<number>;
  /**
   * Do two fwspec IDs select overlapping streams (so that the IOMMU cannot tell the devices
   * apart)? Default: equal IDs. SMMUv2 drivers answer for SMR id/mask pairs.
   */
  idsOverlap?(a: number, b: number): boolean;
  releaseDevice?(dev: IommuDevice): MaybePromise<void>;
  /** Number of PASIDs the IOMMU supports for this device (0 = none). */
  maxPasids?(dev: IommuDevice): number;
  capable?(dev: IommuDevice, cap: IommuCap): boolean;
  /** A driver's required default domain type for `dev` (0 = no preference). */
  defDomainType?(dev: IommuDevice): IommuDomainType | 0;
  /** domain_alloc_paging: a paging (UNMANAGED/DMA) domain suitable for `dev`, or -errno. */
  domainAllocPaging?(dev: IommuDevice, flags?: IommuAllocFlags): MaybePromise<IommuDomain | number>;
  domainAllocNested?(
    dev: IommuDevice,
    parent: IommuDomain,
    data: unknown,
  ): MaybePromise<IommuDomain | number>;
  /** Static domains (ops->identity_domain / ops->blocked_domain). */
  readonly identityDomain?: IommuDomain;
  readonly blockedDomain?: IommuDomain;
  getResvRegions?(dev: IommuDevice): IommuResvRegion[];
  /** Page sizes of paging domains. */
  readonly pgsizeBitmap: number;
}
