/**
 * A fault layer on a bare machine with a stand-in IOMMU core and driver: the driver's
 * page_response records every message, so the core's rules can be checked without hardware.
 */

import type { IommuCore } from '../../../src/kernel/iommu/core.ts';
import type { IommuDevice } from '../../../src/kernel/iommu/device.ts';
import { IOMMU_DOMAIN_UNMANAGED, IommuDomain } from '../../../src/kernel/iommu/domain.ts';
import {
  IOMMU_FAULT_DMA_UNRECOV,
  IOMMU_FAULT_PAGE_REQ,
  IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
  IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
  IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA,
  IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID,
  IOMMU_FAULT_PERM_READ,
  IOMMU_FAULT_REASON,
  IOMMU_FAULT_UNRECOV_ADDR_VALID,
  type IommuPageRequestFault,
  type IommuPageResponseMsg,
  type IommuUnrecoverableFault,
} from '../../../src/kernel/iommu/fault/fault.ts';
import { IommuFaults, type IommuFaultsOptions } from '../../../src/kernel/iommu/fault/io-pgfault.ts';
import type { IommuOps } from '../../../src/kernel/iommu/ops.ts';
import { Machine } from '../../../src/platform/index.ts';

export interface Sent {
  dev: string;
  last: IommuPageRequestFault;
  msg: IommuPageResponseMsg;
  t: number;
}

export function fakeDev(name: string): IommuDevice {
  return {
    name,
    busName: 'platform',
    pci: null,
    dma: { mask: 0xffff_ffffn, coherentMask: 0xffff_ffffn, coherent: true },
    iommu: { ids: [1] },
  };
}

export function setupFaults(opts: IommuFaultsOptions = {}) {
  const m = new Machine({ seed: 1 });
  const ops = { name: 'fake-iommu', pgsizeBitmap: 4096, probeDevice: () => 0 } as IommuOps;
  /** `${dev}:${pasid}` -> domain. */
  const domains = new Map<string, IommuDomain>();
  const core = {
    devIommu: (_d: IommuDevice) => ({ iommu: { name: 'fake', ops }, group: null, maxPasids: 0 }),
    getDomainForDev: (d: IommuDevice) => domains.get(`${d.name}:0`) ?? null,
    getDomainForDevPasid: (d: IommuDevice, p: number) => domains.get(`${d.name}:${p}`) ?? null,
  } as unknown as IommuCore;
  const faults = new IommuFaults(m, core, opts);
  const sent: Sent[] = [];
  faults.setDriverOps(ops, {
    pageResponse: (dev, last, msg) => {
      sent.push({ dev: dev.name, last, msg, t: m.sched.now });
      return 0;
    },
  });
  const newDomain = () => new IommuDomain(IOMMU_DOMAIN_UNMANAGED, { attachDev: () => 0 });
  const attach = (dev: IommuDevice, d: IommuDomain, pasid = 0) => domains.set(`${dev.name}:${pasid}`, d);
  return { m, faults, sent, newDomain, attach, ops };
}

export function pageReq(
  dev: IommuDevice,
  grpid: number,
  o: {
    last?: boolean;
    pasid?: number;
    needsPasid?: boolean;
    addr?: number;
    perm?: number;
    time?: number;
    priv?: [number, number];
  } = {},
): IommuPageRequestFault {
  let flags = IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA;
  if (o.last ?? true) flags |= IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE;
  if (o.pasid !== undefined) flags |= IOMMU_FAULT_PAGE_REQUEST_PASID_VALID;
  if (o.needsPasid) flags |= IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID;
  return {
    type: IOMMU_FAULT_PAGE_REQ,
    requester: { dev, sid: 1, rid: null },
    time: o.time ?? 0,
    flags,
    pasid: o.pasid ?? 0,
    grpid,
    perm: o.perm ?? IOMMU_FAULT_PERM_READ,
    addr: o.addr ?? 0x1000 * (grpid + 1),
    privateData: o.priv ?? [7, grpid],
  };
}

export function unrecov(dev: IommuDevice, addr = 0xdead000): IommuUnrecoverableFault {
  return {
    type: IOMMU_FAULT_DMA_UNRECOV,
    requester: { dev, sid: 1, rid: null },
    time: 0,
    reason: IOMMU_FAULT_REASON.PTE_FETCH,
    flags: IOMMU_FAULT_UNRECOV_ADDR_VALID,
    pasid: 0,
    perm: IOMMU_FAULT_PERM_READ,
    addr,
    fetchAddr: 0,
  };
}
