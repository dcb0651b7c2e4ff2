/**
 * struct iommu_iotlb_gather: unmaps collect the IOVA range they invalidated here, and the driver
 * flushes the whole range once in iotlb_sync instead of once per page. A page of a different
 * size, or one disjoint from the range gathered so far, forces a sync first (as Linux's
 * iommu_iotlb_gather_add_page), so a range never covers IOVAs that were not unmapped.
 *
 * Waiting. A driver's iotlb_sync issues its invalidation synchronously and returns the wait for
 * completion (a Promise) or nothing. A sync forced in the middle of an unmap cannot be awaited
 * there (unmap_pages is synchronous), so its wait is kept in the gather (`pending`) and the
 * final iotlbSync awaits it together with its own: the unmap does not return before every
 * invalidation it caused has completed, as on Linux, where the nested sync busy-waits.
 */

import type { MaybePromise } from './ops.ts';

/** Anything that can flush a gathered range: an IOMMU domain (domain->ops->iotlb_sync). */
export interface IotlbSyncTarget {
  iotlbSync(gather: IommuIotlbGather): MaybePromise<void>;
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
  /** Waits of invalidations already issued (forced mid-unmap) that the next iotlbSync awaits. */
  pending: Promise<void>[] | null = null;

  init(): void {
    this.start = Number.POSITIVE_INFINITY;
    this.end = 0;
    this.pgsize = 0;
    this.queued = false;
    this.freelist.length = 0;
    this.pending = null;
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

/**
 * Issue the invalidation of what `gather` holds and reset the range (keeping `queued`), without
 * waiting. Returns the wait, or null if the driver completed synchronously.
 */
function issueSync(target: IotlbSyncTarget, gather: IommuIotlbGather): Promise<void> | null {
  const r = target.iotlbSync(gather);
  const q = gather.queued;
  const pending = gather.pending;
  gather.init();
  gather.queued = q;
  gather.pending = pending;
  return r instanceof Promise ? r : null;
}

/** iommu_iotlb_gather_add_page: add a leaf, syncing first if it cannot join the current range. */
export function iotlbGatherAddPage(
  target: IotlbSyncTarget,
  gather: IommuIotlbGather,
  iova: number,
  size: number,
): void {
  if ((gather.pgsize !== 0 && gather.pgsize !== size) || gather.isDisjoint(iova, size)) {
    const p = issueSync(target, gather);
    if (p !== null) (gather.pending ??= []).push(p);
  }
  gather.pgsize = size;
  gather.addRange(iova, size);
}

/**
 * iommu_iotlb_sync: flush what was gathered and reset the gather, then wait until the IOMMU
 * completed this and every invalidation forced earlier into the same gather. The gather is
 * reusable as soon as this returns its promise (everything is issued synchronously).
 */
export async function iotlbSync(target: IotlbSyncTarget, gather: IommuIotlbGather): Promise<void> {
  const w = iotlbSyncIssue(target, gather);
  if (w !== null) await w;
}

/**
 * iotlbSync for hot paths: issue and reset as iotlbSync does, and return the wait, or null when
 * everything already completed (a driver that finished synchronously): no promise to await.
 */
export function iotlbSyncIssue(target: IotlbSyncTarget, gather: IommuIotlbGather): Promise<void> | null {
  const earlier = gather.pending;
  gather.pending = null;
  const p = issueSync(target, gather);
  if (earlier === null) return p;
  if (p !== null) earlier.push(p);
  return earlier.length === 1 ? earlier[0]! : Promise.all(earlier).then(() => undefined);
}
