/**
 * The kernel interfaces a scenario calls as a driver would: the DMA API, the IOMMU API and the
 * fault API. They are the kernel model's own functions, typed here as the stable public face;
 * results follow Linux (0 or a negative errno, DMA_MAPPING_ERROR, a domain or -errno).
 */

import type { Device } from '../kernel/base/device.ts';
import type { Kernel } from '../kernel/init/kernel.ts';
import type { DmaApi as KernelDmaApi } from '../kernel/iommu/dma/mapping.ts';
import {
  type IommuDomain,
  iommuFlushIotlbAll,
  iommuIovaToPhys,
  iommuMap,
  iommuUnmap,
} from '../kernel/iommu/domain.ts';
import type { IommuFaults } from '../kernel/iommu/fault/io-pgfault.ts';
import { type IommuFaultHandlerFn, iommuSetFaultHandler } from '../kernel/iommu/fault/report.ts';
import type { IommuGroup } from '../kernel/iommu/group.ts';
import type { IommuAllocFlags } from '../kernel/iommu/ops.ts';

/**
 * The DMA API of one kernel (include/linux/dma-mapping.h): `mapSingle` / `unmapSingle`,
 * `mapPage` / `unmapPage`, `mapSg` / `unmapSg`, `allocCoherent` / `freeCoherent`, the sync
 * calls and `flushQueue`. Maps return the DMA address or DMA_MAPPING_ERROR (-1); unmaps resolve
 * once the mapping is gone from the IOMMU's TLBs (strict mode) or is queued (lazy mode).
 */
export type DmaApi = Pick<
  KernelDmaApi,
  | 'mapSingle'
  | 'unmapSingle'
  | 'mapPage'
  | 'unmapPage'
  | 'mapSg'
  | 'unmapSg'
  | 'allocCoherent'
  | 'freeCoherent'
  | 'syncSingleForCpu'
  | 'syncSingleForDevice'
  | 'flushQueue'
>;

/**
 * The fault API (include/linux/iommu.h, drivers/iommu/io-pgfault.c): per-device fault handlers
 * that see a stalled or page-requested fault first and may defer their answer to a workqueue,
 * domain handlers, IOPF enabling, page responses, and an observer of every fault and response.
 */
export type FaultApi = Pick<
  IommuFaults,
  | 'registerDeviceFaultHandler'
  | 'unregisterDeviceFaultHandler'
  | 'setDomainFaultHandler'
  | 'setDomainIopfHandler'
  | 'enableIopf'
  | 'disableIopf'
  | 'pageResponse'
  | 'groupResponse'
  | 'domainResume'
  | 'endBurst'
  | 'setTimeout'
  | 'deviceStats'
  | 'pendingGroups'
  | 'observe'
  | 'flush'
>;

/**
 * The IOMMU API (include/linux/iommu.h) as a driver — or iommufd on a user's behalf — uses it:
 * domains, attach / detach / replace, PASID attach, map / unmap. Domain allocation resolves to a
 * domain or a negative errno; attach calls to 0 or -errno; `map` returns 0 or -errno.
 */
export class IommuApi {
  /** @internal */
  constructor(private readonly k: Kernel) {}

  /** iommu_paging_domain_alloc(_flags): an unmanaged paging domain for `dev`, or -errno. */
  domainAllocPaging(dev: Device, flags?: IommuAllocFlags): Promise<IommuDomain | number> {
    return flags === undefined
      ? this.k.iommu.domainAllocPaging(dev)
      : this.k.iommu.domainAllocPagingFlags(dev, flags);
  }

  /**
   * A nested domain (stage 1 owned by a guest over the stage-2 `parent`), as iommufd allocates
   * it; `data` is the driver's description (SMMUv3: `{ vste: [word0, word1] }` as bigints).
   */
  domainAllocNested(dev: Device, parent: IommuDomain, data: unknown): Promise<IommuDomain | number> {
    return this.k.iommu.domainAllocNested(dev, parent, data);
  }

  /**
   * iommu_set_fault_handler: `fn(domain, dev, iova, flags, token)` hears of the domain's
   * faults from drivers that report them with report_iommu_fault (arm-smmu). Its answer: 0
   * handled (a stalled transaction is terminated), -EAGAIN (-11) retry it (arm-smmu v6.16+),
   * and the driver prints the fault when there is no handler. null removes it.
   */
  setFaultHandler(domain: IommuDomain, fn: IommuFaultHandlerFn | null, token?: unknown): void {
    iommuSetFaultHandler(domain, fn, token);
  }

  /** iommu_domain_free. */
  domainFree(domain: IommuDomain): Promise<void> {
    return this.k.iommu.domainFree(domain);
  }

  /** iommu_attach_device: 0 or -errno (the device must be alone in its group). */
  attachDevice(domain: IommuDomain, dev: Device): Promise<number> {
    return this.k.iommu.attachDevice(domain, dev);
  }

  /** iommu_detach_device: back to the group's default domain. */
  detachDevice(domain: IommuDomain, dev: Device): Promise<void> {
    return this.k.iommu.detachDevice(domain, dev);
  }

  /** iommu_group_replace_domain: switch a group to `domain` without a blocked window. */
  replaceGroupDomain(group: IommuGroup, domain: IommuDomain): Promise<number> {
    return this.k.iommu.replaceGroupDomain(group, domain);
  }

  /** iommu_attach_device_pasid: translate `pasid` of `dev` through `domain`. */
  attachDevicePasid(domain: IommuDomain, dev: Device, pasid: number): Promise<number> {
    return this.k.iommu.attachDevicePasid(domain, dev, pasid);
  }

  /** iommu_detach_device_pasid. */
  detachDevicePasid(domain: IommuDomain, dev: Device, pasid: number): Promise<void> {
    return this.k.iommu.detachDevicePasid(domain, dev, pasid);
  }

  /** iommu_replace_device_pasid. */
  replaceDevicePasid(domain: IommuDomain, dev: Device, pasid: number): Promise<number> {
    return this.k.iommu.replaceDevicePasid(domain, dev, pasid);
  }

  /** iommu_get_domain_for_dev. */
  getDomainForDev(dev: Device): IommuDomain | null {
    return this.k.iommu.getDomainForDev(dev);
  }

  /** The domain attached to `pasid` of `dev`, or null. */
  getDomainForDevPasid(dev: Device, pasid: number): IommuDomain | null {
    return this.k.iommu.getDomainForDevPasid(dev, pasid);
  }

  /** iommu_group_get: the device's group, or null when it has no IOMMU. */
  groupOf(dev: Device): IommuGroup | null {
    return this.k.iommu.groupOf(dev);
  }

  /**
   * iommu_map: map [iova, iova+size) to `paddr` with IOMMU_READ / IOMMU_WRITE / ... `prot`;
   * 0 or -errno. Resolves once the mapping can be used by the device. A domain with split page
   * tables (the Adreno GPU's, IO_PGTABLE_QUIRK_ARM_TTBR1) covers the upper half: its IOVAs are
   * sign-extended 64-bit addresses, given as the negative Number with the same value
   * (0xffff_ffff_0000_0000 is -2^32; the aperture is [-2^ias, -1]).
   */
  async map(domain: IommuDomain, iova: number, paddr: number, size: number, prot: number): Promise<number> {
    return await iommuMap(domain, iova, paddr, size, prot);
  }

  /**
   * iommu_unmap: resolves to the bytes unmapped, once the IOMMU's TLBs no longer hold them.
   * Upper-half IOVAs of a split-table domain are negative Numbers (see map).
   */
  unmap(domain: IommuDomain, iova: number, size: number): Promise<number> {
    return iommuUnmap(domain, iova, size);
  }

  /**
   * iommu_iova_to_phys (0 when nothing is mapped there). Upper-half IOVAs of a split-table
   * domain are negative Numbers (see map).
   */
  iovaToPhys(domain: IommuDomain, iova: number): number {
    return iommuIovaToPhys(domain, iova);
  }

  /** iommu_flush_iotlb_all. */
  flushIotlbAll(domain: IommuDomain): Promise<void> {
    return iommuFlushIotlbAll(domain);
  }
}
