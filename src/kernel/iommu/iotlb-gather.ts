/**
 * struct iommu_iotlb_gather: unmaps collect the IOVA range they invalidated here, and the driver
 * flushes the whole range once in iotlb_sync instead of once per page. A page of a different
 * size, or one disjoint from the range gathered so far, forces a sync first (as Linux's
 * iommu_iotlb_gather_add_page), so a range never covers IOVAs that were not unmapped.
 */

/** Anything that can flush a gathered range: an IOMMU domain (domain->ops->iotlb_sync). */
export interface IotlbSyncTarget {
  iotlbSync(gather: IommuIotlbGather): void;
}

export class IommuIotlbGather {
  /** First IOVA gathered; Infinity when empty (ULONG_MAX in Linux). */
  start = Number.POSITIVE_INFINITY;
  /** Last IOVA gathered (inclusive); 0 when empty. */
  end = 0;
  /** Page size of the gathered leaves (0 = none yet). */
  pgsize = 0;
  /** Set by the DMA layer in flush-queue mode: the invalidation is deferred, leaves are not added. */
  queued = false;
  /** Page-table pages to free after the sync (freed tables must not be walked by stale walk caches). */
  readonly freelist: number[] = [];

  init(): void {
    this.start = Number.POSITIVE_INFINITY;
    this.end = 0;
    this.pgsize = 0;
    this.queued = false;
    this.freelist.length = 0;
  }

  get empty(): boolean {
    return this.end === 0 && this.start === Number.POSITIVE_INFINITY;
  }

  /** iommu_iotlb_gather_add_range. */
  addRange(iova: number, size: number): void {
    const end = iova + size - 1;
    if (this.start > iova) this.start = iova;
    if (this.end < end) this.end = end;
  }

  /** iommu_iotlb_gather_is_disjoint. */
  isDisjoint(iova: number, size: number): boolean {
    const end = iova + size - 1;
    return this.end !== 0 && (end + 1 < this.start || iova > this.end + 1);
  }
}

/** iommu_iotlb_gather_add_page: add a leaf, syncing first if it cannot join the current range. */
export function iotlbGatherAddPage(
  target: IotlbSyncTarget,
  gather: IommuIotlbGather,
  iova: number,
  size: number,
): void {
  if ((gather.pgsize !== 0 && gather.pgsize !== size) || gather.isDisjoint(iova, size)) {
    iotlbSync(target, gather);
  }
  gather.pgsize = size;
  gather.addRange(iova, size);
}

/** iommu_iotlb_sync: flush what was gathered, then reset the gather. */
export function iotlbSync(target: IotlbSyncTarget, gather: IommuIotlbGather): void {
  target.iotlbSync(gather);
  const q = gather.queued;
  gather.init();
  gather.queued = q;
}
