/**
 * The contract between the IOMMU core and IOMMU drivers (struct iommu_ops / iommu_domain_ops).
 * Small tables, as in Linux: the core knows no vendor. All driver callbacks are synchronous
 * (they run with the group mutex held and write tables/registers/queues; waiting for the
 * hardware is the driver's business through its own queues).
 */

import type { IommuDevice } from './device.ts';
import type { IommuDomain, IommuDomainType } from './domain.ts';
import type { IommuIotlbGather } from './iotlb-gather.ts';
import type { IommuResvRegion } from './resv-regions.ts';

export interface IommuDomainOps {
  /** Make `dev` translate through `domain` (`old` is what it used before). 0 or -errno; on error nothing changed. */
  attachDev(domain: IommuDomain, dev: IommuDevice, old: IommuDomain | null): number;
  /** Attach `domain` to `pasid` of `dev` (`old` is the domain it replaces, null for a new attach). */
  setDevPasid?(domain: IommuDomain, dev: IommuDevice, pasid: number, old: IommuDomain | null): number;
  /** Paging domains: map `pgcount` pages of `pgsize`; bytes mapped (> 0) or -errno. */
  mapPages?(
    domain: IommuDomain,
    iova: number,
    paddr: number,
    pgsize: number,
    pgcount: number,
    prot: number,
  ): number;
  /** Paging domains: bytes unmapped (0 on failure). */
  unmapPages?(
    domain: IommuDomain,
    iova: number,
    pgsize: number,
    pgcount: number,
    gather: IommuIotlbGather,
  ): number;
  iovaToPhys?(domain: IommuDomain, iova: number): number;
  /** After map: make new mappings visible (needed by some IOMMUs; SMMUv3 has none). */
  iotlbSyncMap?(domain: IommuDomain, iova: number, size: number): number;
  /** Invalidate what `gather` collected. */
  iotlbSync?(domain: IommuDomain, gather: IommuIotlbGather): void;
  flushIotlbAll?(domain: IommuDomain): void;
  free?(domain: IommuDomain): void;
}

export type IommuCap = 'cache-coherency' | 'deferred-flush' | 'enforce-cache-coherency' | 'dirty-tracking';

export interface IommuOps {
  readonly name: string;
  /** Claim `dev` (its fwspec IDs belong to this IOMMU); returns 0 or -errno (-ENODEV: not mine). */
  probeDevice(dev: IommuDevice): number;
  releaseDevice?(dev: IommuDevice): void;
  /** Number of PASIDs the IOMMU supports for this device (0 = none). */
  maxPasids?(dev: IommuDevice): number;
  capable?(dev: IommuDevice, cap: IommuCap): boolean;
  /** A driver's required default domain type for `dev` (0 = no preference). */
  defDomainType?(dev: IommuDevice): IommuDomainType | 0;
  /** domain_alloc_paging: a paging (UNMANAGED/DMA) domain suitable for `dev`, or -errno. */
  domainAllocPaging?(dev: IommuDevice): IommuDomain | number;
  domainAllocSva?(dev: IommuDevice, mm: unknown): IommuDomain | number;
  domainAllocNested?(dev: IommuDevice, parent: IommuDomain, data: unknown): IommuDomain | number;
  /** Static domains (ops->identity_domain / ops->blocked_domain). */
  readonly identityDomain?: IommuDomain;
  readonly blockedDomain?: IommuDomain;
  getResvRegions?(dev: IommuDevice): IommuResvRegion[];
  /** Page sizes of paging domains. */
  readonly pgsizeBitmap: number;
}
