/**
 * The DMA API drivers call (dma_map_single, dma_map_page, dma_map_sg, dma_alloc_coherent, the
 * syncs and the unmaps), dispatched per device as Linux does: devices whose default domain is a
 * DMA domain go through dma-iommu; the rest use dma-direct, bouncing through SWIOTLB when the
 * device cannot reach the buffer. DMA-API debugging checks every call (on by default).
 *
 * CPU ("virtual") addresses of the kernel model are physical addresses: the linear map is 1:1.
 *
 * Maps, coherent allocation and the syncs are synchronous. Unmaps, dma_free_coherent and
 * flush-queue drains are async: through an IOMMU they return only once the invalidation has
 * completed (strict mode) — a wait that does not sleep, as Linux busy-waits there and allows it
 * in atomic context.
 */

import type { Machine } from '../../../platform/machine.ts';
import type { DmaDomainHooks, IommuCore } from '../core.ts';
import { type IommuDevice, maskToLimit } from '../device.ts';
import type { IommuDomain } from '../domain.ts';
import { ENODEV } from '../errno.ts';
import { IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE } from '../prot.ts';
import { DmaDebug, type DmaMapKind } from './debug.ts';
import {
  IommuDmaCookie as Cookie,
  cookieOf,
  dmaInfoToProt,
  type IommuDmaCookie,
  iommuDmaMap,
  iommuDmaMapSg,
  iommuDmaPrepareMsi,
  iommuDmaUnmap,
} from './dma-iommu.ts';
import { Swiotlb } from './swiotlb.ts';
import { DMA_MAPPING_ERROR, type DmaDirection, type ScatterEntry } from './types.ts';

export interface DmaApiOptions {
  /** SWIOTLB pool size in bytes (default 4 MiB); 0 = no SWIOTLB. */
  swiotlbBytes?: number;
  /** swiotlb=force: bounce every dma-direct mapping. */
  swiotlbForce?: boolean;
  /** Flush queue geometry for DMA_FQ domains. */
  fqSize?: number;
  fqTimeoutNs?: number;
  /** DMA-API debugging (default on). */
  debug?: boolean;
}

export interface CoherentBuffer {
  cpuAddr: number;
  dmaAddr: number;
}

export class DmaApi implements DmaDomainHooks {
  readonly debug: DmaDebug;
  private swiotlbPool: Swiotlb | null = null;
  readonly stats = { cacheMaintenance: 0, directMaps: 0, iommuMaps: 0, bounced: 0 };

  constructor(
    readonly m: Machine,
    readonly core: IommuCore | null,
    readonly opts: DmaApiOptions = {},
  ) {
    this.debug = new DmaDebug(m);
    this.debug.enabled = opts.debug ?? true;
    if (core !== null) core.dmaHooks = this;
  }

  get swiotlb(): Swiotlb | null {
    if (this.swiotlbPool === null && (this.opts.swiotlbBytes ?? 4 << 20) > 0) {
      this.swiotlbPool = new Swiotlb(this.m, this.opts.swiotlbBytes ?? 4 << 20);
    }
    return this.swiotlbPool;
  }

  // ------------------------------------------------------------------ DmaDomainHooks (iommu_dma_init_domain)

  initDomain(domain: IommuDomain, dev: IommuDevice): number {
    const resv = this.core?.getResvRegions(dev) ?? [];
    const fq: { size?: number; timeoutNs?: number } = {};
    if (this.opts.fqSize !== undefined) fq.size = this.opts.fqSize;
    if (this.opts.fqTimeoutNs !== undefined) fq.timeoutNs = this.opts.fqTimeoutNs;
    domain.iovaCookie = new Cookie(this.m, domain, resv, fq);
    return 0;
  }

  async putDomain(domain: IommuDomain): Promise<void> {
    const c = cookieOf(domain);
    domain.iovaCookie = null;
    if (c !== null) await c.destroy();
  }

  /** The DMA cookie the device's DMA goes through, or null for dma-direct. */
  cookieFor(dev: IommuDevice): IommuDmaCookie | null {
    const d = this.core?.getDmaDomain(dev) ?? null;
    return d?.isDma ? cookieOf(d) : null;
  }

  // ------------------------------------------------------------------ dma-direct

  private capable(dev: IommuDevice, addr: number, size: number, mask: bigint): boolean {
    let limit = maskToLimit(mask);
    const bus = dev.dma.busLimit;
    if (bus !== undefined && bus !== 0n) limit = Math.min(limit, maskToLimit(bus));
    return addr + size - 1 <= limit;
  }

  private directMap(dev: IommuDevice, phys: number, size: number, dir: DmaDirection): number {
    this.stats.directMaps++;
    const force = this.opts.swiotlbForce === true;
    if (force || !this.capable(dev, phys, size, dev.dma.mask)) {
      const pool = this.swiotlb;
      if (pool === null) return DMA_MAPPING_ERROR;
      const tlb = pool.map(phys, size, dev.name);
      if (tlb < 0 || !this.capable(dev, tlb, size, dev.dma.mask)) {
        if (tlb >= 0) pool.unmap(tlb, size, 'none');
        return DMA_MAPPING_ERROR;
      }
      this.stats.bounced++;
      if (!dev.dma.coherent) this.stats.cacheMaintenance++;
      return tlb;
    }
    if (!dev.dma.coherent) this.stats.cacheMaintenance++; // arch_sync_dma_for_device
    void dir;
    return phys;
  }

  private directUnmap(dev: IommuDevice, addr: number, size: number, dir: DmaDirection): void {
    if (!dev.dma.coherent && dir !== 'to-device') this.stats.cacheMaintenance++;
    const pool = this.swiotlbPool;
    if (pool?.isSwiotlbBuffer(addr)) pool.unmap(addr, size, dir);
  }

  // ------------------------------------------------------------------ map / unmap

  /** dma_map_page_attrs. */
  mapPage(
    dev: IommuDevice,
    phys: number,
    offset: number,
    size: number,
    dir: DmaDirection,
    attrs = 0,
  ): number {
    return this.mapKind(dev, phys + offset, size, dir, attrs, 'page');
  }

  /** dma_map_single_attrs (cpuAddr: kernel linear-map address = physical address). */
  mapSingle(dev: IommuDevice, cpuAddr: number, size: number, dir: DmaDirection, attrs = 0): number {
    return this.mapKind(dev, cpuAddr, size, dir, attrs, 'single');
  }

  private mapKind(
    dev: IommuDevice,
    phys: number,
    size: number,
    dir: DmaDirection,
    attrs: number,
    kind: DmaMapKind,
  ): number {
    if (dir === 'none' || !(size > 0)) {
      this.m.reportBug('dma-api', `DMA-API: ${dev.name}: bad dma_map_${kind} (dir ${dir}, size ${size})`);
      return DMA_MAPPING_ERROR;
    }
    const cookie = this.cookieFor(dev);
    let addr: number;
    if (cookie !== null) {
      this.stats.iommuMaps++;
      if (!dev.dma.coherent) this.stats.cacheMaintenance++;
      addr = iommuDmaMap(cookie, dev, phys, size, dmaInfoToProt(dir, dev.dma.coherent, attrs), dev.dma.mask);
    } else addr = this.directMap(dev, phys, size, dir);
    if (addr !== DMA_MAPPING_ERROR) this.debug.add(dev, kind, addr, size, dir, phys);
    return addr;
  }

  /** dma_unmap_page_attrs: resolves when the mapping is gone from the IOMMU's TLBs (strict). */
  unmapPage(dev: IommuDevice, addr: number, size: number, dir: DmaDirection, attrs = 0): Promise<void> {
    return this.unmapKind(dev, addr, size, dir, attrs, 'page');
  }

  /** dma_unmap_single_attrs. */
  unmapSingle(dev: IommuDevice, addr: number, size: number, dir: DmaDirection, attrs = 0): Promise<void> {
    return this.unmapKind(dev, addr, size, dir, attrs, 'single');
  }

  private async unmapKind(
    dev: IommuDevice,
    addr: number,
    size: number,
    dir: DmaDirection,
    _attrs: number,
    kind: DmaMapKind,
  ): Promise<void> {
    // Linux checks, then unmaps what it was told regardless
    const ok = this.debug.check(dev, kind, addr, size, dir);
    const cookie = this.cookieFor(dev);
    if (cookie !== null) {
      if (!ok && this.debug.enabled) return; // the model refuses to unmap what debug proved wrong
      if (!dev.dma.coherent && dir !== 'to-device') this.stats.cacheMaintenance++;
      let r = iommuDmaUnmap(cookie, addr, size);
      if (typeof r !== 'number') r = await r;
      if (r < 0) {
        this.m.reportBug(
          'warn',
          `WARNING: iommu-dma: ${dev.name}: unmap of 0x${addr.toString(16)} (+${size}) did not unmap everything`,
        );
      }
    } else {
      if (!ok && this.debug.enabled) return;
      this.directUnmap(dev, addr, size, dir);
    }
  }

  /**
   * `nents` must count entries of the list: a driver passing more (or none) would make Linux walk
   * past the scatterlist's end; the model fails the call and reports it (DMA-API).
   */
  private badNents(dev: IommuDevice, what: string, sg: ScatterEntry[], nents: number): boolean {
    if (Number.isInteger(nents) && nents > 0 && nents <= sg.length) return false;
    this.m.reportBug(
      'dma-api',
      `DMA-API: ${dev.name}: ${what}: nents ${nents}, but the scatterlist has ${sg.length} entries`,
    );
    return true;
  }

  /** dma_map_sg_attrs: returns the number of DMA segments (0 on failure). */
  mapSg(dev: IommuDevice, sg: ScatterEntry[], nents: number, dir: DmaDirection, attrs = 0): number {
    if (this.badNents(dev, 'dma_map_sg', sg, nents)) return 0;
    const cookie = this.cookieFor(dev);
    let count: number;
    if (cookie !== null) {
      count = iommuDmaMapSg(
        cookie,
        dev,
        sg,
        nents,
        dmaInfoToProt(dir, dev.dma.coherent, attrs),
        dev.dma.mask,
      );
    } else {
      count = 0;
      for (let i = 0; i < nents; i++) {
        const s = sg[i]!;
        const a = this.directMap(dev, s.phys, s.length, dir);
        if (a === DMA_MAPPING_ERROR) {
          for (let k = 0; k < i; k++) this.directUnmap(dev, sg[k]!.dmaAddress, sg[k]!.length, dir);
          return 0;
        }
        s.dmaAddress = a;
        s.dmaLength = s.length;
        count++;
      }
    }
    if (count > 0) {
      const first = sg[0]!.dmaAddress;
      const last = sg[count - 1]!;
      this.debug.add(
        dev,
        'scatter-gather',
        first,
        last.dmaAddress + last.dmaLength - first,
        dir,
        sg[0]!.phys,
      );
    }
    return count;
  }

  /** dma_unmap_sg_attrs: `nents` is what was passed to map (Linux's rule), not the returned count. */
  async unmapSg(dev: IommuDevice, sg: ScatterEntry[], nents: number, dir: DmaDirection): Promise<void> {
    // too many entries: reported, and what the list holds is unmapped (nothing mapped stays behind)
    if (this.badNents(dev, 'dma_unmap_sg', sg, nents)) {
      if (!(nents > 0)) return;
      nents = sg.length;
    }
    const cookie = this.cookieFor(dev);
    if (cookie !== null) {
      let count = 0;
      while (count < nents && sg[count]!.dmaLength > 0) count++;
      if (count === 0) return;
      const first = sg[0]!.dmaAddress;
      const last = sg[count - 1]!;
      const size = last.dmaAddress + last.dmaLength - first;
      if (!this.debug.check(dev, 'scatter-gather', first, size, dir) && this.debug.enabled) return;
      await iommuDmaUnmap(cookie, first, size);
    } else {
      const first = sg[0]!.dmaAddress;
      const last = sg[nents - 1]!;
      if (
        !this.debug.check(dev, 'scatter-gather', first, last.dmaAddress + last.dmaLength - first, dir) &&
        this.debug.enabled
      ) {
        return;
      }
      for (let i = 0; i < nents; i++) this.directUnmap(dev, sg[i]!.dmaAddress, sg[i]!.length, dir);
    }
  }

  // ------------------------------------------------------------------ coherent memory

  /** dma_alloc_coherent: zeroed pages, mapped for the device. Null on failure. */
  allocCoherent(dev: IommuDevice, size: number): CoherentBuffer | null {
    const pages = Math.ceil(size / 4096);
    const order = Math.ceil(Math.log2(pages));
    const cpu = this.m.pages.alloc(order, `dma-coherent:${dev.name}`);
    if (cpu < 0) return null;
    const cookie = this.cookieFor(dev);
    let dma: number;
    if (cookie !== null) {
      const prot = IOMMU_READ | IOMMU_WRITE | (dev.dma.coherent ? IOMMU_CACHE : 0);
      dma = iommuDmaMap(cookie, dev, cpu, 4096 * 2 ** order, prot, dev.dma.coherentMask);
    } else {
      dma = this.capable(dev, cpu, size, dev.dma.coherentMask) ? cpu : DMA_MAPPING_ERROR;
    }
    if (dma === DMA_MAPPING_ERROR) {
      this.m.pages.freePages(cpu);
      return null;
    }
    this.debug.add(dev, 'coherent', dma, size, 'bidirectional', cpu);
    return { cpuAddr: cpu, dmaAddr: dma };
  }

  /** dma_free_coherent. */
  /** dma_free_coherent: the pages are freed only once the device can no longer reach them. */
  async freeCoherent(dev: IommuDevice, size: number, buf: CoherentBuffer): Promise<void> {
    if (!this.debug.check(dev, 'coherent', buf.dmaAddr, size, 'bidirectional') && this.debug.enabled) return;
    const cookie = this.cookieFor(dev);
    const order = Math.ceil(Math.log2(Math.ceil(size / 4096)));
    if (cookie !== null) await iommuDmaUnmap(cookie, buf.dmaAddr, 4096 * 2 ** order);
    this.m.pages.freePages(buf.cpuAddr);
  }

  // ------------------------------------------------------------------ syncs

  /** dma_sync_single_for_cpu: make the device's writes visible to the CPU. */
  syncSingleForCpu(dev: IommuDevice, addr: number, size: number, dir: DmaDirection): void {
    this.debug.checkSync(dev, addr, size, dir);
    if (!dev.dma.coherent && dir !== 'to-device') this.stats.cacheMaintenance++;
    const pool = this.swiotlbPool;
    if (this.cookieFor(dev) === null && pool !== null && pool.isSwiotlbBuffer(addr))
      pool.syncForCpu(addr, size, dir);
  }

  /** dma_sync_single_for_device: hand the buffer (CPU writes included) back to the device. */
  syncSingleForDevice(dev: IommuDevice, addr: number, size: number, dir: DmaDirection): void {
    this.debug.checkSync(dev, addr, size, dir);
    if (!dev.dma.coherent) this.stats.cacheMaintenance++;
    const pool = this.swiotlbPool;
    if (this.cookieFor(dev) === null && pool !== null && pool.isSwiotlbBuffer(addr))
      pool.syncForDevice(addr, size, dir);
  }

  // ------------------------------------------------------------------ driver model hooks

  /** Called when a driver unbinds from `dev`: leaked mappings are reported. Returns their count. */
  deviceUnbound(dev: IommuDevice): number {
    return this.debug.deviceUnbound(dev);
  }

  /** Drain `dev`'s flush queue now (IOVAs become reusable, TLB flushed); resolves when flushed. */
  async flushQueue(dev: IommuDevice): Promise<void> {
    await this.cookieFor(dev)?.flushQueueNow();
  }

  // ------------------------------------------------------------------ MSI

  /**
   * iommu_dma_prepare_msi + compose: the address `dev` must write its MSIs to, so that they reach
   * the doorbell at `msiAddr` (default: the machine's ITS doorbell, GITS_TRANSLATER). Through a
   * translating domain (the one the device is attached to now) the doorbell page gets mapped into
   * it on first use and the IOVA is returned; without translation `msiAddr` itself. -errno on
   * failure.
   */
  prepareMsi(dev: IommuDevice, msiAddr = this.m.irq.doorbell): number {
    if (msiAddr < 0) return -ENODEV; // no interrupt controller doorbell
    return iommuDmaPrepareMsi(dev, this.core?.getDomainForDev(dev) ?? null, msiAddr);
  }
}
