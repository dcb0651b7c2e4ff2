/**
 * IOMMU domains (struct iommu_domain) and the domain operations of the core: iommu_map with
 * page-size selection from the domain's bitmap, iommu_unmap with an iotlb gather, iova_to_phys,
 * flush_iotlb_all.
 *
 * Map is synchronous (no invalidation needed). Unmap and flush_iotlb_all are async: they return
 * only when the IOMMU has completed the invalidation (the driver's CMD_SYNC). They never sleep
 * (no mightSleep): on Linux they busy-wait and may be called in atomic context.
 */

import { EINVAL, ENODEV, ERANGE } from './errno.ts';
import { pgsizeHas, pgsizes } from './io-pgtable/io-pgtable.ts';
import { IommuIotlbGather, type IotlbSyncTarget, iotlbSync } from './iotlb-gather.ts';
import type { IommuDomainOps, IommuOps, MaybePromise } from './ops.ts';

// __IOMMU_DOMAIN_* feature bits
export const __IOMMU_DOMAIN_PAGING = 1 << 0;
export const __IOMMU_DOMAIN_DMA_API = 1 << 1;
export const __IOMMU_DOMAIN_PT = 1 << 2;
export const __IOMMU_DOMAIN_DMA_FQ = 1 << 3;
export const __IOMMU_DOMAIN_SVA = 1 << 4;
export const __IOMMU_DOMAIN_PLATFORM = 1 << 5;
export const __IOMMU_DOMAIN_NESTED = 1 << 6;

export const IOMMU_DOMAIN_BLOCKED = 0;
export const IOMMU_DOMAIN_IDENTITY = __IOMMU_DOMAIN_PT;
export const IOMMU_DOMAIN_UNMANAGED = __IOMMU_DOMAIN_PAGING;
export const IOMMU_DOMAIN_DMA = __IOMMU_DOMAIN_PAGING | __IOMMU_DOMAIN_DMA_API;
export const IOMMU_DOMAIN_DMA_FQ = __IOMMU_DOMAIN_PAGING | __IOMMU_DOMAIN_DMA_API | __IOMMU_DOMAIN_DMA_FQ;
export const IOMMU_DOMAIN_SVA = __IOMMU_DOMAIN_SVA;
export const IOMMU_DOMAIN_PLATFORM = __IOMMU_DOMAIN_PLATFORM;
export const IOMMU_DOMAIN_NESTED = __IOMMU_DOMAIN_NESTED;

export type IommuDomainType = number;

export function domainTypeName(t: IommuDomainType): string {
  switch (t) {
    case IOMMU_DOMAIN_BLOCKED:
      return 'Blocked';
    case IOMMU_DOMAIN_IDENTITY:
      return 'Passthrough';
    case IOMMU_DOMAIN_UNMANAGED:
      return 'Unmanaged';
    case IOMMU_DOMAIN_DMA:
      return 'Translated';
    case IOMMU_DOMAIN_DMA_FQ:
      return 'Translated (lazy)';
    case IOMMU_DOMAIN_SVA:
      return 'SVA';
    case IOMMU_DOMAIN_NESTED:
      return 'Nested';
    default:
      return `type ${t}`;
  }
}

export interface IommuDomainGeometry {
  apertureStart: number;
  apertureEnd: number;
  /** DMA only inside the aperture. */
  forceAperture: boolean;
}

/**
 * A call on a domain after iommu_domain_free (a use-after-free in Linux): reported, and the
 * caller refuses to touch the freed tables. True if `d` is freed.
 */
export function usedAfterFree(d: IommuDomain, what: string): boolean {
  if (!d.freed) return false;
  d.warn?.(`${what} of ${d} after iommu_domain_free`);
  return true;
}

/** Domain numbers count per owning IOMMU driver instance, so a run's numbering depends only on it. */
const domainCounters = new WeakMap<object, { n: number }>();
let ownerlessDomains = 1;

function nextDomainId(owner: object | null | undefined): number {
  if (!owner) return ownerlessDomains++;
  let c = domainCounters.get(owner);
  if (c === undefined) domainCounters.set(owner, (c = { n: 1 }));
  return c.n++;
}

export class IommuDomain implements IotlbSyncTarget {
  readonly id: number;
  type: IommuDomainType;
  readonly ops: IommuDomainOps;
  /** The IOMMU driver that created it (domain->owner). */
  owner: IommuOps | null = null;
  pgsizeBitmap: number;
  geometry: IommuDomainGeometry;
  /** Driver private state (the SMMU domain, the io-pgtable, ...). */
  priv: unknown = null;
  /** The DMA layer's IOVA cookie (iommu_dma_cookie) for DMA domains. */
  iovaCookie: unknown = null;
  /** For nested domains: the stage-2 parent. */
  parent: IommuDomain | null = null;
  /** Counters of what the core asked the driver to do. */
  readonly stats = { maps: 0, unmaps: 0, iotlbSyncs: 0, flushAll: 0 };
  /**
   * The invalidation a failed iommu_map issued while unwinding what it had mapped (map is
   * synchronous and cannot wait for it). Whoever reuses those IOVAs must wait for it first:
   * see takeMapUnwind().
   */
  mapUnwind: Promise<void> | null = null;
  /** Set by iommu_domain_free: the tables are gone, and any later use is a driver bug. */
  freed = false;
  /** Where the core reports a use after free (WARNING); null outside a core. */
  warn: ((msg: string) => void) | null = null;

  constructor(
    type: IommuDomainType,
    ops: IommuDomainOps,
    opts: { pgsizeBitmap?: number; geometry?: Partial<IommuDomainGeometry>; owner?: IommuOps } = {},
  ) {
    this.id = nextDomainId(opts.owner);
    this.type = type;
    this.ops = ops;
    this.pgsizeBitmap = opts.pgsizeBitmap ?? 0;
    this.owner = opts.owner ?? null;
    this.geometry = {
      apertureStart: opts.geometry?.apertureStart ?? 0,
      apertureEnd: opts.geometry?.apertureEnd ?? Number.MAX_SAFE_INTEGER,
      forceAperture: opts.geometry?.forceAperture ?? false,
    };
  }

  get isPaging(): boolean {
    return (this.type & __IOMMU_DOMAIN_PAGING) !== 0;
  }

  get isDma(): boolean {
    return (this.type & __IOMMU_DOMAIN_DMA_API) !== 0;
  }

  /** domain->ops->iotlb_sync for a non-empty gather: issues now, returns the wait (if any). */
  iotlbSync(gather: IommuIotlbGather): MaybePromise<void> {
    if (this.ops.iotlbSync !== undefined && !gather.empty) {
      this.stats.iotlbSyncs++;
      return this.ops.iotlbSync(this, gather);
    }
  }

  toString(): string {
    return `domain#${this.id} (${domainTypeName(this.type)})`;
  }
}

/**
 * iommu_pgsize: the biggest page size usable at (iova, paddr) for `size`, and how many of them
 * to map before a bigger size becomes possible. Writes the count to `out[0]`.
 */
export function iommuPgsize(
  bitmap: number,
  iova: number,
  paddr: number,
  size: number,
  out: Float64Array,
): number {
  const sizes = pgsizes(bitmap);
  // the alignment both addresses share bounds the page size (0 when both are 0: any alignment)
  const align = Math.min(lowestSetBit(iova), lowestSetBit(paddr));
  let pgsize = 0;
  for (const s of sizes) {
    if (s > size || s > align) break;
    pgsize = s;
  }
  if (pgsize === 0) {
    out[0] = 0;
    return 0;
  }
  const next = sizes.find((s) => s > pgsize);
  // map only up to the next bigger page size's boundary if iova and paddr are offset alike there
  if (next !== undefined) {
    // the offset within `next` (of a negative, upper-half IOVA too: its two's-complement bits)
    const im = iova < 0 ? (iova % next) + next : iova % next;
    if (im % next === paddr % next) {
      const offset = next - (im % next);
      if (offset + next <= size) size = offset;
    }
  }
  out[0] = Math.floor(size / pgsize);
  return pgsize;
}

/** The largest power of two dividing x (Infinity for 0). */
function lowestSetBit(x: number): number {
  if (x === 0) return Number.POSITIVE_INFINITY;
  const lo = x >>> 0;
  if (lo !== 0) return (lo & -lo) >>> 0;
  const hi = Math.floor(x / 2 ** 32);
  return (hi & -hi) * 2 ** 32;
}

const countBuf = new Float64Array(1);

/** Minimum page size of a domain. */
export function minPagesz(d: IommuDomain): number {
  const s = pgsizes(d.pgsizeBitmap);
  return s.length ? s[0]! : 0;
}

/**
 * iommu_map without the sync: maps [iova, iova+size) -> paddr with the largest page sizes the
 * alignment allows. On failure, unmaps what it mapped. Returns 0 or -errno.
 */
export function iommuMapNosync(
  d: IommuDomain,
  iova: number,
  paddr: number,
  size: number,
  prot: number,
): number {
  const ops = d.ops;
  if (ops.mapPages === undefined || d.pgsizeBitmap === 0) return -ENODEV;
  if (!d.isPaging || usedAfterFree(d, 'iommu_map')) return -EINVAL;
  const min = minPagesz(d);
  if (iova % min !== 0 || paddr % min !== 0 || size % min !== 0 || size <= 0) return -EINVAL;
  if (iova + size - 1 > d.geometry.apertureEnd || iova < d.geometry.apertureStart) {
    if (d.geometry.forceAperture) return -ERANGE;
  }
  const origIova = iova;
  const origSize = size;
  while (size > 0) {
    const pgsize = iommuPgsize(d.pgsizeBitmap, iova, paddr, size, countBuf);
    const r = ops.mapPages(d, iova, paddr, pgsize, countBuf[0]!, prot);
    if (r < 0) {
      if (origSize - size > 0) unwindMap(d, origIova, origSize - size);
      return r;
    }
    d.stats.maps++;
    iova += r;
    paddr += r;
    size -= r;
  }
  return 0;
}

/**
 * iommu_map: map and sync the new mappings. A domain with split page tables (the Adreno GPU's,
 * IO_PGTABLE_QUIRK_ARM_TTBR1) covers the upper half: its IOVAs are sign-extended 64-bit
 * addresses, given as the negative Number with the same value (0xffff_ffff_0000_0000 is -2^32;
 * the aperture is [-2^ias, -1]).
 */
export function iommuMap(d: IommuDomain, iova: number, paddr: number, size: number, prot: number): number {
  const r = iommuMapNosync(d, iova, paddr, size, prot);
  if (r === 0 && d.ops.iotlbSyncMap !== undefined) {
    const s = d.ops.iotlbSyncMap(d, iova, size);
    if (s < 0) {
      unwindMap(d, iova, size);
      return s;
    }
  }
  return r;
}

/**
 * __iommu_unmap: unmap with leaves gathered into `gather`; returns the bytes unmapped (stops at
 * the first thing it cannot unmap). The caller syncs the gather.
 */
export function iommuUnmapFast(d: IommuDomain, iova: number, size: number, gather: IommuIotlbGather): number {
  const ops = d.ops;
  if (ops.unmapPages === undefined || d.pgsizeBitmap === 0 || !d.isPaging) return 0;
  if (usedAfterFree(d, 'iommu_unmap')) return 0;
  const min = minPagesz(d);
  if (iova % min !== 0 || size % min !== 0) return 0;
  let unmapped = 0;
  while (unmapped < size) {
    const pgsize = iommuPgsize(d.pgsizeBitmap, iova, iova, size - unmapped, countBuf);
    const r = ops.unmapPages(d, iova, pgsize, countBuf[0]!, gather);
    if (r <= 0) break;
    d.stats.unmaps++;
    iova += r;
    unmapped += r;
  }
  return unmapped;
}

/**
 * iommu_unmap: unmap and invalidate; resolves to the bytes unmapped once the IOMMU completed.
 * Upper-half IOVAs of a split-table domain are negative Numbers (see iommuMap).
 */
export async function iommuUnmap(d: IommuDomain, iova: number, size: number): Promise<number> {
  const g = new IommuIotlbGather();
  const r = iommuUnmapFast(d, iova, size, g);
  await iotlbSync(d, g);
  return r;
}

/** A failed map takes back what it mapped: unmap and issue the invalidation, recorded in mapUnwind. */
function unwindMap(d: IommuDomain, iova: number, size: number): void {
  const g = new IommuIotlbGather();
  iommuUnmapFast(d, iova, size, g);
  const p = iotlbSync(d, g); // issued synchronously
  const prev = d.mapUnwind;
  d.mapUnwind = prev === null ? p : Promise.all([prev, p]).then(() => undefined);
}

/**
 * The wait for the invalidations failed maps of `d` issued (null if none), and forget it: call
 * right after a failed iommuMap, and reuse the failed range's IOVAs only once it settled.
 */
export function takeMapUnwind(d: IommuDomain): Promise<void> | null {
  const p = d.mapUnwind;
  d.mapUnwind = null;
  return p;
}

/**
 * iommu_iova_to_phys: 0 when nothing is mapped at `iova`. Upper-half IOVAs of a split-table
 * domain are negative Numbers (see iommuMap).
 */
export function iommuIovaToPhys(d: IommuDomain, iova: number): number {
  if (d.type === IOMMU_DOMAIN_IDENTITY) return iova;
  if (d.ops.iovaToPhys === undefined || usedAfterFree(d, 'iommu_iova_to_phys')) return 0;
  return d.ops.iovaToPhys(d, iova);
}

/** iommu_flush_iotlb_all: resolves when the IOMMU completed the invalidation. */
export async function iommuFlushIotlbAll(d: IommuDomain): Promise<void> {
  if (d.ops.flushIotlbAll !== undefined && !usedAfterFree(d, 'iommu_flush_iotlb_all')) {
    d.stats.flushAll++;
    await d.ops.flushIotlbAll(d);
  }
}

export { pgsizeHas };
