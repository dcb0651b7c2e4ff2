/**
 * dma-iommu (drivers/iommu/dma-iommu.c): the DMA API on top of an IOMMU DMA domain. Each DMA
 * domain gets a cookie with its IOVA allocator; unmaps are invalidated at once (strict, DMA
 * domains) or deferred into a flush queue that is drained by one flush_iotlb_all when it fills
 * or when its timer fires (lazy, DMA_FQ domains), and only then are the IOVAs reused.
 */

import type { Machine } from '../../../platform/machine.ts';
import type { IommuDevice } from '../device.ts';
import { devIsPci, maskToLimit } from '../device.ts';
import {
  IOMMU_DOMAIN_DMA_FQ,
  type IommuDomain,
  iommuFlushIotlbAll,
  iommuMap,
  iommuUnmapFast,
  minPagesz,
} from '../domain.ts';
import { IommuIotlbGather, iotlbSync } from '../iotlb-gather.ts';
import { IOMMU_CACHE, IOMMU_PRIV, IOMMU_READ, IOMMU_WRITE } from '../prot.ts';
import type { IommuResvRegion } from '../resv-regions.ts';
import { IovaDomain } from './iova.ts';
import { DMA_ATTR_PRIVILEGED, DMA_MAPPING_ERROR, type DmaDirection, type ScatterEntry } from './types.ts';

export const IOVA_DEFAULT_FQ_SIZE = 256;
/** IOVA_DEFAULT_FQ_TIMEOUT: 10 ms. */
export const IOVA_DEFAULT_FQ_TIMEOUT_NS = 10_000_000;
const TWO32M1 = 0xffff_ffff;

/** Per-domain flush queue (struct iova_fq): IOVAs waiting for the next IOTLB flush. */
export class FlushQueue {
  private readonly pfn: Float64Array;
  private readonly pages: Float64Array;
  private readonly counter: Float64Array;
  private head = 0;
  private tail = 0;
  /** fq_flush_start_cnt / fq_flush_finish_cnt. */
  startCnt = 0;
  finishCnt = 0;
  timerOn = false;
  readonly stats = { queued: 0, flushes: 0, timerFlushes: 0, fullFlushes: 0 };

  constructor(
    readonly size: number,
    readonly timeoutNs: number,
  ) {
    this.pfn = new Float64Array(size);
    this.pages = new Float64Array(size);
    this.counter = new Float64Array(size);
  }

  get length(): number {
    return (this.tail - this.head + this.size) % this.size;
  }

  full(): boolean {
    return (this.tail + 1) % this.size === this.head;
  }

  /** fq_ring_free: release entries whose flush has completed. */
  ringFree(iovad: IovaDomain): void {
    while (this.head !== this.tail && this.counter[this.head]! < this.finishCnt) {
      iovad.freeIovaFast(this.pfn[this.head]!, this.pages[this.head]!);
      this.head = (this.head + 1) % this.size;
    }
  }

  push(pfn: number, pages: number): void {
    this.pfn[this.tail] = pfn;
    this.pages[this.tail] = pages;
    this.counter[this.tail] = this.startCnt;
    this.tail = (this.tail + 1) % this.size;
    this.stats.queued++;
  }
}

/** struct iommu_dma_cookie. */
export class IommuDmaCookie {
  readonly iovad: IovaDomain;
  fq: FlushQueue | null = null;
  private fqTimer = 0;
  /** dev->iommu->pci_32bit_workaround, per device. */
  readonly pci32 = new WeakMap<IommuDevice, boolean>();
  /** MSI doorbell pages mapped into the domain: PA -> IOVA. */
  readonly msiPages = new Map<number, number>();

  constructor(
    readonly m: Machine,
    readonly domain: IommuDomain,
    resv: IommuResvRegion[],
    fqOpts: { size?: number; timeoutNs?: number } = {},
  ) {
    const granule = minPagesz(domain);
    const basePfn = Math.max(1, Math.floor(domain.geometry.apertureStart / granule));
    this.iovad = new IovaDomain(granule, basePfn);
    for (const r of resv) {
      // the software MSI window is ours to manage (iova_reserve_iommu_regions skips it)
      if (r.type === 'sw-msi') continue;
      this.iovad.reserveIova(Math.floor(r.start / granule), Math.floor((r.start + r.length - 1) / granule));
    }
    if (domain.type === IOMMU_DOMAIN_DMA_FQ) {
      this.fq = new FlushQueue(
        fqOpts.size ?? IOVA_DEFAULT_FQ_SIZE,
        fqOpts.timeoutNs ?? IOVA_DEFAULT_FQ_TIMEOUT_NS,
      );
    }
  }

  get granule(): number {
    return this.iovad.granule;
  }

  /** fq_flush_iotlb. */
  private fqFlushIotlb(): void {
    const fq = this.fq!;
    fq.startCnt++;
    iommuFlushIotlbAll(this.domain);
    fq.finishCnt++;
    fq.stats.flushes++;
  }

  /** queue_iova. */
  queueIova(pfn: number, pages: number): void {
    const fq = this.fq!;
    fq.ringFree(this.iovad);
    if (fq.full()) {
      this.fqFlushIotlb();
      fq.stats.fullFlushes++;
      fq.ringFree(this.iovad);
    }
    fq.push(pfn, pages);
    if (!fq.timerOn) {
      fq.timerOn = true;
      this.fqTimer = this.m.sched.schedule(fq.timeoutNs, () => this.fqFlushTimeout(), 'iommu-dma fq timer');
    }
  }

  /** fq_flush_timeout. */
  private fqFlushTimeout(): void {
    const fq = this.fq;
    if (fq === null) return;
    fq.timerOn = false;
    this.fqFlushIotlb();
    fq.stats.timerFlushes++;
    fq.ringFree(this.iovad);
  }

  /** Drain the queue now (domain teardown, or a caller that must see IOVAs reusable). */
  flushQueueNow(): void {
    const fq = this.fq;
    if (fq === null) return;
    if (fq.timerOn) {
      this.m.sched.cancel(this.fqTimer);
      fq.timerOn = false;
    }
    if (fq.length > 0) this.fqFlushIotlb();
    fq.ringFree(this.iovad);
  }

  destroy(): void {
    this.flushQueueNow();
    this.iovad.destroy();
  }
}

/** dma_info_to_prot. */
export function dmaInfoToProt(dir: DmaDirection, coherent: boolean, attrs: number): number {
  let prot = coherent ? IOMMU_CACHE : 0;
  if (attrs & DMA_ATTR_PRIVILEGED) prot |= IOMMU_PRIV;
  switch (dir) {
    case 'bidirectional':
      return prot | IOMMU_READ | IOMMU_WRITE;
    case 'to-device':
      return prot | IOMMU_READ;
    case 'from-device':
      return prot | IOMMU_WRITE;
    default:
      return 0;
  }
}

export function cookieOf(domain: IommuDomain): IommuDmaCookie | null {
  return domain.iovaCookie instanceof IommuDmaCookie ? domain.iovaCookie : null;
}

/** iommu_dma_alloc_iova: IOVA of `size` bytes under the device's limit; 32-bit first for PCI. */
export function iommuDmaAllocIova(
  cookie: IommuDmaCookie,
  dev: IommuDevice,
  size: number,
  mask: bigint,
): number {
  const iovad = cookie.iovad;
  const shift = iovad.shift;
  const len = size / cookie.granule;
  let limit = maskToLimit(mask);
  const bus = dev.dma.busLimit;
  if (bus !== undefined && bus !== 0n) limit = Math.min(limit, maskToLimit(bus));
  const geo = cookie.domain.geometry;
  if (geo.forceAperture) limit = Math.min(limit, geo.apertureEnd);
  let pci32 = cookie.pci32.get(dev);
  if (pci32 === undefined) cookie.pci32.set(dev, (pci32 = devIsPci(dev)));
  if (limit > TWO32M1 && pci32) {
    const pfn = iovad.allocIovaFast(len, Math.floor(TWO32M1 / 2 ** shift));
    if (pfn >= 0) return pfn * cookie.granule;
    // one failure turns the workaround off for this device
    cookie.pci32.set(dev, false);
  }
  const pfn = iovad.allocIovaFast(len, Math.floor(limit / 2 ** shift));
  return pfn < 0 ? DMA_MAPPING_ERROR : pfn * cookie.granule;
}

/** __iommu_dma_map: map phys (any alignment) for `size`; returns the DMA address or DMA_MAPPING_ERROR. */
export function iommuDmaMap(
  cookie: IommuDmaCookie,
  dev: IommuDevice,
  phys: number,
  size: number,
  prot: number,
  mask: bigint,
): number {
  const g = cookie.granule;
  const off = phys % g;
  const len = Math.ceil((size + off) / g) * g;
  const iova = iommuDmaAllocIova(cookie, dev, len, mask);
  if (iova === DMA_MAPPING_ERROR) return DMA_MAPPING_ERROR;
  if (iommuMap(cookie.domain, iova, phys - off, len, prot) < 0) {
    cookie.iovad.freeIovaFast(iova / g, len / g);
    return DMA_MAPPING_ERROR;
  }
  return iova + off;
}

const gather = new IommuIotlbGather();

/** __iommu_dma_unmap: unmap, then invalidate now (strict) or queue the IOVA (flush queue). */
export function iommuDmaUnmap(cookie: IommuDmaCookie, addr: number, size: number): number {
  const g = cookie.granule;
  const off = addr % g;
  const iova = addr - off;
  const len = Math.ceil((size + off) / g) * g;
  gather.init();
  gather.queued = cookie.fq !== null;
  const unmapped = iommuUnmapFast(cookie.domain, iova, len, gather);
  if (!gather.queued) iotlbSync(cookie.domain, gather);
  if (gather.queued) cookie.queueIova(iova / g, len / g);
  else cookie.iovad.freeIovaFast(iova / g, len / g);
  return unmapped === len ? 0 : -1;
}

/**
 * iommu_dma_map_sg: one IOVA range for the whole list, each segment padded to granule
 * boundaries, then __finalise_sg merges segments that are contiguous in IOVA space into
 * as few DMA segments as the max segment size and boundary allow. Returns the DMA segment count
 * (0 on failure).
 */
export function iommuDmaMapSg(
  cookie: IommuDmaCookie,
  dev: IommuDevice,
  sg: ScatterEntry[],
  nents: number,
  prot: number,
  mask: bigint,
  maxSegSize = 65536,
  segBoundaryMask = 0xffff_ffff,
): number {
  const g = cookie.granule;
  const offs: number[] = [];
  const lens: number[] = [];
  let total = 0;
  for (let i = 0; i < nents; i++) {
    const s = sg[i]!;
    const off = s.phys % g;
    const len = Math.ceil((s.length + off) / g) * g;
    offs.push(off);
    lens.push(len);
    total += len;
  }
  const iova = iommuDmaAllocIova(cookie, dev, total, mask);
  if (iova === DMA_MAPPING_ERROR) return 0;
  let at = iova;
  for (let i = 0; i < nents; i++) {
    const s = sg[i]!;
    if (iommuMap(cookie.domain, at, s.phys - offs[i]!, lens[i]!, prot) < 0) {
      if (at > iova) {
        gather.init();
        iommuUnmapFast(cookie.domain, iova, at - iova, gather);
        iotlbSync(cookie.domain, gather);
      }
      cookie.iovad.freeIovaFast(iova / g, total / g);
      return 0;
    }
    at += lens[i]!;
  }
  // __finalise_sg
  let count = 0;
  let cur = -1;
  let curLen = 0;
  let dma = iova;
  for (let i = 0; i < nents; i++) {
    const s = sg[i]!;
    const sOff = offs[i]!;
    const sLen = s.length;
    const sIovaLen = lens[i]!;
    s.dmaAddress = DMA_MAPPING_ERROR;
    s.dmaLength = 0;
    if (curLen !== 0 && sOff === 0 && dma % (segBoundaryMask + 1) !== 0 && maxSegSize - curLen >= sLen) {
      curLen += sLen;
    } else {
      cur = count;
      curLen = sLen;
      count++;
      sg[cur]!.dmaAddress = dma + sOff;
    }
    sg[cur]!.dmaLength = curLen;
    dma += sIovaLen;
    if (sLen + sOff < sIovaLen) curLen = 0;
  }
  return count;
}
