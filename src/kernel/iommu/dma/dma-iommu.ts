/**
 * dma-iommu (drivers/iommu/dma-iommu.c): the DMA API on top of an IOMMU DMA domain. Each DMA
 * domain gets a cookie with its IOVA allocator; unmaps are invalidated at once (strict, DMA
 * domains) or deferred into a flush queue that is drained by one flush_iotlb_all when it fills
 * or when its timer fires (lazy, DMA_FQ domains), and only then are the IOVAs reused.
 *
 * Maps are synchronous. Unmaps and flushes are async: they return when the IOMMU completed the
 * invalidation, waiting without sleeping (Linux busy-waits on CMD_SYNC here, possibly with IRQs
 * off), so nothing on these paths calls mightSleep. An IOVA goes back to the allocator only after
 * the invalidation that covers it has completed.
 *
 * MSI doorbells (iommu_dma_prepare_msi): a device behind a translating domain can only reach the
 * interrupt controller's doorbell through that domain, so the doorbell page is mapped into it,
 * once per domain: at an IOVA from the allocator for DMA domains (Linux: "we ARE the software
 * that manages" the SW_MSI window, so it is not reserved there), or, for domains given an MSI
 * cookie (iommu_get_msi_cookie: UNMANAGED domains of VFIO/iommufd), consecutive pages from the
 * software MSI window's base.
 */

import type { Machine } from '../../../platform/machine.ts';
import type { IommuDevice } from '../device.ts';
import { devIsPci, maskToLimit } from '../device.ts';
import {
  IOMMU_DOMAIN_DMA_FQ,
  IOMMU_DOMAIN_UNMANAGED,
  type IommuDomain,
  iommuFlushIotlbAll,
  iommuMap,
  iommuUnmapFast,
  minPagesz,
  takeMapUnwind,
} from '../domain.ts';
import { EBUSY, EINVAL, ENODEV, ENOSPC } from '../errno.ts';
import { IommuIotlbGather, iotlbSync, iotlbSyncIssue } from '../iotlb-gather.ts';
import { IOMMU_CACHE, IOMMU_MMIO, IOMMU_NOEXEC, IOMMU_PRIV, IOMMU_READ, IOMMU_WRITE } from '../prot.ts';
import { type IommuResvRegion, MSI_IOVA_BASE, MSI_IOVA_LENGTH } from '../resv-regions.ts';
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
  /** The timer's flush while it runs (del_timer_sync waits for it). */
  private fqTimerRun: Promise<void> | null = null;
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

  /**
   * fq_flush_iotlb. Entries queued while the flush runs carry the new start count, so they are
   * not released by this flush's completion (they may have been unmapped after the TLBI).
   */
  private async fqFlushIotlb(): Promise<void> {
    const fq = this.fq!;
    fq.startCnt++;
    await iommuFlushIotlbAll(this.domain);
    this.m.mem.sanitizer?.lazyFlushed();
    fq.finishCnt++;
    fq.stats.flushes++;
  }

  /**
   * queue_iova: defer the IOVA's release to the next flush. Flushes first (and waits for it) if
   * the queue is full; otherwise returns without waiting.
   */
  queueIova(pfn: number, pages: number): Promise<void> | null {
    const fq = this.fq!;
    fq.ringFree(this.iovad);
    if (!fq.full()) {
      this.pushIova(pfn, pages);
      return null;
    }
    return this.queueIovaFull(pfn, pages);
  }

  private async queueIovaFull(pfn: number, pages: number): Promise<void> {
    const fq = this.fq!;
    // another unmap may fill the queue again while a flush waits for the IOMMU
    while (fq.full()) {
      await this.fqFlushIotlb();
      fq.stats.fullFlushes++;
      fq.ringFree(this.iovad);
    }
    this.pushIova(pfn, pages);
  }

  private pushIova(pfn: number, pages: number): void {
    const fq = this.fq!;
    fq.push(pfn, pages);
    if (!fq.timerOn) {
      fq.timerOn = true;
      this.fqTimer = this.m.sched.schedule(fq.timeoutNs, () => this.fqFlushTimeout(), 'iommu-dma fq timer');
    }
  }

  /**
   * fq_flush_timeout: the timer fires in virtual time and runs the flush, which waits for the
   * IOMMU, in a kernel context of its own (it never sleeps: mightSleep there would be a bug).
   */
  private fqFlushTimeout(): void {
    const fq = this.fq;
    if (fq === null) return;
    fq.timerOn = false;
    const run = this.m.exec
      .runIn('workqueue', 'iommu-dma fq_flush_timeout', async () => {
        await this.fqFlushIotlb();
        fq.stats.timerFlushes++;
        fq.ringFree(this.iovad);
      })
      .catch((err: unknown) => this.m.exec.crash('iommu-dma fq_flush_timeout', err))
      .finally(() => {
        if (this.fqTimerRun === run) this.fqTimerRun = null;
      });
    this.fqTimerRun = run;
  }

  /** Drain the queue now (domain teardown, or a caller that must see IOVAs reusable). */
  async flushQueueNow(): Promise<void> {
    const fq = this.fq;
    if (fq === null) return;
    if (fq.timerOn) {
      this.m.sched.cancel(this.fqTimer);
      fq.timerOn = false;
    }
    if (this.fqTimerRun !== null) await this.fqTimerRun;
    if (fq.length > 0) await this.fqFlushIotlb();
    fq.ringFree(this.iovad);
  }

  /** iommu_put_dma_cookie: drain the flush queue (waiting for its flush), drop the IOVA space. */
  async destroy(): Promise<void> {
    await this.flushQueueNow();
    this.msiPages.clear();
    this.iovad.destroy();
  }

  /**
   * Give the IOVA range back once `wait` (an invalidation covering it) completed; at once if
   * there is nothing to wait for.
   */
  freeIovaAfter(wait: Promise<void> | null, iova: number, len: number): void {
    const g = this.granule;
    if (wait === null) {
      this.iovad.freeIovaFast(iova / g, len / g);
      return;
    }
    wait.then(
      () => this.iovad.freeIovaFast(iova / g, len / g),
      (err: unknown) => this.m.exec.crash('iommu-dma invalidation', err),
    );
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
    // iommu_map took back what it had mapped; the IOVA is reusable once that is invalidated
    cookie.freeIovaAfter(takeMapUnwind(cookie.domain), iova, len);
    return DMA_MAPPING_ERROR;
  }
  return iova + off;
}

/**
 * Shared by every unmap: iotlbSync issues the invalidation and resets the gather before its first
 * await, so the gather is free again as soon as an unmap starts waiting.
 */
const gather = new IommuIotlbGather();

/**
 * __iommu_dma_unmap: unmap, then invalidate and wait (strict) or queue the IOVA (flush queue).
 * 0, or -1 if not everything was mapped; a promise of that when there is something to wait for
 * (a plain number only when the driver completed synchronously: the hot path saves the await).
 */
export function iommuDmaUnmap(cookie: IommuDmaCookie, addr: number, size: number): number | Promise<number> {
  const g = cookie.granule;
  const off = addr % g;
  const iova = addr - off;
  const len = Math.ceil((size + off) / g) * g;
  gather.init();
  gather.queued = cookie.fq !== null;
  const unmapped = iommuUnmapFast(cookie.domain, iova, len, gather);
  const r = unmapped === len ? 0 : -1;
  if (gather.queued) {
    gather.init();
    // the IOTLB still holds the translations until the flush queue's flush (iommu.strict=0)
    cookie.m.mem.sanitizer?.markLazy(iova, len);
    const full = cookie.queueIova(iova / g, len / g);
    return full === null ? r : full.then(() => r);
  }
  const wait = iotlbSyncIssue(cookie.domain, gather);
  if (wait === null) {
    cookie.iovad.freeIovaFast(iova / g, len / g);
    return r;
  }
  return wait.then(() => {
    cookie.iovad.freeIovaFast(iova / g, len / g);
    return r;
  });
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
      // map is synchronous: issue the invalidation of what was mapped, and let the IOVA range
      // go back to the allocator only when it (and the failed map's own unwinding) completed
      const waits: Promise<void>[] = [];
      const unwind = takeMapUnwind(cookie.domain);
      if (unwind !== null) waits.push(unwind);
      if (at > iova) {
        gather.init();
        iommuUnmapFast(cookie.domain, iova, at - iova, gather);
        waits.push(iotlbSync(cookie.domain, gather));
      }
      cookie.freeIovaAfter(waits.length === 0 ? null : Promise.all(waits).then(() => undefined), iova, total);
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

// ------------------------------------------------------------------ MSI doorbells

/** The MSI cookie of an UNMANAGED domain (IOMMU_DMA_MSI_COOKIE): a bump allocator in the SW_MSI window. */
export class IommuDmaMsiCookie {
  /** Next free IOVA of the window. */
  msiIova: number;
  /** MSI doorbell pages mapped into the domain: PA -> IOVA. */
  readonly msiPages = new Map<number, number>();

  constructor(
    readonly domain: IommuDomain,
    readonly base: number,
    readonly length: number,
  ) {
    this.msiIova = base;
  }
}

/**
 * iommu_get_msi_cookie: let an UNMANAGED domain (VFIO/iommufd) map MSI doorbells at consecutive
 * pages from `base` (the SW_MSI window the driver reports). 0, -EINVAL (not UNMANAGED), -EBUSY
 * (the domain already has a cookie).
 */
export function iommuGetMsiCookie(
  domain: IommuDomain,
  base = MSI_IOVA_BASE,
  length = MSI_IOVA_LENGTH,
): number {
  if (domain.type !== IOMMU_DOMAIN_UNMANAGED) return -EINVAL;
  if (domain.iovaCookie !== null) return -EBUSY;
  domain.iovaCookie = new IommuDmaMsiCookie(domain, base, length);
  return 0;
}

export function msiCookieOf(domain: IommuDomain): IommuDmaMsiCookie | null {
  return domain.iovaCookie instanceof IommuDmaMsiCookie ? domain.iovaCookie : null;
}

/**
 * iommu_dma_get_msi_page: the IOVA at which `domain` maps the doorbell page holding `msiAddr`,
 * mapping it (write-only MMIO) on first use. Returns the page's IOVA, or -errno (-ENODEV: the
 * domain has no cookie; -ENOSPC: the MSI window or the IOVA space is full; map errors).
 */
export function iommuDmaGetMsiPage(dev: IommuDevice, msiAddr: number, domain: IommuDomain): number {
  const dmaCookie = cookieOf(domain);
  const msiCookie = msiCookieOf(domain);
  if (dmaCookie === null && msiCookie === null) return -ENODEV;
  // cookie_msi_granule: the IOVA granule, or PAGE_SIZE for MSI cookies
  const size = dmaCookie !== null ? dmaCookie.granule : 4096;
  const phys = msiAddr - (msiAddr % size);
  const pages = dmaCookie !== null ? dmaCookie.msiPages : msiCookie!.msiPages;
  const known = pages.get(phys);
  if (known !== undefined) return known;
  let iova: number;
  if (msiCookie !== null) {
    if (msiCookie.msiIova + size > msiCookie.base + msiCookie.length) return -ENOSPC;
    iova = msiCookie.msiIova;
    msiCookie.msiIova += size;
  } else {
    iova = iommuDmaAllocIova(dmaCookie!, dev, size, dev.dma.mask);
    if (iova === DMA_MAPPING_ERROR) return -ENOSPC;
  }
  const r = iommuMap(domain, iova, phys, size, IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_MMIO);
  if (r < 0) {
    if (msiCookie !== null) msiCookie.msiIova -= size;
    else dmaCookie!.freeIovaAfter(takeMapUnwind(domain), iova, size);
    return r;
  }
  pages.set(phys, iova);
  return iova;
}

/**
 * iommu_dma_prepare_msi + iommu_dma_compose_msi_msg: the address the device must write its MSIs
 * to when `domain` translates them. `msiAddr` itself if the domain does not translate (no
 * domain, IDENTITY, no cookie: as Linux, which leaves the message alone without a cookie);
 * otherwise the doorbell page's IOVA plus the offset in the page, or -errno.
 */
export function iommuDmaPrepareMsi(dev: IommuDevice, domain: IommuDomain | null, msiAddr: number): number {
  if (domain === null || !domain.isPaging) return msiAddr;
  if (cookieOf(domain) === null && msiCookieOf(domain) === null) return msiAddr;
  const iova = iommuDmaGetMsiPage(dev, msiAddr, domain);
  if (iova < 0) return iova;
  const g = cookieOf(domain)?.granule ?? 4096;
  return iova + (msiAddr % g);
}
